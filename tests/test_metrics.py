import math

import numpy as np
import pytest

from envs.metrics import (
    EpisodeMetrics,
    normal_interval,
    softspl,
    spl,
    success,
    summarize,
    wilson_interval,
)


def test_success_needs_stop_and_distance():
    assert success(True, 0.05) == 1.0
    assert success(True, 0.1) == 1.0  # boundary counts
    assert success(True, 0.1001) == 0.0
    assert success(False, 0.0) == 0.0
    assert success(True, math.inf) == 0.0
    assert success(True, 0.5, success_distance=1.0) == 1.0


def test_spl_hand_computed():
    assert spl(1.0, 4.0, 5.0) == pytest.approx(0.8)
    assert spl(1.0, 4.0, 4.0) == pytest.approx(1.0)
    assert spl(0.0, 4.0, 4.0) == 0.0
    # L < d0 (grid-measured d0 slightly overestimates): clipped to 1, never > 1
    assert spl(1.0, 4.0, 3.9) == pytest.approx(1.0)
    # d0 = L = 0: started on the goal and stopped: optimal, not NaN
    assert spl(1.0, 0.0, 0.0) == 1.0
    # d0 = 0 but wandered: efficiency 0
    assert spl(1.0, 0.0, 2.0) == 0.0
    with pytest.raises(ValueError, match="path_length"):
        spl(1.0, 1.0, -1.0)
    with pytest.raises(ValueError, match="d0"):
        spl(1.0, math.inf, 1.0)


def test_softspl_hand_computed():
    # progress 1 - 1/4 = 0.75, efficiency 4/8 = 0.5
    assert softspl(1.0, 4.0, 8.0) == pytest.approx(0.375)
    # further away than at the start: progress clipped at 0
    assert softspl(5.0, 4.0, 2.0) == 0.0
    assert softspl(0.0, 4.0, 4.0) == pytest.approx(1.0)
    assert softspl(0.0, 0.0, 0.0) == 1.0
    assert softspl(0.3, 0.0, 0.0) == 0.0
    assert softspl(math.inf, 3.0, 1.0) == 0.0


def test_episode_metrics_accumulates():
    m = EpisodeMetrics()
    m.reset([0.0, 0.0], d0=1.0)
    m.update([0.25, 0.0], False, 0.75)
    m.update([0.25, 0.0], True, 0.75)  # blocked forward: no distance, one collision
    m.update([0.5, 0.0], False, 0.5)
    m.update([0.75, 0.0], False, 0.25)
    m.update([1.0, 0.0], False, 0.05)
    r = m.result()
    assert r["success"] == 0.0 and r["spl"] == 0.0  # no STOP yet
    assert r["softspl"] == pytest.approx((1 - 0.05) * 1.0 / 1.0)
    m.on_stop()
    r = m.result()
    assert r["success"] == 1.0
    assert r["path_length"] == pytest.approx(1.0)
    assert r["spl"] == pytest.approx(1.0)
    assert r["collisions"] == 1.0 and r["steps"] == 6.0
    assert r["distance_to_goal"] == pytest.approx(0.05)


def test_episode_metrics_detour_and_order():
    m = EpisodeMetrics(success_distance=0.2)
    with pytest.raises(RuntimeError, match="reset"):
        m.update([0, 0], False, 1.0)
    m.reset([0.0, 0.0], d0=2.0)
    for xy in ([1, 0], [1, 1], [2, 1], [2, 0]):  # L = 4
        m.update(xy, False, 0.15)
    m.on_stop(0.15)
    r = m.result()
    assert r["spl"] == pytest.approx(0.5)
    assert r["softspl"] == pytest.approx((1 - 0.15 / 2.0) * 0.5)
    with pytest.raises(ValueError, match="success_distance"):
        EpisodeMetrics(success_distance=0)


def test_wilson_and_normal_intervals():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35  # known value 0.2775
    assert wilson_interval(7, 10) == pytest.approx((0.3968, 0.8922), abs=1e-3)
    lo, hi = normal_interval(np.array([1.0, 2.0, 3.0, 4.0]))
    half = 1.959963984540054 * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (lo, hi) == pytest.approx((2.5 - half, 2.5 + half))
    assert all(math.isnan(v) for v in normal_interval(np.array([1.0])))


def test_summarize():
    rows = [
        {"success": 1.0, "spl": 0.8, "softspl": 0.9, "distance_to_goal": 0.05, "steps": 20},
        {"success": 0.0, "spl": 0.0, "softspl": 0.4, "distance_to_goal": 2.0, "steps": 500},
        {"success": 1.0, "spl": 0.6, "softspl": 0.7, "distance_to_goal": math.inf, "steps": 30},
    ]
    s = summarize(rows)
    assert s["num_episodes"] == 3
    assert s["success"]["mean"] == pytest.approx(2 / 3) and s["success"]["method"] == "wilson"
    assert s["spl"]["mean"] == pytest.approx(1.4 / 3) and s["spl"]["method"] == "normal"
    assert s["spl"]["ci95_low"] < s["spl"]["mean"] < s["spl"]["ci95_high"]
    assert s["distance_to_goal"]["n"] == 2 and s["distance_to_goal"]["dropped_nonfinite"] == 1
    assert "path_length" not in s
    with pytest.raises(ValueError, match="success"):
        summarize([{"success": 0.5}])
