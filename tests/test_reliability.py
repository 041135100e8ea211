"""Bad input gets a clear error, never a silent default, a hang or a broken agent (issue 23).

One test per numbered case of the issue (each failed on the code before the fix), then the
evaluation fingerprint, the summary's episode set and its provenance.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

from agent import cli
from agent.episode_log import EPISODES_FILE, RUN_FILE, SUMMARY_FILE, read_episode_log
from agent.runner import evaluate
from agent.sharding import merge

FAST = dict(width=16, height=16, max_episode_steps=40, progress=False, print_summary=False,
            agent_kwargs={"stop_prob": 0.05})


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# 1 ------------------------------------------------------------------------ config groups
@pytest.mark.parametrize("override, options", [("experiment=debgu", "acceptance, debug"),
                                               ("world_model=smal", "small")])
def test_misspelt_optional_group_option_is_an_error(override, options, capsys):
    assert cli.main(["eval", override, "--cfg"]) == 2
    err = _err(capsys)
    assert f"unknown {override.split('=')[0]} option '{override.split('=')[1]}'" in err and options in err
    assert cli.main(["eval", override.split("=")[0] + "=" + options.split(", ")[-1], "--cfg"]) == 0
    capsys.readouterr()


# 2, 3 ------------------------------------------------------------------ agent state, bounds


@pytest.fixture(scope="module")
def env_episode(nav_episodes):
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(episodes=nav_episodes[:1], width=32, height=32)
    obs, info = env.reset(options={"episode_index": 0})
    yield env, obs, info
    env.close()


def _bad_observations(obs):
    nan_gps = dict(obs, gps=np.array([np.nan, 0.0], np.float32))
    far_gps = dict(obs, gps=np.array([1e6, 0.0], np.float32))
    inf_compass = dict(obs, compass=np.array([np.inf], np.float32))
    small_rgb = dict(obs, rgb=obs["rgb"][:, :, :2])
    no_depth = {k: v for k, v in obs.items() if k != "depth"}
    return {"nan gps": nan_gps, "gps 1e6 m": far_gps, "inf compass": inf_compass, "rgb 2 channels": small_rgb,
            "no depth": no_depth}


def test_a_bad_observation_leaves_the_world_model_agent_working(env_episode, tiny_pipeline):
    """Issue case 2: a NaN gps used to leave the buffer one frame ahead of the CLIP guide's scores,
    so every later act() failed; case 3: gps 1e6 m allocated 36 GiB. Now each is refused before
    anything changes and the next good observation continues the episode."""
    from agent.fair_play import SensorView, public_context, public_info
    from agent.world_model_agent import WorldModelAgent

    env, obs, info = env_episode
    agent = WorldModelAgent(env=SensorView(env), seed=0, pipeline=tiny_pipeline, num_context=3, num_steps=1,
                            context_mode="relevant")
    agent.reset(obs, public_info(info), public_context(env.unwrapped.context_tour(n_frames=6)))
    agent.act(obs)
    for name, bad in _bad_observations(obs).items():
        before = (len(agent.buffer), len(agent.value_map.scores), agent.stats["steps"], agent.pose.copy(),
                  agent.map.shape, agent.map.version)
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match="observation"):
            agent.act(bad)
        assert time.perf_counter() - t0 < 2.0, name
        after = (len(agent.buffer), len(agent.value_map.scores), agent.stats["steps"], agent.pose.copy(),
                 agent.map.shape, agent.map.version)
        assert after[:3] == before[:3] and np.array_equal(after[3], before[3]) and after[4:] == before[4:], name
        assert agent.act(obs) in (0, 1, 2, 3), name  # the next good observation works
    assert len(agent.buffer) == 6 + 1 + len(_bad_observations(obs))


def test_far_poses_and_goals_are_bounded_errors_not_memory_errors():
    """Issue case 3: ``ObstacleMap.ensure_contains`` grew without bound (a goal 1e5 m away ran 86 s
    and 11.8 GB before a MemoryError)."""
    from planners.mapping import ObstacleMap
    from planners.path import Navigator

    m = ObstacleMap()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="max_size_m=200 m"):
        m.update(np.zeros((16, 16, 1), np.float32), np.array([1e6, 0.0, 0.0]))
    nav = Navigator(m)
    nav.observe({"depth": np.zeros((16, 16, 1), np.float32), "gps": np.zeros(2), "compass": np.zeros(1)})
    with pytest.raises(ValueError, match="within about 89 m of the start"):
        nav.act((1e5, 0.0))
    with pytest.raises(ValueError, match="finite"):
        m.ensure_contains((0.0, np.nan), (1.0, 1.0))
    assert time.perf_counter() - t0 < 2.0 and m.shape == (480, 480)  # nothing grew
    assert m.can_hold((-90, -90), (90, 90)) and not m.can_hold((-90, -90), (120, 0))
    nav.act((3.0, 0.0))  # a near goal still plans
    with pytest.raises(ValueError, match="max_size_m"):
        ObstacleMap(cell_size=0.001, size_m=1.0, max_size_m=1000.0)


# 4 ------------------------------------------------------------------------ truncated .ply
def test_truncated_ascii_ply_is_an_error(tmp_path):
    import trimesh

    from envs.mesh_io import MeshSceneError, load_mesh_scene

    v = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0], [1, 1, .5], [1.4, 1, .5], [1, 1.4, .5]], float)
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    trimesh.Trimesh(v, f, process=False).export(str(tmp_path / "room.ply"), encoding="ascii")
    lines = (tmp_path / "room.ply").read_text().splitlines(keepends=True)
    (tmp_path / "cut.ply").write_text("".join(lines[:-2]))  # the last two faces are gone
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no sidecar
        assert len(load_mesh_scene(tmp_path / "room.ply").triangles) == 3
        with pytest.raises(MeshSceneError, match=r"cut\.ply: truncated ASCII PLY: the header declares 10 "
                                                 r"elements .* holds 8 data lines"):
            load_mesh_scene(tmp_path / "cut.ply")
        (tmp_path / "nohead.ply").write_text("".join(lines[:5]))
        with pytest.raises(MeshSceneError, match="no end_header"):
            load_mesh_scene(tmp_path / "nohead.ply")


# 5 ------------------------------------------------------------------------ CLI errors
def test_cli_turns_expected_errors_into_one_line_and_exit_2(tmp_path, nav_episode_file, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    common = ["agent=random", "n=1", "env=tiny", f"episodes={nav_episode_file}", "progress=false"]
    assert cli.main(["eval", *common, f"out_dir={a_file}"]) == 2
    err = _err(capsys)
    assert "is a file, not a folder" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["eval", *common, f"out_dir={a_file}/sub"]) == 2
    assert "is a file, not a folder" in _err(capsys)
    assert cli.main(["eval", *common, "out_dir=/proc/spatialnav-no-such/out"]) == 2  # cannot be created
    err = _err(capsys)
    assert "/proc/spatialnav-no-such" in err and len(err.strip().splitlines()) == 1

    # a mesh without annotations: "no episodes could be made" (was a RuntimeError traceback)
    import trimesh

    v = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0]], float)
    trimesh.Trimesh(v, np.array([[0, 1, 2], [0, 2, 3]]), process=False).export(str(tmp_path / "bare.ply"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["episodes", f"scenes=[{tmp_path / 'bare.ply'}]", "n=1", f"out={tmp_path / 'e.json.gz'}",
                         "progress=false"]) == 2
    assert "no episodes could be made" in _err(capsys)


def test_a_real_bug_keeps_its_traceback(monkeypatch):
    def broken(cfg):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "cmd_eval", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["eval"])


# 6, 7 --------------------------------------------------------------------- typed values
@pytest.mark.parametrize("override, message", [
    ("n_episodes=ten", "n_episodes must be an integer (default n_episodes=50), got 'ten'"),
    ("n_episodes=2.5", "n_episodes must be an integer (default n_episodes=50), got '2.5'"),
    ("n=0", "n_episodes must be >= 1, got 0"),
    ("seed=abc", "seed must be an integer"),
    ("seed=1.5", "seed must be an integer"),
    ("video=-1", "video must be >= 0, got -1"),
    ("video=lots", "video must be an integer"),
    ("progress=maybe", "progress must be a boolean"),
    ("task.max_episode_steps=many", "task.max_episode_steps must be an integer"),
    ("env.hfov_deg=wide", "env.hfov_deg must be a number"),
    ("task.success_distance=nan", "task.success_distance must be a finite number"),
    ("compare.dirs=runs/a", "compare.dirs must be a list"),
    ("+nonsense=1", "'+nonsense=1' adds a key that no command reads"),
])
def test_typed_config_values_name_their_key(override, message, capsys):
    assert cli.main(["eval", override, "--cfg"]) == 2
    assert message in _err(capsys)


def test_video_must_be_a_count_or_a_boolean(tmp_path, nav_episode_file):
    for bad in (-1, 2.5, "3"):
        with pytest.raises(ValueError, match="video must be true/false or a number of episodes >= 0"):
            evaluate("random", n_episodes=1, out_dir=tmp_path / "v", episodes=nav_episode_file, video=bad, **FAST)
    assert not (tmp_path / "v").exists()  # refused before anything was written
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_episodes must be an integer >= 1"):
            evaluate("random", n_episodes=bad, out_dir=tmp_path / "v", episodes=nav_episode_file, **FAST)
    assert cli.main(["eval", "video=true", "--cfg"]) == 0  # true = every episode


# 8 ------------------------------------------------------------------------ env actions
def test_env_actions_are_strict_and_errors_leave_the_episode_as_it_was(nav_episodes):
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(episodes=nav_episodes[:1], width=16, height=16)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(1)
    env.reset(options={"episode_index": 0})
    pose = env.pose.copy()
    for bad in ("1", np.float32(1.5), 1.0, np.float64(2.0), True, None, [1], 4, -1, np.array([1.0])):
        with pytest.raises(ValueError, match="invalid action"):
            env.step(bad)
        assert np.array_equal(env.pose, pose) and env._metrics.steps == 0
    for good in (1, np.int64(2), np.array(3), np.array([0])):
        env.step(good)
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step(1)
    for kw, msg in (({"width": 10 ** 6}, "camera must be 8..4096"), ({"max_episode_steps": 10 ** 9}, "1..100000"),
                    ({"width": 32.5}, "width must be an integer"), ({"hfov_deg": float("nan")}, "hfov_deg"),
                    ({"success_distance": "far"}, "success_distance")):
        with pytest.raises(ValueError, match=msg):
            ObjectNavEnv(episodes=nav_episodes[:1], **kw)
    env.close()


# 9 ------------------------------------------------------------------------ episode logs
@pytest.mark.parametrize("line, message", [
    ("[1, 2]", r"episodes\.jsonl:2: a list .* not a JSON object"),
    ('"done"', r"episodes\.jsonl:2: a str"),
    ('{"episode_id": "x", "agent": "random", "split": "val"}', r"row 2 \(episode 'x'\) lacks the metric"),
    ('{"success": 1}', r"row 2 has no episode_id"),
])
def test_episode_log_rows_are_validated(tmp_path, nav_episode_file, line, message):
    out = tmp_path / "run"
    evaluate("random", n_episodes=1, out_dir=out, episodes=nav_episode_file, **FAST)
    with open(out / EPISODES_FILE, "a") as f:
        f.write(line + "\n")
    with pytest.raises(ValueError, match=message):
        evaluate("random", n_episodes=2, out_dir=out, episodes=nav_episode_file, **FAST)
    with pytest.raises(ValueError, match=message.split(":")[0].split(" \\(")[0]):
        merge([out])


# 10 ----------------------------------------------------------------------- sidecar values
@pytest.mark.parametrize("instance, message", [
    ({"category": 42}, r"instances\[0\]\.category must be a non-empty string .* got 42"),
    ({"category": " "}, r"instances\[0\]\.category must be a non-empty string"),
    ({"color": ["red"]}, r"instances\[0\]\.color must be a string"),
    ({"room": 3}, r"instances\[0\]\.room must be a string"),
    ({"center": [500.0, 0.0, 0.5]}, r"instance 1 \(chair\) has its box at \[500\.0, 0\.0, 0\.5\].*outside the mesh"),
])
def test_sidecar_values_are_validated(tmp_path, instance, message):
    import trimesh

    from envs.mesh_io import MeshSceneError, load_mesh_scene

    v = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0], [1, 1, .5], [1.4, 1, .5], [1, 1.4, .5]], float)
    trimesh.Trimesh(v, np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]]), process=False).export(str(tmp_path / "r.ply"))
    inst = {"id": 1, "category": "chair", "center": [1.2, 1.2, 0.5], "size": [0.6, 0.6, 0.4], **instance}
    (tmp_path / "r.json").write_text(json.dumps({"instances": [inst]}))
    with pytest.raises(MeshSceneError, match=message):
        load_mesh_scene(tmp_path / "r.ply")


# 11 ----------------------------------------------------------------------- imagine
def test_imagine_needs_context_and_a_real_instruction(tiny_pipeline, capsys):
    frames = np.zeros((0, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"holds no frame \(K=0\)"):
        tiny_pipeline.imagine(frames, np.zeros(0, np.int64), "go to the chair", num_steps=1)
    assert cli.main(["imagine", 'imagine.instruction=""']) == 2
    assert "imagine.instruction='' is empty" in _err(capsys)
    assert cli.main(["imagine", "imagine.instruction='   '"]) == 2
    assert "is empty" in _err(capsys)


# ---------------------------------------------------------------------------- fingerprint
def test_resume_with_other_settings_is_refused_naming_the_difference(tmp_path, nav_episode_file):
    out = tmp_path / "run"
    evaluate("random", n_episodes=3, out_dir=out, episodes=nav_episode_file, **FAST)
    fp = json.loads((out / RUN_FILE).read_text())
    assert fp["agent"] == "random" and fp["agent_settings"] == {"stop_prob": 0.05}
    assert fp["env"]["max_episode_steps"] == 40 and fp["episodes"]["sha1"] and fp["code_version"]
    with pytest.raises(ValueError, match=r"holds 3 episode\(s\) of another configuration: .*"
                                         r"agent_settings\.stop_prob: 0\.05 -> 0\.5; env\.max_episode_steps: 40 -> 5"):
        evaluate("random", n_episodes=1, out_dir=out, episodes=nav_episode_file,
                 **{**FAST, "max_episode_steps": 5, "agent_kwargs": {"stop_prob": 0.5}})
    with pytest.raises(ValueError, match=r"seed: 0 -> 1"):
        evaluate("random", n_episodes=3, out_dir=out, episodes=nav_episode_file, seed=1, **FAST)
    with pytest.raises(ValueError, match=r"env\.width: 16 -> 24"):
        evaluate("random", n_episodes=3, out_dir=out, episodes=nav_episode_file, **{**FAST, "width": 24})
    # a default written out or left out is the same setting (the fingerprint holds the full settings)
    other = tmp_path / "defaults"
    evaluate("random", n_episodes=1, out_dir=other, episodes=nav_episode_file, **{**FAST, "agent_kwargs": {}})
    evaluate("random", n_episodes=2, out_dir=other, episodes=nav_episode_file,
             **{**FAST, "agent_kwargs": {"stop_prob": 0.02}})
    assert len(read_episode_log(other / EPISODES_FILE)) == 2

    # a smaller n_episodes resumes, and the summary counts only the requested episodes
    s = evaluate("random", n_episodes=1, out_dir=out, episodes=nav_episode_file, **FAST)
    assert s["n_episodes"] == 1 and len(read_episode_log(out / EPISODES_FILE)) == 3
    assert json.loads((out / SUMMARY_FILE).read_text())["episode_ids"] == s["episode_ids"]


def test_unfingerprinted_results_and_other_weights_are_refused(tmp_path, nav_episode_file, tiny_pipeline):
    import torch

    from agent.world_model_agent import WorldModelAgent

    out = tmp_path / "old"
    evaluate("random", n_episodes=1, out_dir=out, episodes=nav_episode_file, **FAST)
    (out / RUN_FILE).unlink()  # as written before runs were fingerprinted
    with pytest.raises(ValueError, match="no run.json saying which configuration made them"):
        evaluate("random", n_episodes=1, out_dir=out, episodes=nav_episode_file, **FAST)

    def world_model(env=None, seed=None, pipeline=None):
        return WorldModelAgent(env=env, seed=seed, pipeline=pipeline, num_context=2, num_steps=1,
                               clip_guidance=False, context_mode="noncontiguous", reimagine_every=50, explore_reimagine_every=50)

    world_model.needs_context = True
    kw = {**FAST, "agent_kwargs": {"pipeline": tiny_pipeline}, "max_episode_steps": 2}
    s = evaluate(world_model, n_episodes=1, out_dir=tmp_path / "wm", episodes=nav_episode_file, **kw)
    weights = s["provenance"]["weights"]
    assert set(weights) >= {"world_model", "text_encoder"} and all(len(h) == 12 for h in weights.values())
    with torch.no_grad():  # the same pipeline object, other weights: the resume is refused
        p = next(tiny_pipeline.model.transformer.parameters())
        p.add_(1.0)
        try:
            with pytest.raises(ValueError, match=r"weights\.world_model: '"):
                evaluate(world_model, n_episodes=1, out_dir=tmp_path / "wm", episodes=nav_episode_file, **kw)
        finally:
            p.sub_(1.0)


def test_summary_records_provenance_and_merge_keeps_the_fingerprint(tmp_path, nav_episode_file):
    dirs = []
    for i in range(2):
        dirs.append(tmp_path / f"s{i}")
        s = evaluate("random", n_episodes=3, out_dir=dirs[-1], shard=f"{i}/2", episodes=nav_episode_file, **FAST)
    prov = json.loads((dirs[-1] / SUMMARY_FILE).read_text())["provenance"]
    assert set(prov) >= {"git_commit", "git_dirty", "code_version", "command", "weights"}
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    assert prov["weights"] == {} and prov["code_version"] == s["provenance"]["code_version"]
    merged = merge(dirs, out_dir=tmp_path / "all")
    assert merged["provenance"]["merged_from"] == [str(d) for d in dirs]
    assert (tmp_path / "all" / RUN_FILE).read_text() == (dirs[0] / RUN_FILE).read_text()
    assert evaluate("random", n_episodes=3, out_dir=tmp_path / "all", episodes=nav_episode_file,
                    **FAST)["n_episodes"] == 3


def test_results_blocks_say_which_code_and_weights_made_them(tmp_path):
    from agent.tables import update_results_md

    prov = {"git_commit": "0123456789abcdef" * 2 + "01234567", "git_dirty": True, "code_version": "c0de",
            "weights": {"world_model": "aaaaaaaaaaaa", "clip": "bbbbbbbbbbbb"}}
    rows = [{"label": "world_model", "n_episodes": 2, "success": 0.5, "provenance": prov},
            {"label": "random", "n_episodes": 2, "success": 0.0, "provenance": {**prov, "weights": {}}}]
    text = update_results_md(tmp_path / "r.md", rows, "spatialnav eval agents=[world_model,random]", "k").read_text()
    assert ("Provenance: git 0123456789 + uncommitted changes, code c0de; weights (sha1 of the loaded tensors) "
            "world_model: clip bbbbbbbbbbbb, world_model aaaaaaaaaaaa.") in text


def test_eval_killed_by_sigkill_resumes_without_loss_or_duplicates(tmp_path, nav_episode_file):
    """A real SIGKILL of a running evaluation (not a simulated one): the rerun keeps the finished
    episodes, runs only the missing ones, and the summary is complete."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "killed"
    code = ("from agent.runner import evaluate; "
            f"evaluate('random', n_episodes=3, out_dir={str(out)!r}, episodes={str(nav_episode_file)!r}, width=16, "
            "height=16, max_episode_steps=800, progress=False, print_summary=False, agent_kwargs={'stop_prob': 0.0})")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(tmp_path))
    log = out / EPISODES_FILE
    t0 = time.time()
    try:
        while time.time() - t0 < 120 and proc.poll() is None:
            if log.exists() and log.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = read_episode_log(log)
    assert 1 <= len(done) < 3 and not (out / SUMMARY_FILE).exists()  # nothing that looks finished
    from agent.provenance import code_version

    code_version.cache_clear()  # hash the source now, as the killed process did (others may edit the tree)
    s = evaluate("random", n_episodes=3, out_dir=out, episodes=nav_episode_file, width=16, height=16,
                 max_episode_steps=800, progress=False, print_summary=False, agent_kwargs={"stop_prob": 0.0})
    rows = read_episode_log(log)
    assert len(rows) == 3 and len({r["episode_id"] for r in rows}) == 3 and s["n_episodes"] == 3
    assert rows[:len(done)] == done  # the finished episodes were kept as they were


def test_auto_or_number_settings_take_a_number(capsys):
    """frontier_clip's threads default to "auto": a plain number is a valid value, a word is not."""
    assert cli.main(["eval", "agent=frontier_clip", "agent.threads=1", "--cfg"]) == 0
    assert cli.main(["eval", "agent=world_model", "agent.threads=1", "--cfg"]) == 0
    capsys.readouterr()
    assert cli.main(["eval", "agent=world_model", "agent.threads=auto", "--cfg"]) == 2
    assert "agent.threads must be an integer" in _err(capsys)


def test_agent_weights_finds_the_value_maps_clip_and_the_goal_check():
    """The CLIP an agent scores views with sits in its value map (world-model agent, Frontier+CLIP) or
    its guide's; it and the goal check are hashed into the run's provenance, and a change shows."""
    import types

    import torch

    from agent.provenance import agent_weights

    clip, check = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)
    wm_like = types.SimpleNamespace(value_map=types.SimpleNamespace(clip=clip), goal_check=check,
                                    guide=types.SimpleNamespace(value_map=types.SimpleNamespace(clip=clip)))
    fc_like = types.SimpleNamespace(policy=None, value_map=types.SimpleNamespace(clip=clip))
    guide_only = types.SimpleNamespace(guide=types.SimpleNamespace(value_map=types.SimpleNamespace(clip=clip)))
    w = agent_weights(wm_like)
    assert set(w) == {"clip", "goal_check"} and agent_weights(fc_like) == agent_weights(guide_only) == {"clip": w["clip"]}
    with torch.no_grad():
        check.weight.add_(1.0)
    assert agent_weights(wm_like)["goal_check"] != w["goal_check"] and agent_weights(wm_like)["clip"] == w["clip"]
    assert agent_weights(types.SimpleNamespace()) == {}


def test_provenance_names_the_code_that_ran_not_a_later_commit(tmp_path, nav_episode_file, monkeypatch):
    # A run that outlives a commit: git and the code version are read when it starts, not when its summary
    # is written.
    import agent.provenance as prov_mod
    import agent.runner as runner_mod

    states = iter([{"git_commit": "a" * 40, "git_dirty": False}, {"git_commit": "b" * 40, "git_dirty": True}])
    monkeypatch.setattr(runner_mod, "git_state", lambda: next(states))
    monkeypatch.setattr(prov_mod, "git_state", lambda: next(states))
    s = evaluate("random", n_episodes=1, out_dir=tmp_path, episodes=nav_episode_file, **FAST)
    run = json.loads((tmp_path / RUN_FILE).read_text())
    assert s["provenance"]["git_commit"] == "a" * 40 and s["provenance"]["git_dirty"] is False
    assert s["provenance"]["code_version"] == run["code_version"]
    monkeypatch.setattr(prov_mod, "code_version", lambda: "changed")
    assert prov_mod.provenance(run)["code_version"] == run["code_version"]
    assert prov_mod.provenance(None, git={"git_commit": None, "git_dirty": None})["code_version"] == "changed"
