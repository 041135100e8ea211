"""Egocentric RGB-D / instance / semantic rendering by CPU ray casting (open3d + Embree).

The whole scene goes into one ``RaycastingScene`` as ONE mesh, so the
``primitive_ids`` Embree returns index the scene's triangles directly and every
per-pixel output is a single gather from a per-triangle table.

Camera model (pinhole, square pixels, as habitat-sim's default sensor):

    fx = fy = (W / 2) / tan(hfov / 2),  cx = W / 2,  cy = H / 2
    pixel (row r, col c) looks along camera-frame (right, up, forward) =
        ((c + 0.5 - cx) / fx,  -(r + 0.5 - cy) / fy,  1)

Row 0 is the top of the view and column 0 its left. Because every ray has
forward component exactly 1 in the camera frame (and rotations preserve that
component along the rotated forward axis), the ray parameter ``t_hit`` *is* the
z-depth: depth = t_hit * (dir . forward) = t_hit.

World frame z-up; a pose (x, y, yaw) puts the camera at
(x, y, floor_z + sensor_height) looking along (cos yaw, sin yaw, 0), tilted by
an optional pitch (radians, positive looks up).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import open3d as o3d

from envs.scene import Scene

OUTPUTS = ("rgb", "depth", "instance", "semantic")
# Single-pose ray buffers kept per view direction (Renderer._rays_one): 12 at 128x128 (4.7 MB),
# fewer for larger images, always at least one.
_VIEW_CACHE_MAX = 12
_VIEW_CACHE_BYTES = 8 << 20
_INVALID = np.uint32(o3d.t.geometry.RaycastingScene.INVALID_ID)


def _as_poses(poses) -> np.ndarray:
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"poses must be (3,) or (N, 3) [x, y, yaw], got shape {np.shape(poses)}")
    if not np.isfinite(p).all():
        raise ValueError("poses contain NaN or inf")
    return p


def _as_outputs(outputs) -> tuple[str, ...]:
    """The requested render outputs as a tuple (one name or a sequence); unknown names raise."""
    if isinstance(outputs, str):
        outputs = (outputs,)
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad:
        raise ValueError(f"unknown render outputs {bad}; choose from {OUTPUTS}")
    return tuple(outputs)


def camera_rotations(yaw: np.ndarray, pitch: np.ndarray | None = None) -> np.ndarray:
    """World-from-camera rotations (N, 3, 3) with camera axes (right, up, forward) as columns.

    forward = (cos p cos y, cos p sin y, sin p),  right = (sin y, -cos y, 0),
    up = right x forward = (-sin p cos y, -sin p sin y, cos p).
    """
    yaw = np.asarray(yaw, np.float64)
    p = np.zeros_like(yaw) if pitch is None else np.asarray(pitch, np.float64)
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(p), np.sin(p)
    r = np.empty(yaw.shape + (3, 3))
    r[..., :, 0] = np.stack([sy, -cy, np.zeros_like(yaw)], -1)  # right
    r[..., :, 1] = np.stack([-sp * cy, -sp * sy, cp], -1)  # up
    r[..., :, 2] = np.stack([cp * cy, cp * sy, sp], -1)  # forward
    return r


def _pack_words(words: np.ndarray) -> np.ndarray:
    """(P,) uint32 words whose memory bytes are (r, g, b, x) -> a fresh (P, 3) uint8 array of (r, g, b)."""
    p = words.shape[0]
    out = np.empty(3 * p + 1, np.uint8)
    np.ndarray((p,), np.uint32, out.data, 0, (3,))[...] = words  # in order: word i+1 overwrites byte 3i+3
    return out[: 3 * p].reshape(p, 3)


@functools.lru_cache(maxsize=1)
def _strided_words_ok() -> bool:
    """Whether _pack_words is exact with this numpy (it relies on in-order element copies)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4099, 3), dtype=np.uint8)
    rgb0 = np.zeros((len(rgb), 4), np.uint8)
    rgb0[:, :3] = rgb
    rgb0[:, 3] = 255  # a wrong order would leave these bytes in the result
    return bool(np.array_equal(_pack_words(rgb0.view(np.uint32).reshape(-1)), rgb))


class Renderer:
    """Renders many agent poses of one scene with one ``cast_rays`` call.

    Args:
        scene: the Scene to render (its triangles become one Embree mesh).
        width, height: image size in pixels.
        hfov_deg: horizontal field of view (79 deg = habitat ObjectNav).
        sensor_height: camera height above ``scene.floor_z`` in metres.
        max_depth: depth beyond this (and misses) reads 0, as habitat's depth sensor.
        threads: Embree threads per cast; None = all cores.
        background: RGB of pixels whose ray hits nothing.
    """

    def __init__(self, scene: Scene, width: int = 128, height: int = 128, hfov_deg: float = 79.0,
                 sensor_height: float = 0.88, max_depth: float = 10.0, threads: int | None = None,
                 background: Sequence[int] = (0, 0, 0)) -> None:
        if not isinstance(scene, Scene):
            raise TypeError(f"Renderer needs an envs.scene.Scene, got {type(scene).__name__}")
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"width and height must be >= 1, got {width}x{height}")
        if not 0.0 < float(hfov_deg) < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
        if float(max_depth) <= 0:
            raise ValueError(f"max_depth must be > 0, got {max_depth}")
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1 or None (all cores), got {threads}")
        self.scene = scene
        self.width, self.height = int(width), int(height)
        self.hfov_deg = float(hfov_deg)
        self.sensor_height = float(sensor_height)
        self.max_depth = float(max_depth)
        self.threads = threads
        self._nthreads = 0 if threads is None else int(threads)  # 0 = Embree's automatic choice

        # Intrinsics (square pixels; vertical FOV follows from the aspect ratio).
        self.fx = self.fy = (self.width / 2.0) / np.tan(np.radians(self.hfov_deg) / 2.0)
        self.cx, self.cy = self.width / 2.0, self.height / 2.0
        cols = (np.arange(self.width) + 0.5 - self.cx) / self.fx
        rows = -(np.arange(self.height) + 0.5 - self.cy) / self.fy
        right, up = np.meshgrid(cols, rows)  # (H, W): row 0 = top, col 0 = left
        # Camera-frame directions (right, up, forward=1), one row per pixel.
        self._cam_dirs = np.stack([right, up, np.ones_like(right)], -1).reshape(-1, 3).astype(np.float32)

        self._rs = o3d.t.geometry.RaycastingScene(nthreads=self._nthreads)
        self._rs.add_triangles(
            o3d.core.Tensor.from_numpy(scene.vertices),
            o3d.core.Tensor.from_numpy(scene.triangles.astype(np.uint32)),
        )
        # Per-triangle tables with one extra row for misses (index F).
        nf = scene.num_triangles
        self._nf = nf
        bg = np.asarray(background, np.int64).reshape(3)
        if (bg < 0).any() or (bg > 255).any():
            raise ValueError(f"background must be an RGB triple in 0..255, got {background}")
        self._color = np.vstack([scene.tri_color, bg.astype(np.uint8)[None]])
        # The same colours as one 4-byte word per row (bytes r, g, b, 0 in memory): see _gather_rgb.
        rgb0 = np.zeros((nf + 1, 4), np.uint8)
        rgb0[:, :3] = self._color
        self._color32 = rgb0.view(np.uint32).reshape(-1)
        self._word_buf: np.ndarray | None = None  # reused gathered words of the last batch size
        self._instance = np.append(scene.tri_instance, np.int32(0)).astype(np.int32)
        self._semantic = np.append(scene.tri_semantic, np.int32(0)).astype(np.int32)
        self._buf: np.ndarray | None = None  # reused rays buffer for the last batch size (N > 1)
        # Single-pose rays per view (see _rays_one): (yaw, pitch, z) -> [(1, P, 6) rays, their (x, y)],
        # least recently used first; at most _VIEW_CACHE_BYTES of rays, 1 to _VIEW_CACHE_MAX views.
        self._views: OrderedDict[tuple[float, float, float], list] = OrderedDict()
        self._max_views = max(1, min(_VIEW_CACHE_MAX, _VIEW_CACHE_BYTES // (self.width * self.height * 24)))
        self._idx: np.ndarray | None = None  # reused int64 triangle indices of the last batch size
        self._miss: np.ndarray | None = None  # reused bool buffer of the depth's "no valid hit" pixels
        self._m1 = np.zeros((3, 6), np.float32)  # per-pose ray matrix of the single-pose path
        self._tri_ranges: dict[int, tuple[np.uint32, np.uint32] | None] = {}  # see _instance_pixels

    # -- camera ----------------------------------------------------------
    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole matrix K (pixel centres at +0.5; y down in the image)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def camera_z(self) -> float:
        return float(self.scene.floor_z + self.sensor_height)

    def _rays(self, poses: np.ndarray, pitch) -> np.ndarray:
        """Rays (N, H*W, 6) float32 for N poses, written into a reused buffer.

        One matmul builds origins and directions together: each pixel's row is its
        camera-frame direction h = (a, b, 1) (a right, b up, forward 1) and each pose has a
        (3, 6) matrix M with rows (0, 0, 0, right), (0, 0, 0, up), (position, forward) in
        world coordinates, so h @ M = (position, a * right + b * up + forward) = one ray.
        """
        n, p = len(poses), len(self._cam_dirs)
        if n == 1 and (pitch is None or np.size(pitch) == 1):
            return self._rays_one(poses[0], 0.0 if pitch is None else float(np.reshape(pitch, -1)[0]))
        if self._buf is None or self._buf.shape[0] != n:
            self._buf = np.empty((n, p, 6), np.float32)
        if pitch is None:
            pit = None
        else:
            pit = np.asarray(pitch, np.float64).reshape(-1)
            if pit.size not in (1, n):
                raise ValueError(f"pitch must be a scalar or hold one value per pose ({n}), got {pit.size}")
            pit = np.broadcast_to(pit, (n,))
            if not np.isfinite(pit).all():
                raise ValueError("pitch contains NaN or inf")
        rot = camera_rotations(poses[:, 2], pit)  # (N, 3, 3), columns right, up, forward
        m = np.zeros((n, 3, 6), np.float32)
        m[:, :, 3:] = rot.transpose(0, 2, 1)  # d = right*r + up*u + forward*1
        m[:, 2, 0], m[:, 2, 1], m[:, 2, 2] = poses[:, 0], poses[:, 1], self.camera_z  # o = 1 * pos
        np.matmul(self._cam_dirs[None], m, out=self._buf)
        return self._buf

    def _rays_one(self, pose: np.ndarray, pitch: float) -> np.ndarray:
        """The single-pose case of ``_rays`` (env.step's hot path): (1, P, 6) rays.

        A step changes either the position (a forward move: same view direction) or the view (a
        turn, usually back to one of the 12 headings 30 degrees apart that the agent has already
        faced), so the rays of the last few views are kept, keyed by (yaw, pitch, camera z).
        A known view only rewrites its origins' x and y: a ray is 6 float32 = 3 uint64 words and
        (x, y) is the first, so that is one word per ray (numpy's broadcast of a 3-vector into
        the strided (P, 3) origin slice costs ~10x more). A new view is one (P, 3) @ (3, 6)
        matmul with scalar maths for its matrix. Either way the rays are bit for bit those a
        fresh renderer builds for the same pose (tests/test_renderer.py).
        """
        if not math.isfinite(pitch):
            raise ValueError("pitch contains NaN or inf")
        x, y, yaw = float(pose[0]), float(pose[1]), float(pose[2])
        z = self.camera_z
        key = (yaw, pitch, z)
        entry = self._views.get(key)
        if entry is not None:
            self._views.move_to_end(key)
            buf = entry[0]
            if entry[1] != (x, y):
                buf[0].view(np.uint64)[:, 0] = np.array((x, y), np.float32).view(np.uint64)[0]
                entry[1] = (x, y)
            return buf
        if len(self._views) >= self._max_views:
            buf = self._views.popitem(last=False)[1][0]  # reuse the least recently used view's array
        else:
            buf = np.empty((1, len(self._cam_dirs), 6), np.float32)
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        m = self._m1
        m[0, 3:] = (sy, -cy, 0.0)  # right
        m[1, 3:] = (-sp * cy, -sp * sy, cp)  # up
        m[2, 3:] = (cp * cy, cp * sy, sp)  # forward
        m[2, :3] = (x, y, z)
        np.matmul(self._cam_dirs, m, out=buf[0])
        self._views[key] = [buf, (x, y)]
        return buf

    # -- rendering -------------------------------------------------------
    def cast(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        """Raw ``cast_rays`` on a float32 (..., 6) array; returns t_hit and primitive_ids as numpy."""
        rays = np.ascontiguousarray(rays, np.float32)
        out = self._rs.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=self._nthreads)
        return {"t_hit": out["t_hit"].numpy(), "primitive_ids": out["primitive_ids"].numpy()}

    def render(self, poses, pitch=None, outputs: Sequence[str] = ("rgb", "depth"),
               count_instance: int | None = None) -> dict[str, np.ndarray]:
        """Render poses (N, 3) or (3,) [x, y, yaw]; pitch (N,) or scalar radians, + looks up.

        Returns the requested subset of rgb (N,H,W,3) uint8, depth (N,H,W) float32 z-depth in
        metres (0 = miss or beyond max_depth), instance (N,H,W) int32 and semantic (N,H,W)
        int32 (0 = miss). The leading N is kept even for a single (3,) pose.

        ``count_instance``: an instance id; the result then also holds ``instance_pixels`` (N,)
        int64, how many pixels of each image show that instance, from the same cast (equal to
        ``(render(..., outputs="instance")["instance"] == id).sum((1, 2))`` without building the
        instance image).
        """
        outputs = _as_outputs(outputs)
        poses = _as_poses(poses)
        n, h, w = len(poses), self.height, self.width
        rays = self._rays(poses, pitch)
        hit = self._rs.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=self._nthreads)
        res: dict[str, np.ndarray] = {}
        if "depth" in outputs:
            # t is z-depth (forward component of every ray is 1). A pixel keeps it where
            # t <= max_depth and reads 0 elsewhere (a miss is inf, and NaN fails the test too):
            # copy, then zero the few failing pixels, with a reused mask (cheaper than np.where).
            depth = hit["t_hit"].numpy().reshape(n, h, w).copy()
            if self._miss is None or self._miss.shape != depth.shape:
                self._miss = np.empty(depth.shape, bool)
            miss = self._miss
            np.less_equal(depth, self.max_depth, out=miss)
            np.logical_not(miss, out=miss)
            depth[miss] = 0.0
            res["depth"] = depth
        prim = hit["primitive_ids"].numpy().reshape(-1)
        if "rgb" in outputs or "instance" in outputs or "semantic" in outputs:
            # mode="clip" maps INVALID_ID (uint32 max) to F, the extra "miss" row of every
            # table, with no separate pass; int64 indices keep np.take on its fast path. They go
            # into a reused buffer: a fresh 8-byte-per-pixel array every step costs more than the gather.
            if self._idx is None or self._idx.shape != prim.shape:
                self._idx = np.empty(prim.shape, np.int64)
            idx = self._idx
            np.copyto(idx, prim, casting="unsafe")
            if "rgb" in outputs:
                res["rgb"] = self._gather_rgb(idx).reshape(n, h, w, 3)
            if "instance" in outputs:
                res["instance"] = np.take(self._instance, idx, mode="clip").reshape(n, h, w)
            if "semantic" in outputs:
                res["semantic"] = np.take(self._semantic, idx, mode="clip").reshape(n, h, w)
        out = {k: res[k] for k in outputs}
        if count_instance is not None:
            out["instance_pixels"] = self._instance_pixels(prim.reshape(n, h * w), count_instance)
        return out

    def _gather_rgb(self, idx: np.ndarray) -> np.ndarray:
        """``self._color[idx]`` as a fresh (P, 3) uint8 array, at about half the cost of ``np.take``.

        numpy has no fast path for 3-byte items (each pixel is a small memmove); 4-byte items
        have one. So the colours are gathered as words (r, g, b, 0) and then written, in order,
        into a fresh byte buffer through a uint32 view with a 3-byte stride: each word's zero
        byte lands on the next pixel's red byte, which the next write then sets (the buffer has
        one spare byte for the last word). This needs numpy to copy into such a view element by
        element in increasing order, which ``_strided_words_ok`` checks once per process; where
        it does not hold, the plain gather runs.
        """
        idx = idx.reshape(-1)
        p = idx.shape[0]
        if not _strided_words_ok():
            return np.take(self._color, idx, axis=0, mode="clip")
        if self._word_buf is None or self._word_buf.shape[0] != p:
            self._word_buf = np.empty(p, np.uint32)
        words = np.take(self._color32, idx, mode="clip", out=self._word_buf)
        return _pack_words(words)

    def _instance_pixels(self, prim: np.ndarray, instance_id) -> np.ndarray:
        """Per row of ``prim`` (N, P) primitive ids, the number of hits on ``instance_id``'s triangles.

        ``MeshBuilder`` adds an object's parts one after the other, so its triangles are usually
        one contiguous run [first, first + count); the count is then one unsigned range test on
        the primitive ids, ``(prim - first) < count`` (ids below ``first`` wrap to large values,
        and a miss, INVALID_ID, lies above every run), with no per-pixel gather. Any other layout
        (and id 0, which also covers misses) gathers the instance table as the ``instance``
        output does.
        """
        key = int(instance_id)
        if key not in self._tri_ranges:
            tri = np.flatnonzero(self._instance[: self._nf] == key)
            contiguous = key > 0 and len(tri) > 0 and tri[-1] - tri[0] + 1 == len(tri)
            self._tri_ranges[key] = (np.uint32(tri[0]), np.uint32(len(tri))) if contiguous else None
        run = self._tri_ranges[key]
        if run is not None:
            hits = (prim - run[0]) < run[1]
        else:
            hits = np.take(self._instance, prim.astype(np.int64), mode="clip") == key  # INVALID_ID -> row F
        if len(hits) == 1:  # count_nonzero without axis is a single fast pass; with one it sums bools
            return np.array([np.count_nonzero(hits)], np.int64)
        return np.count_nonzero(hits, axis=1).astype(np.int64)

    def visible_instances(self, poses, pitch=None, min_pixels: int = 1) -> list[dict[int, int]]:
        """Per pose, {instance_id: pixel count} of the object instances in view (ids >= 1)."""
        inst = self.render(poses, pitch, outputs=("instance",))["instance"]
        out = []
        for img in inst:
            ids, counts = np.unique(img, return_counts=True)
            out.append({int(i): int(c) for i, c in zip(ids, counts) if i > 0 and c >= min_pixels})
        return out

    def line_of_sight(self, points_a, points_b, target_instance=None, tol: float = 1e-3) -> np.ndarray:
        """Whether each segment a->b is unobstructed: first hit distance >= |b - a| - tol.

        points_a, points_b: (N, 3) or (3,) world points (broadcast against each other).
        target_instance: optional int or (N,) ints; a segment whose first hit is a triangle of
        that instance also counts as clear, so b may lie inside or on the target object.
        """
        a = np.atleast_2d(np.asarray(points_a, np.float64))
        b = np.atleast_2d(np.asarray(points_b, np.float64))
        if a.shape[-1] != 3 or b.shape[-1] != 3:
            raise ValueError(f"points must be (N, 3), got {a.shape} and {b.shape}")
        a, b = np.broadcast_arrays(a, b)
        d = b - a
        length = np.linalg.norm(d, axis=1)
        rays = np.concatenate([a, d / np.maximum(length, 1e-12)[:, None]], 1).astype(np.float32)
        hit = self.cast(rays)
        clear = hit["t_hit"] >= length - tol
        if target_instance is not None:
            prim = hit["primitive_ids"]
            idx = np.minimum(prim, np.uint32(self._nf)).astype(np.intp)
            tgt = np.broadcast_to(np.asarray(target_instance, np.int64), clear.shape)
            clear |= (prim != _INVALID) & (self._instance[idx] == tgt) & (tgt > 0)
        return clear | (length <= tol)
