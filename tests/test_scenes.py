"""Procedural apartments, furniture, split ids, and user-mesh loading."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from envs.furniture import COLORS, add_furniture, allowed_colors
from envs.geometry import MeshBuilder
from envs.mesh_io import MeshSceneError, estimate_floor_z, load_mesh_scene, save_mesh_scene
from envs.procgen import AGENT_RADIUS, generate_scene
from envs.scene import FURNITURE_CATEGORIES, SEMANTIC_CLASSES, semantic_id
from envs.scenes import SPLITS, load_scene, procgen_scene_id

SEEDS = range(8)


@pytest.fixture(scope="module")
def scenes():
    return {s: generate_scene(s) for s in SEEDS}


# -- furniture -------------------------------------------------------------------


def test_furniture_tags_triangles_and_bounds_them_tightly():
    b = MeshBuilder()
    insts = []
    for k, cat in enumerate(FURNITURE_CATEGORIES):
        insts.append(add_furniture(b, cat, "blue", (3.0 * k, 1.0), yaw=0.7 * k, instance_id=k + 1))
    scene = b.build("furniture", instances=insts)
    pts = scene.vertices
    shapes = set()
    for o in insts:
        tris = scene.tri_instance == o.id
        assert tris.sum() >= 24, o.category  # several primitives, not a lone box
        assert (scene.tri_semantic[tris] == semantic_id(o.category)).all()
        v = pts[np.unique(scene.triangles[tris])] - o.center
        c, s = np.cos(o.yaw), np.sin(o.yaw)
        local = np.stack([c * v[:, 0] + s * v[:, 1], -s * v[:, 0] + c * v[:, 1], v[:, 2]], 1)
        # every vertex inside the box, and the box touched on every side (tight)
        assert (np.abs(local) <= o.size / 2 + 1e-4).all(), o.category
        # tight up to the faceting of 12-sided cylinders (r * (1 - cos 15 deg) < 1 cm)
        np.testing.assert_allclose(np.abs(local).max(0), o.size / 2, atol=0.01)
        assert o.center[2] - o.size[2] / 2 == pytest.approx(0.0, abs=1e-6)  # stands on the floor
        shapes.add((int(tris.sum()), tuple(np.round(o.size, 2))))
    assert len(shapes) == len(FURNITURE_CATEGORIES)  # geometry differs per category
    # the colour variant paints the main parts: the named colour appears (shaded) on each piece
    blue = np.array(COLORS["blue"], float)
    for o in insts:
        cols = scene.tri_color[scene.tri_instance == o.id].astype(float)
        ratio = cols / blue
        assert (np.ptp(ratio, axis=1) < 0.05).any(), o.category
    assert "green" not in allowed_colors("plant")


def test_furniture_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown furniture category 'stool'"):
        add_furniture(MeshBuilder(), "stool", "red", (0, 0), 0.0, 1)
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        add_furniture(MeshBuilder(), "chair", "pink", (0, 0), 0.0, 1)


# -- procedural apartments ---------------------------------------------------------


def test_generate_scene_is_deterministic(scenes):
    a, b = scenes[3], generate_scene(3)
    for name in ("vertices", "triangles", "tri_color", "tri_instance", "tri_semantic"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert [o.to_dict() for o in a.instances] == [o.to_dict() for o in b.instances]
    assert a.meta["seed"] == 3 and a.meta["split"] == "train" and a.meta["generator"]
    c = scenes[4]
    assert a.num_triangles != c.num_triangles or not np.array_equal(a.vertices, c.vertices)


def test_scenes_have_rooms_categories_and_valid_boxes(scenes):
    cats = Counter()
    for seed, s in scenes.items():
        assert 1 <= len(s.rooms) <= 4
        assert 6 <= len(s.instances)
        assert s.num_triangles <= 20_000
        assert len({r.name for r in s.rooms}) == len(s.rooms)
        rooms = {r.name: r for r in s.rooms}
        for o in s.instances:
            cats[o.category] += 1
            assert o.category in FURNITURE_CATEGORIES and o.color in COLORS
            assert (o.size > 0).all()
            x0, y0, x1, y1 = rooms[o.room].bounds
            cxy = o.corners()[:, :2]
            assert (cxy[:, 0] >= x0 - 1e-6).all() and (cxy[:, 0] <= x1 + 1e-6).all(), (seed, o)
            assert (cxy[:, 1] >= y0 - 1e-6).all() and (cxy[:, 1] <= y1 + 1e-6).all(), (seed, o)
            assert (s.tri_instance == o.id).any()
        # furniture footprints do not overlap (yaws are multiples of 90 deg: AABB test is exact)
        fp = [(o.corners()[:, :2].min(0), o.corners()[:, :2].max(0)) for o in s.instances]
        for i in range(len(fp)):
            for j in range(i + 1, len(fp)):
                sep = (fp[i][1] <= fp[j][0] + 1e-6) | (fp[j][1] <= fp[i][0] + 1e-6)
                assert sep.any(), (seed, s.instances[i], s.instances[j])
        # structure classes present
        sem = set(np.unique(s.tri_semantic))
        assert {semantic_id("wall"), semantic_id("floor"), semantic_id("ceiling")} <= sem
    assert set(cats) == set(FURNITURE_CATEGORIES)
    # the floor texture gives many distinct colours (visible motion), walls are tinted
    floor = scenes[0].tri_color[scenes[0].tri_semantic == semantic_id("floor")]
    assert len(np.unique(floor, axis=0)) > 50


def test_some_room_has_same_category_and_colour_twice(scenes):
    found = []
    for seed, s in scenes.items():
        c = Counter((o.room, o.category, o.color) for o in s.instances)
        found += [(seed, k) for k, n in c.items() if n >= 2]
    assert found


def _occupancy_connected(scene, cell=0.05, radius=AGENT_RADIUS):
    """True if every room's free space near its centre is in one component for the agent disc."""
    lo, hi = scene.bounds
    nx, ny = int(np.ceil((hi[0] - lo[0]) / cell)), int(np.ceil((hi[1] - lo[1]) / cell))
    xs = lo[0] + (np.arange(nx) + 0.5) * cell
    ys = lo[1] + (np.arange(ny) + 0.5) * cell
    X, Y = np.meshgrid(xs, ys)
    occ = np.zeros((ny, nx), bool)
    # walls, door frames and furniture that overlap the agent's height band (0.05-1.5 m; the wall
    # above a door does not block), rasterised by sampling their edges every half cell
    v, t = scene.vertices, scene.triangles
    blocking = (scene.tri_semantic == semantic_id("wall")) | (scene.tri_semantic == semantic_id("door")) \
        | (scene.tri_instance > 0)
    tri = v[t[blocking]].astype(float)
    zs = tri[:, :, 2]
    tri = tri[(zs.min(1) < 1.5) & (zs.max(1) > 0.05)]
    pts = []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        n = int(np.ceil(np.linalg.norm(tri[:, b, :2] - tri[:, a, :2], axis=1).max() / (cell / 2))) + 1
        w = np.linspace(0, 1, n)
        pts.append(tri[:, a, None, :2] * (1 - w)[None, :, None] + tri[:, b, None, :2] * w[None, :, None])
    pts = np.concatenate(pts, 1).reshape(-1, 2)
    ci = np.clip(((pts[:, 0] - lo[0]) / cell).astype(int), 0, nx - 1)
    ri = np.clip(((pts[:, 1] - lo[1]) / cell).astype(int), 0, ny - 1)
    occ[ri, ci] = True
    # object footprints are solid in plan view (their faces only outline them)
    for o in scene.instances:
        q0, q1 = o.corners()[:, :2].min(0), o.corners()[:, :2].max(0)
        occ[(X >= q0[0]) & (X <= q1[0]) & (Y >= q0[1]) & (Y <= q1[1])] = True
    nav = ndimage.distance_transform_edt(~occ) * cell > radius
    labels, _ = ndimage.label(nav)
    comps = set()
    for r in scene.rooms:
        cx, cy = (r.bounds[0] + r.bounds[2]) / 2, (r.bounds[1] + r.bounds[3]) / 2
        # the nearest navigable cell to the room centre (the centre may hold a table)
        x0, y0, x1, y1 = r.bounds
        rr, cc = np.nonzero(nav & (X >= x0) & (X <= x1) & (Y >= y0) & (Y <= y1))
        assert len(rr), f"room {r.name} has no navigable cell"
        k = np.argmin((xs[cc] - cx) ** 2 + (ys[rr] - cy) ** 2)
        comps.add(labels[rr[k], cc[k]])
    return len(comps) == 1


def test_doorways_connect_all_rooms_for_the_agent(scenes):
    multi = [s for s in scenes.values() if len(s.rooms) >= 3]
    assert multi
    for s in multi[:2]:
        assert _occupancy_connected(s), s.scene_id
        for d in s.meta["doors"]:
            assert 0.9 <= d["width"] <= 1.0
    # the check can fail: a disc wider than the doors cannot leave its room
    assert not _occupancy_connected(multi[0], radius=0.55)


# -- split ids -------------------------------------------------------------------------


def test_splits_are_disjoint_and_ids_checked():
    names = list(SPLITS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not set(SPLITS[a]) & set(SPLITS[b])
    assert procgen_scene_id("val", 100_005) == "procgen/val/100005"
    with pytest.raises(ValueError, match="outside the test split"):
        procgen_scene_id("test", 5)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_scene("procgen/dev/1")
    with pytest.raises(ValueError, match="outside the train split"):
        load_scene("procgen/train/100500")
    with pytest.raises(ValueError, match="unknown scene id"):
        load_scene("matterport/abc")
    s = load_scene("procgen/val/100001")
    assert s is load_scene("procgen/val/100001")  # cached
    assert s.scene_id == "procgen/val/100001" and s.meta["split"] == "val"


# -- user meshes -------------------------------------------------------------------------


def test_mesh_round_trip_keeps_annotations(scenes, tmp_path):
    s = scenes[2]
    mesh, side = save_mesh_scene(s, tmp_path / "flat.ply")
    t = load_mesh_scene(mesh)
    assert t.num_triangles == s.num_triangles
    np.testing.assert_allclose(t.vertices, s.vertices, atol=1e-6)
    np.testing.assert_array_equal(t.tri_color, s.tri_color)
    np.testing.assert_array_equal(t.tri_instance, s.tri_instance)
    assert [o.to_dict() for o in t.instances] == [o.to_dict() for o in s.instances]
    assert [r.to_dict() for r in t.rooms] == [r.to_dict() for r in s.rooms]
    assert t.scene_id == s.scene_id
    # through load_scene by path, and with boxes only (no triangle ids): boxes claim the objects
    assert load_scene(str(mesh)).num_triangles == s.num_triangles
    data = json.loads(side.read_text())
    for d in data["instances"]:
        del d["triangle_ids"]
    u = load_mesh_scene(mesh, annotations=data)
    obj = s.tri_instance > 0
    assert (u.tri_instance[obj] == s.tri_instance[obj]).mean() > 0.85
    assert (u.tri_instance[~obj] == 0).all()


def test_y_up_mesh_is_rotated_to_z_up(scenes, tmp_path):
    s = scenes[1]
    mesh, _ = save_mesh_scene(s, tmp_path / "yup.ply", up_axis="y")
    import trimesh

    raw = trimesh.load(str(mesh), process=False)
    assert np.ptp(raw.vertices[:, 1]) == pytest.approx(np.ptp(s.vertices[:, 2]), abs=1e-5)  # height on y
    t = load_mesh_scene(mesh)  # sidecar says y
    np.testing.assert_allclose(t.vertices, s.vertices, atol=1e-5)
    np.testing.assert_array_equal(t.tri_instance, s.tri_instance)
    # floor found without a hint: the lowest large horizontal surface
    assert estimate_floor_z(t.vertices, t.triangles) == pytest.approx(0.0, abs=0.02)
    # a lifted copy with a few noise triangles below the floor still finds the floor
    v = t.vertices + np.array([0, 0, 1.3])
    noise = np.array([[0, 0, 0.9], [0.05, 0, 0.9], [0, 0.05, 0.9]])
    f = np.vstack([t.triangles, len(v) + np.arange(3)[None]])
    assert estimate_floor_z(np.vstack([v, noise]), f) == pytest.approx(1.3, abs=0.02)


def test_textured_and_vertex_coloured_meshes(tmp_path):
    import trimesh
    from PIL import Image

    # a unit quad; its two triangles' centroid UVs fall in different texels
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = v[:, :2]
    tex = np.zeros((2, 2, 3), np.uint8)
    tex[1, 1] = (255, 0, 0)  # bottom-right texel: u > .5, v < .5 (triangle 0)
    tex[0, 0] = (0, 0, 255)  # top-left texel: u < .5, v > .5 (triangle 1)
    # glTF base colour = texture * baseColorFactor (white here, so texels come through unchanged)
    mat = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex),
                                               baseColorFactor=[255, 255, 255, 255])
    m = trimesh.Trimesh(v, f, visual=trimesh.visual.TextureVisuals(uv=uv, material=mat), process=False)
    m.export(str(tmp_path / "quad.glb"))
    with pytest.warns(UserWarning, match="no sidecar"):
        s = load_mesh_scene(tmp_path / "quad.glb", up_axis="z")
    assert s.tri_color[0].tolist() == [255, 0, 0] and s.tri_color[1].tolist() == [0, 0, 255]
    vc = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255], [255, 255, 255, 255]], np.uint8)
    trimesh.Trimesh(v, f, vertex_colors=vc, process=False).export(str(tmp_path / "vc.ply"))
    with pytest.warns(UserWarning):
        s = load_mesh_scene(tmp_path / "vc.ply")
    np.testing.assert_allclose(s.tri_color[0], [85, 85, 85], atol=1)  # mean of red, green, blue
    trimesh.Trimesh(v, f, process=False).export(str(tmp_path / "plain.obj"))
    with pytest.warns(UserWarning):
        s = load_mesh_scene(tmp_path / "plain.obj")
    assert (s.tri_color > 50).all() and len(np.unique(s.tri_color[:, 0] - s.tri_color[:, 1])) == 1  # grey


def _quad_ply(path):
    import trimesh

    # a 4 m floor quad and one small triangle 0.5 m above it
    v = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0],
                  [1, 1, 0.5], [1.4, 1, 0.5], [1, 1.4, 0.5]], float)
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    trimesh.Trimesh(v, f, process=False).export(str(path))
    return path


def test_sidecar_instances_assign_triangles_and_unknown_categories(tmp_path):
    mesh = _quad_ply(tmp_path / "room.ply")
    side = {"rooms": [{"id": 0, "name": "den", "bounds": [0, 0, 4, 4]}],
            "instances": [{"id": 3, "category": "ottoman", "center": [1.2, 1.2, 0.5],
                           "size": [0.6, 0.6, 0.4], "yaw": 0.3}]}
    (tmp_path / "room.json").write_text(json.dumps(side))
    s = load_mesh_scene(mesh)
    assert s.tri_instance.tolist() == [0, 0, 3]
    assert SEMANTIC_CLASSES[s.tri_semantic[2]] == "void" and SEMANTIC_CLASSES[s.tri_semantic[0]] == "floor"
    assert s.instances[0].category == "ottoman" and s.instances[0].room == "den"  # room inferred


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"instances": [ {"id": 1,, ]}', r"bad\.json: invalid JSON at line 1, column 26"),
        ('{"instances": [{"id": 1, "category": "chair", "size": [1, 1, 1]}]}',
         r"bad\.json: instances\[0\] is missing required key 'center'"),
        ('{"instances": [{"id": 1, "category": "chair", "center": [0, 0, 0], "size": [1, -1, 1]}]}',
         r"bad\.json: instances\[0\]\.size must be 3 positive"),
        ('{"instances": [{"id": 1, "category": "chair", "center": [0, 0, 0], "size": [1, 1]}]}',
         r"bad\.json: instances\[0\]\.size must be 3 finite numbers"),
        ('{"instances": [{"id": 0, "category": "chair", "center": [0, 0, 0], "size": [1, 1, 1]}]}',
         r"bad\.json: instances\[0\]\.id must be an int >= 1"),
        ('{"up_axis": "x"}', r"bad\.json: up_axis must be 'z' or 'y'"),
        ('[1, 2]', r"bad\.json: sidecar must be a JSON object"),
    ],
)
def test_bad_sidecar_errors_name_the_file(tmp_path, content, message):
    mesh = _quad_ply(tmp_path / "bad.ply")
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(MeshSceneError, match=message):
        load_mesh_scene(mesh)


def test_bad_mesh_errors_name_the_file(tmp_path):
    import trimesh

    with pytest.raises(FileNotFoundError, match=r"nowhere\.ply: mesh file not found"):
        load_mesh_scene(tmp_path / "nowhere.ply")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.glb: mesh file not found"):
        load_scene(str(tmp_path / "nowhere.glb"))
    junk = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)
    (tmp_path / "junk.ply").write_bytes(bytes(junk))
    with pytest.raises(MeshSceneError, match=r"junk\.ply: could not read mesh"):
        load_mesh_scene(tmp_path / "junk.ply")
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n"
    (tmp_path / "torn.ply").write_bytes(header + bytes(range(256)) * 3)
    with pytest.raises(MeshSceneError, match=r"torn\.ply"):
        load_mesh_scene(tmp_path / "torn.ply")
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(str(tmp_path / "cloud.ply"))
    with pytest.raises(MeshSceneError, match=r"cloud\.ply: mesh has no triangle faces"):
        load_mesh_scene(tmp_path / "cloud.ply")
    (tmp_path / "model.stl").write_text("solid x\nendsolid x\n")
    with pytest.raises(MeshSceneError, match=r"model\.stl: unsupported mesh format"):
        load_mesh_scene(tmp_path / "model.stl")
    mesh = _quad_ply(tmp_path / "ok.ply")
    with pytest.raises(FileNotFoundError, match=r"other\.json: annotation sidecar not found"):
        load_mesh_scene(mesh, annotations=tmp_path / "other.json")
