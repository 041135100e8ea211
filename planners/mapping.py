"""Top-down obstacle map in the episode-start frame, built from real depth + gps/compass.

Grid layout: cell (row, col) covers x in (x_top - (row+1) s, x_top - row s] and
y in (y_left - (col+1) s, y_left - col s], s = cell size. So the array drawn as an
image has the start heading (+x) up and the agent's left (+y) on the left.
Use ``world_to_cell``/``cell_to_world`` rather than this layout.

Each cell keeps a log-odds of occupancy (Thrun et al., Probabilistic Robotics,
ch. 9): l <- clip(l + l_occ * [hit this frame] - l_free * [seen free this frame]).
A cell is OCCUPIED when l > 0, FREE when it has been observed and l <= 0, and
UNKNOWN when never observed. Hits count more than free passes (l_occ > l_free) so
that grazing rays at a wall's edge do not erase it.

One update:
* back-project every depth pixel (``planners.camera.backproject``);
* points with height in [min_height, max_height] above the floor are obstacle
  hits (the agent is 0.88 m tall at the camera and ~1.5 m overall);
* free space: the ray from the camera to each point is clear of obstacles in the
  height band up to (a) the hit minus a margin for obstacle points, (b) the point
  itself for floor points, (c) where the ray leaves the band for points above it
  and for no-hit pixels (treated as hits at ``max_depth``). Pixels are binned by
  bearing, each bin keeps its farthest clear distance, and the bins are cast as
  2-D rays at an angular step fine enough to leave no holes at range;
* obstacles win over free marks within one frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from envs.geometry import wrap_angle
from planners.camera import HFOV_DEG, SENSOR_HEIGHT, backproject, check_depth, check_pose

UNKNOWN, FREE, OCCUPIED = 0, 1, 2


@dataclass
class Frontier:
    """A connected cluster of frontier cells (free cells next to unknown ones)."""

    centroid_xy: np.ndarray  # (2,) mean of the cells (may fall off the cluster when it is curved)
    target_xy: np.ndarray  # (2,) the cluster's cell nearest the centroid: a point to drive to
    size: int  # number of cells
    cells: np.ndarray  # (N, 2) int (row, col)
    length_m: float  # size * cell size: a rough extent of the opening


def disk(radius_cells: float) -> np.ndarray:
    """Boolean disk structuring element of the given radius in cells."""
    r = int(math.ceil(radius_cells))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= radius_cells * radius_cells + 1e-9


class ObstacleMap:
    """2-D occupancy grid in the episode-start frame (x forward, y left, metres).

    Args:
        cell_size: metres per cell.
        size_m: initial side of the square map, centred on the start; it grows (by
            ``grow_m`` steps) when observations fall outside.
        hfov_deg, sensor_height: the env's camera (79 deg, 0.88 m).
        min_height, max_height: obstacle band above the floor (m).
        max_depth: the depth sensor's range; no-hit pixels (depth 0) count as free up
            to this range when ``nohit_is_free``.
        agent_radius: inflation radius for planning (m).
        l_occ, l_free, l_clamp: log-odds increments and clamp.
        min_points: obstacle points needed in a cell in one frame to count as a hit.
        free_margin: free rays stop this far short of an obstacle hit (m).
        max_size_m: the map never covers more than this a side (plus one ``grow_m`` step of rounding):
            an observation, goal or collision that would grow it further is a ValueError naming the
            point, not gigabytes of grid. 200 m at 5 cm cells is 16 M cells (~0.2 GB with the caches);
            ``max_reach_m`` is how far from the start a pose may be for its depth to fit.
    """

    def __init__(self, cell_size: float = 0.05, size_m: float = 24.0, hfov_deg: float = HFOV_DEG,
                 sensor_height: float = SENSOR_HEIGHT, min_height: float = 0.1, max_height: float = 1.5,
                 max_depth: float = 10.0, nohit_is_free: bool = True, agent_radius: float = 0.18,
                 l_occ: float = 1.0, l_free: float = 0.35, l_clamp: float = 4.0, min_points: int = 1,
                 free_margin: float = 0.1, grow_m: float = 4.0, max_size_m: float = 200.0):
        if not cell_size > 0:
            raise ValueError(f"cell_size must be > 0 m, got {cell_size!r}")
        if not size_m >= 4 * cell_size:
            raise ValueError(f"size_m must be at least 4 cells, got {size_m!r}")
        if not size_m <= max_size_m < math.inf:
            raise ValueError(f"need size_m <= max_size_m < inf, got {size_m!r}, {max_size_m!r}")
        if (max_size_m / cell_size) ** 2 > 1e8:
            raise ValueError(f"max_size_m={max_size_m} at cell_size={cell_size} allows over 1e8 cells "
                             "(gigabytes); use larger cells or a smaller bound")
        if not 0 <= min_height < max_height:
            raise ValueError(f"need 0 <= min_height < max_height, got {min_height!r}, {max_height!r}")
        if not min_height < sensor_height < max_height:
            raise ValueError(f"the camera (sensor_height={sensor_height}) must lie inside the obstacle band "
                             f"[{min_height}, {max_height}]: free-space rays start at the camera")
        if not (l_occ > 0 and l_free > 0 and l_clamp > 0):
            raise ValueError("l_occ, l_free and l_clamp must be > 0")
        self.cell_size = float(cell_size)
        self.hfov_deg = float(hfov_deg)
        self.sensor_height = float(sensor_height)
        self.min_height, self.max_height = float(min_height), float(max_height)
        self.max_depth = float(max_depth)
        self.nohit_is_free = bool(nohit_is_free)
        self.agent_radius = float(agent_radius)
        self.l_occ, self.l_free, self.l_clamp = float(l_occ), float(l_free), float(l_clamp)
        self.min_points = int(min_points)
        self.free_margin = float(free_margin)
        self.grow_cells = max(1, int(round(grow_m / cell_size)))
        self.max_size_m = float(max_size_m)
        n = int(math.ceil(size_m / cell_size))
        self.logodds = np.zeros((n, n), np.float32)
        self.observed = np.zeros((n, n), bool)
        self.layers: dict[str, np.ndarray] = {}
        self._layer_counts: dict[str, np.ndarray] = {}
        self._layer_modes: dict[str, str] = {}
        self.x_top = n * cell_size / 2.0
        self.y_left = n * cell_size / 2.0
        self.version = 0  # bumped on every change; caches key on it
        # radius -> [inflated grid, dirty box [r0, r1, c0, c1) of cells whose occupancy may have
        # changed since it was computed, or None]: inflated() redoes only the dirty part.
        self._inflated_cache: dict[float, list] = {}

    # ------------------------------------------------------------------ geometry
    @property
    def shape(self) -> tuple[int, int]:
        return self.logodds.shape

    def world_to_cell(self, xy) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) int arrays for points xy (..., 2) in the start frame (may be out of bounds)."""
        p = np.asarray(xy, np.float64)
        rows = np.floor((self.x_top - p[..., 0]) / self.cell_size).astype(np.int64)
        cols = np.floor((self.y_left - p[..., 1]) / self.cell_size).astype(np.int64)
        return rows, cols

    def cell_to_world(self, rows, cols) -> np.ndarray:
        """Cell centres (..., 2) in the start frame."""
        r = np.asarray(rows, np.float64)
        c = np.asarray(cols, np.float64)
        return np.stack([self.x_top - (r + 0.5) * self.cell_size, self.y_left - (c + 0.5) * self.cell_size], -1)

    def in_bounds(self, rows, cols) -> np.ndarray:
        h, w = self.shape
        rows, cols = np.asarray(rows), np.asarray(cols)
        return (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)

    @property
    def max_reach_m(self) -> float:
        """How far from the start (each axis, m) a pose may lie so that all it sees fits the map."""
        return self.max_size_m / 2 - self.max_depth - 1.0

    def can_hold(self, xy_min, xy_max) -> bool:
        """Whether the box [xy_min, xy_max] fits in the map without exceeding ``max_size_m``."""
        lo = np.asarray(xy_min, np.float64).reshape(-1)[:2]
        hi = np.asarray(xy_max, np.float64).reshape(-1)[:2]
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return False
        h, w = self.shape
        s = self.cell_size
        ext_x = max(hi[0], self.x_top) - min(lo[0], self.x_top - h * s)
        ext_y = max(hi[1], self.y_left) - min(lo[1], self.y_left - w * s)
        return bool(max(ext_x, ext_y) <= self.max_size_m)

    def ensure_contains(self, xy_min, xy_max) -> None:
        """Grow the grid (in ``grow_m`` steps) so the box [xy_min, xy_max] lies inside; a ValueError
        when that would take the map past ``max_size_m`` a side (or the box is not finite)."""
        lo = np.asarray(xy_min, np.float64)
        hi = np.asarray(xy_max, np.float64)
        h, w = self.shape
        s = self.cell_size
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError(f"ensure_contains needs a finite box, got {lo.tolist()}, {hi.tolist()}")
        if not self.can_hold(lo, hi):
            raise ValueError(
                f"the obstacle map would have to grow past max_size_m={self.max_size_m:g} m a side to hold "
                f"[{lo.round(1).tolist()}, {hi.round(1).tolist()}] (metres from the episode start): poses and "
                f"goals must lie within about {self.max_reach_m:.0f} m of the start (check gps units and goals)")
        pad_top = max(0, math.ceil((hi[0] - self.x_top) / s) + 1)
        pad_bottom = max(0, math.ceil((self.x_top - h * s - lo[0]) / s) + 1)
        pad_left = max(0, math.ceil((hi[1] - self.y_left) / s) + 1)
        pad_right = max(0, math.ceil((self.y_left - w * s - lo[1]) / s) + 1)
        if not (pad_top or pad_bottom or pad_left or pad_right):
            return
        g = self.grow_cells

        def up(p):
            return 0 if p == 0 else int(math.ceil(p / g) * g)

        pads = ((up(pad_top), up(pad_bottom)), (up(pad_left), up(pad_right)))
        self.logodds = np.pad(self.logodds, pads)
        self.observed = np.pad(self.observed, pads)
        for k in self.layers:
            self.layers[k] = np.pad(self.layers[k], pads)
            self._layer_counts[k] = np.pad(self._layer_counts[k], pads)
        self._inflated_cache.clear()  # obstacles at the old border inflate into the new cells: redo (rare)
        self.x_top += pads[0][0] * s
        self.y_left += pads[1][0] * s
        self.version += 1

    # ------------------------------------------------------------------ states
    @property
    def occupied(self) -> np.ndarray:
        return self.logodds > 0

    @property
    def free(self) -> np.ndarray:
        return self.observed & (self.logodds <= 0)

    @property
    def explored(self) -> np.ndarray:
        return self.observed

    @property
    def state(self) -> np.ndarray:
        """uint8 grid of UNKNOWN (0) / FREE (1) / OCCUPIED (2)."""
        s = np.full(self.shape, UNKNOWN, np.uint8)
        s[self.free] = FREE
        s[self.occupied] = OCCUPIED
        return s

    def inflated(self, radius: float | None = None) -> np.ndarray:
        """Occupied cells dilated by ``radius`` (default the agent radius): cells the agent's centre must avoid.

        Cached per radius and kept up to date incrementally: after a change only the part of the
        grid within 2 radii of cells whose occupancy flipped is dilated again (the result is the
        same as dilating the whole grid). Treat the returned array as read-only.
        """
        radius = self.agent_radius if radius is None else float(radius)
        entry = self._inflated_cache.get(radius)
        if entry is not None and entry[0].shape == self.shape:
            if entry[1] is not None:
                self._redilate(entry, radius)
            return entry[0]
        occ = self.occupied
        out = ndimage.binary_dilation(occ, structure=disk(radius / self.cell_size)) if radius > 0 else occ.copy()
        self._inflated_cache[radius] = [out, None]
        return out

    def _redilate(self, entry: list, radius: float) -> None:
        """Recompute ``entry``'s inflation on its dirty box: outputs within n cells of the box change,
        and they depend on inputs within 2n cells of it (n = the disk's radius in cells)."""
        out, (r0, r1, c0, c1) = entry
        entry[1] = None
        h, w = self.shape
        if radius <= 0:
            out[r0:r1, c0:c1] = self.logodds[r0:r1, c0:c1] > 0
            return
        k = disk(radius / self.cell_size)
        n = k.shape[0] // 2
        o0, o1, p0, p1 = max(r0 - n, 0), min(r1 + n, h), max(c0 - n, 0), min(c1 + n, w)  # outputs to redo
        i0, i1, j0, j1 = max(r0 - 2 * n, 0), min(r1 + 2 * n, h), max(c0 - 2 * n, 0), min(c1 + 2 * n, w)  # inputs
        part = ndimage.binary_dilation(self.logodds[i0:i1, j0:j1] > 0, structure=k)
        out[o0:o1, p0:p1] = part[o0 - i0:o1 - i0, p0 - j0:p1 - j0]

    def _occupancy_changed(self, rows, cols) -> None:
        """Cells (row, col arrays) whose occupied state may have flipped: mark them dirty in the caches."""
        rows, cols = np.asarray(rows).reshape(-1), np.asarray(cols).reshape(-1)
        if rows.size == 0:
            return
        box = [int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1]
        for entry in self._inflated_cache.values():
            d = entry[1]
            entry[1] = box if d is None else [min(d[0], box[0]), max(d[1], box[1]), min(d[2], box[2]),
                                             max(d[3], box[3])]

    def is_free(self, xy, radius: float | None = None) -> bool:
        """True when xy is observed free and not within ``radius`` of an obstacle."""
        r, c = self.world_to_cell(xy)
        if not self.in_bounds(r, c):
            return False
        return bool(self.observed[r, c] and not self.inflated(radius)[r, c])

    # ------------------------------------------------------------------ updates
    def _band_exit(self, dist2d: np.ndarray, height: np.ndarray) -> np.ndarray:
        """Horizontal distance at which the camera ray to (dist2d, height) leaves the obstacle band.

        Linear height along the ray: h(t) = H + (height - H) t / dist2d, so it crosses the
        band edge b at t = dist2d (b - H) / (height - H).
        """
        hc = self.sensor_height
        out = dist2d.copy()
        up = height > self.max_height
        down = height < self.min_height
        out[up] = dist2d[up] * (self.max_height - hc) / (height[up] - hc)
        out[down] = dist2d[down] * (hc - self.min_height) / (hc - height[down])
        return out

    def update(self, depth, pose, pitch: float = 0.0) -> None:
        """Integrate one z-depth image (H, W[, 1], metres, 0 = no hit) seen from pose (x, y, yaw)."""
        d = check_depth(depth)
        pose = check_pose(pose)
        # Readings past the sensor range are treated as no hit, as the env's depth sensor does.
        d[d > self.max_depth] = 0.0
        pts = backproject(d, pose, self.hfov_deg, self.sensor_height, pitch)
        valid = d > 0
        if self.nohit_is_free and not valid.all():
            far = backproject(np.full_like(d, self.max_depth), pose, self.hfov_deg, self.sensor_height, pitch)
            pts = np.where(valid[..., None], pts, far)
        cam = pose[:2]
        rel = pts[..., :2] - cam
        dist2d = np.hypot(rel[..., 0], rel[..., 1])
        height = pts[..., 2]
        obstacle = valid & (height >= self.min_height) & (height <= self.max_height)
        floor = valid & (height < self.min_height)

        clear = self._band_exit(dist2d, height)
        clear[obstacle] = dist2d[obstacle] - self.free_margin
        clear[floor] = dist2d[floor]
        use = valid | self.nohit_is_free
        bearing = wrap_angle(np.arctan2(rel[..., 1], rel[..., 0]) - pose[2])[use]
        clear = np.maximum(clear[use], 0.0)

        ext_lo = [cam - 0.0]
        ext_hi = [cam + 0.0]
        free_frame = None
        if bearing.size:
            # Bin by bearing at one image column's angular width, keep each bin's farthest clear distance.
            h_img, w_img = d.shape
            n_bins = max(8, w_img)
            lo, hi = float(bearing.min()), float(bearing.max())
            span = max(hi - lo, 1e-6)
            idx = np.minimum(((bearing - lo) / span * n_bins).astype(np.int64), n_bins - 1)
            best = np.full(n_bins, -1.0)
            np.maximum.at(best, idx, clear)
            # Columns are not evenly spaced in angle (atan), so some bins get no pixel: give them
            # the smaller value of their nearest filled neighbours.
            filled = np.nonzero(best >= 0)[0]
            if filled.size < n_bins:
                j = np.clip(np.searchsorted(filled, np.arange(n_bins)), 1, max(1, filled.size - 1))
                left = filled[np.maximum(j - 1, 0)]
                right = filled[np.minimum(j, filled.size - 1)]
                best = np.where(best >= 0, best, np.minimum(best[left], best[right]))
            rmax = float(best.max())
            if rmax > 0:
                # Rays spaced so neighbouring rays are < 0.7 cell apart at the farthest range; each ray
                # takes the smaller clear distance of its two nearest bins (conservative at edges).
                n_rays = int(max(n_bins, math.ceil(span * rmax / (0.7 * self.cell_size)) + 1))
                ang = np.linspace(lo, hi, n_rays)
                pos = (ang - lo) / span * n_bins - 0.5
                i0 = np.clip(np.floor(pos).astype(np.int64), 0, n_bins - 1)
                i1 = np.clip(i0 + 1, 0, n_bins - 1)
                ray_clear = np.minimum(best[i0], best[i1])
                steps = np.arange(0.0, rmax + 1e-9, 0.5 * self.cell_size)
                keep = steps[None, :] <= ray_clear[:, None]
                world_ang = ang + pose[2]
                ts = np.broadcast_to(steps[None, :], keep.shape)[keep]
                ca = np.broadcast_to(np.cos(world_ang)[:, None], keep.shape)[keep]
                sa = np.broadcast_to(np.sin(world_ang)[:, None], keep.shape)[keep]
                free_xy = np.stack([cam[0] + ts * ca, cam[1] + ts * sa], -1)
                ext_lo.append(free_xy.min(0))
                ext_hi.append(free_xy.max(0))
                free_frame = free_xy
        obs_xy = pts[..., :2][obstacle]
        if obs_xy.size:
            ext_lo.append(obs_xy.min(0))
            ext_hi.append(obs_xy.max(0))
        self.ensure_contains(np.min(ext_lo, 0) - self.cell_size, np.max(ext_hi, 0) + self.cell_size)

        h, w = self.shape
        free_mask = np.zeros(h * w, bool)
        if free_frame is not None:
            r, c = self.world_to_cell(free_frame)
            free_mask[r * w + c] = True
        # The agent stands on its own footprint: it is free space.
        rr, cc = self._disk_cells(cam, self.agent_radius)
        free_mask[rr * w + cc] = True
        occ_mask = np.zeros(h * w, bool)
        if obs_xy.size:
            r, c = self.world_to_cell(obs_xy)
            counts = np.bincount(r * w + c, minlength=h * w)
            occ_mask = counts >= self.min_points
        free_mask &= ~occ_mask
        lo_flat = self.logodds.reshape(-1)
        free_idx, occ_idx = np.flatnonzero(free_mask), np.flatnonzero(occ_mask)
        # Only these cells change: update them in place and note where occupancy flipped.
        was_free = lo_flat[free_idx] > 0  # occupied before a free pass
        lo_flat[free_idx] = np.maximum(lo_flat[free_idx] - self.l_free, -self.l_clamp)
        was_occ = lo_flat[occ_idx] > 0
        lo_flat[occ_idx] = np.minimum(lo_flat[occ_idx] + self.l_occ, self.l_clamp)
        if self._inflated_cache:
            flipped = np.concatenate([free_idx[was_free != (lo_flat[free_idx] > 0)],
                                      occ_idx[was_occ != (lo_flat[occ_idx] > 0)]])
            self._occupancy_changed(flipped // w, flipped % w)
        obs_flat = self.observed.reshape(-1)
        obs_flat[free_idx] = True
        obs_flat[occ_idx] = True
        self.version += 1

    def set_state(self, mask, state: int) -> None:
        """Force cells under a bool ``mask`` (map shape) to FREE, OCCUPIED or UNKNOWN (e.g. a known layout)."""
        mask = np.asarray(mask, bool)
        if mask.shape != self.shape:
            raise ValueError(f"mask shape {mask.shape} must equal the map shape {self.shape}")
        if state == UNKNOWN:
            self.observed[mask] = False
            self.logodds[mask] = 0.0
        elif state in (FREE, OCCUPIED):
            self.observed[mask] = True
            self.logodds[mask] = self.l_clamp if state == OCCUPIED else -self.l_clamp
        else:
            raise ValueError(f"state must be UNKNOWN (0), FREE (1) or OCCUPIED (2), got {state!r}")
        self._occupancy_changed(*np.nonzero(mask))
        self.version += 1

    def _disk_cells(self, xy, radius: float) -> tuple[np.ndarray, np.ndarray]:
        r0, c0 = self.world_to_cell(np.asarray(xy, np.float64))
        k = disk(radius / self.cell_size)
        n = k.shape[0] // 2
        dr, dc = np.nonzero(k)
        rr, cc = dr - n + int(r0), dc - n + int(c0)
        ok = self.in_bounds(rr, cc)
        return rr[ok], cc[ok]

    def mark_collision(self, pose, distance: float | None = None) -> tuple[int, int]:
        """Mark the cell just ahead of a blocked forward step as occupied; returns that cell.

        A forward step that did not move the agent means something lies within
        agent_radius + 0.25 m ahead. The mark goes at agent_radius + 2 cells ahead, so the
        inflated map blocks moving on in that direction but not the agent's own cell.
        """
        x, y, yaw = check_pose(pose)
        dist = self.agent_radius + 2 * self.cell_size if distance is None else float(distance)
        p = np.array([x + dist * math.cos(yaw), y + dist * math.sin(yaw)])
        self.ensure_contains(p - self.cell_size, p + self.cell_size)
        r, c = self.world_to_cell(p)
        self.logodds[r, c] = self.l_clamp
        self.observed[r, c] = True
        self._occupancy_changed(r, c)
        self.version += 1
        return int(r), int(c)

    def project_scores(self, name: str, scores, depth, pose, mode: str = "max", pitch: float = 0.0) -> np.ndarray:
        """Project a per-pixel score image (H, W) onto the map layer ``name`` and return the layer.

        Every pixel with a depth hit lands in the cell under its 3-D point. ``mode='max'`` keeps
        the largest score ever seen per cell (a detection mask); ``'mean'`` averages all
        projections (a similarity value map). A layer keeps the mode it was created with.
        """
        if mode not in ("max", "mean"):
            raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")
        if self._layer_modes.setdefault(name, mode) != mode:
            raise ValueError(f"layer {name!r} was created with mode={self._layer_modes[name]!r}, not {mode!r}")
        d = check_depth(depth)
        s = np.asarray(scores, np.float32)
        if s.ndim == 3 and s.shape[-1] == 1:
            s = s[..., 0]
        if s.shape != d.shape:
            raise ValueError(f"scores shape {s.shape} must match depth shape {d.shape}")
        if name not in self.layers:
            self.layers[name] = np.zeros(self.shape, np.float32)
            self._layer_counts[name] = np.zeros(self.shape, np.float32)
        pts = backproject(d, check_pose(pose), self.hfov_deg, self.sensor_height, pitch)
        valid = (d > 0) & np.isfinite(s)
        xy = pts[..., :2][valid]
        if xy.size:
            self.ensure_contains(xy.min(0) - self.cell_size, xy.max(0) + self.cell_size)
            r, c = self.world_to_cell(xy)
            flat = r * self.shape[1] + c
            layer = self.layers[name].reshape(-1)
            cnt = self._layer_counts[name].reshape(-1)
            if mode == "max":
                np.maximum.at(layer, flat, s[valid])
            else:
                np.add.at(layer, flat, s[valid])
            np.add.at(cnt, flat, 1.0)
        return self.layer(name)

    def layer(self, name: str) -> np.ndarray:
        """The score layer (max, or mean over projections; 0 where never projected)."""
        if name not in self.layers:
            raise KeyError(f"no score layer {name!r}; layers: {sorted(self.layers)}")
        if self._layer_modes[name] == "max":
            return self.layers[name]
        cnt = self._layer_counts[name]
        return np.where(cnt > 0, self.layers[name] / np.maximum(cnt, 1.0), 0.0).astype(np.float32)

    # ------------------------------------------------------------------ frontiers
    def frontiers(self, min_size: int = 5) -> list[Frontier]:
        """Clusters (8-connected) of free cells 4-adjacent to unknown cells, largest first.

        Cells inside the inflated obstacles are left out: the agent cannot stand there.
        """
        free = self.free & ~self.inflated()
        unknown = ~self.observed
        near_unknown = ndimage.binary_dilation(unknown, structure=ndimage.generate_binary_structure(2, 1))
        fr = free & near_unknown
        labels, n = ndimage.label(fr, structure=np.ones((3, 3), bool))
        if n == 0:
            return []
        sizes = np.bincount(labels.reshape(-1), minlength=n + 1)
        out = []
        for lab in np.nonzero(sizes >= max(1, int(min_size)))[0]:
            if lab == 0:
                continue
            rc = np.argwhere(labels == lab)
            xy = self.cell_to_world(rc[:, 0], rc[:, 1])
            centroid = xy.mean(0)
            target = xy[np.argmin(((xy - centroid) ** 2).sum(1))]
            f = Frontier(centroid_xy=centroid, target_xy=target, size=int(sizes[lab]), cells=rc,
                         length_m=float(sizes[lab]) * self.cell_size)
            out.append(f)
        out.sort(key=lambda f: -f.size)
        return out

    # ------------------------------------------------------------------ drawing
    def to_image(self, pose=None, path=None, goal=None, goal_radius: float | None = None,
                 frontiers: list[Frontier] | None = None, layer: str | None = None,
                 crop: bool = True, margin_m: float = 1.0, scale: int = 2, marks=None) -> np.ndarray:
        """RGB uint8 top-down image: unknown grey, free white, inflation pale red, obstacles black.

        Optional overlays: a score ``layer`` tinting free/occupied cells green, frontier cells
        blue, a ``path`` ((N, 2) xy or an object with ``.waypoints``) orange, the ``goal`` (xy) as a
        red disk of ``goal_radius`` m, the agent ``pose`` as a green dot with a heading tick, and
        ``marks``: [(xy, (r, g, b)), ...] extra points (e.g. an exploration target) as small disks.
        Image up = the start heading (+x), image left = start left (+y).
        """
        h, w = self.shape
        img = np.full((h, w, 3), 160, np.uint8)
        free, occ = self.free, self.occupied
        img[free] = (255, 255, 255)
        img[free & self.inflated()] = (250, 215, 215)
        if layer is not None:
            v = self.layer(layer)
            vmax = float(v.max())
            if vmax > 0:
                a = np.clip(v / vmax, 0, 1)[..., None]
                tint = np.array([40, 200, 60], np.float32)
                img = np.where((v > 0)[..., None], (img * (1 - a) + tint * a).astype(np.uint8), img)
        img[occ] = (30, 30, 30)
        if frontiers:
            for f in frontiers:
                img[f.cells[:, 0], f.cells[:, 1]] = (60, 110, 255)

        def put(xy, color, radius_cells=1.0):
            rr, cc = self._disk_cells(xy, radius_cells * self.cell_size)
            img[rr, cc] = color

        if path is not None:
            pts = np.asarray(getattr(path, "waypoints", path), np.float64).reshape(-1, 2)
            if len(pts) > 1:
                seg = np.linspace(0, 1, 8)[:, None, None]
                dense = (pts[:-1][None] * (1 - seg) + pts[1:][None] * seg).reshape(-1, 2)
                pts = np.concatenate([dense, pts[-1:]])
            r, c = self.world_to_cell(pts)
            ok = self.in_bounds(r, c)
            img[r[ok], c[ok]] = (255, 140, 0)
        if goal is not None:
            g = np.asarray(goal, np.float64).reshape(2)
            if goal_radius:
                rr, cc = self._disk_cells(g, float(goal_radius))
                ring = np.zeros((h, w), bool)
                ring[rr, cc] = True
                ring &= ~ndimage.binary_erosion(ring)
                img[ring] = (220, 0, 0)
            put(g, (220, 0, 0), 2.0)
        for xy, color in (marks or []):
            put(np.asarray(xy, np.float64).reshape(2), tuple(int(v) for v in color), 2.0)
        if pose is not None:
            p = check_pose(pose)
            put(p[:2], (0, 170, 0), 3.0)
            for t in np.linspace(0, 0.35, 10):
                put(p[:2] + t * np.array([math.cos(p[2]), math.sin(p[2])]), (0, 110, 0), 0.8)
        if crop:
            keep = self.observed.copy()
            shown = [np.asarray(x, np.float64).reshape(-1, 2) for x in (
                None if pose is None else check_pose(pose)[:2], goal, *[m[0] for m in (marks or [])])
                if x is not None]
            rows, cols = np.nonzero(keep)
            if shown:
                mr, mc = self.world_to_cell(np.concatenate(shown))
                rows, cols = np.concatenate([rows, mr]), np.concatenate([cols, mc])
            if rows.size:
                m = int(round(margin_m / self.cell_size))
                r0, r1 = max(0, rows.min() - m), min(h, rows.max() + m + 1)
                c0, c1 = max(0, cols.min() - m), min(w, cols.max() + m + 1)
                img = img[r0:r1, c0:c1]
        if scale > 1:
            img = np.repeat(np.repeat(img, int(scale), 0), int(scale), 1)
        return np.ascontiguousarray(img)


# ----------------------------------------------------------------------------- frontier targets
def frontier_points(obstacle_map: ObstacleMap, min_size: int = 5, spacing_m: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Frontier cells thinned to one per ``spacing_m`` square: points (M, 2) and their cluster sizes (M,).

    A single frontier cluster can ring the whole explored area, so its centroid is no place to
    drive to; points along it are.
    """
    pts, sizes = [], []
    k = max(1, int(round(spacing_m / obstacle_map.cell_size)))
    for f in obstacle_map.frontiers(min_size):
        rc = np.asarray(f.cells)
        _, first = np.unique(rc // k, axis=0, return_index=True)
        rc = rc[np.sort(first)]
        pts.append(obstacle_map.cell_to_world(rc[:, 0], rc[:, 1]))
        sizes.append(np.full(len(rc), f.size))
    if not pts:
        return np.zeros((0, 2)), np.zeros(0, int)
    return np.concatenate(pts), np.concatenate(sizes)


def far_free_point(obstacle_map: ObstacleMap, visited: np.ndarray, rng: np.random.Generator,
                   n_samples: int = 256, min_m: float = 1.0) -> np.ndarray | None:
    """A free, non-inflated map point far from every visited position (of ``n_samples`` random free
    cells, the one maximising the distance to the nearest visited point), or None.

    The fallback when the map has no frontier left (the context tour mapped the whole scene):
    new viewpoints, not new map, are what is missing then.
    """
    free = obstacle_map.free & ~obstacle_map.inflated()
    rc = np.argwhere(free)
    if len(rc) == 0:
        return None
    rc = rc[rng.choice(len(rc), size=min(n_samples, len(rc)), replace=False)]
    pts = obstacle_map.cell_to_world(rc[:, 0], rc[:, 1])
    v = np.asarray(visited, np.float64).reshape(-1, 2)
    d = np.min(np.linalg.norm(pts[:, None] - v[None], axis=-1), axis=1) if len(v) else np.full(len(pts), np.inf)
    i = int(np.argmax(d))
    return pts[i] if d[i] >= min_m else None
