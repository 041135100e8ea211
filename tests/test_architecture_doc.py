"""docs/architecture.md draws one world-model agent step from the code, and the docs site covers the user pages.

The step's signatures are generated (scripts/architecture_step.py): stale text, a call the drawing
shows that the code no longer makes, or a step spread over more than 8 files fails here.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mermaid(text: str) -> str:
    blocks = re.findall(r"^```mermaid\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 1, "docs/architecture.md should hold one mermaid drawing of the step"
    return blocks[0]


def test_step_signatures_are_current_and_calls_hold():
    step = _script("architecture_step")
    assert step.check_calls() == []
    assert step.current_block(step.DOC.read_text()) == step.render(), "run scripts/architecture_step.py"


def test_step_is_read_through_at_most_8_files_all_drawn():
    step = _script("architecture_step")
    assert len(step.STEP) <= 8
    drawing = _mermaid(step.DOC.read_text())
    for path, names in step.STEP.items():
        assert (ROOT / path).exists() and path in drawing, path
        for q in names:
            if not any(part.startswith("_") for part in q.split(".")):
                assert q in drawing, f"{q} ({path}) is not in the drawing"


def test_step_check_detects_a_missing_call(monkeypatch):
    step = _script("architecture_step")
    monkeypatch.setattr(step, "CALLS", [("agent/world_model_agent.py", "WorldModelAgent.act", "no_such_call")])
    assert step.check_calls() == ["agent/world_model_agent.py: WorldModelAgent.act does not call no_such_call"]


def test_site_nav_covers_the_user_pages_and_the_api():
    hooks = _script("docs_hooks")
    nav = re.findall(r":\s*([\w/]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)
    assert all((ROOT / "docs" / p).exists() for p in nav if p != "index.md"), nav
    user_pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert user_pages <= set(nav), f"user pages missing from mkdocs.yml nav: {sorted(user_pages - set(nav))}"
    assert "experiments/README.md" in nav
    mods = {pkg: hooks.public_modules(pkg) for pkg in hooks.PACKAGES}
    assert "agent.world_model_agent" in mods["agent"] and "world_model.ssg.clip" in mods["world_model"]
    assert not [m for ms in mods.values() for m in ms if "._" in m or "weights" in m]
    index = hooks.readme_as_index((ROOT / "README.md").read_text())
    assert "](docs/" not in index and "](images/episode.png)" in index


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return names | {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}


def test_hand_kept_key_signatures_name_what_exists():
    # the hand-kept map below the generated step: every function or class it opens a line with is
    # still defined in the file(s) its "# path.py[, other.py]" header names
    text = (ROOT / "docs" / "architecture.md").read_text()
    code = re.findall(r"^```python\n(.*?)^```", text[text.index("### Key signatures"):], flags=re.S | re.M)[0]
    files, missing, checked = [], [], 0
    for line in code.splitlines():
        header = re.match(r"# ((?:[\w/]+\.py)(?:,\s*[\w/]+\.py)*)", line)
        if header:
            parts = [p.strip() for p in header.group(1).split(",")]
            base = Path(parts[0]).parent
            files = [ROOT / (p if "/" in p and (ROOT / p).exists() else base / p) for p in parts]
            continue
        m = re.match(r"(?:\s*(?:def|class) (\w+)|([A-Za-z_]\w*)\()", line)
        if m and files:
            name = m.group(1) or m.group(2)
            checked += 1
            if not any(name in _defined_names(f) for f in files if f.exists()):
                missing.append(f"{name} ({', '.join(str(f.relative_to(ROOT)) for f in files)})")
    assert checked > 50 and not missing, missing
