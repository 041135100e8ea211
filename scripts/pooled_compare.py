"""Pool paired comparisons of several run pairs (e.g. the same agent on val and on test):

    python scripts/pooled_compare.py runs/read/wm_val60_free:runs/gc/val60 runs/read/wm_test60_free:runs/agents100_gc/world_model

Each argument is A:B, two eval output directories of the same episodes; each pair's shared episodes
are pooled (kept apart by pair, so two pairs may run the same episodes) and compared as `spatialnav compare` does (mean A - B,
95% paired bootstrap over episodes, ``agent.comparison.paired_comparison``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.comparison import paired_comparison
from agent.episode_log import read_episode_log


def main(argv: list[str]) -> dict:
    if not argv or any(a.count(":") != 1 for a in argv):
        raise SystemExit(__doc__)
    rows_a, rows_b = [], []
    for i, arg in enumerate(argv):
        a, b = arg.split(":")
        ra = read_episode_log(Path(a) / "episodes.jsonl")
        rb = {r["episode_id"]: r for r in read_episode_log(Path(b) / "episodes.jsonl")}
        shared = [r for r in ra if r["episode_id"] in rb]
        # keyed by (pair, episode): two pairs may hold the same episodes (two agents on one split)
        rows_a += [{**r, "episode_id": f"{i}:{r['episode_id']}"} for r in shared]
        rows_b += [{**rb[r["episode_id"]], "episode_id": f"{i}:{r['episode_id']}"} for r in shared]
    out = paired_comparison(rows_a, rows_b, keys=("success", "spl"))
    for k in ("success", "spl"):
        c = out[k]
        print(f"{k}: A {c['a']:.3f}, B {c['b']:.3f}, A - B {c['diff']:+.3f} "
              f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] (n={c['n']})")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
