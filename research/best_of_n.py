"""Which of N imagined rollouts to trust: verifiers scored offline on an eval-wm run.

``spatialnav eval-wm ... eval_wm.num_samples=N eval_wm.candidates=true`` records every rollout's
grounding in its sample's row (``candidates``: IF, IF(SD<0.2), SD, where its final frame was
localised, its box's confidence). This module picks one candidate per sample by each verifier
and scores the picks, against a single-sample run of the same samples when one is given:

* ``pipeline``: the pipeline's own pick (the most confident red box, ``red_box_score``);
* ``first``: candidate 0 (what one sample gives, up to the sampler's noise);
* ``agreement``: the candidate whose imagined goal (its final frame's localised x, y) has the
  most other candidates within ``radius`` metres (ties: the more confident box);
* ``medoid``: the candidate with the least summed distance to the others' goals;
* ``oracle``: any candidate that grounds (an upper bound no verifier can pass).

    python -m research.best_of_n runs/rel/evalwm_val_bo4 --single runs/rel/evalwm_val_n1 [--radius 1.0]

Prints one line per verifier and metric (mean, and the paired difference to ``--single`` with a
bootstrap 95% interval); ``--out`` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

METRICS = ("if", "if_sd02")


def _conf(c: dict) -> float:
    return float(c["box_confidence"]) if c.get("box_confidence") is not None else -1.0


def _dist(a: dict, b: dict) -> float:
    return math.hypot(a["p_hat"][0] - b["p_hat"][0], a["p_hat"][1] - b["p_hat"][1])


def pick_agreement(cands: Sequence[dict], radius: float = 1.0) -> int:
    """The candidate with the most others' goals within ``radius`` m; ties: the more confident box."""
    support = [sum(1 for j, d in enumerate(cands) if j != i and _dist(c, d) <= radius) for i, c in enumerate(cands)]
    return max(range(len(cands)), key=lambda i: (support[i], _conf(cands[i])))


def pick_medoid(cands: Sequence[dict]) -> int:
    """The candidate whose goal has the least summed distance to the other candidates' goals."""
    return min(range(len(cands)), key=lambda i: (sum(_dist(cands[i], d) for d in cands), -_conf(cands[i])))


def verifiers(radius: float) -> dict[str, Callable[[dict], dict]]:
    """name -> f(row) = the picked candidate's metrics (``oracle``: any candidate's)."""
    return {
        "pipeline": lambda r: r["candidates"][int(r["best_index"])],
        "first": lambda r: r["candidates"][0],
        "agreement": lambda r: r["candidates"][pick_agreement(r["candidates"], radius)],
        "medoid": lambda r: r["candidates"][pick_medoid(r["candidates"])],
        "oracle": lambda r: {k: any(bool(c[k]) for c in r["candidates"]) for k in METRICS},
    }


def read_rows(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "samples.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give an eval-wm out_dir")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score(rows: Sequence[dict], single: Sequence[dict] | None = None, radius: float = 1.0,
          n_boot: int = 10000, seed: int = 0) -> dict[str, dict]:
    """Per verifier and metric: the mean over samples, and with ``single`` the paired difference
    (verifier - single sample) with its bootstrap 95% interval, over the samples both ran."""
    from agent.comparison import paired_comparison

    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        raise ValueError("no evaluated samples in the run")
    if any("candidates" not in r for r in ok):
        raise ValueError("the run's rows have no candidates: run eval-wm with eval_wm.num_samples=N (N > 1) "
                         "and eval_wm.candidates=true")
    out: dict[str, dict] = {}
    for name, pick in verifiers(radius).items():
        picked = [{"sample_id": r["sample_id"], **{k: bool(pick(r)[k]) for k in METRICS}} for r in ok]
        res: dict = {"n": len(picked), **{k: float(np.mean([p[k] for p in picked])) for k in METRICS}}
        if single is not None:
            cmp = paired_comparison(picked, [r for r in single if r.get("status") == "ok"], keys=METRICS,
                                    n_boot=n_boot, seed=seed, id_key="sample_id")
            res["vs_single"] = {k: cmp[k] for k in METRICS}
        out[name] = res
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="eval-wm out_dir made with num_samples=N and candidates=true")
    ap.add_argument("--single", help="eval-wm out_dir of one sample per item (the same samples), for paired differences")
    ap.add_argument("--radius", type=float, default=1.0, help="agreement radius in metres (default 1.0)")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args(argv)
    res = score(read_rows(a.run), read_rows(a.single) if a.single else None, radius=a.radius)
    for name, r in res.items():
        parts = []
        for k in METRICS:
            s = f"{k} {r[k]:.3f}"
            if "vs_single" in r:
                v = r["vs_single"][k]
                s += f" ({v['diff']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] vs one sample, n={v['n']})"
            parts.append(s)
        print(f"{name:10s} " + "; ".join(parts))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
