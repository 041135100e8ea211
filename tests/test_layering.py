"""Architecture guard: data flows env -> context -> world model -> planner -> action, and a
lower layer never imports a higher one (not even lazily inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["envs", "world_model", "planners", "agent"]  # low -> high


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("layer", ORDER[:-1])
def test_lower_layers_never_import_higher_ones(layer):
    higher = set(ORDER[ORDER.index(layer) + 1:])
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no sources under {layer}/"
    bad = {str(f.relative_to(ROOT)): sorted(imported_packages(f) & higher) for f in files}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"{layer}/ imports higher layers: {bad}"


def test_the_guard_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from planners.rollout_reader import find_box\n    import agent.cli\n")
    assert {"planners", "agent"} <= imported_packages(f)
