"""Scripted context tour: the scan video Video4Spatial takes as context.

The tour visits every room: at the navigable point nearest the room's centre it
looks around (12 turns of 30 deg in place), then walks to the next room along
the shortest path through the doors with the agent's own discrete actions
(MOVE_FORWARD 0.25 m, TURN_LEFT / TURN_RIGHT 30 deg, via
``envs.navigation.ShortestPathFollower``), so consecutive frames differ exactly
as the agent's own frames will. Rooms are visited greedily nearest-first
(geodesic) from a seeded first room.

The raw sequence can be long (hundreds of actions), so it is subsampled evenly
to at most ``n_frames``; ``indices`` keeps each kept frame's original position
in the raw sequence (the non-contiguous frame index the world model's RoPE uses).
"""

from __future__ import annotations

import math

import numpy as np

from envs.actions import FORWARD_STEP_M, TURN_ANGLE_DEG, Action
from envs.geometry import wrap_angle
from envs.scene import Scene

_TURN = math.radians(TURN_ANGLE_DEG)


def room_anchors(scene: Scene, grid) -> list[tuple[int, np.ndarray]]:
    """(room index, xy) per room: the navigable cell inside the room nearest its centre.

    Rooms with no navigable cell (fully furnished, or a closet) are left out.
    """
    rows, cols = np.nonzero(grid.navigable)
    xy = np.asarray(grid.cell_to_world(np.stack([rows, cols], 1)), np.float64).reshape(-1, 2)
    out = []
    for k, room in enumerate(scene.rooms):
        x0, y0, x1, y1 = room.bounds
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        if not inside.any():
            continue
        c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        cand = xy[inside]
        out.append((k, cand[int(np.argmin(np.linalg.norm(cand - c, axis=1)))]))
    return out


def _walk(grid, pose: np.ndarray, goal_xy: np.ndarray, max_steps: int) -> list[np.ndarray]:
    """Poses after each action of a shortest-path walk from ``pose`` to ``goal_xy``."""
    from envs.navigation import ShortestPathFollower

    follower = ShortestPathFollower(grid, np.asarray(goal_xy, np.float64).reshape(1, 2),
                                    stop_distance=FORWARD_STEP_M)
    out = []
    pose = pose.copy()
    plan: list[int] = []
    for _ in range(max_steps):
        a = plan.pop(0) if plan else int(follower.next_action(pose[:2], pose[2]))
        if a == Action.STOP:
            if follower.distance(pose[:2]) <= follower.stop_distance:
                break
            # The greedy one-step follower can stall against a wall near a door
            # jamb (no single 0.25 m step along the 12 headings gets closer).
            # Look two forward steps ahead instead.
            plan = _two_step_escape(grid, follower, pose)
            if not plan:
                break
            continue
        if a == Action.MOVE_FORWARD:
            new_xy, collided = grid.try_move(pose[:2], pose[2], FORWARD_STEP_M)
            if collided and np.allclose(new_xy, pose[:2]):
                break  # stuck: never loop in place
            pose[:2] = new_xy
        else:
            pose[2] = wrap_angle(pose[2] + (_TURN if a == Action.TURN_LEFT else -_TURN))
        out.append(pose.copy())
    return out


def _turns_to(k: int) -> list[int]:
    """Discrete turns that rotate by k * 30 deg (k in -5..6), the shorter way."""
    k = (k + 6) % 12 - 6
    return [int(Action.TURN_LEFT)] * k if k > 0 else [int(Action.TURN_RIGHT)] * (-k)


def _two_step_escape(grid, follower, pose: np.ndarray) -> list[int]:
    """Actions (turn*, forward, turn*, forward) of the best two-step move, [] if none gains."""
    n = round(2 * math.pi / _TURN)
    d0 = follower.distance(pose[:2])
    yaws = pose[2] + np.arange(n) * _TURN
    first, _ = grid.try_move_many(pose[:2], yaws, FORWARD_STEP_M)
    best, best_gain = None, 1e-3
    for i in range(n):
        if np.allclose(first[i], pose[:2]):
            continue
        second, _ = grid.try_move_many(first[i], yaws, FORWARD_STEP_M)
        gain = d0 - np.asarray(grid.field_distance(follower.field, second))
        j = int(np.argmax(gain))
        if gain[j] > best_gain:
            best, best_gain = (i, j), float(gain[j])
    if best is None:
        return []
    i, j = best
    return _turns_to(i) + [int(Action.MOVE_FORWARD)] + _turns_to(j - i) + [int(Action.MOVE_FORWARD)]


def context_tour(scene: Scene, grid, n_frames: int = 96, seed: int = 0,
                 rng: np.random.Generator | None = None, renderer=None, look_around: bool = True,
                 max_steps_per_leg: int = 400, outputs=("rgb", "depth")) -> dict[str, np.ndarray]:
    """A look-around in every room plus the walks between them.

    Args:
        scene, grid: the scene and its ``NavGrid``.
        n_frames: at most this many frames are returned (even subsampling).
        seed / rng: choose the first room and the initial heading (rng wins).
        renderer: if given, the returned dict also holds the rendered ``outputs``.
        look_around: include the 360 deg scan in each room.
        max_steps_per_leg: action cap for one room-to-room walk.

    Returns dict: ``poses`` (T, 3) world [x, y, yaw], ``pitch`` (T,) zeros,
    ``indices`` (T,) original raw-frame indices, ``room`` (T,) the room index
    being scanned or walked to, ``num_raw_frames``; plus rendered outputs.
    """
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    anchors = room_anchors(scene, grid)
    if not anchors:
        raise ValueError(f"scene {scene.scene_id}: no room has a navigable cell; cannot script a tour")
    # greedy nearest-first visiting order (geodesic), from a random room
    order = [anchors.pop(int(rng.integers(len(anchors))))]
    while anchors:
        here = order[-1][1]
        field_ = grid.geodesic_field(here[None])
        d = [float(_lookup(grid, field_, a[1])) for a in anchors]
        order.append(anchors.pop(int(np.argmin(d))))

    poses: list[np.ndarray] = []
    rooms: list[int] = []
    pose = np.array([order[0][1][0], order[0][1][1], _TURN * int(rng.integers(12))])
    poses.append(pose.copy())
    rooms.append(order[0][0])
    for i, (room_k, xy) in enumerate(order):
        if i > 0:
            leg = _walk(grid, pose, xy, max_steps_per_leg)
            poses.extend(leg)
            rooms.extend([room_k] * len(leg))
            if leg:
                pose = leg[-1].copy()
        if look_around:
            for _ in range(round(2 * math.pi / _TURN)):
                pose[2] = wrap_angle(pose[2] + _TURN)
                poses.append(pose.copy())
                rooms.append(room_k)
    raw = np.stack(poses)
    n_raw = len(raw)
    if n_raw > n_frames:
        idx = np.unique(np.round(np.linspace(0, n_raw - 1, int(n_frames))).astype(np.int64))
    else:
        idx = np.arange(n_raw)
    out = {
        "poses": raw[idx],
        "pitch": np.zeros(len(idx)),
        "indices": idx,
        "room": np.asarray(rooms, np.int64)[idx],
        "num_raw_frames": n_raw,
    }
    if renderer is not None:
        out.update(renderer.render(out["poses"], pitch=out["pitch"], outputs=outputs))
    return out


def _lookup(grid, field_: np.ndarray, xy: np.ndarray) -> float:
    return float(grid.field_distance(field_, np.asarray(xy, np.float64).reshape(2)))
