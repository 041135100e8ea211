"""ObjectNav episodes with spatial instructions: generation and habitat json.gz I/O.

An episode = scene, start pose, target instance, instruction (text + spec),
view points (navigable poses near the target that see it) and the geodesic
start-to-goal distance d0 (to the nearest view point, as habitat ObjectNav).

Coordinate convention of the episode FILE (habitat's, so habitat users can read it)
----------------------------------------------------------------------------------
habitat is y-up with the agent looking along -z; spatialnav is z-up with yaw
counter-clockwise from +x. A point and a yaw convert as

    position:  (x, y, z)_ours  ->  [x, z, -y]_habitat      (inverse: [a, b, c] -> (a, -c, b))
    rotation:  yaw theta       ->  quaternion [x, y, z, w] = [0, sin(phi/2), 0, cos(phi/2)]
               about habitat's +y, with phi = theta - pi/2
               (inverse: theta = 2 atan2(q_y, q_w) + pi/2, wrapped to (-pi, pi])

Check: theta = pi/2 (looking along our +y) gives phi = 0, the habitat identity,
which looks along habitat -z = our +y. Positions are the agent's base on the
floor (z = scene.floor_z), as habitat's. Position conversion is exact in floating
point (a permutation and a negation); yaw survives the quaternion round trip to
~1e-15 rad. ``NavEpisode.start_position``/``start_rotation`` hold the habitat
values (as in the file); ``NavEpisode.start_pose`` gives ours (x, y, yaw), and
``view_points`` (K, 3) and ``target_center`` are in our frame.

File layout: habitat-lab's ObjectNav v1 dataset (``episodes_to_habitat``), which its own
``ObjectNavDatasetV1.from_json`` reads: the two category tables, ``goals_by_category`` and
episodes with habitat's fields; what habitat has no field for (the instruction and its spec,
needs_relation, the target's colour and instance id) is in each episode's ``info``
(``SPATIALNAV_INFO_KEYS``). ``load_episodes`` also reads our older files and habitat-lab's own.

Generation (``generate_episodes``): for each scene of the split, targets in
random order get the simplest sound instruction (``envs.instructions.describe``);
view points are navigable cells within ``VIEW_RADIUS`` m of the target's box
footprint, on a ~0.1 m lattice, from whose camera (sensor height) a ray to at
least one of 9 points of the target's box hits the target first and lies inside
the camera's field of view when facing the target's centre; a start is a random
navigable cell whose geodesic distance to the view points lies in
[``MIN_GEODESIC``, ``MAX_GEODESIC``]. Everything is seeded by (split, seed).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from envs.geometry import wrap_angle
from envs.instructions import InstructionSpec, describe, point_box_distance_xy, resolve
from envs.scene import ObjectInstance, Scene

VIEW_RADIUS = 1.0  # m from the target's box footprint (habitat ObjectNav view points: 1.0 m)
VIEW_SPACING = 0.1  # m lattice of view points: any point of the region is <= 0.071 m from one
MIN_GEODESIC = 1.5  # m
MAX_GEODESIC = 15.0  # m
SENSOR_HEIGHT = 0.88  # m
HFOV_DEG = 79.0
TURN_DEG = 30.0


# -- coordinate conversion ------------------------------------------------------------

def to_habitat_position(xyz) -> list[float]:
    """Our z-up (x, y, z) -> habitat y-up [x, z, -y]."""
    x, y, z = (float(v) for v in xyz)
    return [x, z, -y]


def from_habitat_position(p) -> np.ndarray:
    """habitat [x, y_up, z] -> our (x, -z, y_up)."""
    a, b, c = (float(v) for v in p)
    return np.array([a, -c, b])


def yaw_to_habitat_rotation(yaw: float) -> list[float]:
    """Our yaw -> habitat quaternion [x, y, z, w] about +y by phi = yaw - pi/2."""
    phi = wrap_angle(float(yaw) - math.pi / 2)
    return [0.0, math.sin(phi / 2), 0.0, math.cos(phi / 2)]


def habitat_rotation_to_yaw(q) -> float:
    """habitat quaternion [x, y, z, w] (a rotation about +y) -> our yaw."""
    qx, qy, qz, qw = (float(v) for v in q)
    n = math.sqrt(qx * qx + qy * qy + qz * qz + qw * qw)
    if n < 1e-9 or abs(qx) / n > 1e-6 or abs(qz) / n > 1e-6:
        raise ValueError(f"rotation {list(q)} is not a unit quaternion about habitat's +y axis "
                         "(navigation episodes rotate the agent about the vertical only)")
    return wrap_angle(2.0 * math.atan2(qy, qw) + math.pi / 2)


# -- the episode ------------------------------------------------------------------------

@dataclass
class NavEpisode:
    """One ObjectNav episode. Positions/rotations named like habitat's are habitat-frame."""

    episode_id: str
    scene_id: str
    start_position: list[float]  # habitat [x, y_up, z]: see the module docstring
    start_rotation: list[float]  # habitat quaternion [x, y, z, w] about +y
    target_id: int
    object_category: str
    instruction: str
    instruction_spec: dict
    view_points: np.ndarray  # (K, 3) ours: [x, y, yaw facing the target]
    geodesic_distance: float  # d0: start to the nearest view point (m)
    needs_relation: bool  # another instance shares the target's category and colour
    target_center: np.ndarray = field(default_factory=lambda: np.zeros(3))  # ours (x, y, z)
    target_color: str = ""
    target_room: str = ""
    floor_z: float = 0.0
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.start_position = [float(v) for v in self.start_position]
        self.start_rotation = [float(v) for v in self.start_rotation]
        self.view_points = np.asarray(self.view_points, np.float64).reshape(-1, 3)
        self.target_center = np.asarray(self.target_center, np.float64).reshape(3)

    @property
    def start_pose(self) -> np.ndarray:
        """Start (x, y, yaw) in our z-up frame."""
        xyz = from_habitat_position(self.start_position)
        return np.array([xyz[0], xyz[1], habitat_rotation_to_yaw(self.start_rotation)])

    @property
    def spec(self) -> InstructionSpec:
        return InstructionSpec.from_dict(self.instruction_spec)

    # habitat layout
    def habitat_goal(self) -> dict[str, Any]:
        """The target as habitat-lab's ``ObjectGoal`` (object_id, object_category, room_name,
        position, view_points of ``ObjectViewLocation``: agent_state and iou). We do not measure
        habitat's view iou, so it is null."""
        fz = self.floor_z
        return {
            "object_id": int(self.target_id),
            "object_category": self.object_category,
            "room_name": self.target_room,
            "position": to_habitat_position(self.target_center),
            "view_points": [
                {"agent_state": {"position": to_habitat_position((x, y, fz)),
                                 "rotation": yaw_to_habitat_rotation(yaw)},
                 "iou": None}
                for x, y, yaw in self.view_points
            ],
        }

    def to_habitat(self) -> dict[str, Any]:
        """One episode as habitat-lab's ``ObjectGoalNavEpisode`` fields, its goal inline; our own
        fields (``SPATIALNAV_INFO_KEYS``) go into its ``info`` dict. ``save_episodes`` moves the
        goals to the file's ``goals_by_category``, as habitat-lab writes ObjectNav v1 files."""
        return {
            "episode_id": str(self.episode_id),
            "scene_id": self.scene_id,
            "start_position": list(self.start_position),
            "start_rotation": list(self.start_rotation),
            "info": {**self.info, "geodesic_distance": float(self.geodesic_distance),
                     "target_object_id": int(self.target_id),
                     "instruction": {"instruction_text": self.instruction, "spec": self.instruction_spec},
                     "needs_relation": bool(self.needs_relation),
                     "object_color": self.target_color},
            "goals": [self.habitat_goal()],
            "object_category": self.object_category,
        }

    @classmethod
    def from_habitat(cls, d: dict[str, Any], goals_by_category: dict | None = None) -> "NavEpisode":
        """An episode in any of three forms: ours (``to_habitat``; goals inline or in the file's
        ``goals_by_category``), our pre-2026-12 form (instruction and needs_relation at the top,
        object_color/object_room in the goal) and habitat-lab's own ObjectNav v1 episodes.

        A habitat-lab episode names a category, not an instance: its goals are every instance of
        the category in the scene, so all their view points count for success (habitat-lab's
        ObjectNav rule); ``target_id`` is ``info["closest_goal_object_id"]`` when the file has it,
        else the first goal; the instruction is the category ("find the chair"); needs_relation
        is False."""
        info = dict(d.get("info") or {})
        goals = list(d.get("goals") or [])
        if not goals and goals_by_category:
            key = habitat_goals_key(d["scene_id"], d["object_category"])
            if key not in goals_by_category:
                raise KeyError(f"goals_by_category has no {key!r} (scene basename _ object_category)")
            goals = list(goals_by_category[key])
        if not goals:
            raise ValueError("the episode has no goals (neither inline nor in the file's goals_by_category)")
        legacy = "instruction" in d
        ours = "target_object_id" in info
        gi = info.pop("goal_index", None)
        if ours:
            tid = info.pop("target_object_id")
        elif legacy:
            tid = goals[0]["object_id"]
        else:  # habitat-lab's own episode
            tid = info.get("closest_goal_object_id", goals[0]["object_id"])
        matching = [g for g in goals if str(g["object_id"]) == str(tid)]
        if gi is not None:  # our file: the episode's own goal (one target may have several view-point sets)
            if not (isinstance(gi, int) and 0 <= gi < len(goals) and str(goals[gi]["object_id"]) == str(tid)):
                raise ValueError(f"info goal_index {gi!r} is not a goal of object {tid!r} (of {len(goals)} goals)")
            matching = [goals[gi]]
        if not matching:
            raise ValueError(f"target object {tid!r} is not among the episode's goals "
                             f"{[g['object_id'] for g in goals]}")
        goal = matching[0]
        # habitat-lab's own episodes: every goal of the category is a goal (its ObjectNav success rule)
        vp_goals = goals if not (ours or legacy) else [goal]
        vps = []
        for g in vp_goals:
            for v in g["view_points"]:
                st = v["agent_state"]
                xyz = from_habitat_position(st["position"])
                vps.append([xyz[0], xyz[1], habitat_rotation_to_yaw(st["rotation"])])
        category = str(d.get("object_category") or goal["object_category"])
        if ours:
            instr = info.pop("instruction")
            needs_relation = bool(info.pop("needs_relation", False))
            color = str(info.pop("object_color", "") or "")
        elif legacy:
            instr = d["instruction"]
            needs_relation = bool(d.get("needs_relation", False))
            color = str(goal.get("object_color", "") or "")
        else:
            spec = InstructionSpec(category=category)
            instr = {"instruction_text": spec.to_text(), "spec": spec.to_dict()}
            needs_relation, color = False, ""
        try:
            target_id = int(tid)
        except (TypeError, ValueError):  # habitat ids that are not numbers: kept in info
            target_id = -1
            info["habitat_object_id"] = tid
        gd = float(info.pop("geodesic_distance"))
        return cls(
            episode_id=str(d["episode_id"]),
            scene_id=str(d["scene_id"]),
            start_position=d["start_position"],
            start_rotation=d["start_rotation"],
            target_id=target_id,
            object_category=category,
            instruction=str(instr["instruction_text"]),
            instruction_spec=dict(instr["spec"]),
            view_points=np.array(vps, np.float64).reshape(-1, 3),
            geodesic_distance=gd,
            needs_relation=needs_relation,
            target_center=from_habitat_position(goal["position"]),
            target_color=color,
            target_room=str(goal.get("room_name", goal.get("object_room", "")) or ""),
            floor_z=float(d["start_position"][1]),
            info=info,
        )


# Our fields that habitat-lab's episode has no place for: they live in each episode's ``info``.
SPATIALNAV_INFO_KEYS = ("target_object_id", "goal_index", "instruction", "needs_relation", "object_color")


def habitat_goals_key(scene_id: str, object_category: str) -> str:
    """habitat-lab's ``ObjectGoalNavEpisode.goals_key``: the scene file's base name and the category."""
    return f"{os.path.basename(str(scene_id))}_{object_category}"


def habitat_category_maps(episodes: Iterable[NavEpisode]) -> tuple[dict[str, int], dict[str, int]]:
    """The two category tables habitat-lab's ObjectNav v1 reader requires: category -> task
    category id (0..K-1, the ``ObjectGoalSensor`` value) and category -> the semantic id our
    renderer's semantic output gives the category (``envs.scene.semantic_id``)."""
    from envs.scene import FURNITURE_CATEGORIES, SEMANTIC_CLASSES

    cats = list(FURNITURE_CATEGORIES)
    cats += sorted({e.object_category for e in episodes} - set(cats))
    task = {c: i for i, c in enumerate(cats)}
    scene = {c: (SEMANTIC_CLASSES.index(c) if c in SEMANTIC_CLASSES else -1) for c in cats}
    return task, scene


def episodes_to_habitat(episodes: Iterable[NavEpisode]) -> dict[str, Any]:
    """The dataset habitat-lab's ``ObjectNavDatasetV1.from_json`` reads: the category tables,
    ``goals_by_category`` and the episodes (goals empty, as habitat-lab writes them).

    habitat-lab gives every episode of one scene and category the same goals
    (``goals_by_category[goals_key]``), so each key holds the targets of all the file's episodes
    with that scene and category (one entry per distinct goal: an instance whose view points
    differ between episodes, being cut to those reachable from each start, has one per set), and
    ``info["goal_index"]`` says which is the episode's own. Two scenes whose file names share a
    base name would share keys, so that is an error."""
    episodes = list(episodes)
    task, scene = habitat_category_maps(episodes)
    goals_by_category: dict[str, list] = {}
    key_scene: dict[str, str] = {}
    rows = []
    for e in episodes:
        row = e.to_habitat()
        key = habitat_goals_key(e.scene_id, e.object_category)
        if key_scene.setdefault(key, e.scene_id) != e.scene_id:
            raise ValueError(f"scenes {key_scene[key]!r} and {e.scene_id!r} share habitat's goals key {key!r} "
                             "(the scene's base name): habitat-lab could not tell their goals apart; "
                             "write them to separate episode files")
        goals = goals_by_category.setdefault(key, [])
        (g,) = row.pop("goals")
        if g not in goals:
            goals.append(g)
        row["info"]["goal_index"] = goals.index(g)
        row["goals"] = []
        rows.append(row)
    return {"category_to_task_category_id": task, "category_to_scene_annotation_category_id": scene,
            "goals_by_category": goals_by_category, "episodes": rows}


def save_episodes(path: str | os.PathLike, episodes: Iterable[NavEpisode]) -> str:
    """Write episodes as habitat-lab's ObjectNav v1 json(.gz) (``episodes_to_habitat``); returns the path."""
    path = os.fspath(path)
    data = episodes_to_habitat(episodes)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    opener = gzip.open if path.endswith(".gz") else open
    tmp = path + ".tmp"
    with opener(tmp, "wt", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)  # never leave a half-written episode file behind
    return path


def load_episodes(path: str | os.PathLike) -> list[NavEpisode]:
    """Read an episode file (.json.gz or .json): ours, our older form or habitat-lab's ObjectNav v1
    (``NavEpisode.from_habitat``; goals inline or in ``goals_by_category``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"episode file {path!r} does not exist; create it with "
            "`spatialnav episodes split=val n=100` or envs.episodes.write_split('val', 100, path)")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"episode file {path!r} is corrupt or not json(.gz): {e}; regenerate it") from e
    if not isinstance(data, dict) or not isinstance(data.get("episodes"), list):
        raise ValueError(f"episode file {path!r}: expected an object with an 'episodes' list (habitat layout)")
    gbc = data.get("goals_by_category") or {}
    if not isinstance(gbc, dict):
        raise ValueError(f"episode file {path!r}: goals_by_category must be an object, got {type(gbc).__name__}")
    out = []
    for i, d in enumerate(data["episodes"]):
        try:
            out.append(NavEpisode.from_habitat(d, gbc))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"episode file {path!r}: episode #{i} is malformed ({type(e).__name__}: {e})") from e
    return out


# -- view points -------------------------------------------------------------------------

def _box_sample_points(o: ObjectInstance) -> np.ndarray:
    """9 points (9, 3) on/in the box: centre, top-face centre, 4 top and 4 mid-height
    points halfway to the corners. Several points so that a partly occluded target
    still counts as visible, and thin parts (chair backs, lamp shades) get hit."""
    hx, hy, hz = o.size / 2
    top = hz - min(0.03, hz * 0.5)
    local = [(0, 0, 0), (0, 0, top)]
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            local.append((sx * hx, sy * hy, top))
            local.append((sx * hx, sy * hy, 0.0))
    local = np.array(local, np.float64)
    f, l = o.front, o.left
    xy = o.center[:2] + local[:, :1] * f + local[:, 1:2] * l
    return np.column_stack([xy, o.center[2] + local[:, 2]])


def _grid_cells_xy(grid) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) indices and world xy (N, 2) of all navigable cells."""
    rows, cols = np.nonzero(grid.navigable)
    xy = np.asarray(grid.cell_to_world(np.stack([rows, cols], 1)), np.float64).reshape(-1, 2)
    return np.stack([rows, cols], 1), xy


def compute_view_points(scene: Scene, grid, renderer, target: ObjectInstance,
                        radius: float = VIEW_RADIUS, spacing: float = VIEW_SPACING,
                        hfov_deg: float = HFOV_DEG, vfov_deg: float | None = None,
                        fov_margin: float = 0.85, cells=None) -> np.ndarray:
    """View points (K, 3) [x, y, yaw] of ``target``: navigable, within ``radius`` of its
    footprint, on a ``spacing`` lattice, seeing it (see module docstring).

    Visibility: camera c = (x, y, floor_z + sensor height), facing the target's
    centre (yaw only, pitch 0). A sample point p of the box is seen if the first
    hit of the ray c -> p belongs to the target instance and p's direction lies
    within ``fov_margin`` x half the horizontal / vertical field of view.
    All rays of all candidate cells go through one batched ``cast``.
    """
    rc, xy = cells if cells is not None else _grid_cells_xy(grid)
    near = point_box_distance_xy(xy, target) <= radius
    # keep one cell per spacing x spacing lattice square (grid cells are finer)
    step = max(1, int(round(spacing / float(grid.cell_size))))
    near &= (rc[:, 0] % step == 0) & (rc[:, 1] % step == 0)
    cand = xy[near]
    if len(cand) == 0:
        return np.zeros((0, 3))
    cam_z = float(scene.floor_z) + float(getattr(renderer, "sensor_height", SENSOR_HEIGHT))
    pts = _box_sample_points(target)  # (P, 3)
    cam = np.column_stack([cand, np.full(len(cand), cam_z)])  # (N, 3)
    d = pts[None, :, :] - cam[:, None, :]  # (N, P, 3)
    dist = np.linalg.norm(d, axis=2)
    dirs = d / np.maximum(dist, 1e-9)[..., None]
    rays = np.concatenate([np.broadcast_to(cam[:, None, :], d.shape), dirs], axis=2).reshape(-1, 6)
    hit = renderer.cast(rays.astype(np.float32))
    prim = hit["primitive_ids"].astype(np.int64)
    nf = len(scene.tri_instance)
    first = np.where((prim >= 0) & (prim < nf), scene.tri_instance[np.clip(prim, 0, nf - 1)], 0)
    seen = (first == target.id).reshape(len(cand), len(pts))
    # field of view when facing the target centre
    yaw = np.arctan2(target.center[1] - cand[:, 1], target.center[0] - cand[:, 0])
    horiz = np.arctan2(d[..., 1], d[..., 0]) - yaw[:, None]
    horiz = np.abs(wrap_angle(horiz))
    vert = np.abs(np.arctan2(d[..., 2], np.hypot(d[..., 0], d[..., 1])))
    w, h = getattr(renderer, "width", 1), getattr(renderer, "height", 1)
    half_h = math.radians(hfov_deg) / 2
    half_v = math.atan(math.tan(half_h) * h / w) if vfov_deg is None else math.radians(vfov_deg) / 2
    in_fov = (horiz <= fov_margin * half_h) & (vert <= fov_margin * half_v)
    ok = (seen & in_fov).any(axis=1)
    return np.column_stack([cand[ok], yaw[ok]])


# -- generation ---------------------------------------------------------------------------

def _field_at(grid, field_: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Geodesic distance of continuous points (N, 2) in a field, as the env measures it."""
    return np.asarray(grid.field_distance(field_, np.asarray(xy, np.float64).reshape(-1, 2))).reshape(-1)


def _split_seeds(split: str):
    from envs.scenes import SPLITS

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    return SPLITS[split]


def episodes_for_scene(scene: Scene, grid, renderer, rng: np.random.Generator, n: int,
                       split: str = "", id_prefix: str = "",
                       min_geodesic: float = MIN_GEODESIC, max_geodesic: float = MAX_GEODESIC,
                       start_candidates: int = 256) -> list[NavEpisode]:
    """Up to ``n`` episodes in one scene, each with a distinct target."""
    out: list[NavEpisode] = []
    instances = list(scene.instances)
    cells = _grid_cells_xy(grid)
    for t_idx in rng.permutation(len(instances)):
        if len(out) >= n:
            break
        target = instances[int(t_idx)]
        spec = describe(target, instances, rng)
        if spec is None:
            continue
        vps = compute_view_points(scene, grid, renderer, target, cells=cells)
        if len(vps) == 0:
            continue
        field_ = grid.geodesic_field(vps[:, :2])
        starts = np.asarray(grid.sample_navigable(rng, start_candidates), np.float64).reshape(-1, 2)
        d = _field_at(grid, field_, starts)
        ok = np.isfinite(d) & (d >= min_geodesic) & (d <= max_geodesic)
        if not ok.any():
            continue
        k = int(rng.choice(np.flatnonzero(ok)))
        start_xy, d0 = starts[k], float(d[k])
        # keep only view points reachable from this start (a view point in a
        # sealed pocket would be a goal nobody can reach)
        from_start = grid.geodesic_field(start_xy[None])
        vps = vps[np.isfinite(_field_at(grid, from_start, vps[:, :2]))]
        yaw = wrap_angle(math.radians(TURN_DEG) * int(rng.integers(12)))
        same = [o for o in instances if o.id != target.id and o.category == target.category
                and o.color == target.color]
        if resolve(spec, instances) != [target]:  # describe() guarantees it; never write a wrong episode
            raise RuntimeError(f"{scene.scene_id}: instruction {spec.to_dict()} does not single out {target.id}")
        out.append(NavEpisode(
            episode_id=f"{id_prefix}{len(out)}",
            scene_id=scene.scene_id,
            start_position=to_habitat_position((start_xy[0], start_xy[1], scene.floor_z)),
            start_rotation=yaw_to_habitat_rotation(yaw),
            target_id=target.id,
            object_category=target.category,
            instruction=spec.to_text(),
            instruction_spec=spec.to_dict(),
            view_points=vps,
            geodesic_distance=d0,
            needs_relation=bool(same),
            target_center=target.center.copy(),
            target_color=target.color,
            target_room=target.room,
            floor_z=float(scene.floor_z),
            info={"split": split},
        ))
    return out


def generate_episodes(split: str, n: int, seed: int = 0, scenes_per_split: int | None = None,
                      episodes_per_scene: int = 5, renderer_threads: int | None = None,
                      progress: bool = False, scene_ids: list[str] | None = None) -> list[NavEpisode]:
    """``n`` episodes from procedural scenes of ``split``; deterministic in (split, seed).

    Scenes are a seeded permutation of the split's seed range; each contributes up
    to ``episodes_per_scene`` episodes (or ceil(n / scenes_per_split) when that is
    given). Scenes that yield fewer (undescribable targets, no valid start) are
    topped up from further scenes. Episode ids are "<scene seed>_<k>".

    ``scene_ids`` (e.g. user mesh paths with their sidecar JSON, or
    "procgen/<split>/<seed>") replaces the split's scenes: the ``n`` episodes are
    spread over them (ids "<split>_<scene index>_<k>").
    """
    from envs.navigation import NavGrid
    from envs.renderer import Renderer
    from envs.scenes import load_scene, procgen_scene_id

    if int(n) < 1:
        raise ValueError(f"n must be >= 1 episodes, got {n}")
    if scene_ids:
        out: list[NavEpisode] = []
        per_scene = math.ceil(n / len(scene_ids))
        for i, sid in enumerate(scene_ids):
            scene = load_scene(str(sid))
            grid = NavGrid.from_scene(scene)
            renderer = Renderer(scene, width=32, height=32, threads=renderer_threads)
            rng = np.random.default_rng([int(seed), zlib.crc32(str(sid).encode())])
            eps = episodes_for_scene(scene, grid, renderer, rng, min(per_scene, n - len(out)), split=split,
                                     id_prefix=f"{split}_{i}_")
            for e in eps:
                # the id the env loads the scene by (a mesh's sidecar may name it otherwise)
                e.scene_id = str(sid)
                e.info.update({"seed": int(seed), "scene_index": i, "scene_name": scene.scene_id})
            out.extend(eps)
        if not out:
            raise ValueError(f"no episodes could be made in {list(scene_ids)}: no instance has a describable "
                               "category, a view point on the navigable floor and a reachable start")
        return out[:n]
    seeds = _split_seeds(split)
    if scenes_per_split is not None:
        if int(scenes_per_split) < 1:
            raise ValueError(f"scenes_per_split must be >= 1, got {scenes_per_split}")
        episodes_per_scene = math.ceil(n / int(scenes_per_split))
    split_key = zlib.crc32(split.encode())
    order = np.random.default_rng([int(seed), split_key]).permutation(len(seeds))
    out: list[NavEpisode] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"episodes {split}")
    max_scenes = max(4 * math.ceil(n / episodes_per_scene), 8)
    for used, j in enumerate(order):
        if len(out) >= n:
            break
        if used >= max_scenes:
            raise RuntimeError(f"generate_episodes({split!r}, n={n}): only {len(out)} episodes from "
                               f"{used} scenes; the scenes yield too few describable targets")
        scene_seed = int(seeds[int(j)])
        scene = load_scene(procgen_scene_id(split, scene_seed))
        grid = NavGrid.from_scene(scene)
        renderer = Renderer(scene, width=32, height=32, threads=renderer_threads)
        rng = np.random.default_rng([int(seed), split_key, scene_seed])
        eps = episodes_for_scene(scene, grid, renderer, rng, min(episodes_per_scene, n - len(out)),
                                 split=split, id_prefix=f"{split}_{scene_seed}_")
        for e in eps:
            e.info.update({"seed": int(seed), "scene_seed": scene_seed})
        out.extend(eps)
        if bar is not None:
            bar.update(len(eps))
    if bar is not None:
        bar.close()
    if len(out) < n:
        raise RuntimeError(f"generate_episodes({split!r}, n={n}): the split has only {len(seeds)} scenes "
                           f"and they yielded {len(out)} episodes")
    return out[:n]


def write_split(split: str, n: int, out_path: str | os.PathLike, seed: int = 0, **kwargs) -> str:
    """Generate ``n`` episodes of ``split`` and save them to ``out_path`` (json.gz); returns the path.
    For the CLI: ``spatialnav episodes split=val n=100``."""
    eps = generate_episodes(split, n, seed=seed, **kwargs)
    return save_episodes(out_path, eps)
