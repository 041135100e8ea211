"""Fair play: only the Oracle sees ground truth.

Every other agent gets obs (rgb, depth, gps, compass, instruction), ``info`` cut down to
``PUBLIC_INFO_KEYS`` and the context tour's frames and poses; the env it is built with is a
``SensorView`` that holds copies of the sensor settings and raises on anything else.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from agent.baselines import OracleAgent, RandomAgent
from agent.runner import (PUBLIC_CONTEXT_KEYS, PUBLIC_INFO_KEYS, PrivilegedAccessError, SensorView, evaluate,
                          public_info)
from agent.world_model_agent import WorldModelAgent

OBS_KEYS = {"rgb", "depth", "gps", "compass", "instruction"}
GROUND_TRUTH = ("distance_to_goal", "success", "spl", "softspl", "scene_id")
FAST = dict(n_episodes=1, width=16, height=16, max_episode_steps=6, progress=False, print_summary=False)


def spy(cls):
    """A subclass of ``cls`` that records what the runner hands it."""

    class Spy(cls):
        seen: list = []

        def __init__(self, env=None, seed=None, **kw):
            Spy.seen.append(("env", env))
            super().__init__(env=env, seed=seed, **kw)

        def reset(self, obs, info=None, context=None):
            Spy.seen.append(("reset", set(obs), None if info is None else dict(info),
                             None if context is None else set(context)))
            super().reset(obs, info, context)

        def act(self, obs):
            Spy.seen.append(("act", set(obs)))
            return super().act(obs)

    Spy.__name__ = f"Spy{cls.__name__}"
    return Spy


def _check_fair(seen, needs_context: bool):
    env = [s[1] for s in seen if s[0] == "env"][0]
    assert isinstance(env, SensorView)
    for name in ("episode", "grid", "scene", "pose", "renderer", "topdown_map", "context_tour", "_goal_field"):
        with pytest.raises(PrivilegedAccessError, match="non-privileged"):
            getattr(env.unwrapped, name)
    resets = [s for s in seen if s[0] == "reset"]
    assert resets
    for _, obs_keys, info, ctx in resets:
        assert obs_keys == OBS_KEYS
        assert set(info) <= set(PUBLIC_INFO_KEYS) and not set(info) & set(GROUND_TRUTH)
        assert str(info.get("episode_id", "ep-")).startswith("ep-")  # a token, not the scene-naming id
        assert (ctx is not None) == needs_context
        assert ctx is None or ctx <= set(PUBLIC_CONTEXT_KEYS)
    assert all(s[1] == OBS_KEYS for s in seen if s[0] == "act")


def test_random_agent_sees_only_public_data(tmp_path, nav_episode_file):
    cls = spy(RandomAgent)
    evaluate(cls, out_dir=tmp_path, episodes=nav_episode_file, **FAST)
    _check_fair(cls.seen, needs_context=False)


def test_world_model_agent_sees_only_public_data(tmp_path, nav_episode_file):
    # ablation="noise" never calls the world model, so a config-only stand-in suffices here.
    pipe = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(frame_size=(8, 8))),
                           config=SimpleNamespace(num_target_frames=2, num_bbox_frames=1),
                           imagine=lambda *a, **k: None)
    cls = spy(WorldModelAgent)
    evaluate(cls, out_dir=tmp_path, episodes=nav_episode_file, agent_kwargs={"pipeline": pipe, "ablation": "noise"},
             **FAST)
    _check_fair(cls.seen, needs_context=True)
    assert cls.seen[0][1].hfov_deg == 79.0  # sensor settings are readable


def test_the_oracle_is_privileged_explicitly(tmp_path, nav_episode_file):
    cls = spy(OracleAgent)
    s = evaluate(cls, out_dir=tmp_path, episodes=nav_episode_file, **{**FAST, "max_episode_steps": 200})
    env = [x[1] for x in cls.seen if x[0] == "env"][0]
    assert not isinstance(env, SensorView) and env.unwrapped.grid is not None
    info = [x[2] for x in cls.seen if x[0] == "reset"][0]
    assert "distance_to_goal" in info  # the privileged agent gets the full info
    assert s["success"] == 1.0


def test_a_cheating_agent_is_stopped(tmp_path, nav_episode_file):
    class Cheat(RandomAgent):
        def reset(self, obs, info=None, context=None):
            self.goal = self.env.unwrapped.episode.view_points  # ground truth: must fail

        def __init__(self, env=None, seed=None):
            super().__init__(env=env, seed=seed)
            self.env = env

    with pytest.raises(PrivilegedAccessError, match="episode"):
        evaluate(Cheat, out_dir=tmp_path, episodes=nav_episode_file, **FAST)


def test_sensor_view_and_public_info_hold_no_ground_truth():
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(n_episodes=1, width=16, height=16)
    view = SensorView(env)
    assert view.width == 16 and view.max_depth == 10.0 and view.action_space.n == 4
    assert not any(v is env or v is env.unwrapped for v in vars(view).values())
    with pytest.raises(PrivilegedAccessError):
        view.pose = np.zeros(3)
    info = {"distance_to_goal": 1.0, "success": 0.0, "episode_id": "val_100003_2", "scene_id": "s", "spl": 0.0}
    pub = public_info(info)
    assert set(pub) == {"episode_id"}
    # the id names the scene seed; agents get an opaque, stable token (for seeding only)
    assert "100003" not in pub["episode_id"] and pub == public_info(dict(info))
    assert pub != public_info({**info, "episode_id": "val_100003_3"})
    env.close()


def test_eval_runs_several_agents_on_the_same_episodes(tmp_path, nav_episode_file, capsys):
    import json

    from agent import cli

    md = tmp_path / "results.md"
    md.write_text("# Results\n\nkept text\n")
    args = ["eval", "agents=[oracle,random]", "n_episodes=2", f"out_dir={tmp_path / 'ev'}", "env=tiny",
            f"episodes={nav_episode_file}", "progress=false", f"results_md={md}", "task.max_episode_steps=200"]
    assert cli.main(args) == 0
    ids = [json.loads((tmp_path / "ev" / a / "summary.json").read_text())["episode_ids"] for a in ("oracle", "random")]
    assert ids[0] == ids[1] and len(ids[0]) == 2
    text = md.read_text()
    assert "kept text" in text and "| oracle (privileged) | 2 | 1.000" in text and "| random | 2 |" in text
    assert cli.main(args) == 0  # a rerun replaces its block instead of appending another
    assert md.read_text().count("spatialnav-eval split=val") == 2  # one begin + one end marker
