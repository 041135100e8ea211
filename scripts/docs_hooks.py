"""MkDocs hooks for the docs site (mkdocs.yml `hooks:`): pages made from the repository at build time.

* ``index.md``: the README, its ``docs/...`` links rewritten to be relative to docs/, so the site's
  home page and the repository's front page are one text.
* ``api/<module>.md``: one API page per public module of envs, world_model, planners and agent
  (mkdocstrings renders each from its docstrings), found by walking the packages, so a module
  that is added, split or moved gets its page without an edit here; the nav's "API reference"
  section lists them package by package.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "world_model", "planners", "agent")  # the layering order, lowest first
API_TITLE = "API reference"


def public_modules(package: str) -> list[str]:
    """Dotted names of the package's modules whose path has no part starting with "_" (the
    package's own ``__init__`` stands for the package), weights and data folders skipped."""
    base = ROOT / package
    names = [package] if (base / "__init__.py").exists() else []
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts
        if path.name == "__init__.py":
            parts = parts[:-1]
            if len(parts) == 1:
                continue  # the package itself, above
            if not all((ROOT.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(1, len(parts) + 1)):
                continue
        elif not (path.parent / "__init__.py").exists():
            continue  # a script folder, not a package
        if any(p.startswith("_") for p in parts):
            continue
        names.append(".".join(parts))
    return sorted(set(names), key=lambda n: (n.count(".") > 0, n))


def readme_as_index(text: str) -> str:
    """The README with links into docs/ made relative to docs/ (``docs/x.md`` -> ``x.md``)."""
    return re.sub(r"(\]\()docs/", r"\1", text)


def _api_page(module: str) -> str:
    return f"---\ntitle: {module}\n---\n\n::: {module}\n"


def on_config(config, **kwargs):
    api = [{pkg: [{m: f"api/{m}.md"} for m in public_modules(pkg)]} for pkg in PACKAGES]
    nav = [item for item in (config.nav or []) if not (isinstance(item, dict) and API_TITLE in item)]
    config.nav = nav + [{API_TITLE: api}]
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File  # imported here: the tests read this module without mkdocs

    files.append(File.generated(config, "index.md", content=readme_as_index((ROOT / "README.md").read_text())))
    for pkg in PACKAGES:
        for m in public_modules(pkg):
            files.append(File.generated(config, f"api/{m}.md", content=_api_page(m)))
    return files
