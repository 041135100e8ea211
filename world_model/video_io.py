"""Write frames to a video file: the one writer of ``spatialnav imagine`` and the agent's episode videos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height/width (edge pixels repeated): H.264 with yuv420p needs both even."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_video(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: int = 8) -> Path:
    """Write uint8 RGB frames (H, W, 3) to ``path``: an H.264 .mp4 through imageio-ffmpeg, or a .gif."""
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


__all__ = ["write_video"]
