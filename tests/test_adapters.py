"""envs.adapters.GymAdapter: the observation/action contract over another Gymnasium env.

The wrapped env here is our own ObjectNavEnv used as if it were third-party (its world pose, its
own success): the adapter's start-frame pose, odometry, metrics and episodes must reproduce what
the env itself reports. MiniWorld, a real third-party env, is in tests/test_miniworld.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.actions import Action
from envs.adapters import GymAdapter
from envs.gym_env import ObjectNavEnv

SMALL = dict(width=32, height=32)
IDENTITY = {Action.STOP: [0], Action.MOVE_FORWARD: [1], Action.TURN_LEFT: [2], Action.TURN_RIGHT: [3]}


def _adapter(episodes, pose=True, **kw):
    inner = ObjectNavEnv(episodes=episodes, **SMALL)
    args = dict(
        rgb="rgb", depth="depth",
        pose=(lambda e, obs, info: e.unwrapped.pose.copy()) if pose else None,
        instruction=lambda e, obs, info: obs["instruction"], action_map=IDENTITY,
        success=lambda e, r, term, trunc, info: bool(info["success"]),
        goal_distance=lambda e: float(e.unwrapped._metrics.distance_to_goal),
        shortest_path=lambda e: float(e.unwrapped.episode.geodesic_distance),
        hfov_deg=inner.hfov_deg, max_depth=inner.max_depth, n_episodes=len(episodes))
    args.update(kw)
    return GymAdapter(inner, **args)


def _oracle_actions(episodes, index: int) -> list[int]:
    from agent.baselines import OracleAgent

    env = ObjectNavEnv(episodes=episodes, **SMALL)
    obs, info = env.reset(options={"episode_index": index})
    bot = OracleAgent(env=env)
    bot.reset(obs, info)
    actions, done = [], False
    while not done:
        a = int(bot.act(obs))
        actions.append(a)
        obs, _, term, trunc, info = env.step(a)
        done = term or trunc
    assert info["success"] == 1.0
    return actions


@pytest.mark.parametrize("pose", [True, False], ids=["env_pose", "odometry"])
def test_adapter_reproduces_the_wrapped_env(nav_episodes, pose):
    """Same actions, same episode: the adapter's rgb/depth/gps/compass equal the env's own, and its
    success/SPL/path length (from the env's verdict and distances) equal the env's metrics."""
    actions = _oracle_actions(nav_episodes, 1)
    raw = ObjectNavEnv(episodes=nav_episodes, **SMALL)
    env = _adapter(nav_episodes, pose=pose)
    o_raw, i_raw = raw.reset(options={"episode_index": 1})
    o, info = env.reset(options={"episode_index": 1})
    assert o["instruction"] == o_raw["instruction"] and info["steps"] == 0.0
    for a in actions:
        o_raw, _, t_raw, tr_raw, i_raw = raw.step(a)
        o, r, term, trunc, info = env.step(a)
        np.testing.assert_array_equal(o["rgb"], o_raw["rgb"])
        np.testing.assert_array_equal(o["depth"], o_raw["depth"])
        if pose or not i_raw["collisions"]:  # odometry is exact while no move is blocked
            np.testing.assert_allclose(o["gps"], o_raw["gps"], atol=1e-4)
            assert abs(math.remainder(float(o["compass"][0] - o_raw["compass"][0]), 2 * math.pi)) < 1e-5
        assert (term, trunc) == (t_raw, tr_raw)
    assert term and r == 1.0
    for k in ("success", "spl", "softspl", "path_length", "steps", "collisions"):
        assert info[k] == pytest.approx(i_raw[k], abs=1e-6), k
    assert info["env_steps"] == len(actions)
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step(1)


def test_adapter_passes_gymnasium_check_env(nav_episodes):
    env = _adapter(nav_episodes)
    check_env(env, skip_render_check=True)
    assert env.render().shape == (32, 32, 3)


def test_stop_mapped_to_none_ends_the_episode_without_calling_the_env(nav_episodes):
    env = _adapter(nav_episodes, action_map={**IDENTITY, Action.STOP: None})
    env.reset(options={"episode_index": 0})
    env.step(Action.TURN_LEFT)
    obs, r, term, trunc, info = env.step(Action.STOP)
    assert term and not trunc and r == 0.0
    assert info["success"] == 0.0 and info["env_steps"] == 1 and info["steps"] == 2.0
    assert obs["rgb"].shape == (32, 32, 3)


def test_adapter_truncates_at_its_step_cap_and_episodes_are_seeded(nav_episodes):
    env = _adapter(nav_episodes, max_episode_steps=3)
    assert [(e.episode_id, e.seed) for e in env.episodes] == [(f"ObjectNavEnv:val:{i}", 1_000_000 + i) for i in range(3)]
    a, _ = env.reset(options={"episode_index": 2})
    b, _ = env.reset(options={"episode_index": 2})
    np.testing.assert_array_equal(a["rgb"], b["rgb"])
    for k in range(3):
        _, _, term, trunc, info = env.step(Action.TURN_LEFT)
    assert trunc and not term and info["steps"] == 3.0


def test_adapter_input_errors_are_clear(nav_episodes):
    with pytest.raises(ValueError, match="no entry for TURN_RIGHT"):
        _adapter(nav_episodes, action_map={0: [0], 1: [1], 2: [2]})
    with pytest.raises(ValueError, match="not in the env's action space"):
        _adapter(nav_episodes, action_map={**IDENTITY, Action.TURN_LEFT: [7]})
    with pytest.raises(KeyError, match="no such key.*compass"):
        _adapter(nav_episodes, rgb="camera")
    with pytest.raises(TypeError, match="gymnasium.Env instance"):
        GymAdapter("SpatialNav-ObjectNav-v0", action_map=IDENTITY)
    env = _adapter(nav_episodes, instruction="go to the sofa \u2192 now")
    with pytest.raises(ValueError, match="printable ASCII"):
        env.reset(seed=0)
    env = _adapter(nav_episodes)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(9)


def test_runner_evaluates_an_adapted_env(nav_episodes, tmp_path):
    """agent.runner.evaluate(env_factory=...) runs an adapter like ObjectNavEnv, with the same summary keys."""
    from agent.runner import evaluate

    def factory(split, episodes, n_episodes, **kw):
        return _adapter(nav_episodes, n_episodes=n_episodes, **kw)

    kw = dict(split="val", n_episodes=2, progress=False, print_summary=False, max_episode_steps=6)
    s_ad = evaluate("random", out_dir=tmp_path / "adapted", env_factory=factory, **kw)
    s_raw = evaluate("random", out_dir=tmp_path / "raw", episodes=nav_episodes, **SMALL, **kw)
    drop = {"provenance"}
    assert set(s_ad) - drop == set(s_raw) - drop
    rows = [json.loads(x) for x in (tmp_path / "adapted" / "episodes.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["steps"] <= 6 for r in rows)
