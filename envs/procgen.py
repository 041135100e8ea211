"""Seeded procedural apartments: rooms, doors, textured floors, furniture.

``generate_scene(seed)`` lays out 1-4 axis-aligned rooms by splitting a
rectangular footprint (binary space partition, sometimes dropping one cell
for an L-shaped flat), joins them with door openings along a random spanning
tree of the room adjacency graph (plus sometimes one extra loop), gives each
room a type (living room, bedroom, kitchen, bathroom, office) and furnishes it
with plausible pieces from ``envs.furniture``: beds, sofas, cabinets,
bookshelves, toilets and tvs against walls facing into the room; tables with
chairs around them, plants and lamps free-standing or in corners.

Guarantees (checked while placing, on a 5 cm occupancy raster): furniture does
not overlap, doorways keep a clear zone in front of them, and every door,
room and object stays reachable for a disc agent of radius 0.18 m. A piece
that would break this is not placed.

The geometry is one triangle mesh with baked colours: checker-tile or plank
floors with per-tile colour jitter (so that motion is visible in the image),
walls with a per-room tint and a skirting board, door frames, and a ceiling.
The result depends on ``seed`` only; ``split`` is recorded, not used, because
split seed ranges are disjoint (see ``envs.scenes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from envs.furniture import DEFAULT_SIZES, add_furniture, allowed_colors, furniture_bounds
from envs.geometry import MeshBuilder
from envs.scene import Room, Scene, semantic_id

GENERATOR_VERSION = "spatialnav-procgen-1"

WALL_HEIGHT = 2.5
WALL_THICKNESS = 0.10
DOOR_OPENING = 1.05  # gap in the wall; the frame's jambs leave DOOR_CLEAR_WIDTH free
DOOR_FRAME = 0.05
DOOR_CLEAR_WIDTH = DOOR_OPENING - 2 * DOOR_FRAME
DOOR_HEIGHT = 2.1
AGENT_RADIUS = 0.18
DOOR_CLEARANCE = 0.75  # depth kept free of furniture on both sides of a door
RASTER_CELL = 0.05

_SEM_WALL = semantic_id("wall")
_SEM_FLOOR = semantic_id("floor")
_SEM_CEILING = semantic_id("ceiling")
_SEM_DOOR = semantic_id("door")

_WALL_TINTS = (
    (226, 219, 203), (208, 219, 228), (220, 228, 208), (232, 214, 208),
    (224, 224, 224), (236, 228, 198), (214, 210, 226), (205, 225, 222),
)
# floor palettes: (pattern, colour a, colour b)
_TILE_FLOORS = (
    ((225, 225, 220), (165, 170, 175)),
    ((200, 170, 130), (150, 90, 60)),
    ((210, 215, 225), (90, 100, 120)),
    ((235, 230, 210), (120, 140, 110)),
)
_WOOD_FLOORS = ((176, 128, 82), (140, 96, 60), (196, 160, 112), (120, 80, 50), (160, 140, 120))

Rect = tuple[float, float, float, float]  # (x0, y0, x1, y1)


@dataclass
class _Door:
    center: tuple[float, float]
    along: str  # "x" if the wall runs along x (door crossed in y), else "y"
    rooms: tuple[int, int]


@dataclass
class _Plan:
    """Mutable state while furnishing: what is taken, what must stay free."""

    rects: list[Rect]  # wall-centreline rectangles, one per room
    interiors: list[Rect]
    doors: list[_Door]
    keep_free: list[Rect] = field(default_factory=list)
    taken: list[Rect] = field(default_factory=list)
    objects: list[dict] = field(default_factory=list)


# -- layout ------------------------------------------------------------------


def _split_layout(rng: np.random.Generator, n_cells: int, width: float, depth: float,
                  min_side: float) -> list[Rect]:
    """Binary space partition of a width x depth rectangle into n_cells rooms."""
    cells: list[Rect] = [(0.0, 0.0, width, depth)]
    while len(cells) < n_cells:
        order = sorted(range(len(cells)), key=lambda i: -_area(cells[i]))
        for i in order:
            x0, y0, x1, y1 = cells[i]
            w, d = x1 - x0, y1 - y0
            along_x = w >= d if abs(w - d) > 0.5 else bool(rng.random() < 0.5)
            side = w if along_x else d
            if side < 2 * min_side:
                along_x, side = (not along_x), (d if along_x else w)
                if side < 2 * min_side:
                    continue
            lo = max(min_side, 0.35 * side)
            cut = _snap(float(rng.uniform(lo, side - lo)))
            if along_x:
                cells[i:i + 1] = [(x0, y0, x0 + cut, y1), (x0 + cut, y0, x1, y1)]
            else:
                cells[i:i + 1] = [(x0, y0, x1, y0 + cut), (x0, y0 + cut, x1, y1)]
            break
        else:
            break  # nothing left to split
    return cells


def _snap(v: float, step: float = 0.05) -> float:
    return round(v / step) * step


def _area(r: Rect) -> float:
    return (r[2] - r[0]) * (r[3] - r[1])


def _shared_wall(a: Rect, b: Rect, eps: float = 1e-6):
    """The wall segment two rooms share: ("x"|"y", fixed coord, lo, hi) or None.

    "x" means the wall runs along x (at fixed y)."""
    for i, j in ((a, b), (b, a)):
        if abs(i[2] - j[0]) < eps:  # i's east side is j's west side
            lo, hi = max(i[1], j[1]), min(i[3], j[3])
            if hi - lo > eps:
                return ("y", i[2], lo, hi)
        if abs(i[3] - j[1]) < eps:  # i's north side is j's south side
            lo, hi = max(i[0], j[0]), min(i[2], j[2])
            if hi - lo > eps:
                return ("x", i[3], lo, hi)
    return None


def _connected(n: int, edges: list[tuple[int, int]]) -> bool:
    seen, stack = {0}, [0]
    while stack:
        k = stack.pop()
        for a, b in edges:
            for u, v in ((a, b), (b, a)):
                if u == k and v not in seen:
                    seen.add(v)
                    stack.append(v)
    return len(seen) == n


def _door_edges(rects: list[Rect]) -> dict[tuple[int, int], tuple]:
    """Room pairs whose shared wall is long enough for a door with margins."""
    need = DOOR_OPENING + 2 * 0.35
    out = {}
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            w = _shared_wall(rects[i], rects[j])
            if w is not None and w[3] - w[2] >= need:
                out[(i, j)] = w
    return out


def _make_layout(rng: np.random.Generator, n_rooms: int):
    """Room rectangles (wall centrelines) and doors, retried until connected."""
    footprint = {1: ((4.5, 6.5), (4.0, 5.5)), 2: ((7.0, 9.5), (4.0, 5.5)),
                 3: ((7.5, 10.0), (5.5, 7.5)), 4: ((8.5, 11.0), (6.5, 9.0))}[n_rooms]
    for _ in range(50):
        w = _snap(float(rng.uniform(*footprint[0])))
        d = _snap(float(rng.uniform(*footprint[1])))
        drop = n_rooms >= 2 and rng.random() < 0.35  # L-shaped flat: split one more, drop a corner
        cells = _split_layout(rng, n_rooms + int(drop), w, d, min_side=2.4)
        if len(cells) != n_rooms + int(drop):
            continue
        if drop:
            k = int(np.argmin([_area(c) for c in cells]))
            cells = cells[:k] + cells[k + 1:]
        edges = _door_edges(cells)
        if not _connected(len(cells), list(edges)):
            continue
        # random spanning tree (Kruskal over shuffled edges), sometimes one extra loop
        keys = list(edges)
        rng.shuffle(keys)
        parent = list(range(len(cells)))

        def find(a):
            while parent[a] != a:
                a = parent[a]
            return a

        tree, extra = [], []
        for a, b in keys:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
                tree.append((a, b))
            else:
                extra.append((a, b))
        if extra and rng.random() < 0.3:
            tree.append(extra[0])
        doors = []
        for a, b in tree:
            along, fixed, lo, hi = edges[(a, b)]
            m = 0.35 + DOOR_OPENING / 2
            c = _snap(float(rng.uniform(lo + m, hi - m)))
            center = (c, fixed) if along == "x" else (fixed, c)
            doors.append(_Door(center=center, along=along, rooms=(a, b)))
        return cells, doors
    raise RuntimeError(f"could not lay out {n_rooms} connected rooms")  # not reached in practice


def _room_types(rng: np.random.Generator, rects: list[Rect]) -> list[str]:
    n = len(rects)
    if n == 1:
        return ["living room"]
    order = np.argsort([-_area(r) for r in rects], kind="stable")
    names = [""] * n
    names[order[0]] = "living room"
    rest = list(order[1:])
    if n >= 3:
        names[rest.pop()] = "bathroom"  # the smallest room
    pool = ["bedroom", "kitchen", "office"]
    rng.shuffle(pool)
    if n == 2 and rng.random() < 0.5:
        pool.remove("bedroom")
        pool.insert(0, "bedroom")
    for k in rest:
        names[k] = pool.pop(0)
    return names


# -- furnishing ----------------------------------------------------------------


def _overlap(a: Rect, b: Rect, pad: float = 0.0) -> bool:
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


def _inside(a: Rect, b: Rect) -> bool:
    return a[0] >= b[0] - 1e-9 and a[1] >= b[1] - 1e-9 and a[2] <= b[2] + 1e-9 and a[3] <= b[3] + 1e-9


def _world_footprint(lo: np.ndarray, hi: np.ndarray, pos, yaw: float) -> Rect:
    c, s = np.cos(yaw), np.sin(yaw)
    xs = np.array([lo[0], hi[0], hi[0], lo[0]])
    ys = np.array([lo[1], lo[1], hi[1], hi[1]])
    wx, wy = pos[0] + c * xs - s * ys, pos[1] + s * xs + c * ys
    return (float(wx.min()), float(wy.min()), float(wx.max()), float(wy.max()))


def _sample_size(rng: np.random.Generator, category: str) -> tuple[float, float, float]:
    d, w, h = DEFAULT_SIZES[category]
    j = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if category == "bed":
        w = float(rng.choice([1.0, 1.45, 1.65]))
        d = j(1.95, 2.15)
    elif category == "table":
        d, w = j(0.75, 1.0), j(1.1, 1.6)
    elif category == "sofa":
        w, d = j(1.6, 2.2), j(0.85, 0.95)
    elif category == "cabinet":
        w, h = j(0.6, 1.0), j(1.2, 2.0)
    elif category == "bookshelf":
        w, h = j(0.7, 1.2), j(1.5, 2.0)
    elif category == "plant":
        s = j(0.45, 0.65)
        d, w, h = s, s, j(0.8, 1.4)
    else:
        d, w, h = d * j(0.92, 1.08), w * j(0.92, 1.08), h * j(0.95, 1.05)
    return (round(d, 3), round(w, 3), round(h, 3))


class _Furnisher:
    """Places furniture room by room; each accepted group keeps the flat navigable."""

    def __init__(self, rng: np.random.Generator, plan: _Plan, names: list[str]):
        self.rng, self.plan, self.names = rng, plan, names
        x0 = min(r[0] for r in plan.rects) - 0.2
        y0 = min(r[1] for r in plan.rects) - 0.2
        x1 = max(r[2] for r in plan.rects) + 0.2
        y1 = max(r[3] for r in plan.rects) + 0.2
        self.origin = (x0, y0)
        self.shape = (int(np.ceil((y1 - y0) / RASTER_CELL)), int(np.ceil((x1 - x0) / RASTER_CELL)))
        self.free = np.zeros(self.shape, bool)
        for r in plan.interiors:
            self._paint(self.free, r, True)
        for d in plan.doors:
            self._paint(self.free, _door_gap(d), True)

    # raster helpers (row = y, col = x)
    def _slices(self, r: Rect):
        c0 = int(np.floor((r[0] - self.origin[0]) / RASTER_CELL + 1e-6))
        c1 = int(np.ceil((r[2] - self.origin[0]) / RASTER_CELL - 1e-6))
        r0 = int(np.floor((r[1] - self.origin[1]) / RASTER_CELL + 1e-6))
        r1 = int(np.ceil((r[3] - self.origin[1]) / RASTER_CELL - 1e-6))
        return slice(max(r0, 0), max(r1, 0)), slice(max(c0, 0), max(c1, 0))

    def _paint(self, grid, r: Rect, value: bool) -> None:
        grid[self._slices(r)] = value

    def _cell(self, xy) -> tuple[int, int]:
        return (int((xy[1] - self.origin[1]) / RASTER_CELL), int((xy[0] - self.origin[0]) / RASTER_CELL))

    def navigable_ok(self, extra: list[Rect]) -> bool:
        """Doors, rooms and objects stay reachable for the agent disc with ``extra`` placed."""
        free = self.free.copy()
        for r in extra:
            self._paint(free, r, False)
        nav = ndimage.distance_transform_edt(free) * RASTER_CELL > AGENT_RADIUS + 0.02
        labels, n = ndimage.label(nav)
        if n == 0:
            return False
        door_labels = {labels[self._cell(d.center)] for d in self.plan.doors}
        if door_labels:
            if len(door_labels) != 1 or 0 in door_labels:
                return False
            main = door_labels.pop()
        else:
            main = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
        reach = labels == main
        # most of every room is reachable, not just a sliver
        for r in self.plan.interiors:
            sl = self._slices(r)
            if reach[sl].sum() < 0.5 * nav[sl].sum() or reach[sl].sum() < 40:
                return False
        # every object can be approached to within ~0.6 m of its footprint
        for r in [o["rect"] for o in self.plan.objects] + extra:
            sl = self._slices((r[0] - 0.6, r[1] - 0.6, r[2] + 0.6, r[3] + 0.6))
            if not reach[sl].any():
                return False
        return True

    def fits(self, room: int, rect: Rect, group: list[dict]) -> bool:
        """Inside the room, clear of placed pieces (and of ``group``), clear of doorways."""
        if not _inside(rect, self.plan.interiors[room]):
            return False
        if any(_overlap(rect, t, 0.04) for t in self.plan.taken + [g["rect"] for g in group]):
            return False
        return not any(_overlap(rect, k) for k in self.plan.keep_free)

    def commit(self, room: int, items: list[dict]) -> bool:
        rects = [it["rect"] for it in items]
        if not self.navigable_ok(rects):
            return False
        for it in items:
            it["room"] = room
            self.plan.objects.append(it)
            self.plan.taken.append(it["rect"])
            self._paint(self.free, it["rect"], False)
        return True

    # candidate generators ---------------------------------------------------
    def _item(self, category, size, pos, yaw, color) -> dict:
        lo, hi = furniture_bounds(category, size)
        return dict(category=category, size=size, pos=(float(pos[0]), float(pos[1])), yaw=float(yaw),
                    color=color, rect=_world_footprint(lo, hi, pos, yaw))

    def color(self, category: str) -> str:
        return str(self.rng.choice(allowed_colors(category)))

    def wall_item(self, room, category, size=None, color=None, side=None, gap=0.02) -> dict | None:
        """A candidate with its back against a wall, front into the room (not yet committed)."""
        rng = self.rng
        size = size or _sample_size(rng, category)
        color = color or self.color(category)
        lo, hi = furniture_bounds(category, size)
        ix0, iy0, ix1, iy1 = self.plan.interiors[room]
        half_w = (hi[1] - lo[1]) / 2
        mid_y = (hi[1] + lo[1]) / 2
        for _ in range(30):
            s = side if side is not None else int(rng.integers(4))
            if s == 0:  # west wall, facing +x
                yaw, u_lo, u_hi = 0.0, iy0, iy1
            elif s == 1:  # east wall, facing -x
                yaw, u_lo, u_hi = np.pi, iy0, iy1
            elif s == 2:  # south wall, facing +y
                yaw, u_lo, u_hi = np.pi / 2, ix0, ix1
            else:  # north wall, facing -y
                yaw, u_lo, u_hi = -np.pi / 2, ix0, ix1
            if u_hi - u_lo < 2 * half_w + 0.1:
                continue
            u = _snap(float(rng.uniform(u_lo + half_w + 0.05, u_hi - half_w - 0.05)), 0.01)
            # local y maps to world +y (west), -y (east), -x (south), +x (north)
            if s == 0:
                pos = (ix0 + gap - lo[0], u - mid_y)
            elif s == 1:
                pos = (ix1 - gap + lo[0], u + mid_y)
            elif s == 2:
                pos = (u + mid_y, iy0 + gap - lo[0])
            else:
                pos = (u - mid_y, iy1 - gap + lo[0])
            it = self._item(category, size, pos, yaw, color)
            if self.fits(room, it["rect"], []):
                it["side"] = s
                return it
        return None

    def place_wall(self, room, category, size=None, color=None, side=None) -> dict | None:
        for _ in range(4):
            it = self.wall_item(room, category, size, color, side)
            if it is None:
                return None
            if self.commit(room, [it]):
                return it
        return None

    def place_free(self, room, category, size=None, color=None, corner=False, margin=0.5) -> dict | None:
        rng = self.rng
        size = size or _sample_size(rng, category)
        color = color or self.color(category)
        ix0, iy0, ix1, iy1 = self.plan.interiors[room]
        for _ in range(40):
            yaw = float(rng.integers(4)) * np.pi / 2
            lo, hi = furniture_bounds(category, size)
            r = max(hi[0] - lo[0], hi[1] - lo[1]) / 2 + 0.03
            if corner:
                cx = ix0 + r if rng.random() < 0.5 else ix1 - r
                cy = iy0 + r if rng.random() < 0.5 else iy1 - r
                pos = (cx, cy)
            else:
                if ix1 - ix0 < 2 * (r + margin) or iy1 - iy0 < 2 * (r + margin):
                    return None
                pos = (float(rng.uniform(ix0 + r + margin, ix1 - r - margin)),
                       float(rng.uniform(iy0 + r + margin, iy1 - r - margin)))
            it = self._item(category, size, (0, 0), yaw, color)
            # re-centre the footprint on pos (the local bounds need not be centred)
            cx0 = (it["rect"][0] + it["rect"][2]) / 2
            cy0 = (it["rect"][1] + it["rect"][3]) / 2
            it = self._item(category, size, (pos[0] - cx0, pos[1] - cy0), yaw, color)
            if self.fits(room, it["rect"], []) and self.commit(room, [it]):
                return it
        return None

    def place_dining(self, room, n_chairs: int, against_wall=False, coffee=False) -> bool:
        """A table with chairs facing it; chairs usually a matching set (same colour)."""
        rng = self.rng
        if coffee:
            tsize = (round(float(rng.uniform(0.5, 0.65)), 3), round(float(rng.uniform(0.9, 1.2)), 3), 0.45)
        else:
            tsize = _sample_size(rng, "table")
        tcolor = self.color("table")
        csize = _sample_size(rng, "chair")
        matching = rng.random() < 0.8
        ccolor = self.color("chair")
        ix0, iy0, ix1, iy1 = self.plan.interiors[room]
        for attempt in range(30):
            if against_wall:  # a desk: user side (+x of the table) faces into the room
                table = self.wall_item(room, "table", tsize, tcolor)
                if table is None:
                    return False
            else:
                yaw = float(rng.integers(2)) * np.pi / 2
                m = 0.9
                if ix1 - ix0 < 2 * m + 0.5 or iy1 - iy0 < 2 * m + 0.5:
                    return False
                pos = (float(rng.uniform(ix0 + m + 0.2, ix1 - m - 0.2)),
                       float(rng.uniform(iy0 + m + 0.2, iy1 - m - 0.2)))
                table = self._item("table", tsize, pos, yaw, tcolor)
                if not self.fits(room, table["rect"], []):
                    continue
            group = [table]
            ty = table["yaw"]
            tlo, thi = furniture_bounds("table", tsize)
            clo, chi = furniture_bounds("chair", csize)
            # seats in the table's local frame: (offset x, offset y, chair faces direction)
            seats = []
            if against_wall:
                seats.append((thi[0] + 0.05 - clo[0], 0.0, np.pi))
            else:
                long_y = (thi[1] - tlo[1]) >= (thi[0] - tlo[0])
                ys = [-(thi[1] - tlo[1]) / 4, (thi[1] - tlo[1]) / 4]
                if long_y:
                    for sx in (1, -1):
                        for yy in ys:
                            dx = sx * ((thi[0] - tlo[0]) / 2 + 0.06 - clo[0])
                            seats.append((dx, yy, np.pi if sx > 0 else 0.0))
                rng.shuffle(seats)
                if coffee:
                    seats = []
            for lx, ly, face in seats[:n_chairs]:
                c, s = np.cos(ty), np.sin(ty)
                tc = ((tlo + thi) / 2)[:2]
                px = table["pos"][0] + c * (tc[0] + lx) - s * (tc[1] + ly)
                py = table["pos"][1] + s * (tc[0] + lx) + c * (tc[1] + ly)
                cyaw = ty + face
                # centre the chair's footprint on the seat point
                off = (clo + chi)[:2] / 2
                px -= np.cos(cyaw) * off[0] - np.sin(cyaw) * off[1]
                py -= np.sin(cyaw) * off[0] + np.cos(cyaw) * off[1]
                col = ccolor if matching else self.color("chair")
                ch = self._item("chair", csize, (px, py), cyaw, col)
                if self.fits(room, ch["rect"], group):
                    group.append(ch)
            # insist on the full set at first, settle for one chair later
            need = min(n_chairs, len(seats)) if attempt < 15 else min(n_chairs, 1)
            if len(group) - 1 < need:
                continue
            if self.commit(room, group):
                return True
        return False

    def place_pair_beside(self, room, anchor: dict, category: str) -> None:
        """Two identical pieces flanking an anchor along its wall (bedside lamps, plants)."""
        size = _sample_size(self.rng, category)
        color = self.color(category)
        lo, hi = furniture_bounds(category, size)
        ay = anchor["yaw"]
        alo, ahi = furniture_bounds(anchor["category"], anchor["size"])
        c, s = np.cos(ay), np.sin(ay)
        items = []
        for sy in (-1, 1):
            ly = (ahi[1] + 0.06 - lo[1]) if sy > 0 else (alo[1] - 0.06 - hi[1])
            lx = alo[0] - lo[0] + 0.0  # backs aligned with the anchor's back
            px = anchor["pos"][0] + c * lx - s * ly
            py = anchor["pos"][1] + s * lx + c * ly
            it = self._item(category, size, (px, py), ay, color)
            if self.fits(room, it["rect"], items):
                items.append(it)
        if items:
            self.commit(room, items)


def _door_gap(d: _Door) -> Rect:
    """The floor area of the opening, across the wall thickness."""
    h = DOOR_CLEAR_WIDTH / 2
    t = WALL_THICKNESS / 2 + 0.01
    x, y = d.center
    return (x - h, y - t, x + h, y + t) if d.along == "x" else (x - t, y - h, x + t, y + h)


def _door_keep_free(d: _Door) -> Rect:
    h = DOOR_OPENING / 2 + 0.15
    x, y = d.center
    k = DOOR_CLEARANCE
    return (x - h, y - k, x + h, y + k) if d.along == "x" else (x - k, y - h, x + k, y + h)


def _furnish_room(f: _Furnisher, room: int, kind: str, rng: np.random.Generator) -> None:
    r = rng.random
    if kind == "bedroom":
        bed = f.place_wall(room, "bed")
        if bed is not None and r() < 0.6:
            f.place_pair_beside(room, bed, "lamp" if r() < 0.6 else "plant")
        f.place_wall(room, "cabinet")
        if r() < 0.5:
            f.place_wall(room, "tv")
        if r() < 0.5:
            f.place_free(room, "plant", corner=True)
        if r() < 0.4:
            f.place_wall(room, "bookshelf")
        if r() < 0.3:
            f.place_free(room, "chair", corner=True)
    elif kind == "living room":
        sofa = f.place_wall(room, "sofa")
        if sofa is not None:
            opposite = {0: 1, 1: 0, 2: 3, 3: 2}[sofa["side"]]
            if f.place_wall(room, "tv", side=opposite) is None:
                f.place_wall(room, "tv")
            if r() < 0.6:
                f.place_dining(room, 0, coffee=True)
            if r() < 0.4:
                f.place_pair_beside(room, sofa, "lamp" if r() < 0.5 else "plant")
        else:
            f.place_wall(room, "tv")
        if r() < 0.5:
            f.place_wall(room, "bookshelf")
        n_armchairs = int(rng.integers(0, 3))
        col = f.color("chair")
        for _ in range(n_armchairs):
            f.place_free(room, "chair", color=col, margin=0.3)
        f.place_free(room, "plant", corner=True)
        if r() < 0.5:
            f.place_free(room, "lamp", corner=True)
        if len(f.plan.rects) == 1:  # a studio also eats and sleeps here
            f.place_dining(room, int(rng.integers(2, 5)))
            f.place_wall(room, "bed")
    elif kind == "kitchen":
        # a run of matching cabinets along one wall
        first = f.place_wall(room, "cabinet")
        if first is not None:
            for _ in range(int(rng.integers(0, 3))):
                if f.place_wall(room, "cabinet", size=first["size"], color=first["color"],
                                side=first["side"]) is None:
                    break
        f.place_dining(room, int(rng.integers(2, 5)))
        if r() < 0.6:
            f.place_free(room, "plant", corner=True)
        if r() < 0.3:
            f.place_wall(room, "tv")
    elif kind == "bathroom":
        f.place_wall(room, "toilet")
        f.place_wall(room, "cabinet")
        if r() < 0.5:
            f.place_free(room, "plant", corner=True)
    elif kind == "office":
        f.place_dining(room, 1, against_wall=True)
        shelf = f.place_wall(room, "bookshelf")
        if shelf is not None and r() < 0.5:  # a matching second shelf on the same wall
            f.place_wall(room, "bookshelf", size=shelf["size"], color=shelf["color"], side=shelf["side"])
        if r() < 0.6:
            f.place_free(room, "lamp", corner=True)
        if r() < 0.5:
            f.place_free(room, "plant", corner=True)
        if r() < 0.4:
            f.place_wall(room, "cabinet")
    else:  # pragma: no cover - names come from _room_types
        raise ValueError(f"unknown room type {kind!r}")


# -- geometry ------------------------------------------------------------------


def _floor(b: MeshBuilder, rect: Rect, kind: str, rng: np.random.Generator) -> None:
    """Tiles (wet rooms) or planks (others), one flat colour per tile with jitter."""
    x0, y0, x1, y1 = rect
    quads, cols = [], []
    if kind in ("kitchen", "bathroom"):
        a, c2 = _TILE_FLOORS[int(rng.integers(len(_TILE_FLOORS)))]
        t = 0.5
        xs = np.unique(np.r_[x0, np.arange(np.ceil(x0 / t) * t, x1, t), x1])
        ys = np.unique(np.r_[y0, np.arange(np.ceil(y0 / t) * t, y1, t), y1])
        for i in range(len(xs) - 1):
            for j in range(len(ys) - 1):
                k = int(np.floor(xs[i] / t + 1e-6) + np.floor(ys[j] / t + 1e-6)) % 2
                base = np.array(a if k == 0 else c2, float)
                quads.append((xs[i], ys[j], xs[i + 1], ys[j + 1]))
                cols.append(base + rng.uniform(-10, 10, 3))
    else:
        base = np.array(_WOOD_FLOORS[int(rng.integers(len(_WOOD_FLOORS)))], float)
        pw = 0.25
        along_x = bool(rng.random() < 0.5)
        (u0, u1), (v0, v1) = ((x0, x1), (y0, y1)) if along_x else ((y0, y1), (x0, x1))
        vs = np.unique(np.r_[v0, np.arange(np.ceil(v0 / pw) * pw, v1, pw), v1])
        for j in range(len(vs) - 1):
            u = u0 - float(rng.uniform(0, 1.2))  # staggered joints
            while u < u1:
                e = u + float(rng.uniform(0.9, 1.6))
                a0, a1 = max(u, u0), min(e, u1)
                q = (a0, vs[j], a1, vs[j + 1]) if along_x else (vs[j], a0, vs[j + 1], a1)
                quads.append(q)
                cols.append(base * float(rng.uniform(0.85, 1.12)) + rng.uniform(-6, 6, 3))
                u = e
    q = np.array(quads, float)
    n = len(q)
    v = np.zeros((4 * n, 3))
    v[0::4, 0], v[0::4, 1] = q[:, 0], q[:, 1]
    v[1::4, 0], v[1::4, 1] = q[:, 2], q[:, 1]
    v[2::4, 0], v[2::4, 1] = q[:, 2], q[:, 3]
    v[3::4, 0], v[3::4, 1] = q[:, 0], q[:, 3]
    base_idx = 4 * np.arange(n)[:, None]
    faces = np.vstack([base_idx + [0, 1, 2], base_idx + [0, 2, 3]])
    colors = np.clip(np.vstack([cols, cols]), 0, 255)
    b.add_triangles(v, faces, colors, semantic=_SEM_FLOOR)


def _subtract(lo: float, hi: float, holes: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out, cur = [], lo
    for a, c in sorted(holes):
        if a > cur:
            out.append((cur, min(a, hi)))
        cur = max(cur, c)
    if cur < hi:
        out.append((cur, hi))
    return [(a, c) for a, c in out if c - a > 1e-6]


def _walls(b: MeshBuilder, rects: list[Rect], doors: list[_Door], tints: list[np.ndarray]) -> None:
    """Per-room inner wall faces; shared walls are two half-thickness slabs, one per room."""
    t = WALL_THICKNESS
    skirting = np.array([245, 245, 240.0])
    for k, (x0, y0, x1, y1) in enumerate(rects):
        sides = [  # (along, fixed coordinate, lo, hi, inward sign)
            ("x", y0, x0, x1, +1), ("x", y1, x0, x1, -1),
            ("y", x0, y0, y1, +1), ("y", x1, y0, y1, -1),
        ]
        for along, fixed, lo, hi, inward in sides:
            shared = []
            for j, other in enumerate(rects):
                if j == k:
                    continue
                w = _shared_wall(rects[k], other)
                if w is not None and w[0] == along and abs(w[1] - fixed) < 1e-6:
                    shared.append((w[2], w[3]))
            gaps = []
            for d in doors:
                dc = d.center[0] if along == "x" else d.center[1]
                dfix = d.center[1] if along == "x" else d.center[0]
                if d.along == along and abs(dfix - fixed) < 1e-6 and lo < dc < hi and k in d.rooms:
                    gaps.append((dc - DOOR_OPENING / 2, dc + DOOR_OPENING / 2))
            spans = []
            for sa, sc in _subtract(lo, hi, shared):  # exterior: full thickness
                spans.append((sa, sc, fixed - inward * t / 2, fixed + inward * t / 2))
            for sa, sc in shared:  # shared: a half slab on this room's side
                spans.append((sa, sc, fixed, fixed + inward * t / 2))
            for sa, sc, n0, n1 in spans:
                for pa, pc in _subtract(sa, sc, gaps):
                    _slab(b, along, pa, pc, n0, n1, 0.0, WALL_HEIGHT, tints[k], _SEM_WALL)
                    # skirting board sticks 1.5 cm out of the wall face
                    face = max(n0, n1) if inward > 0 else min(n0, n1)
                    _slab(b, along, pa, pc, face, face + inward * 0.015, 0.0, 0.08, skirting, _SEM_WALL)
                for ga, gc in gaps:  # wall above the door
                    a, c = max(ga, sa), min(gc, sc)
                    if c > a:
                        _slab(b, along, a, c, n0, n1, DOOR_HEIGHT, WALL_HEIGHT, tints[k], _SEM_WALL)
    frame = np.array([235, 232, 225.0])
    for d in doors:
        x, y = d.center
        h = DOOR_OPENING / 2
        c = x if d.along == "x" else y
        fixed = y if d.along == "x" else x
        depth = (fixed - t / 2 - 0.02, fixed + t / 2 + 0.02)
        _slab(b, d.along, c - h, c - h + DOOR_FRAME, *depth, 0.0, DOOR_HEIGHT, frame, _SEM_DOOR)
        _slab(b, d.along, c + h - DOOR_FRAME, c + h, *depth, 0.0, DOOR_HEIGHT, frame, _SEM_DOOR)
        _slab(b, d.along, c - h, c + h, *depth, DOOR_HEIGHT - DOOR_FRAME, DOOR_HEIGHT, frame, _SEM_DOOR)


def _slab(b: MeshBuilder, along: str, a: float, c: float, n0: float, n1: float,
          z0: float, z1: float, color, semantic: int) -> None:
    """Axis-aligned box spanning [a, c] along the wall and [n0, n1] across it."""
    lo_n, hi_n = min(n0, n1), max(n0, n1)
    if along == "x":
        center = ((a + c) / 2, (lo_n + hi_n) / 2, (z0 + z1) / 2)
        size = (c - a, hi_n - lo_n, z1 - z0)
    else:
        center = ((lo_n + hi_n) / 2, (a + c) / 2, (z0 + z1) / 2)
        size = (hi_n - lo_n, c - a, z1 - z0)
    # Structure gets its own gentle per-face shading: the generic Lambert model
    # drops every vertical face to the ambient floor, which turns pale walls grey.
    colors = np.asarray(color, float)[None, :] * _SLAB_SHADE[:, None]
    b.add_box(center, size, np.clip(colors, 0, 255), semantic=semantic, shaded=False)


# per-face factors in geometry._CUBE_F order: -x, +x, -y, +y, -z, +z (two triangles each)
_SLAB_SHADE = np.repeat([0.90, 0.90, 0.80, 0.80, 0.70, 0.97], 2)


def _ceiling(b: MeshBuilder, rect: Rect) -> None:
    x0, y0, x1, y1 = rect
    z = WALL_HEIGHT
    v = [[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]
    b.add_triangles(v, [[0, 2, 1], [0, 3, 2]], (240, 240, 236), semantic=_SEM_CEILING)
    # a ceiling light panel gives an upward glance something to see
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    b.add_box((cx, cy, z - 0.02), (0.6, 0.6, 0.04), (255, 250, 225), semantic=_SEM_CEILING)


# -- entry point ---------------------------------------------------------------


def generate_scene(seed: int, split: str = "train", num_rooms: int | None = None,
                   min_objects: int = 6, scene_id: str | None = None) -> Scene:
    """A furnished multi-room apartment, fully determined by ``seed``.

    ``num_rooms`` (1-4) overrides the seeded choice. ``min_objects`` is a
    floor on the number of furniture instances (extra plants, lamps and chairs
    are added if the room plans place fewer). The scene id defaults to
    ``procgen/<split>/<seed>``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if num_rooms is not None and num_rooms not in (1, 2, 3, 4):
        raise ValueError(f"num_rooms must be 1, 2, 3 or 4, got {num_rooms!r}")
    rng = np.random.default_rng([int(seed), 0x5A7])
    n_rooms = num_rooms or int(rng.choice([1, 2, 3, 4], p=[0.1, 0.3, 0.3, 0.3]))

    rects, doors = _make_layout(rng, n_rooms)
    names = _room_types(rng, rects)
    h = WALL_THICKNESS / 2
    interiors = [(x0 + h, y0 + h, x1 - h, y1 - h) for x0, y0, x1, y1 in rects]
    plan = _Plan(rects=rects, interiors=interiors, doors=doors)
    plan.keep_free = [_door_keep_free(d) for d in doors]

    f = _Furnisher(rng, plan, names)
    for k in np.argsort([-_area(r) for r in rects], kind="stable"):
        _furnish_room(f, int(k), names[k], rng)
    for _ in range(20):
        if len(plan.objects) >= min_objects:
            break
        k = int(rng.integers(len(rects)))
        cat = str(rng.choice(["plant", "lamp", "chair", "cabinet"]))
        if cat == "cabinet":
            f.place_wall(k, cat)
        else:
            f.place_free(k, cat, corner=cat != "chair", margin=0.3)

    b = MeshBuilder()
    for k, rect in enumerate(rects):
        _floor(b, rect, names[k], rng)
    tints = [np.array(_WALL_TINTS[i], float) + rng.uniform(-5, 5, 3)
             for i in rng.permutation(len(_WALL_TINTS))[: len(rects)]]
    _walls(b, rects, doors, tints)
    for rect in rects:
        _ceiling(b, rect)

    instances = []
    deco_rng = np.random.default_rng([int(seed), 0xB00C])
    for i, o in enumerate(plan.objects, start=1):
        inst = add_furniture(b, o["category"], o["color"], o["pos"], o["yaw"], instance_id=i,
                             size=o["size"], room=names[o["room"]], rng=deco_rng)
        instances.append(inst)

    rooms = [Room(id=k, name=names[k], bounds=tuple(float(v) for v in interiors[k]))
             for k in range(len(rects))]
    meta = {
        "source": "procgen",
        "generator": GENERATOR_VERSION,
        "seed": int(seed),
        "split": split,
        "wall_height": WALL_HEIGHT,
        "doors": [{"center": [float(d.center[0]), float(d.center[1])], "along": d.along,
                   "width": DOOR_CLEAR_WIDTH, "rooms": [names[d.rooms[0]], names[d.rooms[1]]]}
                  for d in doors],
    }
    return b.build(scene_id or f"procgen/{split}/{seed}", instances=instances, rooms=rooms,
                   floor_z=0.0, meta=meta)
