"""Our episode files read by habitat-lab's own ObjectNav v1 reader, and habitat-lab's output read by ours.

Optional: runs only where habitat-lab is importable, e.g. installed beside the venv (its pins,
numpy==1.26.4 and gym 0.22, clash with ours, so not into it)::

    .venv/bin/pip install --no-deps --target .habitat-lab habitat-lab==0.3.320260507 gym==0.22.0 \\
        gym-notices numpy-quaternion numba llvmlite "opencv-python-headless<5"
    PYTHONPATH=.habitat-lab .venv/bin/python -m pytest -q tests/test_habitat_lab_episodes.py

habitat-sim cannot be installed here, and habitat-lab's package imports it (and its Magnum and
Corrade bindings) at import time. Where they are missing, this test puts empty stand-ins for
``habitat_sim``, ``magnum`` and ``corrade`` in ``sys.modules`` only while habitat-lab imports,
and removes them afterwards: nothing of habitat-sim runs. The reader under test,
``ObjectNavDatasetV1.from_json`` and its episode and goal classes, is habitat-lab's real code.
"""

from __future__ import annotations

import gzip
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

import numpy as np
import pytest

_SIM_MODULES = ("habitat_sim", "magnum", "corrade")


class _Anything(type):
    """A class whose every attribute is another such class (type hints, base classes, constants)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (), {})

    def __call__(cls, *args, **kwargs):
        return super().__call__()


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _Anything(name, (), {})
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


@pytest.fixture(scope="module")
def habitat_objectnav():
    """habitat-lab's ``ObjectNavDatasetV1`` (skips where habitat-lab is not installed)."""
    if importlib.util.find_spec("habitat") is None:
        pytest.skip("habitat-lab is not installed (see this module's docstring)")
    missing = [m for m in _SIM_MODULES if importlib.util.find_spec(m) is None]
    finder = _StubFinder(missing)
    sys.meta_path.insert(0, finder)
    try:
        from habitat.datasets.object_nav.object_nav_dataset import ObjectNavDatasetV1
    finally:
        sys.meta_path.remove(finder)
        for name in list(sys.modules):
            if name.split(".")[0] in missing:
                del sys.modules[name]  # other tests see habitat-sim as absent again
    return ObjectNavDatasetV1


@pytest.fixture(scope="module")
def episode_file(tmp_path_factory):
    from envs.episodes import generate_episodes, save_episodes

    # 3 test scenes x 3 episodes: more than one goal per scene, as `spatialnav episodes split=test n=20` writes
    eps = generate_episodes("test", 8, seed=0, episodes_per_scene=3)
    return eps, save_episodes(tmp_path_factory.mktemp("eps") / "test.json.gz", eps)


def test_habitat_lab_reads_our_episode_file(habitat_objectnav, episode_file):
    from envs.episodes import from_habitat_position, habitat_rotation_to_yaw

    eps, path = episode_file
    ds = habitat_objectnav()
    with gzip.open(path, "rt") as f:
        ds.from_json(f.read())
    assert len(ds.episodes) == len(eps)
    for ours, theirs in zip(eps, ds.episodes):
        assert theirs.scene_id == ours.scene_id and theirs.object_category == ours.object_category
        assert list(theirs.start_position) == ours.start_position
        assert list(theirs.start_rotation) == ours.start_rotation
        assert theirs.info["geodesic_distance"] == ours.geodesic_distance
        assert theirs.info["instruction"]["instruction_text"] == ours.instruction
        assert theirs.info["needs_relation"] == ours.needs_relation
        # habitat-lab's goals: every target of this scene and category in the file, ours among them
        goal = theirs.goals[theirs.info["goal_index"]]
        assert goal.object_id == ours.target_id and goal.object_category == ours.object_category
        assert goal.room_name == ours.target_room
        vps = np.array([[*from_habitat_position(v.agent_state.position)[:2],
                         habitat_rotation_to_yaw(v.agent_state.rotation)] for v in goal.view_points])
        assert np.array_equal(vps[:, :2], ours.view_points[:, :2])
        assert np.allclose(vps[:, 2], ours.view_points[:, 2], atol=1e-12, rtol=0)
        assert np.array_equal(from_habitat_position(goal.position), ours.target_center)
    assert set(ds.category_to_task_category_id) == set(ds.category_to_scene_annotation_category_id)


def test_we_read_what_habitat_lab_writes(habitat_objectnav, episode_file, tmp_path):
    """habitat-lab's ``to_json`` of our file loads back to the same episodes: the ids differ, as
    habitat-lab renumbers episodes "0", "1", ... when it reads a file, and numbers to within its
    writer's rounding (5 decimals, ``DatasetFloatJSONEncoder``)."""
    from envs.episodes import load_episodes

    eps, path = episode_file
    ds = habitat_objectnav()
    with gzip.open(path, "rt") as f:
        ds.from_json(f.read())
    out = tmp_path / "rewritten.json.gz"
    with gzip.open(out, "wt") as f:
        f.write(ds.to_json())
    back = load_episodes(out)
    assert [b.episode_id for b in back] == [str(i) for i in range(len(eps))]
    for a, b in zip(eps, back):
        da, db = a.to_habitat(), b.to_habitat()
        da.pop("episode_id"), db.pop("episode_id")
        _assert_close(db, da)


def _assert_close(a, b, where="episode"):
    """Equal structure and strings; numbers within 1e-5 (habitat-lab writes 5 decimals)."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), where
        for k in b:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, (list, tuple)):
        assert isinstance(a, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-5), where
    else:
        assert a == b, where
