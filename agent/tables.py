"""Evaluation summaries as tables: a rich table for the terminal, markdown rows for results files.

``update_results_md`` writes the markdown rows of several agents, with the command that made them
and their provenance, into a block of a markdown file (``spatialnav eval agents=[...]`` writes
``out_dir/results.md``, and ``results_md=<path>`` when asked); a later run with the same key
replaces its block and keeps the rest of the file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from envs.metrics import METRIC_KEYS


def format_table(summary: dict, title: str | None = None):
    """A rich Table of the metrics with 95% confidence intervals."""
    from rich.table import Table

    t = Table(title=title or f"{summary.get('agent', '')} on {summary.get('split', '')} "
                              f"({summary.get('n_episodes', 0)} episodes)")
    t.add_column("metric")
    t.add_column("mean", justify="right")
    t.add_column("95% CI", justify="right")
    for k in METRIC_KEYS:
        lo, hi = summary.get(f"{k}_ci95", [math.nan, math.nan])
        ci = "-" if lo is None or not np.isfinite(lo) else f"[{lo:.3f}, {hi:.3f}]"
        t.add_row(k, f"{summary.get(k, math.nan):.3f}", ci)
    sps = summary.get("seconds_per_step", math.nan)
    t.add_row("seconds_per_step", f"{sps * 1e3:.2f} ms" if np.isfinite(sps) else "-", "")
    return t


def results_rows_markdown(summaries: Sequence[dict]) -> str:
    """A markdown table, one row per summary (``label`` or agent): the metrics with 95% CIs and s/step."""
    def ci(sm, k, fmt):
        lo, hi = sm.get(f"{k}_ci95", [math.nan, math.nan])
        m = sm.get(k, math.nan)
        if lo is None or not np.isfinite(lo):
            return fmt.format(m)
        return f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}]"

    lines = ["| agent | episodes | success | SPL | SoftSPL | dist. to goal (m) | steps | s / step |",
             "|---|---|---|---|---|---|---|---|"]
    for sm in summaries:
        lines.append(f"| {sm.get('label', sm.get('agent', ''))} | {sm.get('n_episodes', 0)} | "
                     f"{ci(sm, 'success', '{:.3f}')} | {ci(sm, 'spl', '{:.3f}')} | {ci(sm, 'softspl', '{:.3f}')} | "
                     f"{sm.get('distance_to_goal', math.nan):.2f} | {sm.get('steps', math.nan):.1f} | "
                     f"{sm.get('seconds_per_step', math.nan):.3f} |")
    return "\n".join(lines)


def provenance_markdown(summaries: Sequence[dict]) -> str:
    """One line saying which code and weights made the rows (from each summary's ``provenance``)."""
    provs = [(sm.get("label", sm.get("agent", "")), sm.get("provenance")) for sm in summaries]
    provs = [(label, p) for label, p in provs if p]
    if not provs:
        return ""
    p0 = provs[0][1]
    commit = (p0.get("git_commit") or "unknown")[:10] + (" + uncommitted changes" if p0.get("git_dirty") else "")
    weights = "; ".join(f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(p.get("weights", {}).items()))
                        for label, p in provs if p.get("weights"))
    return (f"Provenance: git {commit}, code {p0.get('code_version', '?')}"
            + (f"; weights (sha1 of the loaded tensors) {weights}" if weights else "; no learned weights") + ".")


def update_results_md(path: str | os.PathLike, summaries: Sequence[dict], command: str, key: str,
                      note: str = "") -> Path:
    """Write the agents' rows into ``path`` (e.g. docs/results.md) inside a block marked by ``key``:
    a later run with the same key replaces its block, other blocks and text are kept."""
    path = Path(path)
    begin, end = f"<!-- spatialnav-eval {key} -->", f"<!-- /spatialnav-eval {key} -->"
    prov = provenance_markdown(summaries)
    block = "\n".join([begin, f"### `{key}`", "", results_rows_markdown(summaries), "",
                       "```bash", command, "```"] + ([prov] if prov else []) + ([note] if note else []) + [end])
    text = path.read_text() if path.exists() else "# Results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def print_table(summary: dict, title: str | None = None) -> None:
    """Print ``format_table(summary, title)`` to the terminal."""
    from rich.console import Console

    Console().print(format_table(summary, title))
