"""Path planning on an ObstacleMap, discrete action generation, and a stop policy.

Planning is Dijkstra (scipy.sparse.csgraph, C speed) from the agent's cell over
the 8-connected grid (``envs.grid_graph``) of the map cropped to the explored area plus a margin:

* cells inside the obstacles inflated by the agent radius are impassable, and a
  diagonal move may not cut the corner of an impassable cell;
* unknown cells are traversable at ``unknown_cost`` per metre (optimistic
  planning: the path may run through unexplored space and is replanned as the
  map fills in);
* a clearance penalty, ``clearance_weight * max(0, 1 - (dist - r) / clearance_m)``
  per metre with dist the distance to the nearest obstacle, keeps paths off walls;
* edge cost = step length * (cost(a) + cost(b)) / 2.

If the goal cell cannot be reached (e.g. it lies on the target object itself) the
path ends at the reachable cell nearest the goal and ``Path.reaches_goal`` is False.

Actions follow the env: forward 0.25 m, turns of 30 deg. ``next_action`` is a
pure-pursuit rule: aim at the first path point ``lookahead_m`` away and turn while
that bearing is more than half a turn off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.sparse.csgraph import dijkstra

from envs.actions import TURN_ANGLE_DEG, Action
from envs.geometry import wrap_angle
from envs.grid_graph import MOVES_8, grid_graph
from planners.camera import HFOV_DEG, check_pose, pose_from_obs
from planners.mapping import ObstacleMap, far_free_point, frontier_points


@dataclass
class Path:
    """A planned path in the episode-start frame, from the start cell to the end cell."""

    waypoints: np.ndarray  # (N, 2) cell centres, start first
    cost: float  # weighted cost (metres times cell costs)
    reaches_goal: bool  # False when it ends at the reachable cell nearest an unreachable goal
    goal_xy: np.ndarray  # (2,) the goal that was asked for

    @property
    def length_m(self) -> float:
        if len(self.waypoints) < 2:
            return 0.0
        return float(np.linalg.norm(np.diff(self.waypoints, axis=0), axis=1).sum())

    @property
    def end_xy(self) -> np.ndarray:
        return self.waypoints[-1]


class PathPlanner:
    """Shortest weighted paths on an ObstacleMap (see module docstring).

    Args:
        obstacle_map: the map to plan on (read at each call, so it may keep changing).
        unknown_cost: cost per metre through unknown cells (free cells cost 1).
        clearance_m, clearance_weight: the wall-clearance penalty.
        margin_m: planning region = explored cells, start and goal, plus this margin.
    """

    def __init__(self, obstacle_map: ObstacleMap, unknown_cost: float = 1.5, clearance_m: float = 0.3,
                 clearance_weight: float = 2.0, margin_m: float = 2.0):
        if not unknown_cost >= 1.0:
            raise ValueError(f"unknown_cost must be >= 1 (free cells cost 1), got {unknown_cost!r}")
        self.map = obstacle_map
        self.unknown_cost = float(unknown_cost)
        self.clearance_m = float(clearance_m)
        self.clearance_weight = float(clearance_weight)
        self.margin_m = float(margin_m)

    def _crop(self, start_rc, goal_rc) -> tuple[slice, slice]:
        m = self.map
        rows, cols = np.nonzero(m.observed)
        rows = np.concatenate([rows, [start_rc[0], goal_rc[0]]])
        cols = np.concatenate([cols, [start_rc[1], goal_rc[1]]])
        k = int(round(self.margin_m / m.cell_size))
        h, w = m.shape
        return (slice(max(0, rows.min() - k), min(h, rows.max() + k + 1)),
                slice(max(0, cols.min() - k), min(w, cols.max() + k + 1)))

    def cost_and_blocked(self, start_rc=None, window: tuple[slice, slice] | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell cost (1 free, ``unknown_cost`` unknown, plus clearance) and impassable mask.

        When ``start_rc`` (map cell) falls inside the inflation (the agent got close to a wall), the
        inflated-but-not-occupied cells around it are opened so the agent can leave. ``window``
        (row slice, col slice): compute only that part of the map (the clearance still sees
        obstacles just outside it), as ``plan_to`` does for its crop.
        """
        m = self.map
        h, w = m.shape
        rs, cs = window if window is not None else (slice(0, h), slice(0, w))
        r_lo, r_hi, c_lo, c_hi = rs.start, rs.stop, cs.start, cs.stop
        blocked = m.inflated()[rs, cs].copy()
        cost = np.where(m.observed[rs, cs], 1.0, self.unknown_cost).astype(np.float32)
        if self.clearance_weight > 0:
            # Only distances below agent_radius + clearance_m matter: obstacles farther outside the
            # window than that cannot change the (clipped) penalty inside it.
            pad = int(math.ceil((m.agent_radius + self.clearance_m) / m.cell_size)) + 1
            e0, e1, f0, f1 = max(r_lo - pad, 0), min(r_hi + pad, h), max(c_lo - pad, 0), min(c_hi + pad, w)
            occ_ext = m.logodds[e0:e1, f0:f1] > 0
            if occ_ext.any():
                dist = ndimage.distance_transform_edt(~occ_ext)[r_lo - e0:r_hi - e0, c_lo - f0:c_hi - f0] * m.cell_size
                cost += self.clearance_weight * np.clip(1.0 - (dist - m.agent_radius) / self.clearance_m, 0.0, 1.0)
        if start_rc is not None:
            r0, c0 = start_rc[0] - r_lo, start_rc[1] - c_lo
            if 0 <= r0 < blocked.shape[0] and 0 <= c0 < blocked.shape[1] and blocked[r0, c0]:
                occ = m.logodds[rs, cs] > 0
                n = int(math.ceil(m.agent_radius / m.cell_size)) + 1
                sl = (slice(max(0, r0 - n), r0 + n + 1), slice(max(0, c0 - n), c0 + n + 1))
                blocked[sl] &= occ[sl]
                blocked[r0, c0] = False
        return cost, blocked

    def plan_to(self, goal_xy, start_xy) -> Path | None:
        """Plan from ``start_xy`` to ``goal_xy`` (start frame, metres); None if no cell can be reached."""
        m = self.map
        goal = np.asarray(goal_xy, np.float64).reshape(-1)
        start = np.asarray(start_xy, np.float64).reshape(-1)[:2]
        if goal.shape != (2,) or not np.isfinite(goal).all():
            raise ValueError(f"goal_xy must be a finite (x, y), got {goal_xy!r}")
        if not np.isfinite(start).all():
            raise ValueError(f"start_xy must be finite, got {start_xy!r}")
        m.ensure_contains(np.minimum(goal, start) - 0.5, np.maximum(goal, start) + 0.5)
        s_rc = tuple(int(v) for v in m.world_to_cell(start))
        g_rc = tuple(int(v) for v in m.world_to_cell(goal))
        rs, cs = self._crop(s_rc, g_rc)
        cost, blocked = self.cost_and_blocked(s_rc, window=(rs, cs))
        h, w = cost.shape
        s_loc = (s_rc[0] - rs.start, s_rc[1] - cs.start)
        g_loc = (g_rc[0] - rs.start, g_rc[1] - cs.start)

        graph, node = grid_graph(~blocked, MOVES_8, m.cell_size, cost)
        cell_of = np.flatnonzero(~blocked)  # node -> flat cell index in the window
        s_id = int(node[s_loc])
        if s_id < 0:  # cost_and_blocked opens the start cell; an unplannable start all the same
            return None
        dist, pred = dijkstra(graph, directed=True, indices=s_id, return_predecessors=True)
        g_in = 0 <= g_loc[0] < h and 0 <= g_loc[1] < w
        g_id = int(node[g_loc]) if g_in else -1
        if g_id >= 0 and np.isfinite(dist[g_id]):
            end, reaches = g_id, True
        else:
            reach_ids = np.nonzero(np.isfinite(dist))[0]
            rr, cc = np.divmod(cell_of[reach_ids], w)
            xy = m.cell_to_world(rr + rs.start, cc + cs.start)
            d_goal = np.linalg.norm(xy - goal, axis=1)
            # Nearest reachable cell to the goal; among near-ties the cheaper one.
            best = d_goal <= d_goal.min() + m.cell_size
            end = int(reach_ids[best][np.argmin(dist[reach_ids[best]])])
            reaches = False
            if end == s_id and np.linalg.norm(start - goal) > m.cell_size and reach_ids.size <= 1:
                return None
        chain = [end]
        while chain[-1] != s_id:
            p = pred[chain[-1]]
            if p < 0:
                return None
            chain.append(int(p))
        chain = np.array(chain[::-1])
        rr, cc = np.divmod(cell_of[chain], w)
        wp = m.cell_to_world(rr + rs.start, cc + cs.start)
        return Path(waypoints=wp, cost=float(dist[end]), reaches_goal=reaches, goal_xy=goal)


def path_blocked(obstacle_map: ObstacleMap, path: Path, skip_m: float = 0.3) -> bool:
    """True when a waypoint (beyond ``skip_m`` of the start) now lies in an inflated obstacle."""
    wp = path.waypoints
    if len(wp) == 0:
        return False
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(wp, axis=0), axis=1))])
    wp = wp[along > skip_m]
    if len(wp) == 0:
        return False
    r, c = obstacle_map.world_to_cell(wp)
    ok = obstacle_map.in_bounds(r, c)
    return bool(obstacle_map.inflated()[r[ok], c[ok]].any())


def next_action(pose, path: Path, lookahead_m: float = 0.5, reach_m: float = 0.15,
                turn_deg: float = TURN_ANGLE_DEG) -> Action:
    """The discrete action that follows ``path`` from ``pose`` (x, y, yaw).

    Returns STOP when the end of the path is within ``reach_m`` ("this path is done";
    whether to call STOP in the env is the stop policy's call), TURN_LEFT/TURN_RIGHT
    when the look-ahead point's bearing is more than half a turn (+1 deg) to that side,
    else MOVE_FORWARD. With the half-turn threshold a turn always lands within
    the threshold, so it never oscillates.
    """
    x, y, yaw = check_pose(pose)
    wp = np.asarray(path.waypoints if isinstance(path, Path) else path, np.float64).reshape(-1, 2)
    if len(wp) == 0:
        raise ValueError("path has no waypoints")
    p = np.array([x, y])
    if np.linalg.norm(wp[-1] - p) <= reach_m:
        return Action.STOP
    d = np.linalg.norm(wp - p, axis=1)
    i0 = int(np.argmin(d))
    ahead = np.nonzero(d[i0:] >= lookahead_m)[0]
    target = wp[i0 + ahead[0]] if ahead.size else wp[-1]
    bearing = wrap_angle(math.atan2(target[1] - y, target[0] - x) - yaw)
    thr = math.radians(turn_deg / 2.0 + 1.0)
    if bearing > thr:
        return Action.TURN_LEFT
    if bearing < -thr:
        return Action.TURN_RIGHT
    return Action.MOVE_FORWARD


def goal_in_view(pose, goal_xy, hfov_deg: float = HFOV_DEG, margin_deg: float = 5.0) -> bool:
    """True when the goal's bearing from pose lies inside the horizontal field of view (minus a margin)."""
    x, y, yaw = check_pose(pose)
    g = np.asarray(goal_xy, np.float64).reshape(2)
    bearing = wrap_angle(math.atan2(g[1] - y, g[0] - x) - yaw)
    return abs(bearing) <= math.radians(hfov_deg / 2.0 - margin_deg)


@dataclass
class StopPolicy:
    """Call STOP when close to the goal estimate, facing it, and confident enough.

    ObjectNav success needs STOP within 0.1 m of a view point (a navigable pose near the
    target that sees it, envs/metrics.py), so "near and seeing it" is the rule:
    stop when dist(agent, goal) <= stop_radius_m + goal uncertainty radius (capped by
    ``max_extra_m``), the goal bearing is inside the field of view (when ``require_in_view``),
    and confidence >= min_confidence.
    """

    stop_radius_m: float = 0.8
    min_confidence: float = 0.5
    require_in_view: bool = True
    max_extra_m: float = 0.3
    hfov_deg: float = HFOV_DEG

    def should_stop(self, pose, goal_xy, confidence: float = 1.0, goal_radius_m: float = 0.0,
                    in_view: bool | None = None) -> bool:
        """``in_view`` overrides the geometric field-of-view test (e.g. the target was detected)."""
        x, y, _ = check_pose(pose)
        g = np.asarray(goal_xy, np.float64).reshape(2)
        near = math.hypot(g[0] - x, g[1] - y) <= self.stop_radius_m + min(max(goal_radius_m, 0.0), self.max_extra_m)
        seen = goal_in_view(pose, g, self.hfov_deg) if in_view is None else bool(in_view)
        return bool(near and (seen or not self.require_in_view) and confidence >= self.min_confidence)


@dataclass
class Navigator:
    """Point-goal controller on a live ObstacleMap: map updates, collisions, replanning.

    Per step: ``observe(obs, last_action)`` integrates depth at the gps/compass pose and,
    when a MOVE_FORWARD moved the agent less than ``collision_m``, marks the blocked cell
    ahead; ``act(goal_xy)`` replans when there is no path, the goal moved more than
    ``goal_replan_m``, a collision happened, the path now crosses an inflated obstacle, or
    every ``replan_every`` steps, and returns ``next_action`` on the path. It returns None
    when no reachable cell brings the agent closer (the caller decides what to do) and
    STOP when the path end is reached.
    """

    obstacle_map: ObstacleMap
    planner: PathPlanner | None = None
    lookahead_m: float = 0.5
    reach_m: float = 0.15
    collision_m: float = 0.05
    goal_replan_m: float = 0.25
    replan_every: int = 5
    path: Path | None = field(default=None, init=False)
    pose: np.ndarray | None = field(default=None, init=False)
    collisions: int = field(default=0, init=False)
    _prev_pose: np.ndarray | None = field(default=None, init=False)
    _collided: bool = field(default=False, init=False)
    _since_plan: int = field(default=0, init=False)

    def __post_init__(self):
        if self.planner is None:
            self.planner = PathPlanner(self.obstacle_map)

    def reset(self) -> None:
        self.path, self.pose, self._prev_pose = None, None, None
        self._collided, self._since_plan, self.collisions = False, 0, 0

    def observe(self, obs, last_action=None, update_map: bool = True) -> np.ndarray:
        """Update the map from obs (depth, gps, compass); returns the pose (x, y, yaw).

        ``update_map=False`` tracks the pose and collisions only: for a second navigator on a map
        that another one already keeps up to date (the world-model agent and its CLIP guide).
        """
        pose = pose_from_obs(obs)
        self._collided = False
        if (last_action is not None and int(last_action) == Action.MOVE_FORWARD and self._prev_pose is not None
                and np.linalg.norm(pose[:2] - self._prev_pose[:2]) < self.collision_m):
            if update_map:
                self.obstacle_map.mark_collision(self._prev_pose)
            self._collided = True
            self.collisions += 1
        if update_map and "depth" in obs:
            self.obstacle_map.update(obs["depth"], pose)
        self._prev_pose = pose
        self.pose = pose
        return pose

    def act(self, goal_xy) -> Action | None:
        if self.pose is None:
            raise RuntimeError("call observe(obs) before act(goal_xy)")
        goal = np.asarray(goal_xy, np.float64).reshape(2)
        need = (self.path is None or self._collided or self._since_plan >= self.replan_every
                or np.linalg.norm(self.path.goal_xy - goal) > self.goal_replan_m
                or path_blocked(self.obstacle_map, self.path))
        if need:
            self.path = self.planner.plan_to(goal, self.pose[:2])
            self._since_plan = 0
        self._since_plan += 1
        if self.path is None:
            return None
        return next_action(self.pose, self.path, self.lookahead_m, self.reach_m)


@dataclass
class FrontierExplorer:
    """Frontier exploration on a Navigator: what an agent does while it has no goal.

    ``act(pose, visited, rng, score=None)`` keeps the current ``target`` until within
    ``reached_m``, then picks the frontier point (``frontier_points``) at least ``min_dist_m``
    from the agent and ``failed_radius_m`` from every failed target that maximises
    ``score(points, distances)`` (default: the nearest); with no frontier left (the tour mapped
    the scene), a free point far from ``visited`` and the failed targets (``far_free_point``).
    A target fails when the navigator finds no way nearer, or after ``stuck_after`` explore
    steps in a row that each saw a new collision (the map calls free what the agent cannot
    pass). With no target it turns left, and STOPs after more than ``give_up_steps`` such idle
    steps; an agent that makes progress otherwise resets ``idle_steps``.
    """

    navigator: Navigator
    give_up_steps: int = 24
    frontier_min_size: int = 5
    min_dist_m: float = 0.75
    failed_radius_m: float = 0.5
    reached_m: float = 0.5
    stuck_after: int = 3
    target: np.ndarray | None = field(default=None, init=False)
    failed: list = field(default_factory=list, init=False)
    idle_steps: int = field(default=0, init=False)
    _blocked: int = field(default=0, init=False)
    _last_collisions: int = field(default=0, init=False)

    def act(self, pose, visited, rng: np.random.Generator, score=None) -> int:
        """One exploration action. ``visited``: (M, 2) positions, or a function returning them
        (called only when no frontier is left); ``score(points (K, 2), distances (K,)) -> (K,)``."""
        xy = np.asarray(pose, np.float64).reshape(-1)[:2]
        target = self.target
        if target is None or np.linalg.norm(target - xy) < self.reached_m:
            target = self.pick_frontier(xy, score)
            if target is None:
                v = np.asarray(visited() if callable(visited) else visited, np.float64).reshape(-1, 2)
                avoid = np.concatenate([v, *[np.reshape(t, (1, 2)) for t in self.failed]])
                target = far_free_point(self.navigator.obstacle_map, avoid, rng)
        if self.stuck() and target is not None:
            self.failed.append(target)
            self.target = None
            return int(Action.TURN_LEFT)
        while target is not None:
            a = self.navigator.act(target)
            if a is not None and a != Action.STOP:
                self.target, self.idle_steps = target, 0
                return int(a)
            self.failed.append(target)
            target = self.pick_frontier(xy, score)
        self.target = None
        self.idle_steps += 1
        return int(Action.STOP if self.idle_steps > self.give_up_steps else Action.TURN_LEFT)

    def pick_frontier(self, xy, score=None) -> np.ndarray | None:
        """The best frontier point far enough from ``xy`` and from every failed target, or None."""
        pts, _ = frontier_points(self.navigator.obstacle_map, self.frontier_min_size)
        if len(pts) == 0:
            return None
        d = np.linalg.norm(pts - np.asarray(xy, np.float64)[:2], axis=1)
        ok = d >= self.min_dist_m
        for q in self.failed:
            ok &= np.linalg.norm(pts - q, axis=1) >= self.failed_radius_m
        if not ok.any():
            return None
        idx = np.flatnonzero(ok)
        values = -d[idx] if score is None else np.asarray(score(pts[idx], d[idx]))
        return pts[idx[int(np.argmax(values))]]

    def stuck(self) -> bool:
        """True after ``stuck_after`` calls in a row that each saw a new navigator collision."""
        n = self.navigator.collisions
        self._blocked = self._blocked + 1 if n > self._last_collisions else 0
        self._last_collisions = n
        if self._blocked >= self.stuck_after:
            self._blocked = 0
            return True
        return False


__all__ = ["Path", "PathPlanner", "path_blocked", "next_action", "goal_in_view", "StopPolicy", "Navigator",
           "FrontierExplorer"]
