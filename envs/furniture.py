"""Category-specific furniture built from boxes and cylinders.

Every category has its own silhouette so a model can tell them apart from a
128x128 egocentric view (a chair is a seat on four legs with a back, a lamp a
pole with a shade, a bookshelf an open frame full of coloured books, ...).
A piece is modelled in its *local* frame: origin at the centre of its
footprint on the floor, +x its front (the side a person faces when using it),
+z up. ``add_furniture`` rotates it by ``yaw``, places it, writes its
triangles into a ``MeshBuilder`` tagged with the instance id and the
category's semantic id, and returns the ``ObjectInstance`` whose oriented box
tightly bounds the parts.

The named colour variant paints a piece's *main* parts (chair seat and back,
sofa upholstery, cabinet body, plant pot, tv frame, lamp shade, ...);
secondary parts (legs, mattress, foliage, screen, books) keep fixed colours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs.geometry import MeshBuilder
from envs.scene import FURNITURE_CATEGORIES, ObjectInstance, semantic_id

# Named colour variants. RGB values are far apart so that, even after the
# renderer's Lambert shading (factor 0.55..1), names stay distinguishable.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 35, 35),
    "green": (45, 160, 60),
    "blue": (40, 85, 210),
    "yellow": (235, 205, 40),
    "white": (238, 238, 232),
    "black": (32, 32, 36),
    "brown": (125, 78, 42),
    "orange": (240, 130, 25),
    "purple": (135, 60, 175),
    "grey": (135, 135, 135),
}

# Colours that would make an instruction misleading for a category
# ("green plant" would name the foliage, not the pot).
_EXCLUDED_COLORS: dict[str, tuple[str, ...]] = {
    "plant": ("green",),
}

# Default footprint/height (depth along local x, width along local y, height), metres.
DEFAULT_SIZES: dict[str, tuple[float, float, float]] = {
    "chair": (0.50, 0.48, 0.90),
    "table": (0.90, 1.30, 0.75),
    "bed": (2.05, 1.50, 1.00),
    "sofa": (0.90, 2.00, 0.85),
    "cabinet": (0.50, 0.90, 1.80),
    "plant": (0.55, 0.55, 1.15),
    "tv": (0.45, 1.15, 1.45),
    "lamp": (0.45, 0.45, 1.60),
    "toilet": (0.70, 0.42, 0.80),
    "bookshelf": (0.35, 1.00, 1.85),
}

# Fixed colours of secondary parts.
_DARK_WOOD = (70, 48, 30)
_METAL = (150, 152, 158)
_BLACK_METAL = (45, 45, 50)
_SHEET = (238, 236, 228)
_PILLOW = (250, 250, 245)
_SCREEN = (18, 24, 48)
_SOIL = (60, 42, 28)
_FOLIAGE = ((40, 125, 45), (60, 150, 55), (30, 105, 40))
_PORCELAIN = (235, 236, 238)
_BOOKS = (
    (180, 40, 40), (40, 90, 170), (220, 180, 60), (50, 130, 70), (230, 230, 220),
    (120, 60, 140), (200, 110, 40), (60, 60, 60), (150, 30, 80), (30, 130, 150),
)


def allowed_colors(category: str) -> tuple[str, ...]:
    """Colour names a category may take (all of ``COLORS`` minus misleading ones)."""
    _check_category(category)
    excluded = _EXCLUDED_COLORS.get(category, ())
    return tuple(c for c in COLORS if c not in excluded)


def _check_category(category: str) -> None:
    if category not in FURNITURE_CATEGORIES:
        raise ValueError(
            f"unknown furniture category {category!r}; known: {', '.join(FURNITURE_CATEGORIES)}"
        )


@dataclass
class _Part:
    kind: str  # "box" or "cyl"
    center: tuple[float, float, float]  # local frame
    size: tuple[float, float, float]  # box extents, or (2r, 2r, h) for a cylinder
    color: tuple[int, int, int]


@dataclass
class _Piece:
    """Parts of one piece of furniture in its local frame."""

    parts: list[_Part] = field(default_factory=list)

    def box(self, x0, y0, z0, x1, y1, z1, color) -> None:
        """Axis-aligned (local) box from its min and max corners."""
        self.parts.append(
            _Part("box", ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), (x1 - x0, y1 - y0, z1 - z0), color)
        )

    def cyl(self, x, y, z0, z1, r, color) -> None:
        self.parts.append(_Part("cyl", (x, y, (z0 + z1) / 2), (2 * r, 2 * r, z1 - z0), color))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c = np.array([p.center for p in self.parts])
        s = np.array([p.size for p in self.parts])
        return (c - s / 2).min(0), (c + s / 2).max(0)


# -- one builder per category (local frame, sizes d x w x h) ------------------


def _chair(p: _Piece, d, w, h, main, rng) -> None:
    seat_z, t, leg = 0.45, 0.06, 0.045
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (d / 2 - leg / 2 - 0.01), sy * (w / 2 - leg / 2 - 0.01)
            p.box(x - leg / 2, y - leg / 2, 0.0, x + leg / 2, y + leg / 2, seat_z - t, _DARK_WOOD)
    p.box(-d / 2, -w / 2, seat_z - t, d / 2, w / 2, seat_z, main)
    p.box(-d / 2, -w / 2, seat_z, -d / 2 + 0.06, w / 2, h, main)  # back at -x: front is +x


def _table(p: _Piece, d, w, h, main, rng) -> None:
    t, leg = 0.05, 0.07
    p.box(-d / 2, -w / 2, h - t, d / 2, w / 2, h, main)
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (d / 2 - 0.08), sy * (w / 2 - 0.08)
            p.box(x - leg / 2, y - leg / 2, 0.0, x + leg / 2, y + leg / 2, h - t, _DARK_WOOD)
    # an apron under the top makes the table read as one solid piece from the side
    p.box(-d / 2 + 0.06, -w / 2 + 0.06, h - t - 0.08, d / 2 - 0.06, w / 2 - 0.06, h - t, main)


def _bed(p: _Piece, d, w, h, main, rng) -> None:
    # head against the wall at -x, foot (front) towards +x
    p.box(-d / 2, -w / 2, 0.0, d / 2, w / 2, 0.30, main)  # frame
    p.box(-d / 2 + 0.08, -w / 2 + 0.04, 0.30, d / 2 - 0.03, w / 2 - 0.04, 0.50, _SHEET)  # mattress
    p.box(-d / 2 + 0.65, -w / 2 + 0.02, 0.30, d / 2 - 0.01, w / 2 - 0.02, 0.53, main)  # blanket
    pw = (w - 0.25) / 2 if w > 1.2 else w - 0.2
    ys = (-(pw / 2 + 0.04), pw / 2 + 0.04) if w > 1.2 else (0.0,)
    for y in ys:
        p.box(-d / 2 + 0.14, y - pw / 2, 0.50, -d / 2 + 0.52, y + pw / 2, 0.62, _PILLOW)
    p.box(-d / 2, -w / 2, 0.0, -d / 2 + 0.08, w / 2, h, main)  # headboard
    p.box(d / 2 - 0.05, -w / 2, 0.0, d / 2, w / 2, 0.42, main)  # footboard


def _sofa(p: _Piece, d, w, h, main, rng) -> None:
    arm, back, seat_z = 0.18, 0.22, 0.42
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (d / 2 - 0.06), sy * (w / 2 - 0.06)
            p.box(x - 0.03, y - 0.03, 0.0, x + 0.03, y + 0.03, 0.08, _BLACK_METAL)
    p.box(-d / 2, -w / 2, 0.08, d / 2, w / 2, seat_z - 0.08, main)  # base
    lighter = tuple(int(min(255, c * 1.12 + 10)) for c in main)
    n = 3 if w > 1.7 else 2
    cw = (w - 2 * arm) / n
    for k in range(n):
        y0 = -w / 2 + arm + k * cw
        p.box(-d / 2 + back, y0 + 0.01, seat_z - 0.08, d / 2 - 0.02, y0 + cw - 0.01, seat_z, lighter)
    p.box(-d / 2, -w / 2, seat_z - 0.08, -d / 2 + back, w / 2, h, main)  # back
    for sy in (-1, 1):
        y0, y1 = (w / 2 - arm, w / 2) if sy > 0 else (-w / 2, -w / 2 + arm)
        p.box(-d / 2, y0, seat_z - 0.08, d / 2, y1, 0.64, main)  # arms


def _cabinet(p: _Piece, d, w, h, main, rng) -> None:
    p.box(-d / 2 + 0.03, -w / 2 + 0.02, 0.0, d / 2 - 0.03, w / 2 - 0.02, 0.08, _DARK_WOOD)  # plinth
    p.box(-d / 2, -w / 2, 0.08, d / 2 - 0.01, w / 2, h, main)  # body
    # door seams and handles on the front face (+x)
    gap = (40, 40, 40)
    p.box(d / 2 - 0.01, -0.008, 0.12, d / 2, 0.008, h - 0.04, gap)
    p.box(d / 2 - 0.01, -w / 2 + 0.03, h * 0.62, d / 2, w / 2 - 0.03, h * 0.62 + 0.015, gap)
    for sy in (-1, 1):
        y = sy * 0.06
        p.box(d / 2 - 0.01, y - 0.015, h * 0.38, d / 2 + 0.03, y + 0.015, h * 0.52, _METAL)
        p.box(d / 2 - 0.01, y - 0.015, h * 0.68, d / 2 + 0.03, y + 0.015, h * 0.76, _METAL)


def _plant(p: _Piece, d, w, h, main, rng) -> None:
    r = min(d, w) * 0.32
    pot_h = 0.36
    p.cyl(0.0, 0.0, 0.0, pot_h, r, main)
    p.cyl(0.0, 0.0, pot_h, pot_h + 0.02, r * 0.9, _SOIL)
    p.box(-0.025, -0.025, pot_h, 0.025, 0.025, h * 0.7, _FOLIAGE[2])  # stem
    # leafy clusters: offset boxes of three greens, fixed layout (scaled to the footprint)
    clusters = (
        (0.0, 0.0, 0.55, 1.0, 0.70),
        (0.18, 0.10, 0.45, 0.80, 0.55),
        (-0.16, 0.14, 0.40, 0.75, 0.60),
        (0.05, -0.18, 0.42, 0.72, 0.60),
        (-0.10, -0.08, 0.62, 0.95, 0.50),
    )
    for k, (fx, fy, z0, z1, fs) in enumerate(clusters):
        s = fs * min(d, w) * 0.8
        cx, cy = fx * d, fy * w
        p.box(cx - s / 2, cy - s / 2, h * z0, cx + s / 2, cy + s / 2, h * z1, _FOLIAGE[k % 3])


def _tv(p: _Piece, d, w, h, main, rng) -> None:
    # floor stand: base plate, a pole, a thin screen whose coloured frame surrounds a dark panel
    p.box(-d / 2, -w * 0.28, 0.0, d / 2, w * 0.28, 0.04, _BLACK_METAL)
    p.box(-0.10, -0.04, 0.04, -0.03, 0.04, h * 0.62, _BLACK_METAL)
    screen_h = min(0.68, w * 0.58)
    z0 = h - screen_h
    p.box(-0.03, -w / 2, z0, 0.04, w / 2, h, main)  # frame / back
    p.box(0.04, -w / 2 + 0.05, z0 + 0.05, 0.055, w / 2 - 0.05, h - 0.05, _SCREEN)  # screen at +x


def _lamp(p: _Piece, d, w, h, main, rng) -> None:
    r = min(d, w) / 2
    p.cyl(0.0, 0.0, 0.0, 0.04, r * 0.6, main)  # base
    p.cyl(0.0, 0.0, 0.04, h - 0.30, 0.018, _METAL)  # pole
    p.cyl(0.0, 0.0, h - 0.36, h, r, main)  # shade
    p.cyl(0.0, 0.0, h - 0.37, h - 0.36, r * 0.85, (250, 240, 200))  # warm glow under the shade


def _toilet(p: _Piece, d, w, h, main, rng) -> None:
    tank_d = 0.20
    p.box(-d / 2 + tank_d - 0.02, -0.12, 0.0, d / 2 - 0.22, 0.12, 0.30, main)  # pedestal
    r = min(w / 2, (d - tank_d) / 2)
    bx = -d / 2 + tank_d + r
    p.cyl(bx, 0.0, 0.22, 0.40, r, main)  # bowl
    p.cyl(bx, 0.0, 0.40, 0.43, r * 0.98, _PORCELAIN)  # seat (white ring)
    p.box(-d / 2, -w / 2, 0.38, -d / 2 + tank_d, w / 2, h, main)  # tank against the wall
    p.box(-d / 2 + 0.02, -w / 2 - 0.01, h, -d / 2 + tank_d + 0.01, w / 2 + 0.01, h + 0.03, _PORCELAIN)
    p.box(-d / 2 + tank_d, -0.025, h - 0.08, -d / 2 + tank_d + 0.02, 0.025, h - 0.05, _METAL)  # flush


def _bookshelf(p: _Piece, d, w, h, main, rng) -> None:
    t = 0.03
    p.box(-d / 2, -w / 2, 0.0, -d / 2 + 0.015, w / 2, h, main)  # back panel
    p.box(-d / 2, -w / 2, 0.0, d / 2, -w / 2 + t, h, main)  # sides
    p.box(-d / 2, w / 2 - t, 0.0, d / 2, w / 2, h, main)
    n_shelf = 5
    zs = np.linspace(0.0, h - t, n_shelf + 1)
    for z in zs:
        p.box(-d / 2, -w / 2 + t, z, d / 2, w / 2 - t, z + t, main)
    # books on the lower shelves (the top shelf stays empty): varied widths, heights, colours
    for k in range(n_shelf - 1):
        z = zs[k] + t
        gap = zs[k + 1] - z
        y = -w / 2 + t + 0.01
        while True:
            bw = float(rng.uniform(0.04, 0.09))
            if y + bw > w / 2 - t - 0.02:
                break
            if rng.random() < 0.12:  # an occasional gap on the shelf
                y += bw
                continue
            bh = gap * float(rng.uniform(0.6, 0.9))
            col = _BOOKS[int(rng.integers(len(_BOOKS)))]
            p.box(-d / 2 + 0.03, y, z, d / 2 - 0.02, y + bw, z + bh, col)
            y += bw + 0.004


_BUILDERS = {
    "chair": _chair,
    "table": _table,
    "bed": _bed,
    "sofa": _sofa,
    "cabinet": _cabinet,
    "plant": _plant,
    "tv": _tv,
    "lamp": _lamp,
    "toilet": _toilet,
    "bookshelf": _bookshelf,
}
assert set(_BUILDERS) == set(FURNITURE_CATEGORIES)


def furniture_bounds(category: str, size: tuple[float, float, float] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Local-frame (min xyz, max xyz) of a piece, without building it.

    Lets a layout planner test a footprint for collisions before committing.
    """
    _check_category(category)
    d, w, h = DEFAULT_SIZES[category] if size is None else size
    piece = _Piece()
    _BUILDERS[category](piece, d, w, h, COLORS["grey"], np.random.default_rng(0))
    return piece.bounds()


def add_furniture(
    builder: MeshBuilder,
    category: str,
    color: str,
    position: tuple[float, float],
    yaw: float,
    instance_id: int,
    size: tuple[float, float, float] | None = None,
    room: str = "",
    floor_z: float = 0.0,
    rng: np.random.Generator | None = None,
) -> ObjectInstance:
    """Build one piece of furniture into ``builder`` and return its annotation.

    ``position`` is the (x, y) centre of the footprint, ``yaw`` turns the
    piece's front (local +x) to (cos yaw, sin yaw). ``size`` = (depth, width,
    height) of the nominal envelope (default ``DEFAULT_SIZES``); the returned
    box is the tight bound of the parts actually built. ``rng`` only varies
    decorative detail (books on a shelf); pass a seeded one for determinism.
    Every triangle added carries ``instance_id`` and the category's semantic id.
    """
    _check_category(category)
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}; known: {', '.join(COLORS)}")
    if instance_id < 1:
        raise ValueError(f"instance ids of objects must be >= 1, got {instance_id}")
    d, w, h = DEFAULT_SIZES[category] if size is None else size
    if min(d, w, h) <= 0:
        raise ValueError(f"{category}: size must be positive, got {(d, w, h)}")
    rng = rng if rng is not None else np.random.default_rng(instance_id)

    piece = _Piece()
    _BUILDERS[category](piece, d, w, h, COLORS[color], rng)

    sem = semantic_id(category)
    c, s = np.cos(yaw), np.sin(yaw)
    px, py = position
    for part in piece.parts:
        lx, ly, lz = part.center
        wc = (px + c * lx - s * ly, py + s * lx + c * ly, floor_z + lz)
        if part.kind == "box":
            builder.add_box(wc, part.size, part.color, yaw=yaw, instance=instance_id, semantic=sem)
        else:
            builder.add_cylinder(wc, part.size[0] / 2, part.size[2], part.color,
                                 instance=instance_id, semantic=sem)

    lo, hi = piece.bounds()
    mid = (lo + hi) / 2
    center = (px + c * mid[0] - s * mid[1], py + s * mid[0] + c * mid[1], floor_z + mid[2])
    return ObjectInstance(id=instance_id, category=category, color=color, room=room,
                          center=np.array(center), size=hi - lo, yaw=float(yaw))
