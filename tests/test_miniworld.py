"""MiniWorld (Farama's miniworld, the optional [miniworld] extra) through envs.adapters: a real third-party
env, rendered headless (PYGLET_HEADLESS=True, EGL). Skipped when miniworld is not installed
(`make test` installs it: scripts/setup.sh miniworld)."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

if importlib.util.find_spec("miniworld") is None:  # not importorskip: pyglet must not load before headless is set
    pytest.skip("optional extra: pip install -e '.[miniworld]'", allow_module_level=True)
pytestmark = pytest.mark.miniworld

from gymnasium.utils.env_checker import check_env  # noqa: E402

from envs.actions import Action  # noqa: E402
from envs.miniworld import MINIWORLD_TASKS, goal_distance, make_miniworld, world_pose  # noqa: E402

SIZE = dict(width=48, height=48)


@pytest.mark.parametrize("task", MINIWORLD_TASKS)
def test_miniworld_wrapped_env_passes_check_env(task):
    env = make_miniworld(task, n_episodes=2, **SIZE)
    try:
        check_env(env, skip_render_check=True)
        obs, info = env.reset(options={"episode_index": 0})
        assert obs["rgb"].shape == (48, 48, 3) and obs["rgb"].dtype == np.uint8 and obs["rgb"].std() > 0
        assert obs["depth"].shape == (48, 48, 1) and 0 < obs["depth"].max() <= 10.0
        assert obs["instruction"] == "go to the red box"
        assert info["distance_to_goal"] == pytest.approx(goal_distance(env.env))
        ctx = env.context_tour()
        assert ctx["rgb"].shape == (12, 48, 48, 3) and ctx["poses"].shape == (12, 3)
        np.testing.assert_allclose(ctx["rgb"][0], obs["rgb"])  # the scan starts with the start view
    finally:
        env.close()


def test_miniworld_frame_conventions():
    """FORWARD moves 2 x 0.15 m along +x of the start frame (gps), LEFT turns +30 deg (compass,
    counter-clockwise); the depth straight ahead shrinks by the distance moved (z-depth in metres);
    the camera sits at our 0.88 m with our 79 deg field of view."""
    env = make_miniworld("MiniWorld-OneRoom-v0", n_episodes=1, **SIZE)
    try:
        obs, _ = env.reset(options={"episode_index": 0})
        agent = env.env.unwrapped.agent
        assert agent.cam_height == pytest.approx(0.88) and agent.cam_fov_y == pytest.approx(79.0)
        for _ in range(12):  # face open floor: the centre column more than 2 m ahead
            if obs["depth"][20:28, 22:26].min() > 2.0:
                break
            obs, *_ = env.step(Action.TURN_LEFT)
        assert obs["depth"][20:28, 22:26].min() > 2.0
        x0, yaw0 = obs["gps"].copy(), float(obs["compass"][0])
        d0 = float(obs["depth"][22:26, 22:26].mean())
        obs, _, _, _, info = env.step(Action.MOVE_FORWARD)
        step = obs["gps"] - x0
        assert np.linalg.norm(step) == pytest.approx(0.30, abs=1e-4)
        assert math.atan2(step[1], step[0]) == pytest.approx(yaw0, abs=1e-4)  # along the heading
        assert float(obs["depth"][22:26, 22:26].mean()) == pytest.approx(d0 - 0.30, abs=0.03)
        assert not info["collided"] and info["path_length"] == pytest.approx(0.30, abs=1e-4)
        obs, *_ = env.step(Action.TURN_LEFT)
        assert math.remainder(float(obs["compass"][0]) - yaw0 - math.radians(30), 2 * math.pi) == pytest.approx(0, abs=1e-5)
        # world pose: MiniWorld (x, -z, dir) -> z-up right-handed; forward vector (cos dir, 0, -sin dir)
        u = env.env.unwrapped
        x, y, yaw = world_pose(env.env)
        assert (x, y) == (pytest.approx(u.agent.pos[0]), pytest.approx(-u.agent.pos[2]))
        assert (math.cos(yaw), math.sin(yaw)) == (pytest.approx(u.agent.dir_vec[0]), pytest.approx(-u.agent.dir_vec[2]))
    finally:
        env.close()


def _steer_to_box(env, obs) -> int:
    """Test-only privileged controller: turn toward MiniWorld's box, then walk."""
    u = env.env.unwrapped
    x, y, yaw = world_pose(env.env)
    bx, by = u.box.pos[0], -u.box.pos[2]
    err = math.remainder(math.atan2(by - y, bx - x) - yaw, 2 * math.pi)
    if abs(err) > math.radians(20):
        return int(Action.TURN_LEFT if err > 0 else Action.TURN_RIGHT)
    return int(Action.MOVE_FORWARD)


def test_miniworld_success_is_miniworlds_own_verdict():
    """Reaching the box: MiniWorld terminates with a positive reward, and that is success 1 with SPL
    from the straight-line d0; an early STOP (the adapter's, MiniWorld has none) is a failure."""
    env = make_miniworld("MiniWorld-OneRoom-v0", n_episodes=2, **SIZE)
    try:
        obs, info = env.reset(options={"episode_index": 0})
        done = False
        while not done:
            obs, r, term, trunc, info = env.step(_steer_to_box(env, obs))
            done = term or trunc
        assert term and r == 1.0 and info["success"] == 1.0 and info["env_reward"] > 0
        assert info["distance_to_goal"] == 0.0 and 0 < info["spl"] <= 1.0
        assert env.env.unwrapped.near(env.env.unwrapped.box)
        env.reset(options={"episode_index": 1})
        _, r, term, _, info = env.step(Action.STOP)
        assert term and r == 0.0 and info["success"] == 0.0 and info["env_steps"] == 0
    finally:
        env.close()


@pytest.fixture(scope="module")
def built_agents():
    """Each agent built once (model loading dominates) and reused on both tasks."""
    from agent.base import make_agent

    env = make_miniworld("MiniWorld-OneRoom-v0", n_episodes=1, **SIZE)
    from agent.fair_play import SensorView

    view = SensorView(env)
    env.close()
    return {name: make_agent(name, env=view, seed=0, **({"threads": 1} if name != "random" else {}))
            for name in ("random", "frontier_clip", "world_model")}


@pytest.mark.parametrize("task", MINIWORLD_TASKS)
def test_miniworld_agents_run_through_the_adapter(task, built_agents, tmp_path):
    """random, frontier_clip and world_model run short episodes end to end (runner, context scan,
    summary); success is MiniWorld's verdict, so it agrees with its reward."""
    from agent.runner import evaluate

    keys = None
    for name, bot in built_agents.items():
        out = tmp_path / name
        s = evaluate(lambda env, seed, _b=bot: _b, split="val", n_episodes=1, out_dir=out, progress=False,
                     print_summary=False, env_factory="envs.miniworld:miniworld_env", env_id=task,
                     max_episode_steps=6 if name != "random" else 40, **SIZE)
        (row,) = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
        assert row["success"] == float(row["env_reward"] > 0)
        assert 1 <= row["steps"] <= (6 if name != "random" else 40)
        assert math.isfinite(row["spl"]) and math.isfinite(row["distance_to_goal"])
        keys = keys or set(s)
        assert set(s) == keys


def test_miniworld_cli_eval_writes_the_usual_summary(tmp_path, nav_episode_file):
    from agent import cli

    out_mw, out_sim = tmp_path / "mw", tmp_path / "sim"
    assert cli.main(["eval", "env=miniworld/oneroom", "agent=random", "n=2", "env.width=32", "env.height=32",
                     "task.max_episode_steps=20", "progress=false", f"out_dir={out_mw}"]) == 0
    assert cli.main(["eval", "env=tiny", "agent=random", "n=2", "task.max_episode_steps=20", "progress=false",
                     f"episodes={nav_episode_file}", f"out_dir={out_sim}"]) == 0
    s_mw = json.loads((out_mw / "summary.json").read_text())
    s_sim = json.loads((out_sim / "summary.json").read_text())
    assert set(s_mw) == set(s_sim) and s_mw["n_episodes"] == 2
    assert s_mw["episode_ids"] == ["MiniWorld-OneRoom-v0:val:0", "MiniWorld-OneRoom-v0:val:1"]
    assert cli.main(["eval", "env=miniworld/nowhere", "agent=random"]) == 2  # a clear error, not a traceback
    # the privileged oracle needs our simulator's ground truth: a clear error on a third-party env
    assert cli.main(["eval", "env=miniworld/oneroom", "agent=oracle", "n=1", "env.width=32", "env.height=32",
                     "progress=false", f"out_dir={tmp_path / 'oracle'}"]) == 2
