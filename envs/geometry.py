"""Build scene meshes from primitives, with per-triangle colour, instance and class; the angle
convention every layer shares (``wrap_angle``)."""

from __future__ import annotations

import math

import numpy as np

from envs.scene import ObjectInstance, Room, Scene


def wrap_angle(a):
    """Wrap radians to (-pi, pi]: ``fmod(a + pi, 2 pi)`` moved into (0, 2 pi], minus pi.

    A number gives a float (the env's per-step path stays in ``math``), an array an array of
    the same shape; both take the same C ``fmod``, so they agree to the bit.
    """
    if isinstance(a, (int, float)):
        w = math.fmod(float(a) + math.pi, 2 * math.pi)
        return (w + 2 * math.pi if w <= 0 else w) - math.pi
    w = np.fmod(np.asarray(a, np.float64) + np.pi, 2 * np.pi)
    w = np.where(w <= 0, w + 2 * np.pi, w) - np.pi
    return float(w) if w.ndim == 0 else w


# A fixed key light: flat shading bakes max(ambient, n . l) into each triangle's colour.
_LIGHT = np.array([0.35, 0.25, 0.9])
_LIGHT = _LIGHT / np.linalg.norm(_LIGHT)
_AMBIENT = 0.55

# Unit cube, 12 outward-facing triangles (counter-clockwise seen from outside).
_CUBE_V = np.array(
    [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=np.float64
)
_CUBE_F = np.array(
    [
        [0, 1, 3], [0, 3, 2],  # -x
        [4, 6, 7], [4, 7, 5],  # +x
        [0, 4, 5], [0, 5, 1],  # -y
        [2, 3, 7], [2, 7, 6],  # +y
        [0, 2, 6], [0, 6, 4],  # -z
        [1, 5, 7], [1, 7, 3],  # +z
    ],
    dtype=np.int64,
)


def shade(color: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Lambert shading with ambient floor: colour * max(ambient, |n . l|)."""
    lam = np.clip(np.abs(normals @ _LIGHT), _AMBIENT, 1.0)
    return np.clip(np.asarray(color, np.float64)[None, :] * lam[:, None], 0, 255)


class MeshBuilder:
    """Accumulates triangles; ``build`` returns a Scene."""

    def __init__(self) -> None:
        self._v: list[np.ndarray] = []
        self._f: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._i: list[np.ndarray] = []
        self._s: list[np.ndarray] = []
        self._nv = 0

    def add_triangles(self, vertices, faces, color, instance: int = 0, semantic: int = 0,
                      shaded: bool = True) -> None:
        """Add a triangle soup. ``color`` is one RGB triple or one per face."""
        v = np.asarray(vertices, np.float64)
        f = np.asarray(faces, np.int64)
        col = np.asarray(color, np.float64)
        if col.ndim == 1:
            col = np.broadcast_to(col, (len(f), 3))
        if shaded:
            n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
            n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
            lam = np.clip(np.abs(n @ _LIGHT), _AMBIENT, 1.0)
            col = col * lam[:, None]
        self._v.append(v)
        self._f.append(f + self._nv)
        self._c.append(np.clip(col, 0, 255).astype(np.uint8))
        self._i.append(np.full(len(f), instance, np.int32))
        self._s.append(np.full(len(f), semantic, np.int32))
        self._nv += len(v)

    def add_box(self, center, size, color, yaw: float = 0.0, instance: int = 0,
                semantic: int = 0, shaded: bool = True) -> None:
        """An oriented box: ``size`` full extents, rotated by ``yaw`` about +z."""
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        v = (_CUBE_V * np.asarray(size, np.float64)) @ rot.T + np.asarray(center, np.float64)
        self.add_triangles(v, _CUBE_F, color, instance, semantic, shaded)

    def add_cylinder(self, center, radius: float, height: float, color, segments: int = 12,
                     instance: int = 0, semantic: int = 0, shaded: bool = True) -> None:
        """A closed vertical cylinder; ``center`` is the centre of its volume."""
        cx, cy, cz = center
        a = np.linspace(0, 2 * np.pi, segments, endpoint=False)
        ring = np.stack([cx + radius * np.cos(a), cy + radius * np.sin(a)], 1)
        bot = np.c_[ring, np.full(segments, cz - height / 2)]
        top = np.c_[ring, np.full(segments, cz + height / 2)]
        v = np.vstack([bot, top, [[cx, cy, cz - height / 2]], [[cx, cy, cz + height / 2]]])
        faces = []
        for k in range(segments):
            k2 = (k + 1) % segments
            faces += [[k, k2, segments + k2], [k, segments + k2, segments + k]]
            faces += [[2 * segments, k2, k], [2 * segments + 1, segments + k, segments + k2]]
        self.add_triangles(v, np.array(faces), color, instance, semantic, shaded)

    @property
    def num_triangles(self) -> int:
        return sum(len(f) for f in self._f)

    def build(self, scene_id: str, instances: list[ObjectInstance] | None = None,
              rooms: list[Room] | None = None, floor_z: float = 0.0, meta: dict | None = None) -> Scene:
        return Scene(
            scene_id=scene_id,
            vertices=np.vstack(self._v),
            triangles=np.vstack(self._f),
            tri_color=np.vstack(self._c),
            tri_instance=np.concatenate(self._i),
            tri_semantic=np.concatenate(self._s),
            instances=list(instances or []),
            rooms=list(rooms or []),
            floor_z=floor_z,
            meta=dict(meta or {}),
        )
