import gzip
import json
import math

import numpy as np
import pytest

from envs.episodes import (
    NavEpisode,
    episodes_to_habitat,
    from_habitat_position,
    habitat_rotation_to_yaw,
    load_episodes,
    save_episodes,
    to_habitat_position,
    yaw_to_habitat_rotation,
)
from envs.instructions import InstructionSpec


def _rotate(q, v):
    """Rotate vector v by unit quaternion q = [x, y, z, w]."""
    x, y, z, w = q
    u = np.array([x, y, z])
    v = np.asarray(v, float)
    return 2 * (u @ v) * u + (w * w - u @ u) * v + 2 * w * np.cross(u, v)


def test_coordinate_conversion():
    assert to_habitat_position((1.0, 2.0, 3.0)) == [1.0, 3.0, -2.0]
    assert list(from_habitat_position([1.0, 3.0, -2.0])) == [1.0, 2.0, 3.0]
    # looking along our +y is habitat's identity rotation (looking along its -z)
    assert yaw_to_habitat_rotation(math.pi / 2) == pytest.approx([0, 0, 0, 1])
    for yaw in np.linspace(-math.pi + 1e-6, math.pi, 13):
        q = yaw_to_habitat_rotation(yaw)
        # the rotated habitat forward (-z) is our forward, converted
        fwd_h = _rotate(q, [0.0, 0.0, -1.0])
        assert fwd_h == pytest.approx(to_habitat_position((math.cos(yaw), math.sin(yaw), 0.0)), abs=1e-12)
        assert habitat_rotation_to_yaw(q) == pytest.approx(yaw, abs=1e-12)
    with pytest.raises(ValueError, match="about habitat's \\+y"):
        habitat_rotation_to_yaw([1.0, 0.0, 0.0, 0.0])


def _episode(i, rng, target_id=3):
    yaw = float(rng.uniform(-math.pi, math.pi))
    xy = rng.uniform(-5, 5, 2)
    vps = np.column_stack([rng.uniform(-5, 5, (4, 2)), rng.uniform(-math.pi, math.pi, 4)])
    return NavEpisode(
        episode_id=f"val_1_{i}", scene_id="procgen/val/100001",
        start_position=to_habitat_position((xy[0], xy[1], 0.0)),
        start_rotation=yaw_to_habitat_rotation(yaw),
        target_id=target_id, object_category="chair", instruction="go to the blue chair left of the bed",
        instruction_spec={"category": "chair", "color": "blue", "room": None, "relation": "left_of",
                          "references": [{"category": "bed", "color": None}], "template": 0},
        view_points=vps, geodesic_distance=float(rng.uniform(1.5, 10)), needs_relation=bool(i % 2),
        target_center=np.array([xy[0] + 0.1, xy[1], 0.45]), target_color="blue", target_room="bedroom",
        info={"split": "val"},
    )


def test_json_gz_round_trip_exact(tmp_path):
    rng = np.random.default_rng(0)
    eps = [_episode(i, rng) for i in range(3)]
    path = save_episodes(tmp_path / "sub" / "val.json.gz", eps)
    raw = json.load(gzip.open(path, "rt"))
    e0 = raw["episodes"][0]
    # habitat-lab's ObjectNav v1 fields only; ours live in info (tests/test_habitat_lab_episodes.py
    # reads such a file with habitat-lab itself)
    assert set(e0) == {"episode_id", "scene_id", "start_position", "start_rotation", "info", "goals",
                       "object_category"}
    assert {"category_to_task_category_id", "category_to_scene_annotation_category_id", "goals_by_category",
            "episodes"} == set(raw)
    goal = raw["goals_by_category"]["100001_chair"][0]
    assert set(goal) == {"object_id", "object_category", "room_name", "position", "view_points"}
    assert goal["view_points"][0]["agent_state"]["position"][1] == 0.0  # y-up: floor height
    assert e0["goals"] == [] and e0["info"]["geodesic_distance"] == eps[0].geodesic_distance
    assert e0["info"]["instruction"]["instruction_text"] == eps[0].instruction
    back = load_episodes(path)
    for a, b in zip(eps, back):
        assert b.start_position == a.start_position and b.start_rotation == a.start_rotation
        assert b.geodesic_distance == a.geodesic_distance
        assert b.instruction == a.instruction and b.instruction_spec == a.instruction_spec
        assert (b.target_id, b.object_category, b.needs_relation) == (a.target_id, a.object_category, a.needs_relation)
        assert np.array_equal(b.view_points[:, :2], a.view_points[:, :2])  # exact
        assert np.allclose(b.view_points[:, 2], a.view_points[:, 2], atol=1e-12, rtol=0)
        assert np.array_equal(b.target_center, a.target_center)
        assert np.allclose(b.start_pose, a.start_pose, atol=1e-12, rtol=0)
        assert b.info == a.info
    # save(load(save(x))) is byte-identical: nothing drifts across round trips
    path2 = save_episodes(tmp_path / "again.json.gz", back)
    assert json.load(gzip.open(path2, "rt")) == raw


def test_same_scene_and_category_keep_their_own_targets(tmp_path):
    """habitat-lab shares goals between the episodes of one scene and category; each of ours keeps its
    own target (info["target_object_id"]) and view points through a file."""
    rng = np.random.default_rng(1)
    eps = [_episode(0, rng, target_id=3), _episode(1, rng, target_id=5), _episode(2, rng, target_id=3)]
    raw = episodes_to_habitat(eps)
    # one goal per distinct (instance, view points): episodes 0 and 2 share instance 3 with other view points
    assert [g["object_id"] for g in raw["goals_by_category"]["100001_chair"]] == [3, 5, 3]
    eps[2].view_points, eps[2].target_center = eps[0].view_points.copy(), eps[0].target_center.copy()
    raw = episodes_to_habitat(eps)
    assert [g["object_id"] for g in raw["goals_by_category"]["100001_chair"]] == [3, 5]
    assert [e["info"]["goal_index"] for e in raw["episodes"]] == [0, 1, 0]
    back = load_episodes(save_episodes(tmp_path / "e.json.gz", eps))
    assert [b.target_id for b in back] == [3, 5, 3]
    assert np.array_equal(back[1].view_points[:, :2], eps[1].view_points[:, :2])
    assert np.array_equal(back[1].target_center, eps[1].target_center)
    other = _episode(3, rng)
    other.scene_id = "procgen/test/100001"  # same base name, another scene: habitat could not tell them apart
    with pytest.raises(ValueError, match="share habitat's goals key '100001_chair'"):
        episodes_to_habitat([eps[0], other])


def test_reads_the_older_layout(tmp_path):
    """Files written before the habitat-lab layout (instruction and needs_relation at the top, colour and
    room in the goal) still load to the same episode."""
    rng = np.random.default_rng(2)
    ep = _episode(1, rng)
    d = ep.to_habitat()
    info = d["info"]
    instr, needs, color = info.pop("instruction"), info.pop("needs_relation"), info.pop("object_color")
    info.pop("target_object_id")
    goal = d["goals"][0]
    goal["object_room"] = goal.pop("room_name")
    goal["object_color"] = color
    for v in goal["view_points"]:
        del v["iou"]
    d.update(instruction=instr, needs_relation=needs)
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"episodes": [d]}))
    (back,) = load_episodes(path)
    assert back.to_habitat() == ep.to_habitat()


def test_reads_habitat_lab_objectnav_v1(tmp_path):
    """habitat-lab's own ObjectNav v1 layout: goals_by_category, no instruction; every goal of the
    category counts (its success rule), the target is closest_goal_object_id, the instruction the category."""
    vp = lambda x, z: {"agent_state": {"position": [x, 0.1, z], "rotation": [0, 0.7071068, 0, 0.7071068]},
                       "iou": 0.4}
    data = {
        "category_to_task_category_id": {"chair": 0, "tv_monitor": 1},
        "category_to_mp3d_category_id": {"chair": 3, "tv_monitor": 22},
        "goals_by_category": {
            "scene.basis.glb_chair": [
                {"object_id": 12, "object_name": "chair_12", "object_category": "chair", "room_id": None,
                 "room_name": None, "position": [1.0, 0.5, -2.0], "view_points": [vp(1.0, -1.0)]},
                {"object_id": 40, "object_name": "chair_40", "object_category": "chair", "room_id": None,
                 "room_name": None, "position": [4.0, 0.5, 3.0], "view_points": [vp(4.0, 2.0), vp(3.0, 3.0)]}],
            "scene.basis.glb_tv_monitor": [
                {"object_id": 7, "object_category": "tv_monitor", "position": [0.0, 1.0, 0.0],
                 "view_points": [vp(0.0, 1.0)]}]},
        "episodes": [
            {"episode_id": "0", "scene_id": "hm3d/val/00800-TEEsavR23oF/scene.basis.glb",
             "start_position": [0.0, 0.1, 0.0], "start_rotation": [0, 0, 0, 1], "goals": [],
             "object_category": "chair", "start_room": None, "shortest_paths": None,
             "info": {"geodesic_distance": 3.5, "euclidean_distance": 2.2, "closest_goal_object_id": 40}},
            {"episode_id": "1", "scene_id": "hm3d/val/00800-TEEsavR23oF/scene.basis.glb",
             "start_position": [0.0, 0.1, 0.0], "start_rotation": [0, 0, 0, 1], "goals": [],
             "object_category": "tv_monitor", "info": {"geodesic_distance": 1.0}}]}
    path = tmp_path / "hm3d.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump(data, f)
    chair, tv = load_episodes(path)
    assert chair.target_id == 40 and chair.object_category == "chair" and chair.geodesic_distance == 3.5
    assert len(chair.view_points) == 3  # both chairs' view points
    assert chair.view_points[0, :2] == pytest.approx([1.0, 1.0])  # habitat [1, _, -1] -> ours (1, 1)
    assert chair.instruction == InstructionSpec(category="chair").to_text() and not chair.needs_relation
    assert chair.info == {"euclidean_distance": 2.2, "closest_goal_object_id": 40}
    assert tv.target_id == 7 and tv.instruction.endswith("tv monitor") and len(tv.view_points) == 1
    assert chair.floor_z == 0.1 and np.allclose(chair.target_center, [4.0, -3.0, 0.5])
    data["episodes"][1]["object_category"] = "sofa"
    with gzip.open(path, "wt") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match="episode #1 .*scene.basis.glb_sofa"):
        load_episodes(path)


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json.gz"
    with pytest.raises(FileNotFoundError, match="nope.json.gz.*write_split"):
        load_episodes(missing)
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="bad.json.gz.*corrupt"):
        load_episodes(bad)
    wrong = tmp_path / "wrong.json.gz"
    with gzip.open(wrong, "wt") as f:
        json.dump({"episodes": [{"episode_id": "x"}]}, f)
    with pytest.raises(ValueError, match="wrong.json.gz.*episode #0"):
        load_episodes(wrong)


# -- generation (real procedural scenes, grid and renderer) ---------------------------

@pytest.fixture(scope="module")
def generated():
    from envs.episodes import generate_episodes

    return generate_episodes("val", 16, seed=0, episodes_per_scene=4)


def test_generate_deterministic_and_seeded(generated):
    from envs.episodes import generate_episodes

    assert len(generated) == 16 and len({e.episode_id for e in generated}) == 16
    again = generate_episodes("val", 16, seed=0, episodes_per_scene=4)
    assert [e.to_habitat() for e in again] == [e.to_habitat() for e in generated]
    other = generate_episodes("val", 4, seed=1, episodes_per_scene=4)
    assert [e.to_habitat() for e in other] != [e.to_habitat() for e in generated[:4]]
    with pytest.raises(ValueError, match="unknown split"):
        generate_episodes("nope", 2)


def test_generated_episodes_are_valid(generated):
    from envs.instructions import InstructionSpec, point_box_distance_xy, resolve
    from envs.navigation import NavGrid
    from envs.renderer import Renderer
    from envs.scenes import load_scene

    n_rel = 0
    for sid in sorted({e.scene_id for e in generated}):
        scene = load_scene(sid)
        grid = NavGrid.from_scene(scene)
        renderer = Renderer(scene, width=32, height=32)
        for e in (e for e in generated if e.scene_id == sid):
            target = scene.instance(e.target_id)
            assert target.category == e.object_category
            # the instruction singles out the target
            spec = InstructionSpec.from_dict(e.instruction_spec)
            assert resolve(spec, scene.instances) == [target]
            assert e.object_category in e.instruction.lower()
            same = any(o.id != target.id and o.category == target.category and o.color == target.color
                       for o in scene.instances)
            assert e.needs_relation == same
            n_rel += e.needs_relation
            # view points: navigable, within 1 m of the box, on a >= 0.1 m lattice, and they see it
            vp = e.view_points
            assert len(vp) > 0 and grid.is_navigable(vp[:, :2]).all()
            assert (point_box_distance_xy(vp[:, :2], target) <= 1.0 + 1e-9).all()
            if len(vp) > 1:
                d = np.linalg.norm(vp[:, None, :2] - vp[None, :, :2], axis=2) + np.eye(len(vp)) * 9
                assert d.min() >= 0.1 - 1e-6
            inst = renderer.render(vp, outputs=("instance",))["instance"]
            assert ((inst == target.id).reshape(len(vp), -1).sum(1) > 0).all()
            # start: navigable, goal reachable at the recorded geodesic distance
            start = e.start_pose
            assert grid.is_navigable(start[:2])
            d0 = grid.geodesic_distance(start[:2], vp[:, :2])
            assert d0 == pytest.approx(e.geodesic_distance) and 1.5 <= d0 <= 15.0
    assert n_rel >= 1  # some episodes need a relation (about 30% measured)


def test_oracle_reaches_success_radius(generated):
    """With 0.25 m steps and 30 deg turns the 0.1 m success radius is reachable."""
    from envs.actions import Action
    from envs.metrics import EpisodeMetrics
    from envs.navigation import NavGrid, ShortestPathFollower
    from envs.scenes import load_scene

    for e in generated[::4]:
        grid = NavGrid.from_scene(load_scene(e.scene_id))
        follower = ShortestPathFollower(grid, e.view_points[:, :2], stop_distance=0.1)
        m = EpisodeMetrics()
        pose = e.start_pose
        m.reset(pose[:2], e.geodesic_distance)
        for _ in range(500):
            a = follower.next_action(pose[:2], pose[2])
            if a == Action.STOP:
                m.on_stop(grid.geodesic_distance(pose[:2], e.view_points[:, :2]))
                break
            if a == Action.MOVE_FORWARD:
                pose[:2], hit = grid.try_move(pose[:2], pose[2])
            else:
                pose[2] += math.radians(30) * (1 if a == Action.TURN_LEFT else -1)
                hit = False
            m.update(pose[:2], hit, grid.geodesic_distance(pose[:2], e.view_points[:, :2]))
        r = m.result()
        assert r["success"] == 1.0, (e.episode_id, r)
        assert r["spl"] > 0.7


def test_write_split_round_trip(tmp_path):
    from envs.episodes import write_split

    path = write_split("val", 3, tmp_path / "val.json.gz", seed=5, episodes_per_scene=3)
    eps = load_episodes(path)
    assert len(eps) == 3 and all(e.info["split"] == "val" and e.info["seed"] == 5 for e in eps)


def test_context_tour_scans_every_room():
    from envs.navigation import NavGrid
    from envs.renderer import Renderer
    from envs.scenes import load_scene
    from envs.tour import context_tour, room_anchors

    scene = load_scene("procgen/val/100002")
    grid = NavGrid.from_scene(scene)
    full = context_tour(scene, grid, n_frames=10_000, seed=0)
    p = full["poses"]
    assert full["num_raw_frames"] == len(p) and np.array_equal(full["indices"], np.arange(len(p)))
    assert grid.is_navigable(p[:, :2]).all()
    # every consecutive pair differs by one discrete action
    dxy = np.linalg.norm(np.diff(p[:, :2], axis=0), axis=1)
    dyaw = np.abs((np.diff(p[:, 2]) + np.pi) % (2 * np.pi) - np.pi)
    turn = np.isclose(dyaw, math.radians(30)) & (dxy < 1e-9)
    move = (dyaw < 1e-9) & (dxy > 0) & (dxy <= 0.25 + 1e-9)
    assert (turn | move).all()
    # a full 360 deg look-around inside every room with a navigable anchor
    rooms = [k for k, _ in room_anchors(scene, grid)]
    assert len(rooms) == len(scene.rooms) >= 2
    for k in rooms:
        in_room = p[full["room"] == k]
        inside = np.array([scene.rooms[k].contains(xy) for xy in in_room[:, :2]])
        assert inside.sum() >= 12
    assert move.sum() > 0
    # bounded, subsampled, with original indices and rendered frames
    short = context_tour(scene, grid, n_frames=32, seed=0, renderer=Renderer(scene, width=32, height=32))
    assert len(short["poses"]) <= 32 and short["rgb"].shape == (len(short["poses"]), 32, 32, 3)
    assert np.array_equal(short["poses"], p[short["indices"]])
    assert short["indices"][0] == 0 and short["indices"][-1] == len(p) - 1


def test_episodes_in_a_user_mesh_run_in_the_env(tmp_path):
    """A scene saved as a mesh + sidecar JSON gets episodes, and the oracle solves one there."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the env)
    from envs.episodes import write_split
    from envs.mesh_io import save_mesh_scene
    from envs.scenes import load_scene

    mesh, _ = save_mesh_scene(load_scene("procgen/val/100003"), tmp_path / "flat.ply")
    path = write_split("custom", 2, tmp_path / "eps.json.gz", seed=1, scene_ids=[str(mesh)])
    eps = load_episodes(path)
    assert len(eps) == 2 and all(e.scene_id == str(mesh) for e in eps)
    env = gym.make("SpatialNav-ObjectNav-v0", episodes=path, width=32, height=32)
    obs, info = env.reset(seed=0)
    from agent.baselines import OracleAgent

    assert obs["instruction"] in {e.instruction for e in eps}
    oracle = OracleAgent(env=env)
    oracle.reset(obs, info)
    for _ in range(300):
        obs, _, term, trunc, info = env.step(oracle.act(obs))
        if term or trunc:
            break
    assert term and info["success"] == 1.0
    env.close()
