"""Fair play: only the Oracle sees ground truth.

Every other agent gets obs (rgb, depth, gps, compass, instruction), ``info`` cut down to
``PUBLIC_INFO_KEYS`` and the context tour's frames and poses; the env it is built with is a
``SensorView`` that holds copies of the sensor settings and raises on anything else.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.baselines import OracleAgent, RandomAgent
from agent.fair_play import (PUBLIC_CONTEXT_KEYS, PUBLIC_INFO_KEYS, Access, PrivilegedAccessError, SensorView,
                             agent_access, public_info)
from agent.runner import evaluate
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




@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """A randomly initialised small CLIP saved like the trained one."""
    from world_model.ssg.clip import SmallClipSpec, build_small_clip, build_word_tokenizer, grammar_vocabulary

    spec = SmallClipSpec(image_size=32, patch_size=8, vision_layers=2, vision_width=32, vision_heads=2,
                         text_layers=1, text_width=32, text_heads=2, projection_dim=32, max_text_len=24)
    path = tmp_path_factory.mktemp("clip") / "clip-tiny"
    build_small_clip(build_word_tokenizer(grammar_vocabulary()), spec, seed=0).save_pretrained(path)
    return path


def test_world_model_agent_sees_only_public_data(tmp_path, nav_episode_file, tiny_pipeline, tiny_clip_dir):
    """The real agent (imagination on, CLIP guide on) with a real tiny pipeline: what reaches it at
    construction, reset and act, and what it hands the world model (only frames it was given)."""
    calls = []
    real_imagine = tiny_pipeline.imagine

    def imagine(frames, indices, instruction, **kw):
        calls.append((np.asarray(frames).copy(), np.asarray(indices).copy(), instruction, set(kw)))
        return real_imagine(frames, indices, instruction, **kw)

    cls = spy(WorldModelAgent)
    seen_frames = []

    class Recorder(cls):
        def reset(self, obs, info=None, context=None):
            seen_frames.extend(np.asarray(context["rgb"]))
            super().reset(obs, info, context)

        def act(self, obs):
            seen_frames.append(np.asarray(obs["rgb"]))
            return super().act(obs)

    tiny_pipeline.imagine = imagine
    try:
        s = evaluate(Recorder, out_dir=tmp_path, episodes=nav_episode_file, agent_kwargs={
            "pipeline": tiny_pipeline, "clip": str(tiny_clip_dir), "num_context": 3, "num_steps": 1,
            "explore_reimagine_every": 2, "guide": {"min_views": 4}}, **FAST)
    finally:
        del tiny_pipeline.imagine
    _check_fair(cls.seen, needs_context=True)
    assert cls.seen[0][1].hfov_deg == 79.0  # sensor settings are readable
    assert s["n_episodes"] == 1 and calls, "the world model was never asked to imagine"
    from agent.context import ContextBuffer

    fs = tiny_pipeline.model.config.frame_size
    given = ContextBuffer(frame_size=tuple(fs))
    for f in seen_frames:
        given.append(f, np.zeros(3))
    for frames, indices, instruction, _ in calls:  # every context frame is a (resized) frame the agent was given
        assert len(frames) == 3 and instruction == str(instruction) and instruction
        for f in frames:
            assert any(np.array_equal(f, g) for g in given.frames), "imagined from a frame the agent never saw"


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


def test_access_is_decided_by_the_class_alone():
    from agent.frontier_clip import FrontierClipAgent

    assert agent_access(OracleAgent) == Access(privileged=True, context=False)
    assert agent_access(WorldModelAgent) == agent_access(FrontierClipAgent) == Access(privileged=False, context=True)
    assert agent_access(RandomAgent) == Access()
    bot = RandomAgent(seed=0)
    bot.privileged = bot.needs_context = True  # an instance attribute widens nothing
    assert agent_access(bot) == Access()

    class Sneaky(RandomAgent):
        privileged = property(lambda self: True)  # truthy on the class, True on instances
        needs_context = 1  # only the value True grants

    assert agent_access(Sneaky) == agent_access(Sneaky(seed=0)) == Access()

    def factory(env=None, seed=None):  # a function is granted nothing; what it builds is judged by its class
        return OracleAgent(env=env, seed=seed)

    factory.privileged = True
    assert agent_access(factory) == Access()


def test_an_instance_attribute_cannot_widen_access(tmp_path, nav_episode_file):
    class Widening(RandomAgent):
        def __init__(self, env=None, seed=None):
            super().__init__(env=env, seed=seed)
            self.privileged = True
            self.needs_context = True

    cls = spy(Widening)
    evaluate(cls, out_dir=tmp_path / "a", episodes=nav_episode_file, **FAST)
    _check_fair(cls.seen, needs_context=False)  # SensorView, public info, no context

    class SelfPromoting(RandomAgent):  # makes its class privileged while being built
        def __init__(self, env=None, seed=None):
            super().__init__(env=env, seed=seed)
            type(self).privileged = True

    with pytest.raises(ValueError, match="SelfPromoting is privileged but was built by"):
        evaluate(SelfPromoting, out_dir=tmp_path / "b", episodes=nav_episode_file, **FAST)

    def oracle(env=None, seed=None):  # a function factory gets the sensor view, so the Oracle cannot run
        return OracleAgent(env=env, seed=seed)

    oracle.privileged = True
    with pytest.raises(ValueError, match="OracleAgent reads .* SensorView has none"):
        evaluate(oracle, out_dir=tmp_path / "c", episodes=nav_episode_file, **FAST)


def test_the_noise_ablation_is_frontier_clip_step_for_step(tmp_path, nav_episode_file, tiny_pipeline, tiny_clip_dir):
    """docs/agents.md and docs/results.md: ``world_model@noise`` reduces the world-model agent to the
    Frontier+CLIP baseline. Both built from their shipped configs (configs/agent/*.yaml, as
    ``eval agents=[world_model@noise,frontier_clip]`` builds them), same CLIP, same episodes."""
    from omegaconf import OmegaConf

    from agent.cli import config_dir
    from agent.frontier_clip import FrontierClipAgent
    from agent.episode_log import read_episode_log

    def settings(name):
        kw = OmegaConf.to_container(OmegaConf.load(config_dir() / "agent" / f"{name}.yaml"), resolve=True)
        kw.pop("name")
        return {**kw, "clip": str(tiny_clip_dir), "threads": None}

    def recording(cls):
        class Recording(cls):
            def reset(self, obs, info=None, context=None):
                self.actions = []
                super().reset(obs, info, context)

            def act(self, obs):
                a = super().act(obs)
                self.actions.append(a)
                return a

            def episode_stats(self):
                return {**super().episode_stats(), "actions": list(self.actions)}

        return Recording

    wm = {**settings("world_model"), "pipeline": tiny_pipeline, "ablation": "noise"}
    kw = dict(n_episodes=2, width=32, height=32, max_episode_steps=40, progress=False, print_summary=False)
    evaluate(recording(WorldModelAgent), out_dir=tmp_path / "wm", episodes=nav_episode_file, agent_kwargs=wm, **kw)
    evaluate(recording(FrontierClipAgent), out_dir=tmp_path / "fc", episodes=nav_episode_file,
             agent_kwargs=settings("frontier_clip"), **kw)
    rows_wm, rows_fc = (read_episode_log(tmp_path / d / "episodes.jsonl") for d in ("wm", "fc"))
    assert len(rows_wm) == len(rows_fc) == 2
    for a, b in zip(rows_wm, rows_fc):
        assert a["episode_id"] == b["episode_id"]
        assert a["agent_actions"] == b["agent_actions"]
        assert len(set(a["agent_actions"])) >= 2  # the episode exercised the policy, not one repeated action
        for k in ("steps", "success", "spl", "path_length", "distance_to_goal", "collisions"):
            assert a[k] == b[k], k
        assert a["agent_imaginations"] >= 1 and a["agent_steps_with_goal"] == 0  # imagined noise, never a goal
