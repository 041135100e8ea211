"""Episode videos and pictures: observation beside a top-down map.

Frames come from ``env.render()`` (the egocentric RGB next to the map with the
path so far, the target's box and its view points), or, for an agent with
``debug_panels()``, from ``panel_frame``: observation | imagined rollout with
the detected box | the agent's own map with its goal estimate and path
(``world_model.video_io.write_video`` writes them to mp4 or gif); ``episode_strip`` lays a
few frames of one episode side by side with the final map, the picture in the
README (``spatialnav picture``, which runs the episode: ``agent.picture``); the caption band over
a frame is ``world_model.frames.caption``. Drawing only: this module runs nothing and imports no
other module of the project.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _fit_box(img: np.ndarray, height: int, width: int, fill: int = 255) -> np.ndarray:
    """``img`` scaled (nearest) to fit inside height x width, centred on a ``fill`` background, so
    a panel whose content changes size (a growing map) keeps a fixed frame size."""
    from PIL import Image

    img = np.asarray(img, np.uint8)
    s = min(height / img.shape[0], width / img.shape[1])
    h, w = max(1, int(img.shape[0] * s)), max(1, int(img.shape[1] * s))
    small = np.asarray(Image.fromarray(img).resize((w, h), Image.NEAREST))
    out = np.full((height, width, 3), fill, np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    out[top:top + h, left:left + w] = small
    return out


def panel_frame(obs_rgb: np.ndarray, panels: dict[str, np.ndarray], height: int = 256, gap: int = 4) -> np.ndarray:
    """One video frame: the observation | each agent panel (e.g. the imagined rollout with its
    detected box, the agent's map with goal estimate and path), all ``height`` px high.

    Frame size stays fixed through an episode (mp4 needs that): the observation and the map
    (which grows and is cropped as it does) are boxed into squares; other panels keep their
    aspect ratio, which does not change within an episode.
    """
    tiles = [_fit_box(obs_rgb, height, height)]
    for name, img in panels.items():
        img = np.asarray(img, np.uint8)
        if name == "map":
            tiles.append(_fit_box(img, height, height))
        else:
            w = max(1, round(img.shape[1] * height / img.shape[0]))
            tiles.append(_fit_box(img, height, w))
    row: list[np.ndarray] = []
    for t in tiles:
        row += [t, np.full((height, gap, 3), 255, np.uint8)]
    return np.concatenate(row[:-1], axis=1)


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
