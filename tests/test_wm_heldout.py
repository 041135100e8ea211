"""world_model.heldout: the same inputs for every model, paired gains, the no-bbox ablation's path-only comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

TINY = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
            text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=1024)
S = 16


def _save(path, num_bbox=1, seed=0):
    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    torch.manual_seed(seed)
    model = Video4SpatialModel(transformer_config=dict(TINY), text_len=8, frame_size=(S, S),
                               context_attention="prefix").eval()
    Video4SpatialPipeline(model, make_scheduler(), num_target_frames=2, num_bbox_frames=num_bbox).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from world_model.data import collect

    root = tmp_path_factory.mktemp("heldout")
    collect("val", 4, root / "val", shard_size=4, progress=False, frame_size=32, tour_frames=12, agent_frames=2,
            episodes_per_scene=2, starts_per_episode=1, workers=1)
    return {"data": str(root / "val"), "a": _save(root / "a"), "a2": _save(root / "a2"), "b": _save(root / "b", seed=1),
            "nobbox": _save(root / "nobbox", num_bbox=0, seed=2)}


def test_same_weights_tie_exactly_and_other_weights_differ(setup):
    from world_model.heldout import compare_pipelines

    res = compare_pipelines([setup["a"], setup["a2"], setup["b"]], setup["data"], n=4, draws=2, batch_size=2)
    same, other = res["vs_first"]
    assert same["path"]["gain"] == 0.0 and same["bbox"]["gain"] == 0.0  # same inputs, same noise: identical errors
    assert other["path"]["gain"] != 0.0 and len(other["path"]["gain_ci95"]) == 2
    assert res["models"][0]["n"] == 4 and res["models"][0]["path"] > 0 and "bbox" in res["models"][0]


def test_no_bbox_arm_is_compared_on_path_frames_and_cli(setup, tmp_path, capsys):
    from world_model.heldout import main

    out = tmp_path / "h.json"
    main([f"pipelines=[{setup['a']},{setup['nobbox']}]", f"data_dir={setup['data']}", "n=4", "draws=1",
          "threads=1", f"out={out}"])
    res = json.loads(out.read_text())
    assert res["models"][1]["num_bbox"] == 0 and "bbox" not in res["models"][1]
    assert set(res["vs_first"][0]) == {"pipeline", "path"}
    assert "vs first, path" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="pipelines="):
        main([f"data_dir={setup['data']}"])
    with pytest.raises(SystemExit, match="unknown option"):
        main(["pipeline=x"])


def test_velocity_errors_depend_only_on_seed(setup):
    from world_model.heldout import heldout_items, velocity_errors
    from world_model.pipeline import Video4SpatialPipeline

    pipe = Video4SpatialPipeline.from_pretrained(setup["a"])
    items = heldout_items(setup["data"], 4, 8, 2, 1, S, seed=0)
    again = heldout_items(setup["data"], 4, 8, 2, 1, S, seed=0)
    assert all(np.array_equal(x["context_indices"], y["context_indices"]) for x, y in zip(items, again))
    e1 = velocity_errors(pipe, items, draws=2, batch_size=2, seed=0)
    assert e1.shape == (4, 2, 3) and np.array_equal(e1, velocity_errors(pipe, items, draws=2, batch_size=2, seed=0))
    assert not np.array_equal(e1, velocity_errors(pipe, items, draws=2, batch_size=2, seed=1))
