"""ObjectNavEnv: Gymnasium contract, step semantics, frames, determinism, vector envs."""

from __future__ import annotations

import functools
import math

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers SpatialNav-ObjectNav-v0)
from envs.actions import FORWARD_STEP_M, Action
from envs.geometry import wrap_angle
from envs.gym_env import ObjectNavEnv

SMALL = dict(width=32, height=32)


@pytest.fixture
def env(nav_episodes):
    e = ObjectNavEnv(episodes=nav_episodes, **SMALL)
    yield e
    e.close()


def test_registered_and_check_env(nav_episodes):
    from gymnasium.utils.env_checker import check_env

    e = gym.make("SpatialNav-ObjectNav-v0", episodes=nav_episodes, **SMALL)
    assert isinstance(e.unwrapped, ObjectNavEnv)
    check_env(e.unwrapped, skip_render_check=False)
    frame = e.unwrapped.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.shape[1] > frame.shape[0]  # observation beside the map
    e.close()


def test_observation_layout(env):
    obs, info = env.reset(seed=0)
    assert obs["rgb"].shape == (32, 32, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (32, 32, 1) and obs["depth"].dtype == np.float32
    assert obs["gps"].dtype == np.float32 and obs["compass"].dtype == np.float32
    np.testing.assert_array_equal(obs["gps"], [0.0, 0.0])
    np.testing.assert_array_equal(obs["compass"], [0.0])
    assert obs["instruction"] == env.episode.instruction and len(obs["instruction"]) > 5
    assert env.observation_space.contains(obs)
    assert obs["depth"].max() > 0  # indoors: the camera sees walls
    for k in ("success", "spl", "softspl", "distance_to_goal", "path_length", "collisions", "steps",
              "collided", "episode_id"):
        assert k in info
    assert info["distance_to_goal"] == pytest.approx(env.episode.geodesic_distance, abs=0.1)


def test_forward_and_turn_semantics(env):
    env.reset(options={"episode_index": 0})
    rng = np.random.default_rng(0)
    moved = blocked = 0
    for _ in range(120):
        a = int(rng.choice([1, 1, 2, 3]))
        before = env.pose.copy()
        obs, _, term, trunc, info = env.step(a)
        assert not term
        if a == Action.MOVE_FORWARD:
            step = np.linalg.norm(env.pose[:2] - before[:2])
            if info["collided"]:
                blocked += 1
                assert step < FORWARD_STEP_M - 1e-9
            else:
                moved += 1
                assert step == pytest.approx(FORWARD_STEP_M, abs=1e-9)
            assert env.pose[2] == before[2]
        else:
            sign = 1 if a == Action.TURN_LEFT else -1
            assert wrap_angle(env.pose[2] - before[2] - sign * math.radians(30)) == pytest.approx(0, abs=1e-9)
            np.testing.assert_array_equal(env.pose[:2], before[:2])
            assert not info["collided"]
    assert moved > 0 and info["steps"] == 120
    assert info["collisions"] == blocked


def test_compass_and_gps_track_motion(env):
    obs, _ = env.reset(options={"episode_index": 1})
    start = env.pose.copy()
    for k in range(1, 4):
        obs, *_ = env.step(Action.TURN_LEFT)
        assert obs["compass"][0] == pytest.approx(math.radians(30 * k), abs=1e-6)
    obs, _, _, _, info = env.step(Action.MOVE_FORWARD)  # now facing the start's left
    d = env.pose[:2] - start[:2]
    if not info["collided"]:
        np.testing.assert_allclose(obs["gps"], [0.0, FORWARD_STEP_M], atol=1e-6)
    # In general gps = R(-yaw0) (xy - xy0): check over a random walk.
    rng = np.random.default_rng(1)
    for _ in range(40):
        obs, *_ = env.step(int(rng.integers(1, 4)))
        d = env.pose[:2] - start[:2]
        c, s = math.cos(start[2]), math.sin(start[2])
        np.testing.assert_allclose(obs["gps"], [c * d[0] + s * d[1], -s * d[0] + c * d[1]], atol=1e-5)
        assert obs["compass"][0] == pytest.approx(wrap_angle(env.pose[2] - start[2]), abs=1e-6)
        assert -math.pi < obs["compass"][0] <= math.pi + 1e-6


def test_stop_terminates_and_truncation(nav_episodes):
    env = ObjectNavEnv(episodes=nav_episodes, max_episode_steps=5, **SMALL)
    env.reset(seed=0)
    _, reward, term, trunc, info = env.step(Action.STOP)
    assert term and not trunc and info["steps"] == 1
    assert info["success"] == 0.0  # the start is >= 1.5 m from every view point
    with pytest.raises(RuntimeError, match="reset"):
        env.step(Action.TURN_LEFT)
    env.reset(seed=0)
    for k in range(5):
        _, _, term, trunc, info = env.step(Action.TURN_LEFT)
        assert not term
        assert trunc == (k == 4)
    assert info["steps"] == 5
    env.close()


def test_reset_seed_is_deterministic(env):
    a, ia = env.reset(seed=123)
    env.step(Action.MOVE_FORWARD)
    b, ib = env.reset(seed=123)
    assert ia["episode_id"] == ib["episode_id"]
    for k in ("rgb", "depth", "gps", "compass"):
        np.testing.assert_array_equal(a[k], b[k])
    assert a["instruction"] == b["instruction"]
    ids = {env.reset(seed=s)[1]["episode_id"] for s in range(12)}
    assert len(ids) > 1  # the seed selects among the episodes
    _, info = env.reset(options={"episode_index": 2})
    assert info["episode_id"] == env.episodes[2].episode_id
    with pytest.raises(ValueError, match="episode_index"):
        env.reset(options={"episode_index": 3})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"episode": 0})


def test_episode_file_option_and_cache(env, nav_episode_file):
    env.reset(options={"episode_file": nav_episode_file, "episode_index": 0})
    renderer = env.renderer
    env.reset(options={"episode_index": 0})
    assert env.renderer is renderer  # scene assets are reused, not rebuilt


@pytest.mark.parametrize("bad", [4, -1, 1.5, "left", None])
def test_invalid_action_raises(env, bad):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(bad)


def test_bad_instruction_is_rejected(nav_episodes):
    import copy

    ep = copy.deepcopy(nav_episodes[0])
    ep.instruction = "go to the chair \u2192 now"
    env = ObjectNavEnv(episodes=[ep], **SMALL)
    with pytest.raises(ValueError, match="Text space"):
        env.reset(seed=0)


@pytest.mark.parametrize("vector", ["async", "async_no_shm", "async_no_copy", "sync"])
def test_vector_envs_return_real_instructions(nav_episodes, vector):
    """Default AsyncVectorEnv (shared memory on) returns the same instruction strings as SyncVectorEnv
    and the single envs, after reset and after steps (Gymnasium's own Text path returned "aaaa...")."""
    fns = [functools.partial(ObjectNavEnv, episodes=nav_episodes, **SMALL) for _ in range(2)]
    venv = {"async": lambda: gym.vector.AsyncVectorEnv(fns),
            "async_no_shm": lambda: gym.vector.AsyncVectorEnv(fns, shared_memory=False),
            "async_no_copy": lambda: gym.vector.AsyncVectorEnv(fns, copy=False),
            "sync": lambda: gym.vector.SyncVectorEnv(fns)}[vector]()
    singles = [f() for f in fns]
    try:
        obs, infos = venv.reset(seed=[0, 1])
        want = tuple(e.reset(seed=s)[0]["instruction"] for e, s in zip(singles, [0, 1]))
        assert set(want) <= {e.instruction for e in nav_episodes}
        assert tuple(obs["instruction"]) == want
        if vector != "async_no_copy":
            assert type(obs["instruction"]) is tuple and all(type(t) is str for t in obs["instruction"])
        assert obs["rgb"].shape == (2, 32, 32, 3)
        for k in range(3):
            obs, _, _, _, infos = venv.step(np.array([1, 2]))
            assert tuple(obs["instruction"]) == want
        assert list(infos["steps"]) == [3.0, 3.0]
        # a new episode in one env shows up in the next read (the buffer is decoded on every read)
        obs, _ = venv.reset(seed=[5, 6])
        want = tuple(e.reset(seed=s)[0]["instruction"] for e, s in zip(singles, [5, 6]))
        assert tuple(obs["instruction"]) == want
    finally:
        venv.close()
        for e in singles:
            e.close()


def test_make_vec_async_defaults_return_real_instructions(nav_episodes):
    venv = gym.make_vec("SpatialNav-ObjectNav-v0", num_envs=2, vectorization_mode="async",
                        episodes=nav_episodes, **SMALL)
    try:
        obs, _ = venv.reset(seed=0)
        texts = {e.instruction for e in nav_episodes}
        assert all(t in texts for t in obs["instruction"]), obs["instruction"]
    finally:
        venv.close()


def test_context_tour_in_start_frame(env):
    env.reset(options={"episode_index": 0})
    tour = env.context_tour(n_frames=12)
    t = len(tour["poses"])
    assert 1 <= t <= 12
    assert tour["rgb"].shape == (t, 32, 32, 3) and tour["depth"].shape == (t, 32, 32, 1)
    assert np.all(np.diff(tour["indices"]) > 0)
    # poses are relative to the start: map them back to the world and check they are navigable
    x0, y0, yaw0 = env.start_pose
    c, s = math.cos(yaw0), math.sin(yaw0)
    p = tour["poses"].astype(np.float64)
    world = np.stack([x0 + c * p[:, 0] - s * p[:, 1], y0 + s * p[:, 0] + c * p[:, 1]], -1)
    assert np.all(env.grid.is_navigable(world))
    again = env.context_tour(n_frames=12)
    np.testing.assert_array_equal(again["rgb"], tour["rgb"])


def test_fuzz_random_actions_stay_navigable(nav_episodes):
    """10,000 random actions over three scenes: the agent always stands on a navigable
    cell, and no forward move crosses a wall or furniture (a non-free cell).

    (A move may clip the corner of the radius margin by less than the collision
    rule's 1 cm sub-step; that margin is not an obstacle, so only ``free`` is checked
    along the segment.)"""
    env = ObjectNavEnv(episodes=nav_episodes, width=16, height=16, max_episode_steps=10_000)
    rng = np.random.default_rng(0)
    scenes = set()
    n, ep = 0, 0
    while n < 10_000:
        env.reset(options={"episode_index": ep % len(nav_episodes)})
        scenes.add(env.episode.scene_id)
        ep += 1
        for _ in range(3400):
            before = env.pose[:2].copy()
            a = int(rng.choice([1, 1, 1, 2, 3]))
            env.step(a)
            n += 1
            after = env.pose[:2]
            assert env.grid.is_navigable(after), f"step {n}: agent at {after} is off the navigable area"
            if a == Action.MOVE_FORWARD:
                seg = before + np.linspace(0, 1, 26)[:, None] * (after - before)
                row, col = env.grid.world_to_cell(seg)
                assert np.all(env.grid.free[row, col]), f"step {n}: moved through an obstacle"
    assert len(scenes) == 3
    env.close()


def test_field_distance_scalar_path_matches_vectorised(env):
    """NavGrid.field_distance's scalar one-point path (the env's per-step look-up) equals its
    vectorised path everywhere."""
    env.reset(options={"episode_index": 0})
    grid, field = env.grid, env._goal_field
    rng = np.random.default_rng(0)
    lo = np.asarray(grid.origin, np.float64) - 0.2
    hi = lo + np.array(grid.navigable.shape[::-1]) * grid.cell_size + 0.4
    pts = np.concatenate([rng.uniform(lo, hi, size=(300, 2)), grid.sample_navigable(rng, 200),
                          env.episode.view_points[:20, :2]])
    ref = grid.field_distance(field, pts)
    ours = np.array([grid.field_distance(field, p) for p in pts])
    assert isinstance(grid.field_distance(field, pts[0]), float)
    assert np.isfinite(ref).sum() > 200
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_split_option_generates_that_split(nav_episodes):
    env = ObjectNavEnv(episodes=nav_episodes, n_episodes=1, **SMALL)
    _, info = env.reset(seed=0)
    assert info["scene_id"].startswith("procgen/val/")
    _, info = env.reset(seed=0, options={"split": "test"})
    assert info["scene_id"].startswith("procgen/test/") and len(env.episodes) == 1
    with pytest.raises(ValueError, match="split"):
        env.reset(options={"split": "nosuch"})
    env.close()
