"""World-model agent speed: seconds per agent step with imagination amortised.

    spatialnav bench agent [bench.kwargs.steps=60] [bench.kwargs.episodes=2] [bench.kwargs.profile=true]
    .venv/bin/python benchmarks/bench_agent.py --steps 60 [--profile]

Runs ``WorldModelAgent`` at the demo configuration (configs/agent/world_model.yaml as it
stands: K = 8 context frames, 8 Euler steps, joint CFG, re-imagining every
``reimagine_every`` steps with a goal and every ``explore_reimagine_every`` without, threads
"auto"; the env camera of configs/env/default.yaml, 128x128) in the real env on val
episodes, and times ``agent.act`` only (the env's own step is excluded and reported apart).
The world model is the checkpoint the agent would load (``pipeline`` None: the shipped
weights, else runs/wm/pipeline), else a randomly initialised one of the same architecture
(configs/world_model/small.yaml): speed depends on the architecture, not the weights.

Reported: agent seconds per step (amortised over the imaginations that happened), seconds
per imagination (sampling + reading the rollout), imaginations per step, the per-step cost
without imagination (mapping, planning, retrieval, box reading), the reset cost (tour map)
per episode, the torch threads used and the 1-minute load average before the run (other
jobs on the machine: this CPU has 2 cores and a training job may hold them). ``profile``
adds the top functions of a cProfile of the timed loop.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


TARGET_S_PER_STEP = 0.25
ROOT = Path(__file__).resolve().parents[1]


def _agent_config() -> dict:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "agent" / "world_model.yaml"), resolve=True)
    cfg.pop("name", None)
    return cfg


def _pipeline(path: str | None):
    from world_model.loading import load_pipeline

    try:
        pipe = load_pipeline(path)
        return pipe, f"trained ({pipe.source_path})"
    except FileNotFoundError:
        if path not in (None, "", "null"):
            raise
    import torch
    from omegaconf import OmegaConf

    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    cfg = OmegaConf.load(ROOT / "configs" / "world_model" / "small.yaml")
    m = cfg.model
    torch.manual_seed(0)
    model = Video4SpatialModel(transformer_config=OmegaConf.to_container(m.transformer), text_len=int(m.text_len),
                               frame_size=(int(m.frame_size), int(m.frame_size))).eval()
    pipe = Video4SpatialPipeline(model, make_scheduler(), num_target_frames=int(cfg.train.num_target),
                                 num_bbox_frames=int(cfg.train.num_bbox))
    return pipe, "random init, small.yaml architecture (no trained pipeline found)"


def run(steps: int = 60, episodes: int = 2, size: int = 128, pipeline: str | None = None,
        threads: int | str | None = None, split: str = "val", profile: bool = False, **agent_overrides) -> dict:
    """Time ``steps`` agent steps per episode on ``episodes`` ``split`` episodes at ``size`` x ``size``.

    ``threads`` None = the agent config's (``auto``); other keyword arguments override the
    agent config (e.g. ``num_candidates=4``, ``explore_reimagine_every=4``).
    """
    import torch

    from agent.fair_play import SensorView, public_context, public_info
    from agent.world_model_agent import WorldModelAgent
    from envs.gym_env import ObjectNavEnv

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    kw = _agent_config()
    kw.update(agent_overrides)
    if threads is not None:
        kw["threads"] = threads
    pipe, which = _pipeline(pipeline)
    kw["pipeline"] = pipe
    env = ObjectNavEnv(split=split, n_episodes=episodes, width=size, height=size, max_episode_steps=steps)
    agent = WorldModelAgent(env=SensorView(env), seed=0, **kw)
    _ = pipe.text_encoder  # load the instruction encoder outside the timed steps (a one-off per process)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    agent_s, env_s, n_steps, reset_s = 0.0, 0.0, 0, 0.0
    imaginations, imagine_s = 0, 0.0
    for ep in range(episodes):
        obs, info = env.reset(options={"episode_index": ep})
        t0 = time.perf_counter()
        agent.reset(obs, public_info(info), public_context(env.unwrapped.context_tour()))
        reset_s += time.perf_counter() - t0
        done = False
        while not done:
            if prof is not None:
                prof.enable()
            t0 = time.perf_counter()
            a = agent.act(obs)
            t1 = time.perf_counter()
            if prof is not None:
                prof.disable()
            obs, _, term, trunc, info = env.step(a)
            env_s += time.perf_counter() - t1
            agent_s += t1 - t0
            n_steps += 1
            done = term or trunc
        imaginations += agent.stats["imaginations"]
        imagine_s += agent.stats["imagine_seconds"]
    env.close()
    per_step = agent_s / max(n_steps, 1)
    out = {
        "world_model": which,
        "camera": f"{size}x{size}",
        "steps": n_steps,
        "agent_seconds_per_step": per_step,
        "seconds_per_imagination": imagine_s / max(imaginations, 1),
        "imaginations_per_step": imaginations / max(n_steps, 1),
        "seconds_per_step_without_imagination": (agent_s - imagine_s) / max(n_steps, 1),
        "reset_seconds_per_episode": reset_s / max(episodes, 1),
        "env_seconds_per_step": env_s / max(n_steps, 1),
        "target_seconds_per_step": TARGET_S_PER_STEP,
        "within_target": per_step <= TARGET_S_PER_STEP,
        "num_candidates": agent.num_candidates,
        "num_steps": agent.sampling["num_steps"],
        "reimagine_every": [agent.reimagine_every, agent.explore_reimagine_every],
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": round(load, 2),
    }
    if prof is not None:
        import io
        import pstats

        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        out["profile_top"] = buf.getvalue()
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pipeline", default=None)
    ap.add_argument("--threads", default=None)
    ap.add_argument("--num-candidates", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    extra = {} if a.num_candidates is None else {"num_candidates": a.num_candidates}
    res = run(a.steps, a.episodes, a.size, a.pipeline, a.threads, profile=a.profile, **extra)
    top = res.pop("profile_top", None)
    print(json.dumps(res, indent=1))
    if top:
        print(top)
