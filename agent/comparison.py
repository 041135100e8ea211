"""Two runs compared item by item: ``spatialnav compare`` and the ablation table.

``paired_comparison`` matches the items both runs ran (episodes, or eval-wm samples) and gives
each metric's mean difference with a paired-bootstrap 95% interval (``world_model.metrics.bootstrap_mean``).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from world_model.metrics import bootstrap_mean


def paired_comparison(rows_a: Iterable[dict], rows_b: Iterable[dict], keys: Sequence[str] = ("success", "spl"),
                      n_boot: int = 10000, seed: int = 0, id_key: str = "episode_id") -> dict:
    """Run A against run B on the items both ran (matched by ``id_key``: episodes, or eval-wm samples).

    For each metric: the mean difference A - B, its 95% paired-bootstrap interval (items
    resampled with replacement, ``n_boot`` times) and the bootstrap share of differences <= 0.
    An item missing the metric (None, e.g. an eval-wm sample skipped in one run) is left out of
    that metric. For ``success`` and every true/false metric also the items only A got, only B
    got, and both got.
    """
    a = {str(r[id_key]): r for r in rows_a}
    b = {str(r[id_key]): r for r in rows_b}
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError(f"the two runs share no {id_key}: compare runs of the same episodes or samples")
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"n_episodes": len(ids), "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a)),
                           "id_key": id_key}
    for k in keys:
        both = [i for i in ids if a[i].get(k) is not None and b[i].get(k) is not None]
        if not both:
            raise ValueError(f"metric {k!r} is in neither run's shared items (check compare.metrics)")
        va = np.array([float(a[i][k]) for i in both])
        vb = np.array([float(b[i][k]) for i in both])
        d = va - vb
        ci, boot = bootstrap_mean(d, int(n_boot), rng)
        out[k] = {"n": len(both), "a": float(va.mean()), "b": float(vb.mean()), "diff": float(d.mean()),
                  "ci95": ci, "p_diff_le_0": float((boot <= 0).mean())}
        if k == "success" or all(isinstance(a[i][k], bool) and isinstance(b[i][k], bool) for i in both):
            sa, sb = va > 0.5, vb > 0.5
            out[k].update(only_a=int((sa & ~sb).sum()), only_b=int((~sa & sb).sum()), both=int((sa & sb).sum()))
    return out
