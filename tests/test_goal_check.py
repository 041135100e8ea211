"""The learned STOP test (planners.goal_check) and its data/trainer (planners.train_goal_check), small:
two generated episodes, a handful of rendered views, two training steps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from planners.goal_check import VISIBLE_FRACTION, build_goal_check, load_goal_check
from planners.train_goal_check import KINDS, build_split, evaluate, main, roc_auc


@pytest.fixture(scope="module")
def views():
    return build_split("train", 2, seed=0, width=64, height=64, log=None)


def test_views_are_labelled_by_the_env_geometry(views):
    n = len(views["success"])
    assert n > 10 and views["rgb"].shape == (n, 64, 64, 3) and views["depth"].shape == (n, 32, 32)
    s, v, d = views["success"], views["visible"], views["distance_m"]
    assert s.any() and (~s).any()
    assert np.all(d[s] <= 0.1 + 1e-9) and np.all(v[s])  # success: inside the region and the target in view
    inside = d <= 0.1 + 1e-9
    assert not np.any(inside & ~v)  # inside with the target out of view is left out
    at_goal = views["kind"] == KINDS.index("at_goal")
    assert at_goal.any() and s[at_goal].mean() > 0.8
    assert set(np.unique(views["kind"])) <= set(range(len(KINDS)))
    assert all(isinstance(t, str) and t for t in views["instruction"])


def test_roc_auc_matches_its_definition():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1, 2, 3], [1, 1, 0]) == 0.0
    assert roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert math.isnan(roc_auc([1, 2], [1, 1]))


def test_probabilities_and_round_trip(tmp_path, views):
    torch.manual_seed(0)
    m = build_goal_check(hidden=32)
    p = m.probabilities(views["rgb"][:3], views["depth"][:3].astype(np.float32), "go to the bed")
    assert p.shape == (3, 2) and np.all((p >= 0) & (p <= 1))
    # a full-size view (the agent's 128x128 RGB-D observation) is resized the same way
    big = m.check(np.zeros((128, 128, 3), np.uint8), np.full((128, 128, 1), 2.0, np.float32), "go to the bed")
    assert set(big) == {"p_success", "p_visible", "stop"}
    m.threshold = 0.37
    m.save_pretrained(tmp_path / "gc")
    cfg = json.loads((tmp_path / "gc" / "goal_check.json").read_text())
    assert cfg["threshold"] == 0.37 and cfg["visible_fraction"] == VISIBLE_FRACTION
    m2 = load_goal_check(tmp_path / "gc")
    assert m2.threshold == 0.37
    q = m2.probabilities(views["rgb"][:3], views["depth"][:3].astype(np.float32), "go to the bed")
    np.testing.assert_allclose(p, q, atol=1e-5)


def test_missing_directory_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_goal_check"):
        load_goal_check(tmp_path / "nothing")


def test_training_runs_resumes_and_saves(tmp_path):
    out = tmp_path / "gc"
    common = ["--out", str(out), "--train-episodes", "2", "--val-episodes", "1", "--batch-size", "8",
              "--hidden", "32", "--eval-every", "2", "--ckpt-every", "1", "--warmup", "1"]
    main(common + ["--steps", "2"])
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 2 and 0.0 <= lines[-1]["auc"] <= 1.0
    m = load_goal_check(out / "final")
    assert m.info["steps"] == 2 and m.info["train_views"] > 0
    main(common + ["--steps", "3"])  # resumes from the step-2 checkpoint and trains one more step
    assert json.loads((out / "training.json").read_text())["steps"] == 3 and (out / "ckpt" / "step_00000003").is_dir()
    assert load_goal_check(out / "final").info["steps"] == 3
    with np.load(out / "val.npz") as z:
        res = evaluate(m, {k: z[k] for k in z.files})
    assert res["n"] > 0 and "accept_rate_at_goal" in res
