"""scripts/pooled_compare.py pools the episodes of several run pairs into one paired comparison."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def _load():
    path = Path(__file__).resolve().parents[1] / "scripts" / "pooled_compare.py"
    spec = importlib.util.spec_from_file_location("pooled_compare", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(d: Path, rows):
    d.mkdir(parents=True)
    (d / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pools_pairs_by_episode(tmp_path, capsys):
    mod = _load()
    _run(tmp_path / "a1", [{"episode_id": f"v{i}", "success": 1.0, "spl": 0.5} for i in range(4)])
    _run(tmp_path / "b1", [{"episode_id": f"v{i}", "success": float(i < 2), "spl": 0.25} for i in range(5)])
    _run(tmp_path / "a2", [{"episode_id": f"t{i}", "success": 0.0, "spl": 0.0} for i in range(4)])
    _run(tmp_path / "b2", [{"episode_id": f"t{i}", "success": 0.0, "spl": 0.0} for i in range(4)])
    out = mod.main([f"{tmp_path / 'a1'}:{tmp_path / 'b1'}", f"{tmp_path / 'a2'}:{tmp_path / 'b2'}"])
    # 8 shared episodes: A won 2 of the 4 val ones B lost, nothing else differs
    assert out["success"]["n"] == 8 and out["success"]["diff"] == pytest.approx(2 / 8)
    assert out["spl"]["diff"] == pytest.approx(4 * 0.25 / 8)
    assert "success: A 0.500, B 0.250, A - B +0.250" in capsys.readouterr().out
    # two pairs over the same episodes count twice
    out = mod.main([f"{tmp_path / 'a1'}:{tmp_path / 'b1'}", f"{tmp_path / 'a1'}:{tmp_path / 'b1'}"])
    assert out["success"]["n"] == 8 and out["success"]["diff"] == pytest.approx(0.5)
    with pytest.raises(SystemExit):
        mod.main(["no-colon"])
