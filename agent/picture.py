"""The README's episode picture (``spatialnav picture``): run one episode with ``run_episode`` (the
runner's one episode loop, so the agent gets exactly what an evaluation gives it) and lay a few of
its egocentric frames beside the final top-down map (``agent.video.episode_strip``)."""

from __future__ import annotations

import os
from pathlib import Path

from agent.fair_play import build_agent
from agent.runner import run_episode
from agent.video import episode_strip
from world_model.frames import caption


def record_episode(env, agent, episode_index: int = 0, seed: int | None = 0) -> dict:
    """Run one episode (``run_episode``), keeping each egocentric RGB, the final map and the
    episode's result row (``info``: success, spl, steps, ...)."""
    rgb, last = [], {}

    def keep(obs):
        rgb.append(obs["rgb"].copy())
        last["instruction"] = obs["instruction"]

    row = run_episode(env, agent, episode_index, seed=seed, obs_callback=keep)
    sim = env.unwrapped
    return {"rgb": rgb, "map": sim.topdown_map(max(256, sim.height)), "info": row,
            "instruction": last["instruction"]}


def save_episode_picture(path: str | os.PathLike, agent: str = "oracle", split: str = "val",
                         episode_index: int = 0, width: int = 192, height: int = 192,
                         n_frames: int = 5, seed: int = 0, **env_kwargs) -> Path:
    """Run ``agent`` on one episode and save the frame strip + map as a PNG."""
    from PIL import Image

    from agent.base import resolve_agent
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(split=split, width=width, height=height,
                       n_episodes=max(episode_index + 1, env_kwargs.pop("n_episodes", 1)), **env_kwargs)
    try:
        bot, _ = build_agent(resolve_agent(agent), env, seed=seed)
        rec = record_episode(env, bot, episode_index, seed=seed)
    finally:
        env.close()
    strip = episode_strip(rec["rgb"], rec["map"], n=n_frames, height=height)
    info = rec["info"]
    title = (f'"{rec["instruction"]}"   {agent}: success {info["success"]:.0f}, SPL {info["spl"]:.2f}, '
             f'{info["steps"]:.0f} steps')
    strip = caption(strip, title, band=22, font_size=14)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path, optimize=True)
    return path
