"""The world model's scaling curve: grounding of every released checkpoint against its training.

    .venv/bin/pip install matplotlib        # or: pip install -e .[docs]
    .venv/bin/python scripts/plot_scaling.py [--data docs/data/wm_scaling.json] [--out docs/images/wm_scaling.png]

Reads the rows of ``docs/data/wm_scaling.json`` (one per released checkpoint, measured with
``spatialnav eval-wm split=test n=200``) and draws box IF, final-frame IF and IF(SD<0.2)
against samples seen, with the issue's targets as dashed lines. It also prints a projection:
a straight line through the last ``--fit`` points of each metric against samples seen, and
the samples (and CPU-hours at the last rows' samples per hour) at which it crosses the target.
A projection from a few points is a rough guide, not a promise; the table says what was measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = (("box_if", "box IF"), ("final_if", "final-frame IF"), ("if_sd02", "IF(SD<0.2)"))


def projection(rows: list[dict], key: str, target: float, fit: int = 3) -> dict:
    """Least-squares line of ``key`` against samples over the last ``fit`` rows; where it reaches ``target``."""
    import numpy as np

    pts = rows[-fit:]
    x = np.array([r["samples"] for r in pts], float)
    y = np.array([r[key] for r in pts], float)
    slope, icpt = np.polyfit(x, y, 1)
    last = rows[-1]
    rate = (rows[-1]["samples"] - rows[-fit]["samples"]) / max(1e-9, rows[-1]["cpu_hours"] - rows[-fit]["cpu_hours"])
    if slope <= 0:
        return {"metric": key, "target": target, "slope_per_10k_samples": slope * 1e4, "reached": None}
    need = (target - icpt) / slope
    return {"metric": key, "target": target, "slope_per_10k_samples": slope * 1e4, "samples_at_target": need,
            "more_samples": max(0.0, need - last["samples"]),
            "more_cpu_hours_at_recent_rate": max(0.0, need - last["samples"]) / rate, "recent_samples_per_hour": rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT / "docs" / "data" / "wm_scaling.json"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "wm_scaling.png"))
    ap.add_argument("--fit", type=int, default=3)
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(Path(a.data).read_text())
    rows = sorted(d["rows"], key=lambda r: r["samples"])
    targets = d.get("targets", {})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    colours = {"box_if": "tab:red", "final_if": "tab:blue", "if_sd02": "tab:green"}
    xs = [r["samples"] / 1e3 for r in rows]
    for key, label in METRICS:
        ax.plot(xs, [r[key] for r in rows], "o-", color=colours[key], label=label)
        if key in targets:
            ax.axhline(targets[key], ls="--", lw=1, color=colours[key], alpha=0.6)
            ax.text(xs[-1], targets[key] + 0.005, f"target {label} {targets[key]:.2f}", color=colours[key], fontsize=8,
                    ha="right")
    for r, x in zip(rows, xs):
        ax.annotate(f"{r['cpu_hours']:.1f} h", (x, r["box_if"]), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=7, color="0.3")
    ax.set_xlabel("training samples seen (thousands); CPU-hours above the box-IF points")
    ax.set_ylabel("fraction of the 200 test samples")
    ax.set_title("v4s-small: grounding of each released checkpoint (test, n=200)", fontsize=10)
    ax.set_ylim(0, max(0.35, max(r["final_if"] for r in rows) + 0.05))
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(f"wrote {a.out}")
    for key in targets:
        print(json.dumps(projection(rows, key, targets[key], a.fit)))


if __name__ == "__main__":
    main()
