"""Episode runner and evaluation: ``spatialnav eval``.

``evaluate`` runs an agent over a split's episodes (or one shard of them, ``agent.sharding``) and
appends one JSON line per finished episode to ``out_dir/episodes.jsonl`` (``agent.episode_log``).
Rerunning with the same ``out_dir`` reads that file first and skips every episode_id already
there, so a killed run resumes without losing or repeating an episode; the run's fingerprint
(``agent.provenance``) must match for that. ``run_episode`` is the one episode loop: what an agent
gets there is decided by fair play (``agent.fair_play``). ``run_parallel`` runs episodes over
several envs side by side for agents that allow it (``is_batchable``).
"""

from __future__ import annotations

import inspect
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from agent.base import AgentFactory, resolve_agent
from agent.episode_log import (
    EPISODES_FILE,
    check_episode_rows,
    read_episode_log,
    summarize_rows,
    write_summary,
)
from agent.fair_play import agent_access, build_agent, public_context, public_info
from agent.provenance import check_resume, git_state, provenance, run_fingerprint
from agent.sharding import parse_shard, shard_indices
from agent.tables import print_table
from envs.logs import append_jsonl
from envs.metrics import METRIC_KEYS


def run_episode(env, agent, episode_index: int, seed: int | None = None,
                frame_callback: Callable[[Any], None] | None = None,
                obs_callback: Callable[[dict], None] | None = None) -> dict:
    """Run one episode to STOP or truncation; returns the final info plus timings.

    What the agent gets is ``agent_access(agent)`` (its class): the context tour only with
    ``needs_context = True``; the full info only when privileged, else ``public_info(info)`` and
    ``public_context(tour)``. An agent with ``debug_panels()`` gets a video frame of observation |
    its panels. ``frame_callback`` gets a video frame, ``obs_callback`` the observation, at the start
    and after every step.
    """
    sim = env.unwrapped
    access = agent_access(agent)
    obs, info = env.reset(seed=seed, options={"episode_index": int(episode_index)})
    context = sim.context_tour() if access.context else None
    t_agent = time.perf_counter()
    if access.privileged:
        agent.reset(obs, info, context)
    else:
        agent.reset(obs, public_info(info), public_context(context))
    agent_sec = time.perf_counter() - t_agent
    env_sec = 0.0
    if obs_callback is not None:
        obs_callback(obs)
    if frame_callback is not None:
        frame_callback(_video_frame(env, agent, obs))
    done = False
    while not done:
        t0 = time.perf_counter()
        action = agent.act(obs)
        t1 = time.perf_counter()
        obs, _, terminated, truncated, info = env.step(action)
        t2 = time.perf_counter()
        agent_sec += t1 - t0
        env_sec += t2 - t1
        done = terminated or truncated
        if obs_callback is not None:
            obs_callback(obs)
        if frame_callback is not None:
            frame_callback(_video_frame(env, agent, obs))
    row = {k: (float(info[k]) if k in METRIC_KEYS else info[k]) for k in info}
    if hasattr(agent, "episode_stats"):
        row.update({f"agent_{k}": v for k, v in agent.episode_stats().items()})
    row["episode_index"] = int(episode_index)
    row["called_stop"] = bool(terminated)
    row["agent_seconds"] = agent_sec
    row["env_seconds"] = env_sec
    row["seconds"] = agent_sec + env_sec
    row["seconds_per_step"] = row["seconds"] / max(1.0, row["steps"])
    return row


def is_batchable(agent) -> bool:
    """Whether ``evaluate(num_envs=N)`` may run copies of this agent side by side: its class says
    ``batchable = True`` (read statically, like ``agent_access``). The promise is that an instance's
    actions in an episode depend only on its settings, seed and that episode, never on the episodes
    it ran before or on another instance, so N copies over N envs give a serial run's rows."""
    cls = agent if isinstance(agent, type) else type(agent)
    return inspect.getattr_static(cls, "batchable", False) is True


def batchable_agents() -> list[str]:
    """The registered agents that declare ``batchable = True`` (importing each agent's module)."""
    from agent.base import available_agents

    out = []
    for name in available_agents():
        try:
            if is_batchable(resolve_agent(name)):
                out.append(name)
        except (ValueError, ImportError):
            continue
    return out


@dataclass(frozen=True)
class PairSpec:
    """How a worker process builds its own (env, agent) pair: everything here must pickle (a
    registered agent name or an importable class or function, an ``env_factory`` given as
    ``"module:function"`` or an importable callable)."""

    agent: Any
    agent_kwargs: dict
    seed: int | None
    env_factory: Any
    env_kwargs: dict

    def build(self):
        env = _make_env(self.env_factory, **self.env_kwargs)
        return env, build_agent(resolve_agent(self.agent), env, seed=self.seed, **self.agent_kwargs)[0]


def _one_episode(env, agent, idx, seed, video):
    frames: list[np.ndarray] | None = [] if idx in video else None
    row = run_episode(env, agent, idx, seed=seed, frame_callback=None if frames is None else frames.append)
    return row, frames


def _share_cores(num_envs: int) -> int | None:
    """With ``num_envs`` envs side by side, torch in each process keeps at most cpu_count // num_envs
    threads (oversubscribed cores make OpenMP spin). Returns torch's thread count before (None:
    torch not loaded)."""
    import sys

    if "torch" not in sys.modules:
        return None
    import torch

    before = torch.get_num_threads()
    cap = max(1, (os.cpu_count() or 1) // max(1, num_envs))
    if before > cap:
        torch.set_num_threads(cap)
    return before


def _serve(get_pair, todo, done, seed, video, num_envs: int | None = None, close: bool = False) -> None:
    """A worker's loop: get its (env, agent) pair, run the lists of episode indices from ``todo``
    until it yields None, put ("row", (row, frames)) per episode, ("error", text) on failure and
    ("exit", None) at the end on ``done``. A worker process builds its pair (``get_pair`` =
    ``PairSpec.build``), shares the cores (``num_envs``) and closes its env (``close``)."""
    import traceback

    env = None
    try:
        env, agent = get_pair()
        if num_envs:
            _share_cores(num_envs)
        while (work := todo.get()) is not None:
            for idx in work:
                done.put(("row", _one_episode(env, agent, idx, seed, video)))
    except BaseException as e:  # handed to the caller, which raises it
        done.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
    finally:
        if close and env is not None:
            env.close()
        done.put(("exit", None))


def run_parallel(pair: tuple[Any, Any], indices: Sequence[int], seed: int | None = None,
                 video: Iterable[int] = (), num_envs: int = 1, spec: PairSpec | None = None,
                 groups: Sequence[Any] | None = None):
    """Run the episodes ``indices``; yields (row, frames) per episode as it finishes (frames: the
    video frames for an index in ``video``, else None).

    With ``num_envs`` 1 the (env, agent) ``pair`` runs them in order in this thread. With more, the
    pair serves episodes from a worker thread here and ``num_envs - 1`` worker processes (spawned;
    each builds its own pair from ``spec``) serve the rest, each taking the next index when its
    episode ends. Processes, not threads: open3d's ``cast_rays`` holds the GIL, so envs stepped from
    threads of one process take turns (measured: two threads casting 0.94x the speed of one after
    the other). Each episode is ``run_episode`` on one pair, as in a serial run, so its row is the
    same (timings aside). ``groups`` (one key per index, e.g. its scene id): a worker takes each run
    of consecutive indices with the same key as one piece of work, so it builds that scene once. An
    error in a worker is raised here (as a RuntimeError carrying the worker's traceback) and the
    other workers are stopped.
    """
    video = set(video)
    if num_envs <= 1 or len(indices) <= 1:
        env, agent = pair
        for idx in indices:
            yield _one_episode(env, agent, idx, seed, video)
        return
    import multiprocessing as mp
    import pickle
    import threading

    if spec is None:
        raise ValueError("run_parallel(num_envs > 1) needs spec, the PairSpec its worker processes build from")
    try:
        pickle.dumps(spec)
    except Exception as e:
        raise ValueError(f"num_envs > 1 runs envs in worker processes, which must rebuild the agent and env: "
                         f"{e}. Pass a registered agent name or an importable (module-level) agent class, and "
                         f"env_factory as 'module:function', or use num_envs=1") from None
    keys = list(range(len(indices))) if groups is None else list(groups)
    if len(keys) != len(indices):
        raise ValueError(f"groups holds {len(keys)} keys for {len(indices)} indices")
    work = [[int(i) for _, i in run] for _, run in itertools.groupby(zip(keys, indices), key=lambda ki: ki[0])]
    n_proc = min(int(num_envs), len(work)) - 1
    ctx = mp.get_context("spawn")  # fork would copy OpenMP and Embree thread pools mid-use
    todo, done = ctx.Queue(), ctx.Queue()
    for item in work + [None] * (n_proc + 1):
        todo.put(item)
    torch_threads = _share_cores(n_proc + 1)
    procs = [ctx.Process(target=_serve, args=(spec.build, todo, done, seed, video, n_proc + 1, True), daemon=True,
                         name=f"spatialnav-env-{i + 1}") for i in range(n_proc)]
    for p in procs:
        p.start()
    local = threading.Thread(target=_serve, args=(lambda: pair, todo, done, seed, video), daemon=True,
                             name="spatialnav-env-0")
    local.start()
    running = n_proc + 1
    try:
        while running:
            kind, item = done.get()
            if kind == "exit":
                running -= 1
            elif kind == "error":
                raise RuntimeError(f"an env worker failed: {item}")
            else:
                yield item
    finally:
        # Early stop (an error, ^C): the processes are killed and the thread ends after its current
        # episode; unfinished episodes have no row, so a resume reruns them.
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)
        while not todo.empty():  # let the local worker reach its end marker
            try:
                todo.get_nowait()
            except Exception:
                break
        todo.put(None)
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)


def check_eval_args(n_episodes, video, seed, out_dir, shard=None, num_envs=1) -> None:
    """evaluate()'s own arguments, checked before anything is created (names the value and the fix)."""
    parse_shard(shard)
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be an integer >= 1, got {n_episodes!r}")
    if not isinstance(video, (bool, int, np.integer)) or (not isinstance(video, bool) and video < 0):
        raise ValueError(f"video must be true/false or a number of episodes >= 0, got {video!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    p = Path(out_dir)
    for q in (p, *p.parents):
        if q.exists() and not q.is_dir():
            raise ValueError(f"out_dir={str(out_dir)!r}: {str(q)!r} is a file, not a folder; choose another out_dir")


def evaluate(
    agent: str | AgentFactory = "random",
    split: str = "val",
    n_episodes: int = 50,
    out_dir: str | os.PathLike = "runs/eval",
    shard: str | Sequence[int] | None = "0/1",
    video: bool | int = False,
    seed: int = 0,
    episodes=None,
    agent_kwargs: dict | None = None,
    progress: bool = True,
    print_summary: bool = True,
    video_fps: int = 8,
    num_envs: int = 1,
    **env_kwargs: Any,
) -> dict:
    """Evaluate ``agent`` on the first ``n_episodes`` of ``split`` (one shard of them).

    Args:
        agent: a registered agent name (``agent.base.available_agents()``) or a factory
            ``f(env=, seed=, **agent_kwargs)``.
        split, episodes, env_kwargs: passed to ``ObjectNavEnv`` (``episodes`` may be a
            json.gz path or a list; None generates ``n_episodes`` for ``split``). ``env_kwargs`` may hold
            ``env_factory``: another env instead (``_make_env``; configs/env/miniworld/*.yaml).
        out_dir: where episodes.jsonl, summary.json and videos/ go; rerunning resumes.
        shard: "i/n": evaluate episodes i, i+n, ...; merge the shards with ``merge``.
        video: False/0 = none, True = every episode, k = the first k of this shard (mp4).
        seed: agent seed (per episode it is combined with the episode id).
        num_envs: run this many envs side by side, each with its own agent: this process and
            num_envs - 1 worker processes (``run_parallel``); only agents whose class says
            ``batchable = True`` (``is_batchable``), given by registered name or as an importable
            class or function. With ``threads`` unset, each env casts with cpu_count // num_envs threads.
            The episodes' rows are those of a serial run (they are appended as episodes finish, so
            in another order); num_envs is not part of the run's fingerprint, so either may resume the other.
    Returns the summary dict (also written to out_dir/summary.json).
    """
    agent_name = agent if isinstance(agent, str) else getattr(agent, "__name__", type(agent).__name__)
    check_eval_args(n_episodes=n_episodes, video=video, seed=seed, out_dir=out_dir, shard=shard, num_envs=num_envs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / EPISODES_FILE
    done_rows = check_episode_rows(read_episode_log(log_path, repair=True), log_path)
    for r in done_rows:
        if r.get("agent") != agent_name or r.get("split") != split:
            raise ValueError(
                f"{log_path} holds episodes of agent={r.get('agent')!r} split={r.get('split')!r}, not "
                f"agent={agent_name!r} split={split!r}; use another out_dir or delete that file"
            )
    done_ids = {str(r["episode_id"]) for r in done_rows}

    env_factory = env_kwargs.pop("env_factory", None)
    if num_envs > 1 and env_factory is None and env_kwargs.get("threads") is None:
        # each env's ray casts get an equal share of the cores (None would give every env all of them)
        env_kwargs["threads"] = max(1, (os.cpu_count() or 1) // num_envs)
    env = _make_env(env_factory, split=split, episodes=episodes, n_episodes=n_episodes, **env_kwargs)
    envs = [env]
    try:
        n_avail = len(env.episodes)
        if n_episodes > n_avail:
            raise ValueError(f"n_episodes={n_episodes} but only {n_avail} episodes are available for {split!r}")
        indices = shard_indices(n_episodes, shard)
        wanted_ids = {str(env.episodes[i].episode_id) for i in indices}
        todo = [i for i in indices if str(env.episodes[i].episode_id) not in done_ids]
        n_video = len(indices) if video is True else int(video or 0)
        video_set = set(indices[:n_video])
        factory = resolve_agent(agent)
        if num_envs > 1 and not is_batchable(factory):
            raise ValueError(f"agent {agent_name!r} cannot run with num_envs={num_envs}: its class does not say "
                             f"batchable = True (agents that can: {', '.join(batchable_agents())}); use num_envs=1")
        # Only a privileged agent class (the Oracle) gets the env itself; the rest get its sensor settings.
        bot, _ = build_agent(factory, env, seed=seed, **(agent_kwargs or {}))
        fingerprint = run_fingerprint(agent_name, factory, agent_kwargs, seed, split, episodes, env, bot)
        started_git = git_state()  # the summary's provenance names the code that ran, not a later commit
        check_resume(out, fingerprint, n_done=len(done_rows))
        spec = None
        if num_envs > 1 and len(todo) > 1:
            spec = PairSpec(agent=agent, agent_kwargs=dict(agent_kwargs or {}), seed=seed, env_factory=env_factory,
                            env_kwargs=dict(split=split, episodes=episodes, n_episodes=n_episodes, **env_kwargs))

        bar = _progress(todo, total=len(indices), initial=len(indices) - len(todo),
                        desc=f"{agent_name}/{split} {parse_shard(shard)[0]}/{parse_shard(shard)[1]}",
                        enable=progress)
        n_success = sum(float(r.get("success", 0)) for r in done_rows)
        with open(log_path, "a") as f:
            for k, (row, frames) in enumerate(run_parallel((env, bot), todo, seed=seed, video=video_set,
                                                                 num_envs=num_envs, spec=spec,
                                                                 groups=[getattr(env.episodes[i], "scene_id", i) for i in todo])):
                row["agent"] = agent_name
                row["split"] = split
                if frames is not None:
                    from world_model.video_io import write_video

                    vpath = out / "videos" / f"{_safe(row['episode_id'])}.mp4"
                    row["video"] = str(write_video(frames, vpath, fps=video_fps))
                append_jsonl(f, row)
                n_success += row["success"]
                bar.update(1)
                bar.set_postfix(success=f"{n_success / (len(done_rows) + k + 1):.2f}")
        bar.close()
    finally:
        for e in envs:
            e.close()

    # Only the requested episodes count: rows of other episodes (an earlier run with a larger
    # n_episodes, another shard merged here) stay in the log but not in this summary.
    rows = [r for r in read_episode_log(log_path) if str(r["episode_id"]) in wanted_ids]
    summary = summarize_rows(rows, agent=agent_name, split=split)
    summary["shard"] = "/".join(map(str, parse_shard(shard)))
    summary["provenance"] = provenance(fingerprint, git=started_git)
    write_summary(out, summary)
    if print_summary:
        print_table(summary)
    return summary


def _make_env(factory, **kwargs):
    """``ObjectNavEnv(**kwargs)``, or ``factory(**kwargs)`` for another env: a callable or a
    ``"module:function"`` string (e.g. ``envs.miniworld:miniworld_env``, an ``envs.adapters.GymAdapter``
    that provides ``episodes``, ``reset(options={"episode_index": i})`` and the metric keys in ``info``)."""
    if factory is None:
        from envs.gym_env import ObjectNavEnv

        return ObjectNavEnv(**kwargs)
    if isinstance(factory, str):
        import importlib

        module, _, attr = factory.partition(":")
        if not module or not attr:
            raise ValueError(f"env_factory={factory!r}: expected 'package.module:function'")
        factory = getattr(importlib.import_module(module), attr, None)
        if factory is None:
            raise ValueError(f"env_factory={module}:{attr}: {module} has no {attr}")
    return factory(**kwargs)


def _video_frame(env, agent, obs) -> np.ndarray:
    """observation | the agent's own panels (imagined rollout, its map) when it has them, under the
    agent's ``debug_caption()`` when it has one; else ``env.render()`` (observation | the
    simulator's top-down map)."""
    if hasattr(agent, "debug_panels"):
        from agent.video import panel_frame
        from world_model.frames import caption

        frame = panel_frame(obs["rgb"], agent.debug_panels())
        if hasattr(agent, "debug_caption"):
            frame = caption(frame, agent.debug_caption(), band=22, font_size=14)
        return frame
    return env.render()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _progress(items, total: int, initial: int, desc: str, enable: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enable, unit="ep", dynamic_ncols=True)
