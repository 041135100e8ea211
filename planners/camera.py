"""Pinhole camera geometry of the env's observations, in the episode-start frame.

The env's camera (``envs/renderer.py``, docs/architecture.md) is a pinhole with
square pixels and ray directions through pixel centres:

    fx = fy = (W / 2) / tan(hfov / 2),   cx = W / 2,   cy = H / 2
    pixel (r, c) -> camera ray (right, up, forward) = ((c + 0.5 - cx) / fx, -(r + 0.5 - cy) / fy, 1)

Depth is z-depth (along the forward axis), so a pixel's camera-frame point is
``depth * ray``. The agent pose a planner sees is ``(x, y, yaw)`` =
``(gps[0], gps[1], compass[0])``: x forward and y left of the start pose, yaw
counter-clockwise, so bearings here are counter-clockwise too (left positive).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from envs.geometry import wrap_angle

SENSOR_HEIGHT = 0.88  # camera height above the floor (m), habitat's default
HFOV_DEG = 79.0


def focal_length(width: int, hfov_deg: float) -> float:
    """fx = (W / 2) / tan(hfov / 2), in pixels."""
    if not 0.0 < float(hfov_deg) < 180.0:
        raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg!r}")
    if int(width) <= 0:
        raise ValueError(f"image width must be positive, got {width!r}")
    return (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)


def column_bearing(u, width: int, hfov_deg: float):
    """Bearing (radians, CCW = left positive) of image column coordinate ``u``.

    ``u`` is in pixel-index units (pixel c spans [c, c + 1) and has centre c + 0.5 in
    continuous coordinates; pass ``c`` for a pixel index). Formula:
    bearing = -atan((u + 0.5 - W/2) / fx); a box on the right half gives a negative bearing.
    """
    f = focal_length(width, hfov_deg)
    b = -np.arctan((np.asarray(u, np.float64) + 0.5 - width / 2.0) / f)
    return float(b) if np.ndim(b) == 0 else b


def pose_from_obs(obs: Mapping) -> np.ndarray:
    """Agent pose (x, y, yaw) in the episode-start frame from an observation's gps/compass."""
    try:
        gps = np.asarray(obs["gps"], np.float64).reshape(-1)
        compass = np.asarray(obs["compass"], np.float64).reshape(-1)
    except KeyError as e:
        raise KeyError(f"observation has no {e.args[0]!r}: expected the env's keys gps (2,) and compass (1,)") from None
    except (TypeError, ValueError) as e:
        raise ValueError(f"observation gps {obs.get('gps')!r} / compass {obs.get('compass')!r} must be numbers "
                         f"({e})") from None
    if gps.shape != (2,) or compass.shape != (1,):
        raise ValueError(f"observation: expected gps (2,) and compass (1,), got {gps.shape} and {compass.shape}")
    if not (np.isfinite(gps).all() and np.isfinite(compass).all()):
        raise ValueError(f"observation gps {gps.tolist()} / compass {compass.tolist()} must be finite")
    return np.array([gps[0], gps[1], compass[0]])


def check_observation(obs, max_abs_m: float | None = None) -> np.ndarray:
    """Validate an agent's observation before the agent changes any state; returns the pose.

    rgb must be (H, W, 3) uint8, depth (H, W) or (H, W, 1) numbers of the same H, W, gps (2,) and
    compass (1,) finite, and gps within ``max_abs_m`` of the start on each axis (an agent's map
    bound, ``ObstacleMap.max_reach_m``). Each failure is a ValueError naming the key and the value.
    """
    if not isinstance(obs, Mapping):
        raise ValueError(f"observation must be a dict with rgb, depth, gps, compass; got {type(obs).__name__}")
    for key in ("rgb", "depth", "gps", "compass"):
        if key not in obs:
            raise ValueError(f"observation has no {key!r}: expected the env's keys rgb, depth, gps, compass")
    try:
        rgb = np.asarray(obs["rgb"])
        depth = np.asarray(obs["depth"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"observation rgb/depth must be arrays ({e})") from None
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"observation rgb must be (H, W, 3) uint8, got shape {rgb.shape} dtype {rgb.dtype}")
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.shape != rgb.shape[:2] or not np.issubdtype(depth.dtype, np.number):
        raise ValueError(f"observation depth must be (H, W[, 1]) numbers matching rgb {rgb.shape[:2]}, "
                         f"got shape {np.shape(obs['depth'])} dtype {depth.dtype}")
    try:
        pose = pose_from_obs(obs)
    except (TypeError, KeyError) as e:
        raise ValueError(f"observation gps/compass must be numbers ({e})") from None
    if max_abs_m is not None and np.abs(pose[:2]).max() > max_abs_m:
        raise ValueError(f"observation gps {pose[:2].tolist()} lies over {max_abs_m:.0f} m from the episode "
                         "start, beyond the agent's map bound (gps is in metres from the start)")
    return pose


def check_pose(pose) -> np.ndarray:
    p = np.asarray(pose, np.float64).reshape(-1)
    if p.shape != (3,) or not np.isfinite(p).all():
        raise ValueError(f"pose must be finite (x, y, yaw), got {pose!r}")
    return p


def check_depth(depth) -> np.ndarray:
    """Accept depth (H, W) or (H, W, 1) in metres; return (H, W) float32 (NaN/inf/negative -> 0)."""
    d = np.asarray(depth)
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W) or (H, W, 1) metres, got shape {np.shape(depth)}")
    d = d.astype(np.float32, copy=True)
    d[~np.isfinite(d) | (d < 0)] = 0.0
    return d


def pixel_rays(height: int, width: int, hfov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (right/forward, up/forward) ratios, each (H, W)."""
    f = focal_length(width, hfov_deg)
    right = (np.arange(width) + 0.5 - width / 2.0) / f
    up = -(np.arange(height) + 0.5 - height / 2.0) / f
    return np.broadcast_to(right[None, :], (height, width)), np.broadcast_to(up[:, None], (height, width))


def backproject(depth, pose, hfov_deg: float = HFOV_DEG, sensor_height: float = SENSOR_HEIGHT,
                pitch: float = 0.0) -> np.ndarray:
    """Points (H, W, 3) = (x, y, height above floor) in the pose's frame for z-depth (H, W[, 1]).

    p = cam + z * (forward + r * right + u * up), with the renderer's axes
    forward = (cos p cos yaw, cos p sin yaw, sin p), right = (sin yaw, -cos yaw, 0),
    up = (-sin p cos yaw, -sin p sin yaw, cos p), cam = (x, y, sensor_height).
    Pixels with depth 0 (no hit) get points too; mask them with ``depth > 0``.
    """
    d = check_depth(depth).astype(np.float64)
    x, y, yaw = check_pose(pose)
    h, w = d.shape
    r, u = pixel_rays(h, w, hfov_deg)
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    fwd = np.array([cp * cy, cp * sy, sp])
    rgt = np.array([sy, -cy, 0.0])
    upv = np.array([-sp * cy, -sp * sy, cp])
    dirs = fwd + r[..., None] * rgt + u[..., None] * upv
    return np.array([x, y, sensor_height]) + d[..., None] * dirs


def compose(pose, rel) -> np.ndarray:
    """pose (+) rel: apply a relative pose (dx forward, dy left, dyaw) given in pose's own frame."""
    x, y, yaw = check_pose(pose)
    dx, dy, dyaw = check_pose(rel)
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([x + c * dx - s * dy, y + s * dx + c * dy, float(wrap_angle(yaw + dyaw))])


def relative(pose_a, pose_b) -> np.ndarray:
    """The relative pose of b in a's frame, so that compose(a, relative(a, b)) == b."""
    xa, ya, ta = check_pose(pose_a)
    xb, yb, tb = check_pose(pose_b)
    c, s = math.cos(ta), math.sin(ta)
    dx, dy = xb - xa, yb - ya
    return np.array([c * dx + s * dy, -s * dx + c * dy, float(wrap_angle(tb - ta))])
