"""The integration pages run as written: every ```python block of docs/run_anywhere.md,
docs/own_agent.md, docs/world_model_in_your_agent.md, docs/planners.md and docs/agents.md is
executed, then its results checked."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def run_page(name: str, cwd: Path, monkeypatch) -> dict:
    """Execute the page's python blocks in ``cwd``; torch's thread count (which agents built there
    may set) is restored afterwards."""
    import torch

    text = (DOCS / name).read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)
    assert blocks, f"no python block in docs/{name}"
    monkeypatch.chdir(cwd)
    ns: dict = {"__name__": f"docs_{name.replace('.', '_')}"}
    threads = torch.get_num_threads()
    try:
        exec(compile("\n".join(blocks), str(DOCS / name), "exec"), ns)  # noqa: S102 (our own docs)
    finally:
        torch.set_num_threads(threads)
    return ns


def test_robot_loop_page_runs_and_its_frames_match_the_env(tmp_path, monkeypatch):
    ns = run_page("run_anywhere.md", tmp_path, monkeypatch)
    obs, bridge, info = ns["obs"], ns["bridge"], ns["info"]
    mine = bridge.observation()
    # the bridge's odometry -> start-frame conversion equals the env's own gps/compass
    np.testing.assert_allclose(mine["gps"], obs["gps"], atol=1e-5)
    np.testing.assert_allclose(mine["compass"], obs["compass"], atol=1e-5)
    np.testing.assert_array_equal(mine["depth"], obs["depth"])
    assert 1 <= info["steps"] <= 40


def test_own_agent_page_runs(tmp_path, monkeypatch):
    ns = run_page("own_agent.md", tmp_path, monkeypatch)
    s = ns["summary"]
    assert s["n_episodes"] == 2 and s["steps"] <= 30 and s["agent"] == "depth_greedy"
    assert (tmp_path / "runs" / "own_agent" / "episodes.jsonl").exists()
    with pytest.raises(ValueError, match="clearance_m"):
        ns["DepthGreedyAgent"](clearance_m=0)


def test_world_model_page_runs(tmp_path, monkeypatch):
    ns = run_page("world_model_in_your_agent.md", tmp_path, monkeypatch)
    r = ns["rollout"]
    size = ns["size"]
    assert r.frames.dtype == np.uint8 and r.frames.shape[1:] == size + (3,)
    assert len(r.bbox_frames) >= 1 and r.instruction == ns["obs"]["instruction"]
    assert list(ns["sample"].indices) == sorted(ns["sample"].indices) and len(ns["sample"].indices) == 8


def test_planners_page_runs(tmp_path, monkeypatch):
    ns = run_page("planners.md", tmp_path, monkeypatch)
    ns["env"].close()
    assert ns["action"] in (0, 1, 2, 3)
    assert set(ns["view"]) >= {"score", "z", "xy", "offset"} and ns["m"].explored.any()
    a = ns["answer"]
    assert 0.0 <= a["p_success"] <= 1.0 and 0.0 <= a["p_visible"] <= 1.0 and a["stop"] == (a["p_success"] >= ns["check"].threshold)


def test_agents_page_runs(tmp_path, monkeypatch):
    ns = run_page("agents.md", tmp_path, monkeypatch)
    assert ns["r"].canonical == "go to the orange plant left of the sofa"
