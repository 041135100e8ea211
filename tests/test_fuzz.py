"""Property tests (hypothesis): wrong types, NaN/inf, huge and empty values at the user-facing
boundaries get a clear error or a valid result, never a traceback of another type, a hang or a
changed state (issue 23). Small ``max_examples`` keep the file to a few seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from agent import cli  # noqa: E402

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)

KEYS = ["n_episodes", "n", "seed", "video", "split", "shard", "progress", "out", "episodes", "env.width",
        "env.height", "env.hfov_deg", "task.max_episode_steps", "task.success_distance", "experiment",
        "world_model", "planner", "agent", "env", "compare.dirs", "compare.n_boot", "imagine.instruction",
        "eval_wm.num_steps", "no_such_key", "env.no_such", "+extra", "merge.dirs"]
VALUES = st.one_of(
    st.integers(min_value=-10 ** 12, max_value=10 ** 12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "null", "true", "false", "nan", "-inf", "[]", "[a,b]", "{}", "ten", "0/4", "5/4", "a/b",
                     "debug", "debgu", "small", "oracle", "'  '", '""', "1e400", "-0", "None"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=12),
)


@settings(FAST, max_examples=20)  # each example composes the config 2-3 times (~0.25 s)
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_override_composes_or_is_a_cli_error(key, value):
    override = f"{key}={value}"
    try:
        cfg = cli.compose_config([override])
    except cli.CLIError as e:
        assert str(e).strip() and "Traceback" not in str(e)
        return
    # a composed config holds values of the types the commands read
    assert isinstance(cfg.n_episodes, int) and not isinstance(cfg.n_episodes, bool) and cfg.n_episodes >= 1
    assert isinstance(cfg.seed, int) and cfg.seed >= 0
    assert isinstance(cfg.video, bool) or (isinstance(cfg.video, int) and cfg.video >= 0)
    assert isinstance(cfg.progress, bool)
    assert isinstance(cfg.env.width, int) and cfg.env.width >= 8
    assert isinstance(cfg.task.max_episode_steps, int) and cfg.task.max_episode_steps >= 1
    sd = cfg.task.success_distance
    assert isinstance(sd, (int, float)) and math.isfinite(sd)


# ------------------------------------------------------------------------------------ env
ACTIONS = st.one_of(
    st.integers(min_value=-5, max_value=8), st.integers(), st.floats(), st.text(max_size=3), st.none(),
    st.booleans(), st.lists(st.integers(0, 3), max_size=2),
    st.integers(0, 3).map(np.int64), st.floats(0, 4).map(np.float32), st.integers(0, 3).map(np.array),
)


@pytest.fixture(scope="module")
def env(nav_episodes):
    from envs.gym_env import ObjectNavEnv

    e = ObjectNavEnv(episodes=nav_episodes[:2], width=16, height=16, max_episode_steps=30)
    e.reset(options={"episode_index": 0})
    yield e
    e.close()


def _env_state(e):
    return e.pose.copy(), e._metrics.steps, e._done, e.episode_index


@FAST
@given(action=ACTIONS)
def test_env_step_takes_an_action_or_refuses_it_unchanged(env, action):
    if env._done:
        env.reset(options={"episode_index": 0})
    before = _env_state(env)
    try:
        obs, reward, term, trunc, info = env.step(action)
    except ValueError as e:
        assert "invalid action" in str(e)
        after = _env_state(env)
        assert np.array_equal(after[0], before[0]) and after[1:] == before[1:]
        return
    a = np.asarray(action)
    assert a.size == 1 and np.issubdtype(a.dtype, np.integer) and 0 <= int(a) <= 3
    assert env.observation_space.contains(obs) and info["steps"] == before[1] + 1


@FAST
@given(index=st.one_of(st.integers(-3, 5), st.floats(), st.text(max_size=2), st.none(), st.booleans()))
def test_env_reset_takes_an_episode_index_or_refuses_it(env, index):
    before = _env_state(env)
    try:
        env.reset(options={"episode_index": index})
    except ValueError as e:
        assert "episode_index" in str(e)
        after = _env_state(env)
        assert np.array_equal(after[0], before[0]) and after[1:] == before[1:]
        return
    assert index is None or (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 2)
    env.step(0)  # end it, so the step test starts fresh


# ------------------------------------------------------------------------------------ agent
TINY = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
            text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=256)


@pytest.fixture(scope="module")
def agent_and_obs(nav_episodes):
    """A world-model agent (noise imagination: no model compute) mid-episode in a real env."""
    import torch

    from agent.fair_play import SensorView, public_context, public_info
    from agent.world_model_agent import WorldModelAgent
    from envs.gym_env import ObjectNavEnv
    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    torch.manual_seed(0)
    model = Video4SpatialModel(transformer_config=dict(TINY), text_len=8, frame_size=(16, 16)).eval()
    pipe = Video4SpatialPipeline(model, make_scheduler(), num_target_frames=2, num_bbox_frames=1)
    e = ObjectNavEnv(episodes=nav_episodes[:1], width=16, height=16)
    obs, info = e.reset(options={"episode_index": 0})
    agent = WorldModelAgent(env=SensorView(e), seed=0, pipeline=pipe, ablation="noise", clip_guidance=False,
                            context_mode="noncontiguous", num_context=2)
    agent.reset(obs, public_info(info), public_context(e.unwrapped.context_tour(n_frames=4)))
    yield agent, obs
    e.close()


NUMBERS = st.one_of(st.floats(width=32), st.floats(-50, 50), st.just(1e6), st.just(-1e9))
OBS_CHANGES = st.fixed_dictionaries({}, optional={
    "gps": st.one_of(st.lists(NUMBERS, min_size=0, max_size=3).map(lambda v: np.array(v, np.float32)),
                     st.text(max_size=3), st.none()),
    "compass": st.one_of(st.lists(NUMBERS, min_size=0, max_size=2).map(lambda v: np.array(v, np.float32)),
                         st.none()),
    "rgb": st.sampled_from(["2 channels", "float", "empty", "list", "none", "other size"]),
    "depth": st.sampled_from(["nan", "wrong shape", "string", "missing", "negative"]),
})


def _mutate(obs, changes):
    out = dict(obs)
    for k, v in changes.items():
        if k in ("gps", "compass"):
            out[k] = v
        elif k == "rgb":
            out["rgb"] = {"2 channels": obs["rgb"][..., :2], "float": obs["rgb"].astype(np.float32),
                          "empty": np.zeros((0, 0, 3), np.uint8), "list": obs["rgb"].tolist(), "none": None,
                          "other size": np.zeros((20, 12, 3), np.uint8)}[v]
        elif v == "missing":
            out.pop("depth")
        else:
            d = obs["depth"]
            out["depth"] = {"nan": np.full_like(d, np.nan), "wrong shape": d[:4], "string": "deep",
                            "negative": -d}[v]
    return out


def _agent_state(agent):
    return (len(agent.buffer), agent.stats["steps"], agent.pose.copy(), agent.map.version, agent.map.shape,
            agent.last_action)


@FAST
@given(changes=OBS_CHANGES)
def test_agent_acts_or_refuses_a_bad_observation_unchanged(agent_and_obs, changes):
    agent, obs = agent_and_obs
    bad = _mutate(obs, changes)
    before = _agent_state(agent)
    try:
        a = agent.act(bad)
    except ValueError as e:
        assert "observation" in str(e)
        after = _agent_state(agent)
        assert after[:2] == before[:2] and np.array_equal(after[2], before[2]) and after[3:] == before[3:]
        assert agent.act(obs) in (0, 1, 2, 3)  # and it goes on with the next good one
        return
    assert a in (0, 1, 2, 3) and _agent_state(agent)[1] == before[1] + 1
