"""Where the agent can stand and how it moves: navigable grid, geodesic distance, collisions.

``NavGrid.from_scene`` derives a top-down occupancy grid from the scene mesh
alone (no generator-specific information, so user meshes work too), erodes it
by the agent radius, and answers the questions an embodied-navigation
environment asks on its hot path:

* ``is_navigable(xy)`` / ``try_move(xy, yaw, dist)``: the collision rule;
* ``geodesic_field(goals)`` / ``geodesic_distance(xy, goals)``: shortest-path
  distance to a goal set (metres, ``inf`` where unreachable);
* ``ShortestPathFollower``: discrete actions that follow that field.

Grid layout: cell (row, col) covers x in [x0 + col*s, x0 + (col+1)*s) and
y in [y0 + row*s, y0 + (row+1)*s) with s = ``cell_size``; row grows with +y.
``to_image`` flips rows so +y is up in the picture.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import open3d as o3d
from scipy import ndimage
from scipy.sparse.csgraph import dijkstra

from envs.actions import FORWARD_STEP_M, TURN_ANGLE_DEG, Action
from envs.grid_graph import MOVES_16, grid_graph
from envs.scene import Scene

# Worst-case ratio of the 16-connected grid path length to the Euclidean distance in
# open space: between neighbouring move directions a and b the best two-move path to a
# direction theta has length ratio (sin(b - theta) + sin(theta - a)) / sin(b - a),
# largest at theta = (a + b) / 2 for the widest gap, a = 0, b = atan(1/2):
# 2 sin(atan(1/2) / 2) / sin(atan(1/2)) = 1.0274.
GRID_METRIC_MAX_RATIO = 2 * math.sin(math.atan(0.5) / 2) / math.sin(math.atan(0.5))


class NavGrid:
    """A navigable-cell grid on the floor plane with geodesic distance fields.

    Attributes:
        navigable: (rows, cols) bool, cells where the agent's centre may be.
        free: (rows, cols) bool, floor cells with nothing in the agent's body column (before
            erosion by the radius).
        clearance: (rows, cols) float32, a lower bound (metres) on the distance from the cell
            centre to any non-free cell (0 on non-free cells); navigable = free & clearance
            >= agent_radius, so navigable cell centres keep the agent radius from obstacles.
        origin: (x0, y0) world corner of cell (0, 0); cell_size in metres; floor_z.
    """

    def __init__(self, navigable: np.ndarray, origin, cell_size: float, floor_z: float = 0.0,
                 agent_radius: float = 0.18, free: np.ndarray | None = None,
                 clearance: np.ndarray | None = None, cache_size: int = 32) -> None:
        nav = np.asarray(navigable, dtype=bool)
        if nav.ndim != 2:
            raise ValueError(f"navigable must be a 2-D bool grid, got shape {nav.shape}")
        if cell_size <= 0:
            raise ValueError(f"cell_size must be > 0, got {cell_size}")
        self.navigable = nav
        self.origin = np.asarray(origin, np.float64).reshape(2)
        self.cell_size = float(cell_size)
        self._inv_cs = 1.0 / self.cell_size
        self.floor_z = float(floor_z)
        self.agent_radius = float(agent_radius)
        self.free = nav.copy() if free is None else np.asarray(free, bool)
        self.clearance = (np.zeros(nav.shape, np.float32) if clearance is None
                          else np.asarray(clearance, np.float32))
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_size = int(cache_size)
        self._graph = None  # (csr matrix, node index grid), built on first geodesic query
        self._nearest_nav = None  # EDT indices to the nearest navigable cell (goal snapping)
        self._step_offsets: dict[tuple[float, float], np.ndarray] = {}
        self._nav_flat = self.navigable.reshape(-1)
        self._step_ks(FORWARD_STEP_M, 0.01)

    @property
    def shape(self) -> tuple[int, int]:
        return self.navigable.shape

    # -- construction from a mesh -----------------------------------------
    @classmethod
    def from_scene(cls, scene: Scene, cell_size: float = 0.05, agent_radius: float = 0.18,
                   agent_height: float = 1.5, floor_tolerance: float = 0.03, subsamples: int = 2,
                   largest_component: bool = True) -> "NavGrid":
        """Ray-cast the mesh into a navigable grid.

        Per cell, ``subsamples`` x ``subsamples`` vertical rays are cast downward from above
        the whole scene (one batched ``list_intersections`` call) and each hit is read with
        the sign of its triangle's normal z (+1 = upward-facing, i.e. entering a solid from
        above). A sample is *free floor* when
            * some upward-facing hit lies within ``floor_tolerance`` of ``floor_z``,
            * no surface lies in the agent's body column (floor_z + tol, floor_z + agent_height),
            * it is not inside a solid at body height: the summed signs of the hits above the
              column are <= 0 (a wall box that sits on the floor and reaches the ceiling has
              no surface in the column; this winding count catches it, and it does not care
              how ties between coplanar faces, e.g. wall bottom and floor top, are ordered).
        Horizontal rays at a few body heights along every sample row and column also mark
        cells crossed by vertical surfaces, so zero-thickness walls of scanned meshes count.
        A cell is free when all its samples are free; then
            clearance = EDT(free) * cell_size - cell_size / sqrt(2)
        (a lower bound on the distance from the cell centre to any point of a non-free cell:
        the nearest non-free centre is EDT * cell_size away and no point of its cell is more
        than half a diagonal from that centre)
            navigable = free & clearance >= agent_radius
        (scipy.ndimage.distance_transform_edt), optionally restricted to the largest
        8-connected component so that sampled starts can always reach each other.
        """
        if not isinstance(scene, Scene):
            raise TypeError(f"NavGrid.from_scene needs an envs.scene.Scene, got {type(scene).__name__}")
        for name, val in (("cell_size", cell_size), ("agent_height", agent_height)):
            if val <= 0:
                raise ValueError(f"{name} must be > 0, got {val}")
        if agent_radius < 0 or subsamples < 1:
            raise ValueError(f"need agent_radius >= 0 and subsamples >= 1, got {agent_radius}, {subsamples}")
        cs, ss, fz = float(cell_size), int(subsamples), float(scene.floor_z)
        lo, hi = scene.bounds
        pad = 2
        x0, y0 = float(lo[0]) - pad * cs, float(lo[1]) - pad * cs
        cols = int(math.ceil((float(hi[0]) - x0) / cs)) + pad
        rows = int(math.ceil((float(hi[1]) - y0) / cs)) + pad
        if rows * cols * ss * ss > 50_000_000:
            raise ValueError(
                f"scene {scene.scene_id}: a {rows}x{cols} grid at cell_size {cs} m is too large; "
                "raise cell_size or check the mesh units (metres expected)"
            )

        rs = o3d.t.geometry.RaycastingScene()
        rs.add_triangles(o3d.core.Tensor.from_numpy(scene.vertices),
                         o3d.core.Tensor.from_numpy(scene.triangles.astype(np.uint32)))
        v, t = scene.vertices.astype(np.float64), scene.triangles
        n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
        nz = n[:, 2] / np.maximum(np.linalg.norm(n, axis=1), 1e-12)
        # Near-vertical triangles are grazed by vertical rays: their sign is noise, weight 0.
        tri_sign = np.where(nz > 0.3, 1, np.where(nz < -0.3, -1, 0)).astype(np.int64)

        # Sample points: a regular sub-grid inside each cell, nudged off round coordinates so
        # rays do not run exactly along mesh edges (Embree may report an edge hit twice or not).
        sub = (np.arange(ss) + 0.5) / ss * cs + 1.234e-4
        xs = (x0 + np.arange(cols)[:, None] * cs + sub[None]).reshape(-1)  # col-major within cell
        ys = (y0 + np.arange(rows)[:, None] * cs + sub[None]).reshape(-1)
        gx, gy = np.meshgrid(xs, ys)  # (rows*ss, cols*ss)
        z_top = float(hi[2]) + 1.0
        nr = gx.size
        rays = np.zeros((nr, 6), np.float32)
        rays[:, 0], rays[:, 1], rays[:, 2], rays[:, 5] = gx.ravel(), gy.ravel(), z_top, -1.0
        hits = rs.list_intersections(o3d.core.Tensor.from_numpy(rays))
        rid = hits["ray_ids"].numpy().astype(np.int64)
        z = z_top - hits["t_hit"].numpy().astype(np.float64)
        sgn = tri_sign[hits["primitive_ids"].numpy().astype(np.int64)]
        # One hit per (ray, height, sign): a ray through a shared edge is reported once.
        key = (rid << 34) | (np.round((z - fz + 100.0) * 1e4).astype(np.int64) << 2) | (sgn + 1)
        _, first = np.unique(key, return_index=True)
        rid, z, sgn = rid[first], z[first], sgn[first]

        band_lo, band_hi = fz + floor_tolerance, fz + agent_height
        in_body = (z > band_lo) & (z < band_hi)
        body = np.bincount(rid[in_body], minlength=nr) > 0
        above = z >= band_hi
        winding = np.bincount(rid[above], weights=sgn[above], minlength=nr)
        floor_hit = (np.abs(z - fz) <= floor_tolerance) & (sgn > 0)
        has_floor = np.bincount(rid[floor_hit], minlength=nr) > 0
        blocked = body | (winding > 0.5)
        sample_free = has_floor & ~blocked

        def per_cell(a: np.ndarray, how) -> np.ndarray:
            return how(a.reshape(rows, ss, cols, ss), axis=(1, 3))

        free = per_cell(sample_free, np.all)
        obstacle = per_cell(blocked, np.any)
        obstacle |= cls._vertical_surfaces(rs, x0, y0, rows, cols, cs, sub, fz, floor_tolerance,
                                           agent_height, float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
        free &= ~obstacle
        if not free.any():
            raise ValueError(
                f"scene {scene.scene_id}: no free floor found at floor_z={fz} (+-{floor_tolerance} m). "
                "Check that floor_z matches the mesh floor, the mesh is z-up in metres, and floor "
                "triangles face up (+z normal by counter-clockwise winding)."
            )
        clearance = np.where(free, ndimage.distance_transform_edt(free) * cs - cs / math.sqrt(2), 0.0)
        navigable = free & (clearance >= agent_radius - 1e-9)
        if largest_component and navigable.any():
            labels, count = ndimage.label(navigable, structure=np.ones((3, 3), bool))
            if count > 1:
                sizes = np.bincount(labels.ravel())
                sizes[0] = 0
                navigable = labels == int(np.argmax(sizes))
        if not navigable.any():
            raise ValueError(
                f"scene {scene.scene_id}: free floor exists but no cell has {agent_radius} m clearance; "
                "lower agent_radius or cell_size"
            )
        return cls(navigable, (x0, y0), cs, fz, agent_radius, free=free,
                   clearance=clearance.astype(np.float32))

    @staticmethod
    def _vertical_surfaces(rs, x0, y0, rows, cols, cs, sub, fz, tol, agent_height,
                           xmin, xmax, ymin, ymax) -> np.ndarray:
        """Cells crossed by any surface met by horizontal rays at body heights."""
        heights = fz + np.array([0.1, 0.35, 0.7, 1.0, 1.3, 1.6, 1.9])
        heights = heights[(heights > fz + tol) & (heights < fz + agent_height)]
        mark = np.zeros((rows, cols), bool)
        if len(heights) == 0:
            return mark
        ys = (y0 + np.arange(rows)[:, None] * cs + sub[None]).reshape(-1)
        xs = (x0 + np.arange(cols)[:, None] * cs + sub[None]).reshape(-1)
        sx, sy = xmin - 1.0, ymin - 1.0
        ry = np.array([[sx, y, h, 1, 0, 0] for h in heights for y in ys], np.float32)
        rx = np.array([[x, sy, h, 0, 1, 0] for h in heights for x in xs], np.float32)
        for rays, along_x in ((ry, True), (rx, False)):
            hit = rs.list_intersections(o3d.core.Tensor.from_numpy(rays))
            rid = hit["ray_ids"].numpy().astype(np.int64)
            th = hit["t_hit"].numpy().astype(np.float64)
            if along_x:
                r = np.floor((rays[rid, 1] - y0) / cs).astype(np.int64)
                c = np.floor((sx + th - x0) / cs).astype(np.int64)
            else:
                c = np.floor((rays[rid, 0] - x0) / cs).astype(np.int64)
                r = np.floor((sy + th - y0) / cs).astype(np.int64)
            ok = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
            mark[r[ok], c[ok]] = True
        return mark

    # -- coordinates -------------------------------------------------------
    def world_to_cell(self, xy) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) integer index arrays of the cells containing xy ((2,) or (N, 2)).

        Every look-up in this class uses this same float expression, floor((p - origin) *
        (1 / cell_size)), so a point's cell never differs between two methods.
        """
        p = np.asarray(xy, np.float64)
        col = np.floor((p[..., 0] - self.origin[0]) * self._inv_cs).astype(np.int64)
        row = np.floor((p[..., 1] - self.origin[1]) * self._inv_cs).astype(np.int64)
        return row, col

    def cell_to_world(self, rc) -> np.ndarray:
        """World xy of cell centres; rc is (row, col) arrays or an (N, 2) / (2,) array."""
        if isinstance(rc, tuple):
            row, col = (np.asarray(a, np.float64) for a in rc)
        else:
            a = np.asarray(rc, np.float64)
            row, col = a[..., 0], a[..., 1]
        return np.stack([self.origin[0] + (col + 0.5) * self.cell_size,
                         self.origin[1] + (row + 0.5) * self.cell_size], -1)

    def _lookup(self, grid: np.ndarray, xy, fill):
        row, col = self.world_to_cell(xy)
        rows, cols = grid.shape
        inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        if inside.all():
            return grid[row, col]
        return np.where(inside, grid[np.clip(row, 0, rows - 1), np.clip(col, 0, cols - 1)], fill)

    def is_navigable(self, xy):
        """Whether the cell containing xy is navigable: bool for (2,), bool array for (N, 2)."""
        out = self._lookup(self.navigable, xy, False)
        return bool(out) if np.ndim(out) == 0 else out

    # -- movement ------------------------------------------------------------
    def try_move(self, xy, yaw: float, dist: float = FORWARD_STEP_M,
                 substep: float = 0.01) -> tuple[np.ndarray, bool]:
        """Collision rule for a forward step (no sliding, as habitat with allow_sliding=False).

        The centre moves along (cos yaw, sin yaw) in ``ceil(dist / substep)`` equal sub-steps
        and stops at the last sub-step position that is navigable; ``collided`` is True when
        it stopped short. The result is therefore always navigable (or the start itself when
        the very first sub-step is blocked), and it cannot tunnel through a wall: after
        erosion every wall is at least 2 * agent_radius + its thickness wide in
        non-navigable cells, far more than one 1 cm sub-step. A start that is itself not
        navigable cannot move.
        """
        ks = self._step_offsets.get((float(dist), float(substep)))
        if ks is None or len(xy) != 2:
            new, collided = self.try_move_many(xy, np.array([yaw], np.float64), dist, substep)
            return new[0], bool(collided[0])
        # Scalar fast path (env.step's hot path): one vectorised look-up of all sub-steps.
        x, y = float(xy[0]), float(xy[1])
        c, s = math.cos(yaw), math.sin(yaw)
        inv, (ox, oy) = self._inv_cs, self.origin
        rows, cols = self.navigable.shape
        ex, ey = x + c * float(ks[-1]), y + s * float(ks[-1])
        r0, c0 = math.floor((y - oy) * inv), math.floor((x - ox) * inv)
        r1, c1 = math.floor((ey - oy) * inv), math.floor((ex - ox) * inv)
        if not (0 <= r0 < rows and 0 <= c0 < cols and 0 <= r1 < rows and 0 <= c1 < cols):
            new, collided = self.try_move_many(xy, np.array([yaw], np.float64), dist, substep)
            return new[0], bool(collided[0])
        if not self.navigable[r0, c0]:
            return np.array([x, y]), True
        # start and end inside the rectangle => every sub-step is inside too
        px, py = x + ks * c, y + ks * s
        cc = np.floor((px - ox) * inv).astype(np.int64)
        rr = np.floor((py - oy) * inv).astype(np.int64)
        ok = self._nav_flat[rr * cols + cc]
        if ok.all():
            return np.array([px[-1], py[-1]]), False
        j = int(np.argmin(ok))  # first blocked sub-step
        if j == 0:
            return np.array([x, y]), True
        return np.array([px[j - 1], py[j - 1]]), True

    def try_move_many(self, xy, yaws, dist: float = FORWARD_STEP_M,
                      substep: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
        """``try_move`` from one position along several headings: (M, 2) positions, (M,) collided."""
        if dist < 0 or substep <= 0:
            raise ValueError(f"need dist >= 0 and substep > 0, got dist={dist}, substep={substep}")
        p = np.asarray(xy, np.float64).reshape(2)
        yaws = np.asarray(yaws, np.float64).reshape(-1)
        ks = self._step_ks(dist, substep)
        if not self.is_navigable(p):
            return np.repeat(p[None], len(yaws), 0), np.ones(len(yaws), bool)
        d = np.stack([np.cos(yaws), np.sin(yaws)], -1)  # (M, 2)
        pts = p + ks[None, :, None] * d[:, None, :]  # (M, n, 2)
        ok = self._lookup(self.navigable, pts, False)  # (M, n)
        n = ok.shape[1]
        # index of the first blocked sub-step (n when the whole step is free)
        first_bad = np.where(ok.all(1), n, np.argmin(ok, axis=1))
        last_ok = np.maximum(first_bad - 1, 0)
        out = np.where((first_bad > 0)[:, None], pts[np.arange(len(yaws)), last_ok], p)
        return out, first_bad < n

    def _step_ks(self, dist: float, substep: float) -> np.ndarray:
        """Sub-step offsets (metres along the heading) for a move of ``dist``."""
        key = (float(dist), float(substep))
        ks = self._step_offsets.get(key)
        if ks is None:
            n = max(1, int(math.ceil(dist / substep - 1e-9)))
            ks = self._step_offsets[key] = np.arange(1, n + 1) * (dist / n)
        return ks

    def sample_navigable(self, rng=None, n: int = 1) -> np.ndarray:
        """n uniformly random navigable positions (N, 2): a random navigable cell, then a
        uniform point inside it (so the point itself is navigable)."""
        rng = np.random.default_rng(rng)
        rr, cc = np.nonzero(self.navigable)
        pick = rng.integers(0, len(rr), size=int(n))
        jitter = rng.uniform(0.001, 0.999, size=(int(n), 2)) * self.cell_size
        return np.stack([self.origin[0] + cc[pick] * self.cell_size + jitter[:, 0],
                         self.origin[1] + rr[pick] * self.cell_size + jitter[:, 1]], -1)

    # -- geodesic distance ---------------------------------------------------
    def _build_graph(self):
        self._graph = grid_graph(self.navigable, MOVES_16, self.cell_size)

    def _goal_nodes(self, goals_xy) -> np.ndarray:
        g = np.asarray(goals_xy, np.float64)
        if g.ndim == 1:
            g = g[None]
        if g.ndim != 2 or g.shape[1] < 2 or len(g) == 0:
            raise ValueError(f"goals_xy must be a non-empty (K, 2) array (extra columns ignored), got {g.shape}")
        g = g[:, :2]
        if not np.isfinite(g).all():
            raise ValueError("goals_xy contains NaN or inf")
        rows, cols = self.shape
        row, col = self.world_to_cell(g)
        row, col = np.clip(row, 0, rows - 1), np.clip(col, 0, cols - 1)
        off = ~self.navigable[row, col]
        if off.any():  # snap goals off the navigable area to the nearest navigable cell
            if self._nearest_nav is None:
                self._nearest_nav = ndimage.distance_transform_edt(
                    ~self.navigable, return_distances=False, return_indices=True)
            row[off], col[off] = self._nearest_nav[0][row[off], col[off]], self._nearest_nav[1][row[off], col[off]]
        return np.unique(self._graph[1][row, col])

    def geodesic_field(self, goals_xy) -> np.ndarray:
        """(rows, cols) float64 shortest-path distance (metres) from every cell to the goal set.

        Exact shortest paths on the 16-connected graph of navigable cells (straight,
        diagonal and knight moves between cell centres; a move is allowed only if every cell
        its segment crosses is navigable), multi-source Dijkstra
        (scipy.sparse.csgraph.dijkstra, min_only=True) from the goal cells. In open space it
        overestimates the Euclidean distance by at most GRID_METRIC_MAX_RATIO - 1 = 2.74%,
        plus up to half a cell diagonal at the goal end from snapping goals to cell centres
        (the query end is exact, see ``field_distance``); around a convex corner the path
        must also stay on whole navigable cells, which adds about a cell per corner. Grid
        paths are never shorter than the continuous shortest path between cell centres. Goals
        outside the navigable area are snapped to the nearest navigable cell. Non-navigable
        and unreachable cells hold inf. Fields are cached (LRU) per goal-cell set.
        """
        if self._graph is None:
            self._build_graph()
        nodes = self._goal_nodes(goals_xy)
        key = nodes.tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        graph, node = self._graph
        dist = dijkstra(graph, directed=True, indices=nodes, min_only=True)
        field = np.full(self.shape, np.inf)
        field[self.navigable] = dist
        field.setflags(write=False)
        self._cache[key] = field
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return field

    def field_distance(self, field: np.ndarray, xy):
        """Distance of continuous points xy ((2,) or (N, 2)) in a geodesic field.

        d(xy) = min over the 3x3 cells around xy of field[cell] + |xy - centre(cell)|: one
        straight hop to a nearby cell centre (these hops stay within 1.5 cells of a navigable
        cell, hence clear of obstacles), so d is continuous in xy and 0 only near goal cells.
        inf when no neighbouring cell is reachable. A single point (2,) is evaluated with
        scalar math (the env's per-step hot path; ~10x cheaper than the vectorised loop).
        """
        p = np.asarray(xy, np.float64)
        if p.ndim == 1:
            return self._point_field_distance(field, float(p[0]), float(p[1]))
        p = p.reshape(-1, 2)
        row, col = self.world_to_cell(p)
        rows, cols = self.shape
        best = np.full(len(p), np.inf)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = row + dr, col + dc
                inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
                rc, cc = np.clip(r, 0, rows - 1), np.clip(c, 0, cols - 1)
                f = np.where(inside, field[rc, cc], np.inf)
                cx = self.origin[0] + (cc + 0.5) * self.cell_size
                cy = self.origin[1] + (rc + 0.5) * self.cell_size
                best = np.minimum(best, f + np.hypot(p[:, 0] - cx, p[:, 1] - cy))
        return best

    def _point_field_distance(self, field: np.ndarray, x: float, y: float) -> float:
        """``field_distance`` for one point, in scalar math (same cells, same formula)."""
        cs = self.cell_size
        ox, oy = float(self.origin[0]), float(self.origin[1])
        col = math.floor((x - ox) * self._inv_cs)  # world_to_cell's expression
        row = math.floor((y - oy) * self._inv_cs)
        rows, cols = field.shape
        best = math.inf
        for r in (row - 1, row, row + 1):
            if r < 0 or r >= rows:
                continue
            cy = oy + (r + 0.5) * cs
            for c in (col - 1, col, col + 1):
                if c < 0 or c >= cols:
                    continue
                f = field[r, c]
                if f < best:
                    d = f + math.hypot(x - (ox + (c + 0.5) * cs), y - cy)
                    if d < best:
                        best = d
        return float(best)

    def geodesic_distance(self, xy, goals_xy):
        """Geodesic distance (metres) from xy ((2,) or (N, 2)) to the nearest goal; inf if unreachable."""
        return self.field_distance(self.geodesic_field(goals_xy), xy)

    # -- pictures ------------------------------------------------------------
    def to_image(self, field: np.ndarray | None = None) -> np.ndarray:
        """Top-down RGB uint8 map (+y up): navigable white (or shaded by a geodesic field,
        near = dark blue, far = white), free but within agent_radius of an obstacle light grey,
        obstacles dark grey, outside black."""
        img = np.zeros(self.shape + (3,), np.uint8)
        img[~self.free] = 0
        # Obstacle-ish: not free but near free floor (inside the building).
        near_free = ndimage.binary_dilation(self.free, iterations=3)
        img[near_free & ~self.free] = 70
        img[self.free & ~self.navigable] = 170
        img[self.navigable] = 255
        if field is not None:
            f = np.asarray(field, np.float64)
            fin = np.isfinite(f) & self.navigable
            if fin.any():
                t = f[fin] / max(float(f[fin].max()), 1e-9)
                img[fin] = np.stack([60 + 195 * t, 60 + 195 * t, np.full_like(t, 255)], -1).astype(np.uint8)
        return img[::-1].copy()


class ShortestPathFollower:
    """Discrete actions that follow a NavGrid's geodesic field to a goal set.

    Each call looks one forward step ahead along the 360/turn_deg reachable headings
    (through ``try_move``, so collisions are accounted for) and scores each by the drop in
    geodesic distance. It moves forward when the current heading is within ``tolerance``
    metres of the best drop, otherwise turns toward the best heading by the shorter side
    (ties: fewer turns, then left; the best absolute heading does not change while turning
    in place, so it never oscillates). When no single step gets closer (the agent sits in
    a notch of the grid's staircase boundary, where every helpful step is blocked at once),
    it looks two steps ahead. It emits STOP once the geodesic distance is
    <= ``stop_distance``, when the goal set is unreachable, or when no one- or two-step move
    makes progress (a goal set too sparse to get within ``stop_distance`` of with full steps:
    with 0.25 m steps and 30 deg turns, goal sets should be dense navigable regions).
    """

    def __init__(self, grid: NavGrid, goals_xy, stop_distance: float = 0.1,
                 forward_m: float = FORWARD_STEP_M, turn_deg: float = TURN_ANGLE_DEG,
                 tolerance: float = 0.01) -> None:
        if stop_distance < 0:
            raise ValueError(f"stop_distance must be >= 0, got {stop_distance}")
        n_turns = 360.0 / turn_deg
        if abs(n_turns - round(n_turns)) > 1e-6:
            raise ValueError(f"turn_deg must divide 360, got {turn_deg}")
        self.grid = grid
        self.field = grid.geodesic_field(goals_xy)
        self.stop_distance = float(stop_distance)
        self.forward_m = float(forward_m)
        self.turn = math.radians(turn_deg)
        self.tolerance = float(tolerance)
        n = int(round(n_turns))
        # Relative turns considered: 0, +1 (left), -1, +2, -2, ... ; order = tie-break order.
        ks = [0]
        for k in range(1, n // 2 + 1):
            ks.append(k)
            if len(ks) < n:
                ks.append(-k)
        self._ks = np.array(ks[:n])

    def distance(self, xy) -> float:
        """Geodesic distance (metres) from xy to the goal set."""
        return self.grid.field_distance(self.field, xy)

    def _two_step(self, xy, yaws: np.ndarray, first: np.ndarray, d0: float) -> int:
        """Index of the first heading of the best two-step move, or -1 if none gets closer."""
        p = np.asarray(xy, np.float64).reshape(2)
        best, best_d = -1, d0 - 1e-6
        for i, q in enumerate(first):
            if np.allclose(q, p):
                continue
            second, _ = self.grid.try_move_many(q, yaws, self.forward_m)
            d2 = float(np.min(self.grid.field_distance(self.field, second)))
            if d2 < best_d - 1e-9:
                best, best_d = i, d2
        return best

    def next_action(self, xy, yaw: float) -> int:
        d0 = self.distance(xy)
        if d0 <= self.stop_distance or not np.isfinite(d0):
            return int(Action.STOP)
        yaws = float(yaw) + self._ks * self.turn
        new, _ = self.grid.try_move_many(xy, yaws, self.forward_m)
        gain = d0 - self.grid.field_distance(self.field, new)
        best = int(np.argmax(gain))  # first maximum = fewest turns, left before right
        if gain[best] <= 1e-6:
            # Stuck in a notch of the cell staircase (every step that would help is blocked
            # at once): look two steps ahead and take the first step of the best pair.
            best = self._two_step(xy, yaws, new, d0)
            if best < 0:
                return int(Action.STOP)
            if best == 0:
                return int(Action.MOVE_FORWARD)
            return int(Action.TURN_LEFT if self._ks[best] > 0 else Action.TURN_RIGHT)
        if gain[0] >= gain[best] - self.tolerance and gain[0] > 1e-6:
            return int(Action.MOVE_FORWARD)
        return int(Action.TURN_LEFT if self._ks[best] > 0 else Action.TURN_RIGHT)
