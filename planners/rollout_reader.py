"""Read an imagined rollout: find the red auxiliary box, turn it into a world-frame goal.

The world model ends each rollout with bbox frames: the final view with a pure red
(255, 0, 0) rectangle outline drawn on the target's outermost pixels
(``world_model/boxes.py:draw_box``: 2 px per 64 px of frame width, outer edge = the
target's bounding box).
``find_box`` / ``find_box_in_frames`` (``world_model/boxes.py``, re-exported here) read it back
as a thin rectangular red outline, robust to blur, colour shift and red furniture.

Coordinates are pixel indices: column x, row y, inclusive; a box drawn on pixels
[x0..x1] x [y0..y1] reads back as (x0, y0, x1, y1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planners.camera import HFOV_DEG, SENSOR_HEIGHT, check_depth, check_pose, column_bearing, focal_length
from world_model.boxes import (BoxDetection, box_iou, check_frame, default_line_width, find_box,  # noqa: F401
                               find_box_in_frames)
from world_model.frames import area_resize


def view_thumbnails(frames, size: int = 16) -> np.ndarray:
    """(N, size * size) unit-norm, zero-mean grey thumbnails of RGB frames (N, H, W, 3) or one (H, W, 3),
    block-averaged to size x size (smaller frames: their own size): ``view_similarity`` of two frames
    of the same size is the dot product of theirs."""
    f = np.asarray(frames)
    single = f.ndim == 3
    f = f[None] if single else f
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must be (N, H, W, 3) or (H, W, 3), got shape {np.shape(frames)}")
    if f.dtype == np.uint8:
        g = f.astype(np.float32).mean(-1)
    else:
        g = np.stack([check_frame(x) for x in f]).mean(-1) if len(f) else np.zeros(f.shape[:3], np.float32)
    n, h, w = g.shape
    size = max(1, min(int(size), h, w))  # frames smaller than size x size keep their own resolution
    t = area_resize(g[..., None], size).reshape(n, -1).astype(np.float64)
    t -= t.mean(1, keepdims=True)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    t = np.divide(t, norm, out=np.zeros_like(t), where=norm > 0)
    return t[0] if single else t


def view_similarity(a, b, size: int = 16) -> float:
    """Normalised cross-correlation of two RGB frames block-averaged to size x size grey images.

    In [-1, 1]; near 1 when an imagined view shows the same scene as the real one
    (used to decide whether the real depth may range an imagined box). For one frame against
    many, use ``view_thumbnails`` once per set and dot products.
    """
    return float(view_thumbnails(a, size) @ view_thumbnails(b, size))


@dataclass(frozen=True)
class GoalEstimate:
    """A goal position in the episode-start frame with a Gaussian uncertainty."""

    xy: np.ndarray  # (2,)
    cov: np.ndarray  # (2, 2) m^2
    range_m: float  # distance from the view pose
    bearing: float  # radians, CCW, relative to the view pose's heading
    source: str  # "depth", "ground", "size" or "ground+size", or "fused"
    confidence: float  # the box confidence behind it

    @property
    def radius_m(self) -> float:
        """2-sigma radius along the most uncertain direction."""
        return float(2.0 * math.sqrt(max(np.linalg.eigvalsh(self.cov).max(), 0.0)))


def fuse_goals(a: GoalEstimate, b: GoalEstimate) -> GoalEstimate:
    """Product of the two Gaussians (information form): P = (A^-1 + B^-1)^-1, x = P (A^-1 a + B^-1 b)."""
    ia, ib = np.linalg.inv(a.cov), np.linalg.inv(b.cov)
    cov = np.linalg.inv(ia + ib)
    xy = cov @ (ia @ a.xy + ib @ b.xy)
    return GoalEstimate(xy=xy, cov=cov, range_m=b.range_m, bearing=b.bearing, source="fused",
                        confidence=max(a.confidence, b.confidence))


def box_to_goal(box: BoxDetection, depth, pose, hfov_deg: float = HFOV_DEG, sensor_height: float = SENSOR_HEIGHT,
                object_height_m: float = 0.8, depth_percentile: float = 30.0) -> GoalEstimate:
    """World-frame (episode-start) goal estimate from a box seen from ``pose`` (x, y, yaw).

    The box is read as ``world_model/boxes.py:draw_box`` draws it: the outline lies *on* the
    target's outermost pixels, so rows y0..y1 and columns x0..x1 (inclusive) are the object's
    own extent (the outline is not added around it).

    bearing = -atan((cx + 0.5 - W/2) / f), f = (W/2) / tan(hfov/2) (left positive).
    Range, in order of preference:
    * ``depth`` (H, W[, 1]) given (the real view matches the imagined final view): the
      ``depth_percentile`` of valid z-depths inside the box, 15% in from each side (the
      target is in front of what it occludes), made horizontal:
      range = z * sqrt(1 + ((cx + 0.5 - W/2) / f)^2); sigma_r = 0.1 + 0.1 range;
    * otherwise fuse (inverse variance) ground contact, when the box bottom lies below the
      horizon and above the image's bottom edge: z = f * sensor_height / (v_b - H/2), with
      v_b = y1 + 1 the continuous row where the object meets the floor (pixel centres sit at
      r + 0.5, and the lowest object row is the last whose centre lies above the contact line,
      so the contact lies in (y1 + 0.5, y1 + 1.5]), sigma_r = z^2 / (f * sensor_height) * 2 px
      + 0.15 z; and the size prior z = f * object_height_m / box height (y1 - y0 + 1),
      sigma_r = 0.5 z.
    Lateral sigma = range * (1.5 px + box half-width / 2) / f.
    """
    p = check_pose(pose)
    h_img, w_img = box.image_hw
    if h_img <= 0 or w_img <= 0:
        raise ValueError("box.image_hw is unset: build the box with find_box or give image_hw")
    f = focal_length(w_img, hfov_deg)
    bearing = column_bearing(box.cx, w_img, hfov_deg)
    lateral = (box.cx + 0.5 - w_img / 2.0) / f
    obj_h = max(box.height, 1.0)
    z, sigma, source = None, None, None
    if depth is not None:
        d = check_depth(depth)
        b = box.scaled_to(d.shape)
        mx, my = 0.15 * b.width, 0.15 * b.height
        r0, r1 = int(math.floor(b.y0 + my)), int(math.ceil(b.y1 - my)) + 1
        c0, c1 = int(math.floor(b.x0 + mx)), int(math.ceil(b.x1 - mx)) + 1
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(max(r1, r0 + 1), d.shape[0]), min(max(c1, c0 + 1), d.shape[1])
        vals = d[r0:r1, c0:c1]
        vals = vals[vals > 0]
        if vals.size:
            z = float(np.percentile(vals, depth_percentile))
            rng = z * math.sqrt(1.0 + lateral * lateral)
            sigma, source = 0.1 + 0.1 * rng, "depth"
    if z is None:
        ests = []
        v_b = box.y1 + 1.0  # continuous row of the floor contact: the bottom edge of the lowest object row
        below = v_b - h_img / 2.0
        if below >= 2.0 and box.y1 < h_img - 1.5:
            zg = f * sensor_height / below
            ests.append(("ground", zg, zg * zg / (f * sensor_height) * 2.0 + 0.15 * zg))
        zs = f * object_height_m / obj_h
        ests.append(("size", zs, 0.5 * zs))
        wts = np.array([1.0 / s ** 2 for _, _, s in ests])
        z = float(sum(w * e[1] for w, e in zip(wts, ests)) / wts.sum())
        sigma = float(1.0 / math.sqrt(wts.sum()))
        source = "+".join(e[0] for e in ests)
        rng = z * math.sqrt(1.0 + lateral * lateral)
        sigma *= math.sqrt(1.0 + lateral * lateral)
    sig_t = rng * (1.5 + box.width / 4.0) / f
    ang = p[2] + bearing
    u = np.array([math.cos(ang), math.sin(ang)])
    v = np.array([-u[1], u[0]])
    cov = sigma ** 2 * np.outer(u, u) + sig_t ** 2 * np.outer(v, v)
    xy = p[:2] + rng * u
    return GoalEstimate(xy=xy, cov=cov, range_m=float(rng), bearing=float(bearing), source=source,
                        confidence=float(box.confidence))
