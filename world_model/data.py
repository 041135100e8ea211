"""The Video4Spatial world model's training data loader: ``ContextVideoDataset``.

It reads a directory that ``world_model.collect`` wrote (shards + ``index.json``, the format of
``world_model.shards``; see ``world_model.collect`` for what one sample holds) and gives each
sample at the model's frame size (area-pooled from the collected size), the box redrawn at that
size (``world_model.boxes.draw_box``). The context is sampled non-contiguously
(``sample_context_indices``: a random sorted subset that always ends with the current view) or
contiguously (the ablation); the target path is subsampled evenly (``subsample_path``).

``python -m world_model.data split=train n=... out_dir=...`` runs the collection
(``world_model.collect.main``; the same as ``python -m world_model.collect``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .boxes import default_line_width, draw_box
from .frames import area_resize
from .shards import FORMAT_VERSION, INDEX_FILE


def sample_context_indices(num_frames: int, k: int, rng: np.random.Generator, contiguous: bool = False,
                           weights: np.ndarray | None = None) -> np.ndarray:
    """Positions (k,) into a context video of ``num_frames`` frames, sorted, ending at the last frame.

    Non-contiguous (Video4Spatial): the current (last) frame plus k - 1 earlier frames drawn
    without replacement, uniformly or with probability proportional to ``weights`` (one per
    earlier frame, e.g. ``agent.context.ContextBuffer.sample``'s recency or relevance).
    Contiguous (ablation): the k most recent frames. Fewer than k frames: all of them.
    """
    if num_frames < 1:
        raise ValueError("the context video is empty")
    k = max(1, min(int(k), num_frames))
    if contiguous or k == num_frames:
        return np.arange(num_frames - k, num_frames)
    p = None if weights is None else weights / weights.sum()
    rest = rng.choice(num_frames - 1, size=k - 1, replace=False, p=p)
    return np.sort(np.concatenate([rest, [num_frames - 1]])).astype(np.int64)


def subsample_path(num_frames: int, t: int) -> np.ndarray:
    """t positions evenly over a path of ``num_frames`` frames, first and last included (repeats if short)."""
    return np.round(np.linspace(0, num_frames - 1, int(t))).astype(np.int64)


class ContextVideoDataset(Dataset):
    """Samples of a collected directory, at the model's frame size.

    Each item: ``context`` (K, H, W, 3) uint8, ``context_indices`` (K,) int64
    original indices (sorted; the last is the current view), ``target`` (T + B, H, W, 3)
    uint8 (T path frames, then B bbox frames), ``instruction`` str, plus
    ``target_poses`` (T, 3), ``box`` (4,) at the model size, ``target_id``,
    ``scene_id``, ``episode_id``.

    Args:
        data_dir: a directory written by ``world_model.collect.collect``.
        num_context: K.
        num_target: T path frames.
        num_bbox: B copies of the bbox frame (0 = no bbox frames: the ablation).
        frame_size: model frame size; must divide the collected size.
        contiguous: contiguous context (ablation) instead of a random sorted subset.
        box_thickness: red box thickness at the model size (None: 2 px at 64 px, scaled).
        seed: base seed; each item draws from ``(seed, index, draw counter)``.
    """

    def __init__(self, data_dir: str | os.PathLike, num_context: int = 6, num_target: int = 4, num_bbox: int = 1,
                 frame_size: int = 32, contiguous: bool = False, box_thickness: int | None = None,
                 seed: int = 0) -> None:
        self.dir = Path(data_dir)
        path = self.dir / INDEX_FILE
        if not path.exists():
            raise FileNotFoundError(f"no {INDEX_FILE} in {self.dir}: collect data first (`spatialnav collect ...`)")
        self.index = json.loads(path.read_text())
        if self.index.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {self.index.get('format_version')} != {FORMAT_VERSION}")
        src = int(self.index["frame_size"])
        if src % int(frame_size):
            raise ValueError(f"frame_size {frame_size} must divide the collected frame size {src} ({self.dir})")
        self.factor = src // int(frame_size)
        self.frame_size = int(frame_size)
        self.num_context, self.num_target, self.num_bbox = int(num_context), int(num_target), int(num_bbox)
        self.contiguous = bool(contiguous)
        self.box_thickness = box_thickness if box_thickness is not None else default_line_width(frame_size)
        self.seed = int(seed)
        self._draws = 0
        self._shards: dict[int, dict[str, np.ndarray]] = {}
        counts = [int(s["num_samples"]) for s in self.index["shards"]]
        if not counts or sum(counts) == 0:
            raise ValueError(f"{path} lists no samples")
        self._starts = np.cumsum([0] + counts)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _shard(self, i: int) -> dict[str, np.ndarray]:
        if i not in self._shards:
            with np.load(self.dir / self.index["shards"][i]["file"]) as z:
                # bbox_rgb (collection-size box frames) is for inspection; the loader redraws boxes
                d = {k: z[k] for k in z.files if k != "bbox_rgb"}
            if self.factor > 1:
                for k in ("tour_rgb", "agent_rgb", "path_rgb"):
                    d[k] = area_resize(d[k], self.frame_size)
            self._shards[i] = d
        return self._shards[i]

    def context_video(self, idx: int, with_poses: bool = False):
        """The full context video (tour + agent frames) of a sample and its original indices
        (and, with ``with_poses``, their (N, 3) world poses x, y, yaw; pitch is 0)."""
        s = int(np.searchsorted(self._starts, idx, side="right") - 1)
        d, j = self._shard(s), idx - int(self._starts[s])
        sc = int(d["sample_scene"][j])
        t0, t1 = d["tour_offsets"][sc], d["tour_offsets"][sc + 1]
        a0, a1 = d["agent_offsets"][j], d["agent_offsets"][j + 1]
        frames = np.concatenate([d["tour_rgb"][t0:t1], d["agent_rgb"][a0:a1]])
        n_raw = int(d["tour_num_raw"][sc])
        indices = np.concatenate([d["tour_indices"][t0:t1], n_raw + np.arange(a1 - a0)]).astype(np.int64)
        if with_poses:
            poses = np.concatenate([d["tour_poses"][t0:t1], d["agent_poses"][a0:a1]]).astype(np.float32)
            return frames, indices, poses
        return frames, indices

    def __getitem__(self, idx: int) -> dict[str, Any]:
        if not 0 <= idx < len(self):
            raise IndexError(f"sample {idx} out of range [0, {len(self)})")
        self._draws += 1
        wi = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, int(idx), self._draws, wi.id if wi else 0,
                                     int(torch.initial_seed() % (2**31))])
        s = int(np.searchsorted(self._starts, idx, side="right") - 1)
        d, j = self._shard(s), idx - int(self._starts[s])
        frames, indices, poses = self.context_video(idx, with_poses=True)
        pos = sample_context_indices(len(frames), self.num_context, rng, self.contiguous)
        if len(pos) < self.num_context:
            raise ValueError(f"sample {idx} has only {len(frames)} context frames < num_context={self.num_context}")
        p0, p1 = d["path_offsets"][j], d["path_offsets"][j + 1]
        tp = subsample_path(int(p1 - p0), self.num_target)
        path = d["path_rgb"][p0:p1][tp]
        box = d["box"][j].astype(np.float64)
        f = self.factor
        box_m = np.array([box[0] // f, box[1] // f, box[2] // f, box[3] // f], np.int64)
        bbox = draw_box(path[-1], box_m, self.box_thickness)
        target = np.concatenate([path, np.repeat(bbox[None], self.num_bbox, axis=0)])
        return {
            "context": frames[pos],
            "context_indices": indices[pos],
            "context_poses": poses[pos],
            "target": target,
            "instruction": str(d["instruction"][j]),
            "target_poses": d["path_poses"][p0:p1][tp].astype(np.float32),
            "box": box_m,
            "target_id": int(d["target_id"][j]),
            "scene_id": str(d["scene_ids"][int(d["sample_scene"][j])]),
            "episode_id": str(d["episode_id"][j]),
        }


if __name__ == "__main__":  # the documented `python -m world_model.data ...` collects, as it always did
    from .collect import main

    main()
