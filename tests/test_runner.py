"""Episode runner: JSONL log, resume after a kill, shards, summaries, agents, videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.base import Agent, available_agents, make_agent, register_agent, resolve_agent
from agent.baselines import OracleAgent, RandomAgent
from agent.episode_log import EPISODES_FILE, SUMMARY_FILE, TIMING_KEYS, read_episode_log
from agent.runner import evaluate
from agent.sharding import merge, parse_shard, shard_indices

# Random agent that stops often and a short step limit: each episode is a few dozen steps.
FAST = dict(width=16, height=16, max_episode_steps=40, progress=False, print_summary=False,
            agent_kwargs={"stop_prob": 0.05})


def _behaviour(summary: dict) -> dict:
    """A summary without machine-speed fields (timings differ between runs)."""
    drop = set(TIMING_KEYS) | {"env_seconds_per_step", "shard", "provenance"}
    return {k: v for k, v in summary.items() if k not in drop}


def _rows(out_dir) -> list[dict]:
    return read_episode_log(out_dir / EPISODES_FILE)


def test_shard_parsing():
    assert parse_shard("1/3") == (1, 3)
    assert shard_indices(7, "1/3") == [1, 4]
    assert sorted(shard_indices(7, "0/3") + shard_indices(7, "1/3") + shard_indices(7, "2/3")) == list(range(7))
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_log_and_summary(tmp_path, nav_episode_file):
    s = evaluate("random", n_episodes=3, out_dir=tmp_path, episodes=nav_episode_file, **FAST)
    rows = _rows(tmp_path)
    assert len(rows) == 3 and len({r["episode_id"] for r in rows}) == 3
    on_disk = json.loads((tmp_path / SUMMARY_FILE).read_text())
    for k in ("agent", "split", "n_episodes", "success", "spl", "softspl", "distance_to_goal",
              "seconds_per_step", "success_ci95", "spl_ci95", "steps", "collisions"):
        assert k in on_disk, k
    assert on_disk["n_episodes"] == 3 and on_disk["agent"] == "random"
    assert on_disk["steps"] == pytest.approx(np.mean([r["steps"] for r in rows]))
    assert on_disk["seconds_per_step"] > 0
    lo, hi = on_disk["success_ci95"]
    assert 0.0 <= lo <= on_disk["success"] <= hi <= 1.0
    assert _behaviour(s) == _behaviour(on_disk)


def test_resume_after_kill(tmp_path, nav_episode_file):
    ref = evaluate("random", n_episodes=3, out_dir=tmp_path / "ref", episodes=nav_episode_file, **FAST)

    # 1) killed while writing the third line: a half line is left at the end.
    out = tmp_path / "torn"
    evaluate("random", n_episodes=3, out_dir=out, episodes=nav_episode_file, **FAST)
    log = out / EPISODES_FILE
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    assert len(_rows(out)) == 2  # the torn line is ignored
    resumed = evaluate("random", n_episodes=3, out_dir=out, episodes=nav_episode_file, **FAST)
    rows = _rows(out)
    assert [r["episode_id"] for r in rows] == [r["episode_id"] for r in _rows(tmp_path / "ref")]
    assert _behaviour(resumed) == _behaviour(ref)

    # 2) killed between episodes (the agent is interrupted during the third).
    out = tmp_path / "killed"
    calls = {"n": 0}

    class Dies(RandomAgent):
        def reset(self, obs, info=None, context=None):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            super().reset(obs, info, context)

    with pytest.raises(KeyboardInterrupt):
        evaluate(Dies, n_episodes=3, out_dir=out, episodes=nav_episode_file, **FAST)
    assert len(_rows(out)) == 2
    # the rerun does only the missing episode
    resumed = evaluate(Dies, n_episodes=3, out_dir=out, episodes=nav_episode_file, **FAST)
    assert calls["n"] == 4
    assert sorted(r["episode_id"] for r in _rows(out)) == sorted(ref["episode_ids"])
    assert _behaviour(resumed) | {"agent": "random"} == _behaviour(ref)


def test_corrupt_middle_line_is_an_error(tmp_path, nav_episode_file):
    log = tmp_path / EPISODES_FILE
    log.write_text('{"episode_id": "a"}\nnot json\n{"episode_id": "b"}\n')
    with pytest.raises(ValueError, match=r"episodes.jsonl:2"):
        evaluate("random", n_episodes=3, out_dir=tmp_path, episodes=nav_episode_file, **FAST)


def test_out_dir_of_another_agent_is_refused(tmp_path, nav_episode_file):
    evaluate("random", n_episodes=1, out_dir=tmp_path, episodes=nav_episode_file, **FAST)
    with pytest.raises(ValueError, match="agent='random'"):
        evaluate("oracle", n_episodes=1, out_dir=tmp_path, episodes=nav_episode_file,
                 **{**FAST, "agent_kwargs": {}})


def test_shards_merge_to_single_run(tmp_path, nav_episode_file):
    single = evaluate("random", n_episodes=3, out_dir=tmp_path / "all", episodes=nav_episode_file, **FAST)
    dirs = []
    for i in range(2):
        d = tmp_path / f"shard{i}"
        evaluate("random", n_episodes=3, out_dir=d, shard=f"{i}/2", episodes=nav_episode_file, **FAST)
        dirs.append(d)
    assert len(_rows(dirs[0])) == 2 and len(_rows(dirs[1])) == 1
    merged = merge(dirs, out_dir=tmp_path / "merged")
    assert _behaviour(merged) == _behaviour(single)
    assert (tmp_path / "merged" / SUMMARY_FILE).exists()
    assert len(_rows(tmp_path / "merged")) == 3
    # the merged dir is a finished out_dir: the unsharded command there runs nothing new
    again = evaluate("random", n_episodes=3, out_dir=tmp_path / "merged", episodes=nav_episode_file, **FAST)
    assert _behaviour(again) == _behaviour(single) and len(_rows(tmp_path / "merged")) == 3


def test_oracle_reaches_goal_and_video(tmp_path, nav_episode_file):
    import imageio.v2 as imageio

    s = evaluate("oracle", n_episodes=2, out_dir=tmp_path, episodes=nav_episode_file, video=1,
                 width=16, height=16, progress=False, print_summary=False)
    assert s["success"] == 1.0 and s["spl"] > 0.9
    rows = _rows(tmp_path)
    assert "video" in rows[0] and "video" not in rows[1]
    reader = imageio.get_reader(rows[0]["video"])
    n_frames = sum(1 for _ in reader)
    reader.close()
    assert n_frames == rows[0]["steps"] + 1  # the first observation plus one per action


def test_agent_registry(nav_episodes):
    assert {"random", "oracle", "world_model", "frontier_clip"} <= set(available_agents())
    assert resolve_agent("random") is RandomAgent
    with pytest.raises(ValueError, match="unknown agent 'nope'"):
        resolve_agent("nope")
    register_agent("lazy_random_test", "agent.baselines:RandomAgent", overwrite=True)
    assert isinstance(make_agent("lazy_random_test", seed=1), Agent)
    register_agent("missing_test", "agent.not_a_module:X", overwrite=True)
    with pytest.raises(ValueError, match="not available"):
        resolve_agent("missing_test")
    with pytest.raises(ValueError, match="privileged"):
        OracleAgent(env=None)


def test_random_agent_is_seeded_per_episode():
    obs = {}
    a, b = RandomAgent(seed=3), RandomAgent(seed=3)
    a.reset(obs, {"episode_id": "x"})
    seq_a = [a.act(obs) for _ in range(50)]
    b.reset(obs, {"episode_id": "y"})
    [b.act(obs) for _ in range(7)]
    b.reset(obs, {"episode_id": "x"})
    assert [b.act(obs) for _ in range(50)] == seq_a
    assert set(seq_a) <= {0, 1, 2, 3} and {1, 2, 3} <= set(seq_a)


def _row_behaviour(rows: list[dict]) -> dict:
    """episode_id -> row without timings (the order rows finish in may differ)."""
    return {r["episode_id"]: {k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows}


@pytest.mark.parametrize("agent,kwargs", [("random", {"stop_prob": 0.05}), ("oracle", {})])
def test_num_envs_gives_the_serial_rows_and_summary(tmp_path, nav_episode_file, agent, kwargs):
    """num_envs=2 runs two envs side by side: the same rows (as a set) and summary as num_envs=1,
    and either resumes the other (num_envs is not in the fingerprint)."""
    fast = {**FAST, "agent_kwargs": kwargs}
    serial = evaluate(agent, n_episodes=3, out_dir=tmp_path / "serial", episodes=nav_episode_file, **fast)
    par = evaluate(agent, n_episodes=3, out_dir=tmp_path / "par", episodes=nav_episode_file, num_envs=2, **fast)
    assert _behaviour(par) == _behaviour(serial)
    assert _row_behaviour(_rows(tmp_path / "par")) == _row_behaviour(_rows(tmp_path / "serial"))
    assert json.loads((tmp_path / "par" / "run.json").read_text()) == json.loads(
        (tmp_path / "serial" / "run.json").read_text())
    # resume a 1-episode serial run with num_envs=3: two more episodes, the same summary
    evaluate(agent, n_episodes=1, out_dir=tmp_path / "mixed", episodes=nav_episode_file, **fast)
    mixed = evaluate(agent, n_episodes=3, out_dir=tmp_path / "mixed", episodes=nav_episode_file, num_envs=3, **fast)
    assert _behaviour(mixed) == _behaviour(serial) and len(_rows(tmp_path / "mixed")) == 3


def test_num_envs_refuses_agents_that_cannot_batch(tmp_path, nav_episode_file):
    from agent.runner import batchable_agents, is_batchable

    class Remembers(RandomAgent):
        batchable = False  # e.g. carries state from one episode into the next

    with pytest.raises(ValueError, match=r"cannot run with num_envs=2: its class does not say batchable = True "
                                         r"\(agents that can: .*frontier_clip.*oracle.*random"):
        evaluate(Remembers, n_episodes=2, out_dir=tmp_path / "a", episodes=nav_episode_file, num_envs=2, **FAST)
    assert not (tmp_path / "a" / EPISODES_FILE).exists() or not _rows(tmp_path / "a")
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1, got 0"):
        evaluate("random", n_episodes=2, out_dir=tmp_path / "b", episodes=nav_episode_file, num_envs=0, **FAST)
    assert "world_model" not in batchable_agents()
    assert is_batchable(RandomAgent) and is_batchable(OracleAgent)

    class Instance(RandomAgent):
        pass

    bot = Instance()
    bot.batchable = False  # an instance attribute cannot change what the class says
    assert is_batchable(bot)


class FailsOnSecondEpisode(RandomAgent):
    """Module level, so that a worker process can import it (test_num_envs_worker_error_is_raised)."""

    batchable = True

    def reset(self, obs, info=None, context=None):
        super().reset(obs, info, context)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 2:
            raise RuntimeError("agent broke")


def test_num_envs_worker_error_is_raised(tmp_path, nav_episode_file):
    """An agent failing in a worker (each copy on its second episode; with 3 episodes over 2 envs
    one copy runs two) fails evaluate() with that error; a class a worker process cannot import is
    refused up front with what to do."""
    with pytest.raises(RuntimeError, match="agent broke"):
        evaluate(FailsOnSecondEpisode, n_episodes=3, out_dir=tmp_path / "a", episodes=nav_episode_file, num_envs=2,
                 **FAST)

    class Local(RandomAgent):
        batchable = True

    with pytest.raises(ValueError, match="worker processes, which must rebuild the agent.*use num_envs=1"):
        evaluate(Local, n_episodes=3, out_dir=tmp_path / "b", episodes=nav_episode_file, num_envs=2, **FAST)
