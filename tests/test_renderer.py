"""Renderer: orientation, z-depth, ids, batching, line of sight, habitat backend error."""

from __future__ import annotations

import numpy as np
import pytest

from envs.geometry import MeshBuilder
from envs.renderer import Renderer
from envs.scene import ObjectInstance, Room, semantic_id

WALL_T = 0.1  # wall thickness; inner faces at |x|, |y| = 3 - WALL_T / 2
RED, BLUE, GREY = (220, 30, 30), (30, 30, 220), (128, 128, 128)


def one_room_scene():
    """A 6 x 6 m room centred at the origin; a red box (id 1) at (2, 1), a blue one (id 2) at (2, -1)."""
    b = MeshBuilder()
    b.add_box([0, 0, -0.05], [6.2, 6.2, 0.1], GREY, semantic=semantic_id("floor"), shaded=False)
    b.add_box([0, 0, 2.55], [6.2, 6.2, 0.1], (240, 240, 240), semantic=semantic_id("ceiling"))
    for cx, cy, sx, sy in [(3, 0, WALL_T, 6), (-3, 0, WALL_T, 6), (0, 3, 6, WALL_T), (0, -3, 6, WALL_T)]:
        b.add_box([cx, cy, 1.25], [sx, sy, 2.5], (200, 180, 150), semantic=semantic_id("wall"))
    objs = [
        ObjectInstance(1, "chair", "red", "room", center=[2, 1, 0.4], size=[0.5, 0.5, 0.8]),
        ObjectInstance(2, "table", "blue", "room", center=[2, -1, 0.4], size=[0.5, 0.5, 0.8]),
    ]
    for o, col in zip(objs, (RED, BLUE)):
        b.add_box(o.center, o.size, col, instance=o.id, semantic=semantic_id(o.category), shaded=False)
    return b.build("test/one_room", objs, [Room(0, "room", (-3, -3, 3, 3))])


@pytest.fixture(scope="module")
def renderer():
    return Renderer(one_room_scene(), width=64, height=48, threads=1)


def test_left_right_and_up_down(renderer):
    out = renderer.render([0.0, 0.0, 0.0], outputs=("rgb", "instance", "semantic"))
    inst, sem = out["instance"][0], out["semantic"][0]
    w, h = renderer.width, renderer.height
    red_cols = np.nonzero((inst == 1).any(0))[0]
    blue_cols = np.nonzero((inst == 2).any(0))[0]
    # Red box is at +y = the agent's left when looking along +x.
    assert len(red_cols) and red_cols.max() < w // 2
    assert len(blue_cols) and blue_cols.min() >= w // 2
    floor = sem == semantic_id("floor")
    ceil = sem == semantic_id("ceiling")
    assert floor[h // 2:].sum() > 0 and floor[: h // 2].sum() == 0
    assert ceil[: h // 2].sum() > 0 and ceil[h // 2:].sum() == 0
    # Flat-shaded red box pixels carry exactly its colour.
    assert (out["rgb"][0][inst == 1] == RED).all()
    # Turning left (yaw +90 deg) puts the +y wall ahead; the boxes leave the view.
    left = renderer.render([0.0, 0.0, np.pi / 2], outputs=("instance",))["instance"][0]
    assert not (left > 0).any()


def test_z_depth_of_a_flat_wall(renderer):
    depth = renderer.render([0.0, 0.0, np.pi], outputs=("depth",))["depth"][0]
    wall = 3 - WALL_T / 2
    h = renderer.height
    for row in (h // 2 - 1, h // 2):
        assert np.allclose(depth[row], wall, atol=0.01)
    # Off-centre pixels on the same flat wall: equal z-depth (not ray length).
    sem = renderer.render([0.0, 0.0, np.pi], outputs=("semantic",))["semantic"][0]
    on_wall = sem == semantic_id("wall")
    assert on_wall.sum() > 0.3 * on_wall.size
    assert np.allclose(depth[on_wall], wall, atol=0.01)
    assert depth.dtype == np.float32


def test_depth_max_and_misses():
    r = Renderer(one_room_scene(), width=16, height=16, max_depth=2.0, threads=1)
    d = r.render([0.0, 0.0, np.pi], outputs=("depth",))["depth"][0]
    assert (d[8] == 0).all()  # wall at 2.95 m is beyond max_depth
    # Outside the building, looking away: nothing is hit -> depth 0, ids 0, background colour.
    r2 = Renderer(one_room_scene(), width=16, height=16, threads=1, background=(1, 2, 3))
    out = r2.render([10.0, 0.0, 0.0], outputs=("rgb", "depth", "instance", "semantic"))
    assert (out["depth"] == 0).all() and (out["instance"] == 0).all() and (out["semantic"] == 0).all()
    assert (out["rgb"] == (1, 2, 3)).all()


def test_pitch_up_sees_more_ceiling(renderer):
    sem = renderer.render([[0, 0, np.pi]] * 2, pitch=[0.0, 0.5], outputs=("semantic",))["semantic"]
    ceil = (sem == semantic_id("ceiling")).sum(axis=(1, 2))
    floor = (sem == semantic_id("floor")).sum(axis=(1, 2))
    assert ceil[1] > ceil[0] and floor[1] < floor[0]


def test_batch_equals_one_by_one(renderer):
    rng = np.random.default_rng(0)
    poses = np.c_[rng.uniform(-2, 2, (5, 2)), rng.uniform(-np.pi, np.pi, 5)]
    pitch = rng.uniform(-0.3, 0.3, 5)
    outs = ("rgb", "depth", "instance", "semantic")
    batch = renderer.render(poses, pitch, outputs=outs)
    for i in range(5):
        one = renderer.render(poses[i], pitch[i], outputs=outs)
        for k in outs:
            assert one[k].shape[0] == 1
            np.testing.assert_array_equal(batch[k][i], one[k][0])
    assert batch["rgb"].shape == (5, renderer.height, renderer.width, 3) and batch["rgb"].dtype == np.uint8
    assert batch["instance"].dtype == np.int32 and batch["semantic"].dtype == np.int32


def test_reused_rays_equal_fresh_ones():
    """The single-pose path reuses the rays of the views it has seen (a forward step keeps its view,
    a turn returns to an earlier one): every render of a walk (moves, turns to new and known
    headings, turning on the spot, pitch changes, a batch in between, more views than the cache
    holds) equals a fresh renderer's."""
    scene = one_room_scene()
    walk = Renderer(scene, width=32, height=24, threads=1)
    assert walk._max_views >= 2
    rng = np.random.default_rng(3)
    pose, pitch = np.array([0.0, 0.0, 0.3]), 0.0
    for k in range(60):
        step = k % 6
        if step in (0, 2):
            pose[:2] += 0.1 * np.array([np.cos(pose[2]), np.sin(pose[2])])
        elif step == 1:
            pose[2] -= 0.5
        elif step == 3:
            pose[2] += 0.5 if k < 30 else 1.0  # back to step 0's view at a new position; k >= 30: new ones
        elif step == 4:
            if k % 12 == 4:
                pitch = float(rng.uniform(-0.2, 0.2))
        else:
            walk.render(rng.uniform(-1, 1, (3, 3)), outputs=("depth",))  # a batch reallocates the buffer
        got = walk.render(pose, pitch, outputs=("rgb", "depth", "instance"))
        want = Renderer(scene, width=32, height=24, threads=1).render(pose, pitch, outputs=("rgb", "depth", "instance"))
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"step {k} {key}")
    assert len(walk._views) == walk._max_views  # it saw more views than it keeps


def test_count_instance_equals_the_instance_image():
    """``count_instance`` counts the pixels the ``instance`` output shows for that id, per pose, for
    an object whose triangles are one run, one split in two runs (the gather fallback), id 0
    (misses and untagged surfaces) and an id that is not in the scene."""
    b = MeshBuilder()
    b.add_box([0, 0, -0.05], [6.2, 6.2, 0.1], GREY, semantic=semantic_id("floor"))
    b.add_box([2, 1, 0.4], [0.5, 0.5, 0.8], RED, instance=1)
    b.add_box([2, -1, 0.4], [0.5, 0.5, 0.8], BLUE, instance=2)
    b.add_box([2, 1, 1.0], [0.3, 0.3, 0.4], RED, instance=1)  # object 1's second part, after object 2
    scene = b.build("test/split_instance", [], [])
    r = Renderer(scene, width=40, height=30, threads=1)
    poses = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.4], [0.5, 0.0, -0.3], [0.0, 0.0, np.pi]])
    inst = r.render(poses, outputs=("instance",))["instance"]
    for iid in (1, 2, 0, 9):
        want = (inst == iid).reshape(len(poses), -1).sum(1)
        got = r.render(poses, outputs=("depth",), count_instance=iid)
        assert set(got) == {"depth", "instance_pixels"} and got["instance_pixels"].dtype == np.int64
        np.testing.assert_array_equal(got["instance_pixels"], want, err_msg=f"id {iid}")
        for k, pose in enumerate(poses):  # the single-pose path
            assert r.render(pose, outputs=("rgb",), count_instance=iid)["instance_pixels"].tolist() == [want[k]]
    assert r._tri_ranges[2] is not None and r._tri_ranges[1] is None  # one run / two runs
    assert (inst == 1).any() and (inst == 2).any() and (inst == 0).any()


def test_rgb_is_the_colour_table_at_each_hit(monkeypatch):
    """The packed-word RGB gather (envs.renderer._gather_rgb) gives exactly the colour table's row of
    every pixel's triangle (the background on misses), in a fresh array per call, and equals the
    plain gather it replaces (forced here through its fallback)."""
    import envs.renderer as rmod

    r = Renderer(one_room_scene(), width=37, height=23, threads=1, background=(7, 8, 9))  # odd sizes
    poses = np.array([[0.0, 0.0, 0.0], [0.5, 0.3, 2.0], [-1.0, 0.0, np.pi], [9.0, 0.0, 0.0]])  # the last: outside, facing away
    assert rmod._strided_words_ok()  # the fast path is the one that runs (and is measured) here
    rgb = r.render(poses, outputs=("rgb",))["rgb"]
    prim = r.cast(r._rays(poses, None).copy())["primitive_ids"].reshape(-1).astype(np.int64)
    want = r._color[np.minimum(prim, r._nf)].reshape(rgb.shape)
    np.testing.assert_array_equal(rgb, want)
    assert (rgb.reshape(-1, 3) == (7, 8, 9)).all(1).any() and rgb.flags.c_contiguous
    one = r.render(poses[1], outputs=("rgb",))["rgb"]
    again = r.render(poses[2], outputs=("rgb",))["rgb"]
    assert not np.shares_memory(one, again)
    np.testing.assert_array_equal(one[0], want[1])  # not overwritten by the next render
    monkeypatch.setattr(rmod, "_strided_words_ok", lambda: False)
    np.testing.assert_array_equal(r.render(poses, outputs=("rgb",))["rgb"], want)


def test_only_requested_outputs_and_bad_input(renderer):
    assert set(renderer.render([0, 0, 0], outputs=("depth",))) == {"depth"}
    with pytest.raises(ValueError, match="unknown render outputs"):
        renderer.render([0, 0, 0], outputs=("normals",))
    with pytest.raises(ValueError, match="poses must be"):
        renderer.render([[0, 0]])
    with pytest.raises(ValueError, match="pitch must be"):
        renderer.render([[0, 0, 0], [1, 0, 0]], pitch=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        renderer.render([0, 0, 0], pitch=float("nan"))


def test_visible_instances_and_line_of_sight(renderer):
    vis = renderer.visible_instances([[0, 0, 0], [0, 0, np.pi]])
    assert set(vis[0]) == {1, 2} and vis[1] == {}
    a = np.array([[0.0, 0.0, 0.88], [0.0, 0.0, 0.88], [0.0, 1.0, 0.4]])
    b = np.array([[1.0, 0.0, 0.88], [4.0, 0.0, 0.88], [2.0, 1.0, 0.4]])
    los = renderer.line_of_sight(a, b)
    # clear; through the +x wall; ends inside the red box (its face blocks first)
    assert los.tolist() == [True, False, False]
    assert renderer.line_of_sight(a[2], b[2], target_instance=1).tolist() == [True]
    assert renderer.line_of_sight(a[2], b[2], target_instance=2).tolist() == [False]


def test_habitat_backend_clear_import_error():
    try:
        import habitat_sim  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - only where habitat-sim is installed
        pytest.skip("habitat_sim is installed here")
    from envs.backends import make_renderer

    with pytest.raises(ImportError, match="habitat-sim"):
        make_renderer("some/scene.glb", backend="habitat")
    with pytest.raises(ImportError, match="conda install habitat-sim"):
        import envs.backends.habitat  # noqa: F401
    with pytest.raises(ValueError, match="backend"):
        make_renderer(one_room_scene(), backend="nope")
    assert isinstance(make_renderer(one_room_scene(), width=8, height=8), Renderer)


def test_bench_gym_smoke():
    """The gym measurement: the full env.step against the raw cast of its rays, and the same steps
    with the cast stored (the Python around it), which must cost less than the real step."""
    from benchmarks.bench_sim import bench_gym

    g = bench_gym(1, 16, 16, 100, 1)
    assert set(g) == {"threads", "gym_steps_per_s", "ms_per_gym_step", "ms_per_cast", "gym_over_cast",
                      "ms_python_per_step"}
    assert 0 < g["ms_python_per_step"] < g["ms_per_gym_step"] and g["ms_per_cast"] > 0
    assert g["gym_over_cast"] == pytest.approx(g["ms_per_gym_step"] / g["ms_per_cast"])


def test_bench_sim_smoke(monkeypatch):
    """The benchmark times what it says: every timed step renders the random walk's next pose (two
    chunks, one partial), once per repeat, and the rates are those of the timed work (tiny budget)."""
    import benchmarks.bench_sim as bench
    from benchmarks.bench_sim import bench_threads, fallback_scene, random_walk
    from envs.navigation import NavGrid

    rendered = []

    class Recording(bench.Renderer):
        def render(self, pose, **kw):
            rendered.append(np.array(pose, dtype=float))
            return super().render(pose, **kw)

    monkeypatch.setattr(bench, "Renderer", Recording)
    scene = fallback_scene()
    grid = NavGrid.from_scene(scene)
    n = 150
    poses, actions = random_walk(grid, n)
    assert grid.is_navigable(poses[:, :2]).all() and {1, 2, 3} <= set(actions.tolist())
    res = bench_threads(scene, grid, poses, actions, 32, 32, 1, repeats=2)
    assert len(rendered) == 100 + 2 * n  # the warm-up chunk, then every step once per repeat
    for timed in (np.stack(rendered[100:100 + n]), np.stack(rendered[100 + n:])):
        # step i renders the pose after action i, i.e. the walk's pose i + 1
        np.testing.assert_allclose(timed[:-1, :2], poses[1:, :2], atol=1e-9)
        assert np.allclose(np.cos(timed[:-1, 2] - poses[1:, 2]), 1.0)
    assert 0 < res["raw_casts_per_s"] and 0 < res["env_steps_per_s"]
    assert res["ms_per_step"] == pytest.approx(1e3 / res["env_steps_per_s"])
    # the env step renders RGB-D on top of the same cast: not cheaper than a fraction of it
    assert res["step_over_cast"] > 0.5, res
    assert set(res["stage_ms"]) == {"rays", "cast", "depth", "rgb", "try_move"}
    assert all(v > 0 for v in res["stage_ms"].values())


def test_bench_sim_runs_what_results_md_says():
    """`spatialnav bench sim` calls run() with its defaults; docs/results.md names them as flags of
    `python -m benchmarks.bench_sim`: both must be the configuration the table was measured at."""
    import inspect
    import re
    from pathlib import Path

    from benchmarks import bench_sim

    text = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    m = re.search(r"`spatialnav bench sim` \(= `python -m benchmarks\.bench_sim ([^`]*)`", text)
    assert m, "docs/results.md no longer says what `spatialnav bench sim` runs"
    documented = vars(bench_sim.parser().parse_args(m.group(1).split()))
    defaults = {k: p.default for k, p in inspect.signature(bench_sim.run).parameters.items()}
    cli_defaults = vars(bench_sim.parser().parse_args([]))
    for flag, param in (("steps", "steps"), ("repeats", "repeats"), ("width", "width"), ("height", "height")):
        assert documented[flag] == defaults[param] == cli_defaults[flag], flag
    assert tuple(documented["threads"]) == tuple(defaults["threads"])
    table = text[m.end():text.index("## ", m.end())]
    threads_in_table = [int(t) for t in re.findall(r"^\| (\d+) \|", table, flags=re.M)]
    assert threads_in_table == list(defaults["threads"])  # one row per thread count it measures
