"""ObjectNav episode metrics (habitat-lab's definitions) and their aggregation.

Definitions follow habitat-lab ``habitat/tasks/nav/nav.py`` (measures
``DistanceToGoal``, ``Success``, ``SPL``, ``SoftSPL``, ``Collisions``) and
Anderson et al. 2018, "On Evaluation of Embodied Navigation Agents":

* ``distance_to_goal`` d_t: geodesic distance from the agent to the *nearest
  view point* of the target (habitat's ObjectNav ``distance_to: VIEW_POINTS``).
* ``success`` S = 1 if the agent called STOP and d_T <= success_distance,
  else 0. ObjectNav default success_distance = 0.1 m. (habitat-lab compares
  with a strict ``<``; we use ``<=`` so a view point reached exactly counts.)
* ``spl`` = S * d0 / max(d0, L), d0 = geodesic start-to-goal distance, L =
  path length actually travelled.
* ``softspl`` = max(0, 1 - d_T / d0) * d0 / max(d0, L); unlike SPL it does not
  need STOP (habitat computes it from the current distance at every step).
* ``path_length`` L = sum of Euclidean distances between successive agent
  positions (habitat's ``_agent_episode_distance``).
* ``collisions``: number of actions whose motion was blocked; ``steps``: number
  of actions taken, STOP included.

Degenerate cases habitat leaves undefined (0/0) are pinned down here: if d0
and L are both ~0 the efficiency term d0 / max(d0, L) is 1 (already at the goal
and did not move: optimal); if d0 ~ 0 the progress term of SoftSPL is 1 when
d_T ~ 0, else 0. L < d0 can happen because d0 is measured on a discrete grid;
the efficiency term is then clipped at 1 by the max().
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

SUCCESS_DISTANCE = 0.1  # habitat ObjectNav default (m)
_EPS = 1e-9

METRIC_KEYS = ("success", "spl", "softspl", "distance_to_goal", "path_length", "collisions", "steps")


def success(called_stop: bool, distance_to_goal: float, success_distance: float = SUCCESS_DISTANCE) -> float:
    """S = 1[STOP called and d_T <= success_distance] (habitat ``Success``)."""
    return float(bool(called_stop) and math.isfinite(distance_to_goal)
                 and distance_to_goal <= success_distance + _EPS)


def _efficiency(d0: float, path_length: float) -> float:
    """d0 / max(d0, L), with 0/0 := 1 (see module docstring)."""
    denom = max(d0, path_length)
    if denom <= _EPS:
        return 1.0
    return d0 / denom


def spl(success_: float, d0: float, path_length: float) -> float:
    """SPL = S * d0 / max(d0, L) (Anderson et al. 2018; habitat ``SPL``)."""
    _check_distances(d0=d0, path_length=path_length)
    return float(success_) * _efficiency(d0, path_length)


def softspl(distance_to_goal: float, d0: float, path_length: float) -> float:
    """SoftSPL = max(0, 1 - d_T / d0) * d0 / max(d0, L) (habitat ``SoftSPL``)."""
    _check_distances(d0=d0, path_length=path_length)
    if not math.isfinite(distance_to_goal):
        return 0.0
    if d0 <= _EPS:
        progress = 1.0 if distance_to_goal <= _EPS else 0.0
    else:
        progress = max(0.0, 1.0 - distance_to_goal / d0)
    return progress * _efficiency(d0, path_length)


def _check_distances(**kw: float) -> None:
    for name, v in kw.items():
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite distance >= 0, got {v!r}")


class EpisodeMetrics:
    """Accumulates one episode's metrics; the env calls it once per action.

    >>> m = EpisodeMetrics(); m.reset(start_xy, d0)
    >>> m.update(new_xy, collided, d_to_goal)   # after MOVE_FORWARD / TURN_*
    >>> m.on_stop(d_to_goal)                    # after STOP (counts as a step)
    >>> m.result()  # dict with METRIC_KEYS
    """

    def __init__(self, success_distance: float = SUCCESS_DISTANCE) -> None:
        if not success_distance > 0:
            raise ValueError(f"success_distance must be > 0 m, got {success_distance!r}")
        self.success_distance = float(success_distance)
        self._started = False

    def reset(self, start_xy, d0: float) -> None:
        """Start an episode at ``start_xy`` with geodesic start-to-goal distance ``d0``."""
        _check_distances(d0=d0)
        xy = np.asarray(start_xy, np.float64).reshape(-1)
        self._x, self._y = float(xy[0]), float(xy[1])
        self.d0 = float(d0)
        self.distance_to_goal = float(d0)
        self.path_length = 0.0
        self.collisions = 0
        self.steps = 0
        self.called_stop = False
        self._started = True

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("EpisodeMetrics.reset(start_xy, d0) must be called before update/on_stop")

    def update(self, new_xy, collided: bool, d_to_goal: float) -> None:
        """Record one non-STOP action: the agent's new position, whether it collided,
        and the new geodesic distance to the nearest view point."""
        self._require_started()
        # scalar maths (this runs every env step; numpy on a 2-vector costs ~10x more)
        x, y = float(new_xy[0]), float(new_xy[1])
        self.path_length += math.hypot(x - self._x, y - self._y)
        self._x, self._y = x, y
        self.collisions += int(bool(collided))
        self.distance_to_goal = float(d_to_goal)
        self.steps += 1

    def on_stop(self, d_to_goal: float | None = None) -> None:
        """Record the STOP action (a step); ``d_to_goal`` refreshes the distance if given."""
        self._require_started()
        if d_to_goal is not None:
            self.distance_to_goal = float(d_to_goal)
        self.called_stop = True
        self.steps += 1

    @property
    def success(self) -> float:
        return success(self.called_stop, self.distance_to_goal, self.success_distance)

    def result(self) -> dict[str, float]:
        """success, spl, softspl, distance_to_goal, path_length, collisions, steps."""
        self._require_started()
        s = self.success
        return {
            "success": s,
            "spl": spl(s, self.d0, self.path_length),
            "softspl": softspl(self.distance_to_goal, self.d0, self.path_length),
            "distance_to_goal": self.distance_to_goal,
            "path_length": self.path_length,
            "collisions": float(self.collisions),
            "steps": float(self.steps),
        }


# -- aggregation ---------------------------------------------------------------

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion p = k/n:

    centre = (p + z^2/2n) / (1 + z^2/n),
    half   = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
    (Wilson 1927). Unlike the normal interval it stays inside [0, 1] and is not
    degenerate at p = 0 or 1, which matters for success rates over few episodes.
    """
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def normal_interval(values: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """mean +- z * s / sqrt(n), s the sample standard deviation (ddof=1); NaN for n < 2."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    m = float(values.mean())
    half = z * float(values.std(ddof=1)) / math.sqrt(n)
    return (m - half, m + half)


def summarize(rows: Iterable[Mapping[str, float]], keys: Iterable[str] | None = None) -> dict:
    """Mean and 95% confidence interval of each metric over episodes.

    Success uses the Wilson score interval (a binomial proportion); every other
    metric the normal approximation mean +- 1.96 s / sqrt(n). Non-finite values
    (e.g. an unreachable goal's distance) are dropped per metric and counted.

    Returns ``{"num_episodes": N, metric: {"mean", "ci95_low", "ci95_high", "n",
    "method"}}`` for ``keys`` (default: the standard metrics present in the rows).
    """
    rows = list(rows)
    if keys is None:
        keys = [k for k in METRIC_KEYS if any(k in r for r in rows)]
    out: dict = {"num_episodes": len(rows)}
    for k in keys:
        vals = np.array([float(r[k]) for r in rows if k in r and r[k] is not None], np.float64)
        finite = vals[np.isfinite(vals)]
        n = len(finite)
        mean = float(finite.mean()) if n else math.nan
        if k == "success":
            if np.any((finite != 0) & (finite != 1)):
                raise ValueError(f"summarize: success must be 0 or 1 per episode, got {sorted(set(finite))[:5]}")
            lo, hi = wilson_interval(float(finite.sum()), n)
            method = "wilson"
        else:
            lo, hi = normal_interval(finite)
            method = "normal"
        out[k] = {"mean": mean, "ci95_low": lo, "ci95_high": hi, "n": n,
                  "dropped_nonfinite": int(len(vals) - n), "method": method}
    return out
