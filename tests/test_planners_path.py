"""Path planning, action generation, collision replanning and the stop policy."""

import math

import numpy as np
import pytest

from envs.actions import Action
from planners.mapping import FREE, OCCUPIED, ObstacleMap
from planners.path import Navigator, Path, PathPlanner, StopPolicy, next_action, path_blocked


def box_mask(m, x_hi, y_hi, x_lo, y_lo):
    """Cells whose centres lie in [x_lo, x_hi] x [y_lo, y_hi]."""
    rc = np.indices(m.shape).reshape(2, -1).T
    xy = m.cell_to_world(rc[:, 0], rc[:, 1])
    inside = (xy[:, 0] >= x_lo) & (xy[:, 0] <= x_hi) & (xy[:, 1] >= y_lo) & (xy[:, 1] <= y_hi)
    return inside.reshape(m.shape)


def room_with_wall():
    """A free 6 x 6 m room (walls around) with a wall at x = 0 from y = -1 to y = 3 (the room's edge)."""
    m = ObstacleMap(size_m=10.0)
    m.set_state(box_mask(m, 3.0, 3.0, -3.0, -3.0), FREE)
    ring = box_mask(m, 3.1, 3.1, -3.1, -3.1) & ~box_mask(m, 2.95, 2.95, -2.95, -2.95)
    m.set_state(ring, OCCUPIED)
    m.set_state(box_mask(m, 0.05, 3.0, -0.05, -1.0), OCCUPIED)
    return m


def test_path_goes_around_the_wall():
    m = room_with_wall()
    p = PathPlanner(m).plan_to((2.0, 1.0), (-2.0, 1.0))
    assert p is not None and p.reaches_goal
    assert np.allclose(p.waypoints[0], [-2.0, 1.0], atol=0.05)
    assert np.allclose(p.waypoints[-1], [2.0, 1.0], atol=0.05)
    r, c = m.world_to_cell(p.waypoints)
    assert not m.inflated()[r, c].any()
    crossing = p.waypoints[np.argmin(np.abs(p.waypoints[:, 0]))]
    assert crossing[1] < -1.0 - 0.18  # passes below the wall's end, clear of it
    assert p.length_m > 2 * math.hypot(2.0, 2.2) - 0.05  # at least the detour past (0, -1.2); straight is 4 m
    steps = np.linalg.norm(np.diff(p.waypoints, axis=0), axis=1)
    assert steps.max() <= m.cell_size * math.sqrt(2) + 1e-9  # 8-connected


def test_no_path_through_walls():
    m = room_with_wall()
    # Enclose the goal in a closed ring of obstacles.
    ring = box_mask(m, 2.6, 1.6, 1.4, 0.4) & ~box_mask(m, 2.5, 1.5, 1.5, 0.5)
    m.set_state(ring, OCCUPIED)
    p = PathPlanner(m).plan_to((2.0, 1.0), (-2.0, 1.0))
    assert p is not None and not p.reaches_goal
    end = p.end_xy
    assert not (1.4 < end[0] < 2.6 and 0.4 < end[1] < 1.6)  # stops outside the ring
    assert np.linalg.norm(end - [2.0, 1.0]) < 1.0  # as close as the ring allows
    # A start sealed in the ring: no cell leads anywhere closer.
    inner = PathPlanner(m).plan_to((-2.0, 1.0), (2.0, 1.0))
    assert inner is None or np.all((inner.waypoints[:, 0] > 1.4) & (inner.waypoints[:, 0] < 2.6))


def test_unknown_space_is_traversable_but_costs_more():
    m = ObstacleMap(size_m=10.0)
    p = PathPlanner(m).plan_to((2.0, 0.0), (0.0, 0.0))  # nothing observed yet
    assert p is not None and p.reaches_goal
    assert p.length_m == pytest.approx(2.0, abs=0.1)
    # A known free corridor that detours a little is preferred over unknown space when unknown is costly.
    m.set_state(box_mask(m, 2.1, 0.9, -0.1, 0.5), FREE)
    m.set_state(box_mask(m, 0.2, 0.9, -0.1, -0.1), FREE)
    m.set_state(box_mask(m, 2.1, 0.9, 1.8, -0.1), FREE)
    cheap = PathPlanner(m, unknown_cost=1.2, clearance_weight=0).plan_to((2.0, 0.0), (0.0, 0.0))
    dear = PathPlanner(m, unknown_cost=5.0, clearance_weight=0).plan_to((2.0, 0.0), (0.0, 0.0))
    assert np.abs(cheap.waypoints[:, 1]).max() < 0.2
    assert dear.waypoints[:, 1].max() > 0.5


@pytest.mark.parametrize("yaw, target, expected", [
    (0.0, (2.0, 0.0), Action.MOVE_FORWARD),
    (0.0, (0.0, 2.0), Action.TURN_LEFT),   # +y is the agent's left when facing +x
    (0.0, (0.0, -2.0), Action.TURN_RIGHT),
    (math.pi / 2, (2.0, 0.0), Action.TURN_RIGHT),  # facing +y, +x is on the right
    (math.pi, (2.0, 0.1), Action.TURN_RIGHT),  # facing -x, +y is on the right: the shorter way round
    (math.pi, (2.0, -0.1), Action.TURN_LEFT),
    (0.0, (1.0, 0.2), Action.MOVE_FORWARD),  # 11 deg off: within half a turn
])
def test_next_action_turns_the_right_way(yaw, target, expected):
    path = Path(waypoints=np.linspace([0.0, 0.0], target, 40), cost=0.0, reaches_goal=True,
                goal_xy=np.asarray(target, float))
    assert next_action((0.0, 0.0, yaw), path) == expected


def test_next_action_stops_at_the_end_and_turns_settle():
    path = Path(waypoints=np.array([[0.0, 0.0], [0.1, 0.0]]), cost=0.0, reaches_goal=True, goal_xy=np.zeros(2))
    assert next_action((0.05, 0.0, 0.0), path) == Action.STOP
    # Repeated turns toward a fixed point end in MOVE_FORWARD without oscillating.
    target = np.array([0.3, 2.0])
    path = Path(waypoints=np.linspace([0.0, 0.0], target, 50), cost=0.0, reaches_goal=True, goal_xy=target)
    yaw, seen = -2.5, []
    for _ in range(12):
        a = next_action((0.0, 0.0, yaw), path)
        seen.append(a)
        if a == Action.MOVE_FORWARD:
            break
        yaw += math.radians(30) if a == Action.TURN_LEFT else -math.radians(30)
    assert seen[-1] == Action.MOVE_FORWARD
    assert len(set(seen[:-1])) == 1  # always the same turn direction


def simulate(nav, m_true_blocked, pose, goal, steps=200):
    """Drive a point agent: forward 0.25 m unless its centre would enter m_true_blocked (then it stays)."""
    pose = np.array(pose, float)
    last = None
    for _ in range(steps):
        nav.observe({"gps": pose[:2].astype(np.float32), "compass": np.array([pose[2]], np.float32)}, last)
        a = nav.act(goal)
        if a is None or a == Action.STOP:
            return pose, a
        if a == Action.MOVE_FORWARD:
            nxt = pose[:2] + 0.25 * np.array([math.cos(pose[2]), math.sin(pose[2])])
            if not m_true_blocked(pose[:2], nxt):
                pose[:2] = nxt
        else:
            pose[2] += math.radians(30) * (1 if a == Action.TURN_LEFT else -1)
        last = a
    return pose, None


def test_navigator_replans_around_an_unmapped_obstacle_found_by_collision():
    m = ObstacleMap(size_m=10.0)
    m.set_state(box_mask(m, 3.0, 3.0, -3.0, -3.0), FREE)  # the map believes the room is empty

    def blocked(a, b):  # a hidden wall at x = 1, y in [-1, 1]: the agent's 0.18 m body hits it
        for t in np.linspace(0, 1, 11):
            p = a + t * (b - a)
            if abs(p[0] - 1.0) < 0.18 + 0.05 and -1.0 - 0.18 < p[1] < 1.0 + 0.18:
                return True
        return False

    nav = Navigator(m)
    pose, a = simulate(nav, blocked, (0.0, 0.0, 0.0), np.array([2.5, 0.0]))
    assert a == Action.STOP, f"did not arrive: ended at {pose} with {a}"
    assert np.linalg.norm(pose[:2] - [2.5, 0.0]) <= 0.25
    assert nav.collisions >= 1  # it found the wall by bumping into it, then went around


def test_path_blocked_detects_new_obstacles():
    m = room_with_wall()
    p = PathPlanner(m).plan_to((2.0, -2.0), (-2.0, -2.0))
    assert not path_blocked(m, p)
    mid = p.waypoints[len(p.waypoints) // 2]
    m.set_state(box_mask(m, mid[0] + 0.05, mid[1] + 0.05, mid[0] - 0.05, mid[1] - 0.05), OCCUPIED)
    assert path_blocked(m, p)


def test_stop_policy():
    sp = StopPolicy(stop_radius_m=0.8, min_confidence=0.5)
    assert sp.should_stop((0, 0, 0), (0.6, 0.1), confidence=0.9)
    assert not sp.should_stop((0, 0, math.pi), (0.6, 0.1), confidence=0.9)  # behind the agent
    assert sp.should_stop((0, 0, math.pi), (0.6, 0.1), confidence=0.9, in_view=True)  # detector says seen
    assert not sp.should_stop((0, 0, 0), (2.0, 0.0), confidence=0.9)  # too far
    assert sp.should_stop((0, 0, 0), (1.0, 0.0), confidence=0.9, goal_radius_m=0.3)  # uncertain goal: a bit farther
    assert not sp.should_stop((0, 0, 0), (0.6, 0.0), confidence=0.2)


def test_bad_inputs():
    m = ObstacleMap(size_m=6.0)
    with pytest.raises(ValueError, match="goal_xy"):
        PathPlanner(m).plan_to((np.nan, 0.0), (0.0, 0.0))
    with pytest.raises(ValueError, match="unknown_cost"):
        PathPlanner(m, unknown_cost=0.5)
    with pytest.raises(RuntimeError, match="observe"):
        Navigator(m).act((1.0, 0.0))


def test_cost_on_a_window_equals_the_full_map_cropped():
    m = room_with_wall()
    p = PathPlanner(m)
    start = (int(m.shape[0] // 2), int(m.shape[1] // 2))
    full_cost, full_blocked = p.cost_and_blocked(start)
    win = (slice(start[0] - 30, start[0] + 25), slice(start[1] - 20, start[1] + 40))
    cost, blocked = p.cost_and_blocked(start, window=win)
    np.testing.assert_allclose(cost, full_cost[win], atol=1e-5)
    np.testing.assert_array_equal(blocked, full_blocked[win])


def test_a_follower_navigator_tracks_pose_and_collisions_without_touching_the_shared_map():
    m = ObstacleMap(size_m=6.0)
    lead, follow = Navigator(m), Navigator(m)
    depth = np.full((24, 32, 1), 1.5, np.float32)  # a wall 1.5 m ahead
    obs = {"gps": np.zeros(2, np.float32), "compass": np.zeros(1, np.float32), "depth": depth}
    follow.observe(obs, None, update_map=False)
    assert not m.observed.any()  # the follower did not integrate the depth
    lead.observe(obs, None)
    logodds = m.logodds.copy()
    assert m.observed.any()
    # a MOVE_FORWARD that did not move: both register the collision, only the lead marks the map
    pose = follow.observe(obs, Action.MOVE_FORWARD, update_map=False)
    np.testing.assert_array_equal(m.logodds, logodds)
    assert follow.collisions == 1 and follow._collided and np.allclose(pose, 0.0)
    lead.observe({k: v for k, v in obs.items() if k != "depth"}, Action.MOVE_FORWARD)
    assert lead.collisions == 1 and not np.array_equal(m.logodds, logodds)  # the blocked cell ahead
