"""World-model agent speed: seconds per agent step with imagination amortised.

    spatialnav bench agent [bench.kwargs.steps=60] [bench.kwargs.size=64]
    .venv/bin/python benchmarks/bench_agent.py --steps 60

Runs ``WorldModelAgent`` at the demo configuration (configs/agent/world_model.yaml: K = 8
context frames, 8 Euler steps, joint CFG, re-imagining every 12 steps with a goal and
every 6 without) in the real env on val episodes and times ``agent.act`` only (the env's
own step is excluded and reported apart). The world model is the trained pipeline when
``pipeline`` exists, else a randomly initialised one of the same architecture
(configs/world_model/small.yaml): speed depends on the architecture, not the weights.
Reported: agent seconds per step (amortised over the imaginations that happened), seconds
per imagination, imaginations per step, the per-step cost without imagination (mapping,
planning, box reading), and the reset cost (tour map) per episode.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

TARGET_S_PER_STEP = 0.25


def _pipeline(path: str | None):
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    if path and (Path(path) / "model_index.json").exists():
        from agent.world_model_agent import load_pipeline

        return load_pipeline(path), f"trained ({path})"
    import torch
    from omegaconf import OmegaConf

    from world_model.model import Video4SpatialModel

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "world_model" / "small.yaml")
    m = cfg.model
    torch.manual_seed(0)
    model = Video4SpatialModel(transformer_config=OmegaConf.to_container(m.transformer), text_len=int(m.text_len),
                               frame_size=(int(m.frame_size), int(m.frame_size))).eval()
    pipe = Video4SpatialPipeline(model, make_scheduler(), num_target_frames=int(cfg.train.num_target),
                                 num_bbox_frames=int(cfg.train.num_bbox))
    return pipe, "random init, small.yaml architecture (no trained pipeline found)"


def run(steps: int = 60, episodes: int = 2, size: int = 64, pipeline: str = "runs/wm/pipeline",
        num_candidates: int = 1, num_steps: int = 8, reimagine_every: int = 12, explore_reimagine_every: int = 6,
        threads: int | None = None, split: str = "val") -> dict:
    """Time ``steps`` agent steps per episode on ``episodes`` val episodes at ``size`` x ``size``."""
    import torch

    from agent.runner import SensorView, public_context, public_info
    from agent.world_model_agent import WorldModelAgent
    from envs.gym_env import ObjectNavEnv

    if threads is not None:
        torch.set_num_threads(int(threads))
    pipe, which = _pipeline(pipeline)
    env = ObjectNavEnv(split=split, n_episodes=episodes, width=size, height=size, max_episode_steps=steps)
    agent = WorldModelAgent(env=SensorView(env), seed=0, pipeline=pipe, num_candidates=num_candidates,
                            num_steps=num_steps, reimagine_every=reimagine_every,
                            explore_reimagine_every=explore_reimagine_every)
    _ = pipe.text_encoder  # load the instruction encoder outside the timed steps (a one-off per process)
    agent_s, env_s, n_steps, reset_s = 0.0, 0.0, 0, 0.0
    imaginations, imagine_s = 0, 0.0
    for ep in range(episodes):
        obs, info = env.reset(options={"episode_index": ep})
        t0 = time.perf_counter()
        agent.reset(obs, public_info(info), public_context(env.unwrapped.context_tour()))
        reset_s += time.perf_counter() - t0
        done = False
        while not done:
            t0 = time.perf_counter()
            a = agent.act(obs)
            t1 = time.perf_counter()
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
        "num_candidates": num_candidates,
        "num_steps": num_steps,
        "torch_threads": torch.get_num_threads(),
    }
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--pipeline", default="runs/wm/pipeline")
    ap.add_argument("--num-candidates", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    print(json.dumps(run(a.steps, a.episodes, a.size, a.pipeline, a.num_candidates, threads=a.threads), indent=1))
