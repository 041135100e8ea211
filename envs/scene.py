"""The scene data model shared by every part of the simulator.

A scene is one triangle mesh with a flat colour, an instance id and a semantic
class per triangle, plus the annotations a navigation task needs: object
instances (category, colour name, room, oriented box) and rooms.

Conventions (used everywhere in spatialnav):
    * World frame is z-up, metres. The floor of a procedural scene is z = 0.
    * An agent pose is (x, y, yaw): yaw in radians, counter-clockwise from +x.
      The agent looks along (cos yaw, sin yaw, 0).
    * Triangle instance id 0 means structure (walls, floor, ceiling, doors);
      object instances have ids >= 1.
    * Semantic ids index ``SEMANTIC_CLASSES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STRUCTURE_CLASSES = ("void", "wall", "floor", "ceiling", "door")
FURNITURE_CATEGORIES = (
    "chair",
    "table",
    "bed",
    "sofa",
    "cabinet",
    "plant",
    "tv",
    "lamp",
    "toilet",
    "bookshelf",
)
SEMANTIC_CLASSES = STRUCTURE_CLASSES + FURNITURE_CATEGORIES


def semantic_id(name: str) -> int:
    """Semantic id of a class name; unknown categories raise a clear error."""
    try:
        return SEMANTIC_CLASSES.index(name)
    except ValueError:
        raise ValueError(
            f"unknown semantic class {name!r}; known classes: {', '.join(SEMANTIC_CLASSES)}"
        ) from None


@dataclass
class ObjectInstance:
    """One annotated object: an oriented box around it, plus its names.

    ``center`` is the box centre in world coordinates, ``size`` the full
    extents (x, y, z) in the object's own frame, ``yaw`` the rotation of that
    frame about +z. The object's *front* is its local +x axis: the side a
    person faces when using it (the seat side of a chair or sofa, the screen
    of a tv, the doors of a cabinet).
    """

    id: int
    category: str
    color: str = ""
    room: str = ""
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    size: np.ndarray = field(default_factory=lambda: np.ones(3))
    yaw: float = 0.0

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.size = np.asarray(self.size, dtype=np.float64).reshape(3)
        self.yaw = float(self.yaw)

    @property
    def front(self) -> np.ndarray:
        """Unit vector (x, y) of the object's front direction."""
        return np.array([np.cos(self.yaw), np.sin(self.yaw)])

    @property
    def left(self) -> np.ndarray:
        """Unit vector (x, y) of the object's own left (front rotated +90 deg)."""
        return np.array([-np.sin(self.yaw), np.cos(self.yaw)])

    def corners(self) -> np.ndarray:
        """The 8 box corners, shape (8, 3), world frame."""
        hx, hy, hz = self.size / 2
        local = np.array(
            [[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
        )
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return local @ rot.T + self.center

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "color": self.color,
            "room": self.room,
            "center": [float(v) for v in self.center],
            "size": [float(v) for v in self.size],
            "yaw": self.yaw,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ObjectInstance":
        return cls(
            id=int(d["id"]),
            category=str(d["category"]),
            color=str(d.get("color", "")),
            room=str(d.get("room", "")),
            center=d["center"],
            size=d["size"],
            yaw=float(d.get("yaw", 0.0)),
        )


@dataclass
class Room:
    """An axis-aligned room: ``bounds`` = (xmin, ymin, xmax, ymax) of its floor."""

    id: int
    name: str
    bounds: tuple[float, float, float, float]

    def contains(self, xy: np.ndarray) -> bool:
        x, y = float(xy[0]), float(xy[1])
        x0, y0, x1, y1 = self.bounds
        return x0 <= x <= x1 and y0 <= y <= y1

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "bounds": [float(v) for v in self.bounds]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Room":
        return cls(id=int(d["id"]), name=str(d["name"]), bounds=tuple(float(v) for v in d["bounds"]))


@dataclass
class Scene:
    """A renderable, navigable, annotated scene.

    Per-triangle arrays (length F) carry everything the renderer needs, so
    flat shading is a single gather from ``tri_color`` by primitive id.
    """

    scene_id: str
    vertices: np.ndarray  # (V, 3) float32
    triangles: np.ndarray  # (F, 3) int32
    tri_color: np.ndarray  # (F, 3) uint8, baked flat colour (texture and shading included)
    tri_instance: np.ndarray  # (F,) int32, 0 = structure
    tri_semantic: np.ndarray  # (F,) int32, index into SEMANTIC_CLASSES
    instances: list[ObjectInstance] = field(default_factory=list)
    rooms: list[Room] = field(default_factory=list)
    floor_z: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.triangles = np.ascontiguousarray(self.triangles, dtype=np.int32)
        self.tri_color = np.ascontiguousarray(self.tri_color, dtype=np.uint8)
        self.tri_instance = np.ascontiguousarray(self.tri_instance, dtype=np.int32)
        self.tri_semantic = np.ascontiguousarray(self.tri_semantic, dtype=np.int32)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistency found."""
        v, t = self.vertices, self.triangles
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"scene {self.scene_id}: vertices must be (V, 3), got {v.shape}")
        if t.ndim != 2 or t.shape[1] != 3 or len(t) == 0:
            raise ValueError(f"scene {self.scene_id}: triangles must be a non-empty (F, 3), got {t.shape}")
        if t.min() < 0 or t.max() >= len(v):
            raise ValueError(
                f"scene {self.scene_id}: triangle indices out of range [0, {len(v)}): "
                f"min {t.min()}, max {t.max()}"
            )
        if not np.isfinite(v).all():
            raise ValueError(f"scene {self.scene_id}: vertices contain NaN or inf")
        f = len(t)
        for name in ("tri_color", "tri_instance", "tri_semantic"):
            arr = getattr(self, name)
            if len(arr) != f:
                raise ValueError(f"scene {self.scene_id}: {name} has {len(arr)} rows for {f} triangles")
        if self.tri_color.shape[1:] != (3,):
            raise ValueError(f"scene {self.scene_id}: tri_color must be (F, 3) uint8")
        ids = [o.id for o in self.instances]
        if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
            raise ValueError(f"scene {self.scene_id}: instance ids must be unique and >= 1, got {ids}")

    # -- look-ups ---------------------------------------------------------
    def instance(self, instance_id: int) -> ObjectInstance:
        for o in self.instances:
            if o.id == instance_id:
                return o
        raise KeyError(f"scene {self.scene_id} has no instance {instance_id}")

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min xyz, max xyz) of the mesh."""
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)
