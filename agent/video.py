"""Episode videos and pictures: observation beside a top-down map.

Frames come from ``env.render()`` (the egocentric RGB next to the map with the
path so far, the target's box and its view points). ``write_video`` writes mp4
through imageio-ffmpeg (gif if the suffix says so); ``episode_strip`` lays a
few frames of one episode side by side with the final map, the picture in the
README (``spatialnav picture``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height/width: H.264 with yuv420p needs both even."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: int = 8) -> Path:
    """Write uint8 RGB frames (H, W, 3) to ``path`` (.mp4 via ffmpeg, or .gif)."""
    import imageio.v2 as imageio

    if len(frames) == 0:
        raise ValueError(f"write_video({path}): no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, [np.asarray(f, np.uint8) for f in frames], duration=1.0 / fps, loop=0)
        return path
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"write_video({path}): use a .mp4 or .gif suffix")
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=1,
                            ffmpeg_log_level="error") as w:
        for f in frames:
            w.append_data(_even(np.asarray(f, np.uint8)))
    return path


def episode_strip(obs_frames: Sequence[np.ndarray], final_map: np.ndarray, n: int = 5,
                  height: int = 192, gap: int = 4) -> np.ndarray:
    """``n`` evenly spaced observation frames of an episode, then the final top-down map,
    in one row of height ``height`` separated by white gaps."""
    from PIL import Image

    if len(obs_frames) == 0:
        raise ValueError("episode_strip: no frames")
    idx = np.unique(np.linspace(0, len(obs_frames) - 1, min(n, len(obs_frames))).round().astype(int))
    tiles = [obs_frames[i] for i in idx] + [final_map]
    row: list[np.ndarray] = []
    for t in tiles:
        t = np.asarray(t, np.uint8)
        w = max(1, round(t.shape[1] * height / t.shape[0]))
        row.append(np.asarray(Image.fromarray(t).resize((w, height), Image.NEAREST)))
        row.append(np.full((height, gap, 3), 255, np.uint8))
    return np.concatenate(row[:-1], axis=1)


def add_caption(img: np.ndarray, text: str, band: int = 22) -> np.ndarray:
    """A white band with ``text`` above ``img``."""
    from PIL import Image, ImageDraw, ImageFont

    out = Image.new("RGB", (img.shape[1], img.shape[0] + band), (255, 255, 255))
    out.paste(Image.fromarray(img), (0, band))
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    ImageDraw.Draw(out).text((6, 3), text, fill=(20, 20, 20), font=font)
    return np.asarray(out)


def record_episode(env, agent, episode_index: int = 0, seed: int | None = 0) -> dict:
    """Run one episode, keeping each egocentric RGB and the final map and render frame."""
    obs, info = env.reset(seed=seed, options={"episode_index": int(episode_index)})
    agent.reset(obs, info, None)
    rgb = [obs["rgb"].copy()]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(agent.act(obs))
        rgb.append(obs["rgb"].copy())
        done = terminated or truncated
    sim = env.unwrapped
    return {"rgb": rgb, "map": sim.topdown_map(max(256, sim.height)), "info": info,
            "instruction": obs["instruction"]}


def save_episode_picture(path: str | os.PathLike, agent: str = "oracle", split: str = "val",
                         episode_index: int = 0, width: int = 192, height: int = 192,
                         n_frames: int = 5, seed: int = 0, **env_kwargs) -> Path:
    """Run ``agent`` on one episode and save the frame strip + map as a PNG."""
    from PIL import Image

    from agent.base import make_agent
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(split=split, width=width, height=height,
                       n_episodes=max(episode_index + 1, env_kwargs.pop("n_episodes", 1)), **env_kwargs)
    try:
        bot = make_agent(agent, env=env, seed=seed)
        rec = record_episode(env, bot, episode_index, seed=seed)
    finally:
        env.close()
    strip = episode_strip(rec["rgb"], rec["map"], n=n_frames, height=height)
    info = rec["info"]
    caption = (f'"{rec["instruction"]}"   {agent}: success {info["success"]:.0f}, SPL {info["spl"]:.2f}, '
               f'{info["steps"]:.0f} steps')
    strip = add_caption(strip, caption)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path, optimize=True)
    return path
