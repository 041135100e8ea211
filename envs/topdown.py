"""Top-down map pictures of an episode: the navigable grid, the target, its view points, the path
and the agent (``ObjectNavEnv.topdown_map`` and ``ObjectNavEnv.render``, the videos' right half).

* ``map_background(grid)``: the grid's free/blocked picture, once per scene (the env caches it);
* ``draw_topdown(base, grid, path_xy, pose, target, view_points_xy, height)``: the episode drawn
  over it: the target's box (red), its view points (green), the path (blue), the agent (orange
  arrow), scaled to ``height`` pixels with +y up;
* ``upscale`` and ``beside``: the observation enlarged by whole pixels and set next to the map.

These pictures show ground truth (the target, its view points), so they are for people (videos,
pictures, ``env.render()``), never an agent's observation; drawing changes nothing in the episode.
"""

from __future__ import annotations

import math

import numpy as np

_FREE = np.array([235, 235, 235], np.uint8)
_BLOCKED = np.array([90, 90, 100], np.uint8)


def map_background(grid) -> np.ndarray:
    """The grid's own top-down picture in grid row order (row 0 first)."""
    to_image = getattr(grid, "to_image", None)
    if to_image is not None:
        img = np.asarray(to_image(), np.uint8)
        # to_image() flips rows so +y is up; undo it to index by (row, col) here.
        return np.ascontiguousarray(img[::-1]) if _rows_grow_with_y(grid) else img
    nav = np.asarray(grid.navigable, bool)
    return np.where(nav[..., None], _FREE, _BLOCKED).astype(np.uint8)


def _cells(grid, xy: np.ndarray) -> np.ndarray:
    """World xy (N, 2) -> continuous (row, col) grid coordinates (cell (r, c) spans [r, r+1))."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    origin, cs = getattr(grid, "origin", None), getattr(grid, "cell_size", None)
    if origin is not None and cs is not None and _rows_grow_with_y(grid):
        return np.stack([(xy[:, 1] - origin[1]) / cs, (xy[:, 0] - origin[0]) / cs], -1)
    row, col = grid.world_to_cell(xy)  # other grid layouts: cell centres
    return np.stack([np.asarray(row, np.float64), np.asarray(col, np.float64)], -1).reshape(-1, 2) + 0.5


def draw_topdown(base: np.ndarray, grid, path_xy: np.ndarray, pose: np.ndarray, target,
                 view_points_xy: np.ndarray, height: int) -> np.ndarray:
    """Draw target box (red), view points (green), path (blue) and agent (orange arrow)
    over ``base`` scaled to ``height`` pixels. Image rows follow the grid's rows, with
    the image flipped so +y points up when the grid's rows grow with y."""
    from PIL import Image, ImageDraw

    rows, cols = base.shape[:2]
    scale = height / rows
    width = max(1, int(round(cols * scale)))
    img = Image.fromarray(base).resize((width, height), Image.NEAREST)
    draw = ImageDraw.Draw(img)

    def px(xy):
        rc = _cells(grid, xy) * scale
        return [(float(c), float(r)) for r, c in rc]

    r = max(1.5, 1.5 * scale)
    for x, y in px(view_points_xy):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(120, 200, 130))
    if target is not None:
        corners = np.asarray(target.corners())[:, :2]
        # corners() enumerates (sx, sy, sz); the four with sz=-1 in ring order:
        ring = corners[[0, 2, 6, 4]]
        draw.polygon(px(ring), outline=(200, 0, 0), fill=(235, 60, 60))
    if len(path_xy) > 1:
        draw.line(px(path_xy), fill=(40, 90, 220), width=max(2, int(round(scale * 0.8))))
    (ax, ay), = px(pose[None, :2])
    cell = getattr(grid, "cell_size", 0.05)
    length = 0.35 / cell * scale
    tip = pose[:2] + 0.35 * np.array([math.cos(pose[2]), math.sin(pose[2])])
    (tx, ty), = px(tip[None])
    ang = math.atan2(ty - ay, tx - ax)
    w = length * 0.45
    left = (ax + w * math.cos(ang + 2.3), ay + w * math.sin(ang + 2.3))
    right = (ax + w * math.cos(ang - 2.3), ay + w * math.sin(ang - 2.3))
    draw.polygon([(tx, ty), left, (ax, ay), right], fill=(245, 140, 0), outline=(120, 60, 0))
    out = np.asarray(img)
    if _rows_grow_with_y(grid):
        out = out[::-1]
    return np.ascontiguousarray(out)


def _rows_grow_with_y(grid) -> bool:
    r0 = grid.world_to_cell(np.array([0.0, 0.0]))[0]
    r1 = grid.world_to_cell(np.array([0.0, 10.0]))[0]
    return r1 > r0


def upscale(rgb: np.ndarray, min_height: int = 256) -> np.ndarray:
    """``rgb`` (H, W, 3) enlarged by the smallest whole factor that makes it >= ``min_height`` pixels
    high (each pixel repeated, no interpolation)."""
    k = max(1, math.ceil(min_height / rgb.shape[0]))
    return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def beside(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two uint8 RGB images of the same height side by side, ``gap`` white columns between them."""
    sep = np.full((left.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([left, sep, right], axis=1)


__all__ = ["map_background", "draw_topdown", "upscale", "beside"]
