"""The summary of an eval-wm run (``summary.json``) and its table.

Means over the samples that ran, with 95% confidence intervals: Wilson for the binary IF
metrics, mean +- 1.96 s / sqrt(n) otherwise (``envs.metrics``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BINARY_KEYS = ("if", "if_box", "if_final", "if_gtbox", "if_sd02")
METRIC_KEYS = ("sd", "if", "if_sd02", "psnr", "ssim", "clip_score", "if_box", "if_final", "if_gtbox",
               "clip_score_gt", "match", "heading_err_deg")


def summarize(rows: list[dict]) -> dict:
    """Means with 95% CIs (Wilson for binary metrics, normal otherwise) over the ``ok`` rows."""
    from envs.metrics import normal_interval, wilson_interval

    ok = [r for r in rows if r.get("status") == "ok"]
    out: dict[str, Any] = {"n": len(ok), "n_skipped": len(rows) - len(ok)}
    for k in METRIC_KEYS:
        vals = np.array([float(r[k]) for r in ok if r.get(k) is not None], np.float64)
        vals = vals[np.isfinite(vals)]
        if not len(vals):
            out[k], out[f"{k}_ci95"] = None, [None, None]
            continue
        lo, hi = wilson_interval(float(vals.sum()), len(vals)) if k in BINARY_KEYS else normal_interval(vals)
        out[k] = float(vals.mean())
        out[f"{k}_ci95"] = [None if not math.isfinite(lo) else lo, None if not math.isfinite(hi) else hi]
    sd = [float(r["sd"]) for r in ok]
    out["sd_median"] = float(np.median(sd)) if sd else None
    secs = [float(r["seconds_imagine"]) for r in ok]
    out["seconds_per_imagine"] = float(np.mean(secs)) if secs else None
    out["seconds_per_sample"] = float(np.mean([float(r["seconds"]) for r in ok])) if ok else None
    if ok:
        rel = [r for r in ok if r.get("needs_relation")]
        out["n_relation"] = len(rel)
    return out


def format_table(summary: dict, title: str = ""):
    """A rich Table of a summary: each metric's mean and 95% CI, SD median, seconds per imagine."""
    from rich.table import Table

    t = Table(title=title or f"world-model grounding ({summary.get('n', 0)} samples)")
    t.add_column("metric")
    t.add_column("mean", justify="right")
    t.add_column("95% CI", justify="right")
    names = {"sd": "SD", "if": "IF", "if_sd02": "IF(SD<0.2)", "psnr": "PSNR (dB)", "ssim": "SSIM",
             "clip_score": "CLIP score", "if_box": "IF box", "if_final": "IF final frame",
             "if_gtbox": "IF vs true-view box", "clip_score_gt": "CLIP score (true frame)",
             "match": "localisation NCC", "heading_err_deg": "heading error (deg)"}
    for k in METRIC_KEYS:
        v = summary.get(k)
        if v is None:
            if k == "clip_score":
                t.add_row(names[k], "-", summary.get("clip_note", ""))
            continue
        lo, hi = summary.get(f"{k}_ci95", [None, None])
        ci = "-" if lo is None else f"[{lo:.3f}, {hi:.3f}]"
        t.add_row(names[k], f"{v:.3f}", ci)
    if summary.get("sd_median") is not None:
        t.add_row("SD median", f"{summary['sd_median']:.3f}", "")
    if summary.get("seconds_per_imagine") is not None:
        t.add_row("s / imagine", f"{summary['seconds_per_imagine']:.2f}", "")
    t.add_row("samples (skipped)", f"{summary.get('n', 0)} ({summary.get('n_skipped', 0)})", "")
    return t
