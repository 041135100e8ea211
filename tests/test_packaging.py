"""The installable package: the wheel carries configs, benchmarks and the shipped weights (not the repo-only
research/) and runs from any folder; every imported third-party package is declared; the torch pin of setup.sh
fits pyproject."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["agent", "envs", "world_model", "planners"]
SHIPPED = ["configs", "benchmarks"]
REPO_ONLY = ["research"]  # the diagnostics of docs/experiments/: run from a checkout, not in the wheel
OPTIONAL_MODULES = {"habitat_sim": "habitat", "magnum": "habitat", "miniworld": "miniworld", "pyglet": "miniworld"}


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _req_name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported anywhere in the shipped code -> files importing them (lazy imports too)."""
    own = set(PACKAGES + SHIPPED + REPO_ONLY)
    found: dict[str, set[str]] = {}
    for top in PACKAGES + ["benchmarks"] + REPO_ONLY:  # research/ runs in the project's environment too
        for f in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for n in names:
                    mod = n.split(".")[0]
                    if mod not in own and mod not in sys.stdlib_module_names:
                        found.setdefault(mod, set()).add(str(f.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    from importlib.metadata import packages_distributions

    meta = _pyproject()["project"]
    declared = {_req_name(r) for r in meta["dependencies"]}
    extras = {k: {_req_name(r) for r in v} for k, v in meta["optional-dependencies"].items()}
    dists = packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "diffusers", "transformers", "tokenizers", "gymnasium"} <= set(imports)  # the scan sees them
    missing = {}
    for mod, files in imports.items():
        if mod in OPTIONAL_MODULES:
            extra = OPTIONAL_MODULES[mod]
            assert extra in extras, f"{mod} is imported ({sorted(files)}) but there is no [{extra}] extra"
            continue
        names = {d.lower().replace("_", "-") for d in dists.get(mod, [])}
        if not names & declared:
            missing[mod] = (sorted(names), sorted(files)[:3])
    assert not missing, f"imported but not in [project.dependencies]: {missing}"


def test_research_is_a_repo_only_package():
    """research/ imports the library and stays out of the wheel: packages.find does not include it."""
    from fnmatch import fnmatch

    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    for pkg in REPO_ONLY:
        assert (ROOT / pkg / "__init__.py").is_file()
        for mod in [pkg] + [".".join(f.relative_to(ROOT).with_suffix("").parts[:-1])
                            for f in (ROOT / pkg).rglob("__init__.py")]:
            assert not any(fnmatch(mod, pat) for pat in include), f"{mod} would be packaged ({include})"
    for pkg in PACKAGES + SHIPPED:
        assert any(fnmatch(pkg, pat) for pat in include), f"{pkg} is not packaged ({include})"


def test_setup_torch_pin_fits_pyproject():
    from packaging.requirements import Requirement

    setup = (ROOT / "scripts" / "setup.sh").read_text()
    m = re.search(r"torch==\$\{TORCH_VERSION:-([0-9][^}]*)\}", setup)
    assert m, "scripts/setup.sh should install torch==${TORCH_VERSION:-<version>}"
    (torch_req,) = [Requirement(r) for r in _pyproject()["project"]["dependencies"] if _req_name(r) == "torch"]
    assert torch_req.specifier.contains(m.group(1)), (m.group(1), str(torch_req.specifier))


@pytest.mark.wheel
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    """Build the wheel from a copy of the sources, install it with --no-deps into a target folder outside
    the checkout (dependencies come from this venv), and run the CLI from a third folder."""
    src, wheels, target, work = (tmp_path / d for d in ("src", "wheels", "target", "work"))
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGES + SHIPPED:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPATIALNAV_", "PYTHONPATH"))}
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, cwd=tmp_path, env=env, capture_output=True)
    (whl,) = wheels.glob("spatialnav-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for f in ["configs/config.yaml", "configs/agent/oracle.yaml", "configs/env/default.yaml",
              "benchmarks/bench_sim.py", "world_model/weights/v4s-small/model_index.json",
              "world_model/weights/v4s-small-ssg/adapter.safetensors",
              "world_model/ssg/weights/clip-small/model.safetensors",
              "planners/weights/inverse-dynamics-32/config.json"]:
        assert f in names, f"{f} missing from {whl.name}"
    assert not [n for n in names if n.split("/")[0] in REPO_ONLY], "research/ is repo-only, not part of the wheel"
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(whl)],
                   check=True, cwd=tmp_path, env=env, capture_output=True)
    work.mkdir()
    env["PYTHONPATH"] = str(target)  # ahead of the checkout's editable install

    probe = subprocess.run(
        [sys.executable, "-c",
         "import agent.cli, world_model.loading as l, world_model.ssg.clip as c, json;"
         "print(json.dumps([agent.cli.__file__, str(agent.cli.config_dir()), str(agent.cli.BENCH_DIR),"
         " str(l.SHIPPED_PIPELINE), l.SHIPPED_PIPELINE.is_dir(), str(c.resolve_clip())]))"],
        check=True, cwd=work, env=env, capture_output=True, text=True)
    cli_file, cfg_dir, bench_dir, pipeline, pipeline_ok, clip = json.loads(probe.stdout)
    for p in (cli_file, cfg_dir, bench_dir, pipeline, clip):
        assert Path(p).resolve().is_relative_to(target.resolve()), f"{p} is not from the installed wheel"
    assert pipeline_ok

    exe = target / "bin" / "spatialnav"
    r = subprocess.run([str(exe), "eval", "agent=oracle", "n_episodes=1", "env=tiny", "progress=false"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((work / "runs" / "eval" / "oracle_val" / "summary.json").read_text())
    assert summary["n_episodes"] == 1 and summary["agent"] == "oracle"
    assert summary["success"] == 1.0  # the privileged oracle reaches the goal
    r = subprocess.run([str(exe), "bench"], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "sim" in r.stderr and "wm" in r.stderr  # benchmarks found in the install
