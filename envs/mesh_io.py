"""User meshes (.glb/.gltf/.obj/.ply) plus a sidecar JSON of annotations -> Scene.

Meshes are read with trimesh. Each triangle gets one flat colour: the face
colour, the mean of its vertex colours, or the texture sampled at the
triangle's centroid UV (times the material's base colour factor); a mesh
with no colour at all is neutral grey with the same Lambert shading the
procedural scenes use. Y-up meshes (glTF, Replica/Habitat exports) are
rotated to spatialnav's z-up frame with (x, y, z) -> (x, -z, y).

Sidecar JSON (default: the mesh path with suffix ``.json``); all coordinates
in the z-up world frame, i.e. *after* the up-axis rotation::

    {"scene_id": "my_flat", "up_axis": "z", "floor_z": 0.0,
     "rooms": [{"id": 0, "name": "kitchen", "bounds": [x0, y0, x1, y1]}],
     "instances": [{"id": 1, "category": "chair", "color": "red", "room": "kitchen",
                    "center": [x, y, z], "size": [sx, sy, sz], "yaw": 0.0,
                    "triangle_ids": [optional explicit face indices]}]}

Required per instance: id (int >= 1, unique), category, center, size. A
triangle whose centroid lies inside an instance's oriented box gets that
instance's id (the smallest box wins where boxes overlap; explicit
``triangle_ids`` win over boxes; floor triangles are never claimed by a box)
and the category's semantic class; categories outside
``FURNITURE_CATEGORIES`` get semantic "void" and keep their category string.
See docs/scenes.md.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from envs.geometry import shade
from envs.scene import FURNITURE_CATEGORIES, ObjectInstance, Room, Scene, semantic_id

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
NEUTRAL_GREY = (180, 180, 180)
_SEM_FLOOR = semantic_id("floor")


class MeshSceneError(ValueError):
    """A user mesh or its sidecar cannot be turned into a Scene; the message names the file."""


# -- mesh ----------------------------------------------------------------------


def _face_colors(mesh) -> tuple[np.ndarray | None, bool]:
    """(F, 3) float colours of one trimesh mesh, and whether they came from the file."""
    import trimesh

    vis = mesh.visual
    faces = np.asarray(mesh.faces)
    kind = getattr(vis, "kind", None)
    if kind == "face":
        return np.asarray(vis.face_colors, float)[:, :3], True
    if kind == "vertex":
        vc = np.asarray(vis.vertex_colors, float)[:, :3]
        return vc[faces].mean(axis=1), True
    if isinstance(vis, trimesh.visual.TextureVisuals):
        mat = vis.material
        image = getattr(mat, "image", None)
        if image is None:
            image = getattr(mat, "baseColorTexture", None)
        factor = np.ones(3)
        bcf = getattr(mat, "baseColorFactor", None)
        if bcf is not None:
            factor = np.asarray(bcf, float)[:3] / 255.0
        if vis.uv is not None and len(vis.uv) == len(mesh.vertices) and image is not None:
            tex = np.asarray(image.convert("RGB"), float)
            uv = np.asarray(vis.uv, float)[faces].mean(axis=1)  # centroid UV
            u, v = np.mod(uv[:, 0], 1.0), np.mod(uv[:, 1], 1.0)
            h, w = tex.shape[:2]
            # UV origin is the bottom-left of the image
            rows = np.clip(np.round((1.0 - v) * (h - 1)).astype(int), 0, h - 1)
            cols = np.clip(np.round(u * (w - 1)).astype(int), 0, w - 1)
            return tex[rows, cols] * factor, True
        if mat is not None and getattr(mat, "main_color", None) is not None:
            return np.broadcast_to(np.asarray(mat.main_color, float)[:3], (len(faces), 3)).copy(), True
    return None, False


def _check_ascii_ply(path: Path) -> None:
    """An ASCII .ply must hold as many data lines as its header declares elements: trimesh reads a
    cut file without complaint and returns only the triangles before the cut."""
    with open(path, "rb") as f:
        head = f.read(5)
        if not (head.startswith(b"ply\n") or head == b"ply\r\n"):
            return  # not a PLY: trimesh reports it
        f.seek(0)
        header, declared = [], 0
        for raw in f:
            line = raw.decode("ascii", errors="replace").strip()
            header.append(line)
            if line.startswith("format") and "ascii" not in line:
                return  # binary: trimesh checks the byte count itself
            if line.startswith("element"):
                parts = line.split()
                try:
                    declared += int(parts[2])
                except (IndexError, ValueError):
                    raise MeshSceneError(f"{path}: bad PLY header line {line!r}") from None
            if line == "end_header":
                break
        else:
            raise MeshSceneError(f"{path}: PLY header has no end_header line (the file is cut or not a PLY)")
        have = sum(1 for raw in f if raw.strip())
    if have < declared:
        raise MeshSceneError(f"{path}: truncated ASCII PLY: the header declares {declared} elements "
                             f"(vertices + faces) but the file holds {have} data lines; export the mesh again")


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """vertices (V,3), faces (F,3), colours (F,3) float, has_colour (F,) bool."""
    import trimesh

    if path.suffix.lower() == ".ply":
        _check_ascii_ply(path)
    try:
        loaded = trimesh.load(str(path), force="scene", process=False)
    except Exception as e:  # trimesh raises many types for corrupt files
        raise MeshSceneError(f"{path}: could not read mesh ({type(e).__name__}: {e})") from e
    try:
        geoms = loaded.dump()
    except Exception as e:
        raise MeshSceneError(f"{path}: could not read mesh ({type(e).__name__}: {e})") from e
    meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh) and len(g.faces) > 0]
    if not meshes:
        raise MeshSceneError(
            f"{path}: mesh has no triangle faces (point clouds and empty or unparsable files "
            "are not supported; export a triangle mesh)"
        )
    vs, fs, cs, has = [], [], [], []
    nv = 0
    for m in meshes:
        v = np.asarray(m.vertices, float)
        f = np.asarray(m.faces, np.int64)
        if f.ndim != 2 or f.shape[1] != 3:
            raise MeshSceneError(f"{path}: faces must be triangles, got shape {f.shape}")
        col, ok = _face_colors(m)
        if col is None:
            col = np.broadcast_to(np.asarray(NEUTRAL_GREY, float), (len(f), 3))
        vs.append(v)
        fs.append(f + nv)
        cs.append(col)
        has.append(np.full(len(f), ok))
        nv += len(v)
    v = np.vstack(vs)
    if not np.isfinite(v).all():
        raise MeshSceneError(f"{path}: vertices contain NaN or inf")
    return v, np.vstack(fs), np.vstack(cs), np.concatenate(has)


def _to_z_up(v: np.ndarray, up_axis: str) -> np.ndarray:
    if up_axis == "z":
        return v
    # rotation of +90 deg about x: y (up) -> z, z -> -y; keeps the frame right-handed
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)


def _from_z_up(v: np.ndarray, up_axis: str) -> np.ndarray:
    if up_axis == "z":
        return v
    return np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)


def _normals(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals and face areas."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    norm = np.linalg.norm(n, axis=1)
    return n / np.maximum(norm, 1e-12)[:, None], norm / 2


def estimate_floor_z(vertices: np.ndarray, faces: np.ndarray, bin_size: float = 0.02) -> float:
    """Height of the lowest large horizontal surface.

    Horizontal triangles (|n_z| > 0.9) are binned by centroid height with
    their area as weight; the floor is the lowest bin holding at least 20% of
    the largest bin's area, so scan noise below the floor is ignored while a
    floor that is smaller than, say, a large table top is still found. Returns
    the area-weighted mean height inside that bin.
    """
    v = np.asarray(vertices, float)
    f = np.asarray(faces, np.int64)
    n, area = _normals(v, f)
    z = v[f].mean(axis=1)[:, 2]
    horiz = (np.abs(n[:, 2]) > 0.9) & (area > 0)
    if not horiz.any():
        return float(v[:, 2].min())
    zh, ah = z[horiz], area[horiz]
    idx = np.floor((zh - zh.min()) / bin_size).astype(int)
    weight = np.bincount(idx, weights=ah)
    k = int(np.nonzero(weight >= 0.2 * weight.max())[0][0])
    sel = idx == k
    return float(np.average(zh[sel], weights=ah[sel]))


# -- sidecar -------------------------------------------------------------------


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MeshSceneError(f"{path}: sidecar is not UTF-8 text ({e})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise MeshSceneError(
            f"{path}: invalid JSON at line {e.lineno}, column {e.colno} (char {e.pos}): {e.msg}"
        ) from e
    if not isinstance(data, dict):
        raise MeshSceneError(f"{path}: sidecar must be a JSON object, got {type(data).__name__}")
    return data


def _numbers(value, n: int, where: str, src: Path) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise MeshSceneError(f"{src}: {where} must be {n} numbers, got {value!r}") from None
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise MeshSceneError(f"{src}: {where} must be {n} finite numbers, got {value!r}")
    return arr


def _parse_rooms(data: dict, src: Path) -> list[Room]:
    rooms_raw = data.get("rooms", [])
    if not isinstance(rooms_raw, list):
        raise MeshSceneError(f"{src}: 'rooms' must be a list")
    rooms = []
    for i, r in enumerate(rooms_raw):
        if not isinstance(r, dict):
            raise MeshSceneError(f"{src}: rooms[{i}] must be an object")
        for key in ("name", "bounds"):
            if key not in r:
                raise MeshSceneError(f"{src}: rooms[{i}] is missing required key {key!r}")
        b = _numbers(r["bounds"], 4, f"rooms[{i}].bounds", src)
        if not (b[0] < b[2] and b[1] < b[3]):
            raise MeshSceneError(f"{src}: rooms[{i}].bounds must be [xmin, ymin, xmax, ymax] "
                                 f"with min < max, got {r['bounds']!r}")
        rooms.append(Room(id=int(r.get("id", i)), name=str(r["name"]), bounds=tuple(float(x) for x in b)))
    return rooms


def _parse_instances(data: dict, src: Path, n_faces: int, rooms: list[Room]):
    raw = data.get("instances", [])
    if not isinstance(raw, list):
        raise MeshSceneError(f"{src}: 'instances' must be a list")
    out, explicit, seen = [], {}, set()
    for i, d in enumerate(raw):
        if not isinstance(d, dict):
            raise MeshSceneError(f"{src}: instances[{i}] must be an object, got {type(d).__name__}")
        for key in ("id", "category", "center", "size"):
            if key not in d:
                raise MeshSceneError(f"{src}: instances[{i}] is missing required key {key!r}")
        iid = d["id"]
        if isinstance(iid, bool) or not isinstance(iid, int) or iid < 1:
            raise MeshSceneError(
                f"{src}: instances[{i}].id must be an int >= 1 (0 is structure), got {iid!r}")
        if iid in seen:
            raise MeshSceneError(f"{src}: instances[{i}].id {iid} is used twice")
        seen.add(iid)
        center = _numbers(d["center"], 3, f"instances[{i}].center", src)
        size = _numbers(d["size"], 3, f"instances[{i}].size", src)
        if (size <= 0).any():
            raise MeshSceneError(f"{src}: instances[{i}].size must be 3 positive extents (x, y, z) "
                                 f"in metres, got {d['size']!r}")
        try:
            yaw = float(d.get("yaw", 0.0))
        except (TypeError, ValueError):
            raise MeshSceneError(
                f"{src}: instances[{i}].yaw must be a number (radians), got {d['yaw']!r}") from None
        if not np.isfinite(yaw):
            raise MeshSceneError(f"{src}: instances[{i}].yaw must be finite")
        room = d.get("room")
        if room is None:  # infer from the room bounds
            hit = [r for r in rooms if r.contains(center[:2])]
            room = hit[0].name if hit else ""
        for key in ("category", "color", "room"):
            value = d["category"] if key == "category" else (room if key == "room" else d.get(key, ""))
            if not isinstance(value, str) or (key == "category" and not value.strip()):
                raise MeshSceneError(f"{src}: instances[{i}].{key} must be a{' non-empty' if key == 'category' else ''} "
                                     f"string (e.g. \"chair\"), got {value!r}")
        inst = ObjectInstance(id=iid, category=str(d["category"]), color=str(d.get("color", "")),
                              room=str(room), center=center, size=size, yaw=yaw)
        if "triangle_ids" in d and d["triangle_ids"] is not None:
            try:
                ids = np.asarray(d["triangle_ids"], dtype=np.int64).reshape(-1)
            except (TypeError, ValueError):
                raise MeshSceneError(f"{src}: instances[{i}].triangle_ids must be a list of ints") from None
            if len(ids) and (ids.min() < 0 or ids.max() >= n_faces):
                raise MeshSceneError(f"{src}: instances[{i}].triangle_ids out of range [0, {n_faces})")
            explicit[iid] = ids
        out.append(inst)
    return out, explicit


def points_in_box(points: np.ndarray, inst: ObjectInstance, tol: float = 1e-4) -> np.ndarray:
    """Mask of points (N, 3) inside the instance's oriented box (+ tol)."""
    d = np.asarray(points, float) - inst.center
    c, s = np.cos(inst.yaw), np.sin(inst.yaw)
    local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)
    return (np.abs(local) <= inst.size / 2 + tol).all(axis=1)


# -- public API ----------------------------------------------------------------


def load_mesh_scene(path, annotations=None, up_axis: str | None = None, scene_id: str | None = None,
                    shading: bool | None = None) -> Scene:
    """Load a user mesh plus annotations as a Scene.

    ``annotations``: a sidecar path, an already-parsed dict, or None for
    ``<mesh stem>.json`` next to the mesh (missing -> no instances, a warning).
    ``up_axis``: "z" or "y"; None takes the sidecar's ``up_axis``, else "y"
    for glTF (the format is y-up by specification) and "z" otherwise.
    ``shading``: bake Lambert shading into colours; None shades only faces
    that carry no colour in the file (scans already have lighting baked in).
    """
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshSceneError(
            f"{path}: unsupported mesh format {path.suffix!r}; use one of {', '.join(MESH_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mesh file not found")

    v, f, col, has_col = _read_mesh(path)  # mesh problems are reported first

    src: Path | None
    if isinstance(annotations, dict):
        data, src = annotations, Path(f"{path} (annotations dict)")
    else:
        src = Path(annotations) if annotations is not None else path.with_suffix(".json")
        if src.is_file():
            data = _read_sidecar(src)
        elif annotations is not None:
            raise FileNotFoundError(f"{src}: annotation sidecar not found")
        else:
            warnings.warn(f"{path}: no sidecar {src.name} found; the scene will have no object instances",
                          stacklevel=2)
            data, src = {}, None
    where = src if src is not None else path

    up = up_axis or data.get("up_axis") or ("y" if path.suffix.lower() in (".glb", ".gltf") else "z")
    if up not in ("z", "y"):
        raise MeshSceneError(f"{where}: up_axis must be 'z' or 'y', got {up!r}")

    v = _to_z_up(v, up)
    n, _ = _normals(v, f)
    do_shade = ~has_col if shading is None else np.full(len(f), bool(shading))
    if do_shade.any():
        # geometry.shade on a unit colour returns the Lambert factor per face
        lam = shade(np.ones(3), n[do_shade])[:, 0]
        col = col.copy()
        col[do_shade] = col[do_shade] * lam[:, None]
    tri_color = np.clip(np.round(col), 0, 255).astype(np.uint8)

    if "floor_z" in data and data["floor_z"] is not None:
        try:
            floor_z = float(data["floor_z"])
        except (TypeError, ValueError):
            raise MeshSceneError(f"{where}: floor_z must be a number, got {data['floor_z']!r}") from None
    else:
        floor_z = estimate_floor_z(v, f)

    rooms = _parse_rooms(data, where)
    instances, explicit = _parse_instances(data, where, len(f), rooms)
    lo, hi = v.min(axis=0), v.max(axis=0)
    for k, o in enumerate(instances):  # a box that misses the mesh entirely is a wrong frame or unit, not a detail
        r = float(np.linalg.norm(o.size)) / 2
        if ((o.center + r) < lo).any() or ((o.center - r) > hi).any():
            raise MeshSceneError(
                f"{where}: instance {o.id} ({o.category}) has its box at {o.center.round(2).tolist()} "
                f"(size {o.size.round(2).tolist()}), outside the mesh's bounds {lo.round(2).tolist()} .. "
                f"{hi.round(2).tolist()} (z-up, metres): check its center, the units and up_axis")

    centroids = v[f].mean(axis=1)
    is_floor = (np.abs(n[:, 2]) > 0.9) & (np.abs(centroids[:, 2] - floor_z) < 0.05)
    tri_instance = np.zeros(len(f), np.int32)
    tri_semantic = np.where(is_floor, _SEM_FLOOR, 0).astype(np.int32)
    sem_of = {o.id: (semantic_id(o.category) if o.category in FURNITURE_CATEGORIES else 0) for o in instances}
    # larger boxes first so that smaller (more specific) boxes overwrite them
    for o in sorted(instances, key=lambda o: -float(np.prod(o.size))):
        if o.id in explicit:
            continue
        m = points_in_box(centroids, o) & ~is_floor
        tri_instance[m] = o.id
        tri_semantic[m] = sem_of[o.id]
    for iid, ids in explicit.items():
        tri_instance[ids] = iid
        tri_semantic[ids] = sem_of[iid]
    for o in instances:
        if not (tri_instance == o.id).any():
            warnings.warn(f"{where}: instance {o.id} ({o.category}) covers no triangle of {path.name}; "
                          "check its center/size/yaw (z-up frame)", stacklevel=2)

    sid = scene_id or data.get("scene_id") or str(path)
    meta = {"source": "mesh", "path": str(path), "sidecar": str(src) if src else None, "up_axis": up}
    return Scene(scene_id=str(sid), vertices=v, triangles=f, tri_color=tri_color,
                 tri_instance=tri_instance, tri_semantic=tri_semantic,
                 instances=instances, rooms=rooms, floor_z=floor_z, meta=meta)


def save_mesh_scene(scene: Scene, path, up_axis: str = "z") -> tuple[Path, Path]:
    """Write ``scene`` as a .ply with face colours plus its sidecar JSON.

    Instance triangles are written as explicit ``triangle_ids`` so that
    ``load_mesh_scene`` restores the per-triangle instance ids exactly.
    ``up_axis="y"`` writes the mesh y-up (the annotations stay z-up).
    Returns (mesh path, sidecar path).
    """
    import trimesh

    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise MeshSceneError(f"{path}: save_mesh_scene writes .ply only")
    if up_axis not in ("z", "y"):
        raise MeshSceneError(f"up_axis must be 'z' or 'y', got {up_axis!r}")
    v = _from_z_up(scene.vertices.astype(np.float64), up_axis)
    rgba = np.concatenate([scene.tri_color, np.full((scene.num_triangles, 1), 255, np.uint8)], axis=1)
    mesh = trimesh.Trimesh(vertices=v, faces=scene.triangles, face_colors=rgba, process=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(str(path), file_type="ply", encoding="binary")
    instances = []
    for o in scene.instances:
        d = o.to_dict()
        d["triangle_ids"] = np.nonzero(scene.tri_instance == o.id)[0].tolist()
        instances.append(d)
    side = {
        "scene_id": scene.scene_id,
        "up_axis": up_axis,
        "floor_z": float(scene.floor_z),
        "rooms": [r.to_dict() for r in scene.rooms],
        "instances": instances,
    }
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(side, indent=1))
    return path, sidecar
