"""envs/backends/habitat.py without habitat-sim (it does not install here): the parts that are plain
numpy/trimesh are tested against the open3d renderer's conventions. habitat_sim and magnum are
replaced by stub modules ONLY so the module imports; nothing here runs habitat-sim, and the stubs'
one function (quat_from_angle_axis) is the textbook axis-angle quaternion habitat documents."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest


def _quat_from_angle_axis(theta: float, axis) -> np.ndarray:
    """(w, x, y, z) for a rotation of theta about the unit ``axis`` (habitat_sim.utils.common's)."""
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    return np.r_[math.cos(theta / 2), math.sin(theta / 2) * a]


def _rotate(q: np.ndarray, v) -> np.ndarray:
    w, u = q[0], q[1:]
    v = np.asarray(v, np.float64)
    return v + 2 * w * np.cross(u, v) + 2 * np.cross(u, np.cross(u, v))


@pytest.fixture(scope="module")
def hab(monkeypatch_module):
    hs = types.ModuleType("habitat_sim")
    utils = types.ModuleType("habitat_sim.utils")
    common = types.ModuleType("habitat_sim.utils.common")
    common.quat_from_angle_axis = _quat_from_angle_axis
    hs.utils, utils.common = utils, common
    for name, mod in {"habitat_sim": hs, "habitat_sim.utils": utils, "habitat_sim.utils.common": common,
                      "magnum": types.ModuleType("magnum")}.items():
        monkeypatch_module.setitem(sys.modules, name, mod)
    monkeypatch_module.delitem(sys.modules, "envs.backends.habitat", raising=False)
    import envs.backends.habitat as h

    yield h
    sys.modules.pop("envs.backends.habitat", None)
    import envs.backends

    if getattr(envs.backends, "habitat", None) is h:  # later imports must meet the real ImportError again
        delattr(envs.backends, "habitat")


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_world_frame_map_is_a_proper_rotation(hab):
    basis = hab.to_habitat(np.eye(3))  # rows: images of our x, y, z
    assert np.allclose(basis @ basis.T, np.eye(3)) and np.linalg.det(basis) == pytest.approx(1.0)
    assert np.allclose(hab.to_habitat([0.0, 0.0, 1.0]), [0, 1, 0])  # our up (z) is habitat's up (y)
    pts = np.random.default_rng(0).normal(size=(5, 4, 3))
    assert hab.to_habitat(pts).shape == pts.shape


@pytest.mark.parametrize("yaw", np.linspace(-math.pi, math.pi, 9))
def test_agent_rotation_looks_where_our_renderer_looks(hab, yaw):
    """habitat agents look along their local -z; after yaw_to_habitat_rotation(yaw) that direction
    must be our renderer's forward (cos yaw, sin yaw, 0) mapped to habitat, and its local +y ours up."""
    from planners.camera import backproject

    q = hab.yaw_to_habitat_rotation(yaw)
    look = _rotate(q, [0.0, 0.0, -1.0])
    ours = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    np.testing.assert_allclose(look, hab.to_habitat(ours), atol=1e-12)
    np.testing.assert_allclose(_rotate(q, [0.0, 1.0, 0.0]), [0, 1, 0], atol=1e-12)
    # the open3d convention (planners.camera.backproject): the centre pixel at depth d lies d ahead
    depth = np.full((5, 5), 2.0)
    p = backproject(depth, np.array([0.0, 0.0, yaw]), 79.0)[2, 2]
    np.testing.assert_allclose(p[:2], 2.0 * ours[:2], atol=1e-9)
    # habitat's right (local +x) is ours: forward rotated clockwise
    np.testing.assert_allclose(_rotate(q, [1.0, 0.0, 0.0]), hab.to_habitat([math.sin(yaw), -math.cos(yaw), 0.0]),
                               atol=1e-12)


def test_export_groups_tables_map_semantic_ids_back(hab, tmp_path):
    """One .glb per (instance, semantic class) group, in habitat's frame; semantic id k >= 1 maps back to
    the group's instance id and class through the two tables, 0 to nothing."""
    import json

    import trimesh

    from envs.scene import Scene

    rng = np.random.default_rng(0)
    verts = rng.uniform(0, 3, size=(30, 3))
    tris = np.arange(30).reshape(10, 3)
    inst = np.array([0, 0, 3, 3, 3, 5, 5, 7, 7, 7], np.int32)
    sem = np.array([1, 2, 4, 4, 4, 6, 6, 6, 6, 6], np.int32)
    scene = Scene.__new__(Scene)
    scene.vertices, scene.triangles = verts, tris
    scene.tri_instance, scene.tri_semantic = inst, sem
    scene.tri_color = rng.integers(0, 255, size=(10, 3), dtype=np.uint8)
    configs, inst_of, sem_of = hab._export_groups(scene, tmp_path)
    groups = sorted(set(zip(inst.tolist(), sem.tolist())))
    assert len(configs) == len(groups) == len(inst_of) - 1 == len(sem_of) - 1
    assert inst_of[0] == 0 and sem_of[0] == 0
    for k, (i, s) in enumerate(groups, start=1):
        assert (inst_of[k], sem_of[k]) == (i, s)
        cfg = json.loads(configs[k - 1].read_text())
        mesh = trimesh.load(tmp_path / cfg["render_asset"], force="mesh", process=False)
        mine = (inst == i) & (sem == s)
        want = hab.to_habitat(verts[tris[mine].reshape(-1)])
        assert len(mesh.faces) == int(mine.sum())
        np.testing.assert_allclose(np.sort(mesh.vertices, axis=0), np.sort(want, axis=0), atol=1e-5)


def test_module_says_it_was_not_run_against_habitat_sim(hab):
    assert "not run against habitat-sim" in hab.__doc__.lower()
