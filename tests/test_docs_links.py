"""Every relative link between the docs pages (README.md, docs/**/*.md) points at a file that exists,
so moving a study to docs/experiments/ cannot leave a user page pointing nowhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # not inside code blocks
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_relative_doc_links_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = [f"{p.relative_to(ROOT)} -> {t}" for p in pages for t in relative_links(p) if not (p.parent / t).exists()]
    assert not broken, broken


def test_every_experiment_is_named_by_a_user_page():
    # a study nobody points at is lost: a user page links it or names its path (docs/experiments/<file>)
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    linked = {(p.parent / t).resolve() for p in pages for t in relative_links(p)}
    text = "\n".join(p.read_text() for p in pages)
    studies = sorted(p for p in (ROOT / "docs" / "experiments").glob("*.md") if p.name != "README.md")
    assert studies and not [s.name for s in studies if s.resolve() not in linked and f"experiments/{s.name}" not in text]


def test_link_finder(tmp_path):
    p = tmp_path / "a.md"
    p.write_text("see [x](b.md#sec), [web](https://x.y/z.md)\n```\n[no](c.md)\n```\n")
    assert relative_links(p) == ["b.md"]
