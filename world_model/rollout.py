"""`Rollout`: what the world model imagines, handed to planners."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from diffusers.utils import BaseOutput


@dataclass
class Rollout(BaseOutput):
    """One imagined rollout: the output class of ``Video4SpatialPipeline.imagine``.

    A ``diffusers.utils.BaseOutput`` dataclass, like diffusers' pipeline outputs: read it by
    attribute (``r.frames``), by key (``r["frames"]``) or by position (``r[0]``; ``r.to_tuple()``).
    As in diffusers, keys and positions skip the fields that are ``None`` (``samples`` when
    N = 1), and it cannot be unpacked directly; ``imagine(..., return_dict=False)`` gives a
    tuple of every field in order instead.

    Attributes:
        frames: (T, H, W, 3) uint8 imagined target video (first frame = the current view).
        bbox_frames: (B, H, W, 3) uint8 auxiliary frames: the final view with a red box
            around the target.
        instruction: the instruction it was conditioned on.
        context_indices: (K,) original indices of the context frames used.
        target_indices: (T + B,) RoPE positions given to the generated frames.
        timings: seconds per stage ("encode", "ssg", "denoise", "decode", "total") and
            "per_step".
        samples: (N, T, H, W, 3) all imagined videos when best-of-N sampling ran (N > 1).
        sample_bbox_frames: (N, B, H, W, 3) their bbox frames.
        scores: (N,) score of each sample (higher is better); ``frames`` is the best.
        best_index: index of the chosen sample.
        seed: seed of the sampler noise.
        precision: the transformer's compute precision, "fp32" or "bf16" (autocast).
        ssg: whether the SSG adapter and its prompt took part.
    """

    frames: np.ndarray
    bbox_frames: np.ndarray
    instruction: str
    context_indices: np.ndarray
    target_indices: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    samples: np.ndarray | None = None
    sample_bbox_frames: np.ndarray | None = None
    scores: np.ndarray | None = None
    best_index: int = 0
    seed: int | None = None
    precision: str = "fp32"
    ssg: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def red_box_score(bbox_frames: np.ndarray, min_red: int = 180, max_other: int = 90) -> float:
    """Evidence that a red box was drawn: the fraction of pixels near ``world_model.boxes.BOX_COLOR``
    (pure red).

    ``score = mean_{frames, pixels} [R >= min_red and G <= max_other and B <= max_other]``.
    A crude but simulator-free goal-evidence score for best-of-N selection; the
    planners' box reader gives boxes with confidences.
    """
    f = np.asarray(bbox_frames)
    if f.size == 0:
        return 0.0
    f = f.reshape(-1, *f.shape[-3:]).astype(np.int16)
    red = (f[..., 0] >= min_red) & (f[..., 1] <= max_other) & (f[..., 2] <= max_other)
    return float(red.mean())
