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


# research/ (the diagnostics behind docs/experiments/) sits beside the library: it imports the
# library, the library never imports it (lab code stays out of what users install).
LIBRARY = ORDER


def imports_of_research(root: Path = ROOT, packages=LIBRARY) -> dict[str, list[str]]:
    """Library file -> the ``research`` modules it imports (top-level or lazy, absolute or relative)."""
    bad = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            found = set()
            for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names if a.name.split(".")[0] == "research")
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                        and node.module.split(".")[0] == "research":
                    found.add(node.module)
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                        in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                        and str(node.args[0].value).split(".")[0] == "research":
                    found.add(str(node.args[0].value))
            if found:
                bad[str(f.relative_to(root))] = sorted(found)
    return bad


def test_the_library_never_imports_research():
    assert (ROOT / "research" / "__init__.py").is_file()
    bad = imports_of_research()
    assert not bad, f"library modules import research/ (it must stay beside the library): {bad}"


def test_the_research_guard_sees_lazy_and_dynamic_imports(tmp_path):
    pkg = tmp_path / "world_model"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from research.heldout import main\n")
    (pkg / "b.py").write_text("import research.ssg.heldout as h\n")
    (pkg / "c.py").write_text("import importlib\nm = importlib.import_module('research.release')\n")
    (pkg / "d.py").write_text("from world_model import research_notes\n")  # a name, not the package
    assert imports_of_research(tmp_path, ["world_model"]) == {
        "world_model/a.py": ["research.heldout"], "world_model/b.py": ["research.ssg.heldout"],
        "world_model/c.py": ["research.release"]}


def test_the_guard_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from planners.rollout_reader import find_box\n    import agent.cli\n")
    assert {"planners", "agent"} <= imported_packages(f)


# -- import cycles ---------------------------------------------------------------------------
# No two of the project's modules import each other, directly or through others, counting every
# import statement (top-level and lazy ones inside functions): a cycle means a shared piece lives in
# the wrong module (world_model.metrics, agent.picture and world_model.ssg.spatial_clip came out of three).
# The benchmarks and research/ are read too: they sit on top of the library, and a cycle through them
# is still one.
CYCLE_PACKAGES = ORDER + ["benchmarks", "research"]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT, packages=CYCLE_PACKAGES) -> dict[str, set[str]]:
    """module -> the project's modules it imports anywhere in its source (relative imports resolved;
    ``from pkg import name`` counts ``pkg.name`` when that is a module, else ``pkg``)."""
    files = {_module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    pkg = ".".join(base + ([node.module] if node.module else []))
                else:
                    pkg = node.module
                targets = [f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in files else pkg for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # a name inside a module -> that module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_among_the_project_modules():
    graph = import_graph()
    assert {"agent.runner", "world_model.evaluate", "envs.gym_env", "planners.path", "world_model.ssg.clip",
            "benchmarks.bench_wm", "research.heldout", "research.ssg.heldout"} <= set(graph)
    cycles = [sorted(c) for c in import_cycles(graph)]
    assert not cycles, "import cycles (each a set of modules that import one another): " + "; ".join(
        f"{c}: " + ", ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in cycles)


def test_the_cycle_check_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "agent"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from agent.c import g\n")
    (pkg / "c.py").write_text("import agent.a\n")
    (pkg / "d.py").write_text("from agent import a\n")
    graph = import_graph(tmp_path, ["agent"])
    assert graph["agent.d"] == {"agent.a"}
    assert import_cycles(graph) == [{"agent.a", "agent.b", "agent.c"}]
