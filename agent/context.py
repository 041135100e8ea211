"""`ContextBuffer`: every frame an agent has seen, with its original index and pose.

Video4Spatial conditions the world model on a *non-contiguous* sample of the
context video whose frames keep their original indices (the RoPE positions).
The buffer holds the context tour first (its frames with the tour's own
indices) and then the agent's own frames as it moves, each with the next free
index, so an index says when a frame was seen. Poses are (x, y, yaw) in the
episode-start frame (the frame of gps/compass and of the tour's poses).

Frames are stored at the world model's frame size (area resampling on insert)
and, when given, depth is kept beside them at the same size so a planner can
range a box found in a view that matches a stored frame.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from world_model.data import sample_context_indices
from world_model.frames import area_resize

SAMPLE_MODES = ("noncontiguous", "contiguous", "recent", "relevant")


class ContextSample(NamedTuple):
    """A context sample: frames (K, H, W, 3) uint8, original indices (K,) strictly increasing,
    poses (K, 3) and positions (K,) into the buffer."""

    frames: np.ndarray
    indices: np.ndarray
    poses: np.ndarray
    positions: np.ndarray


def resize_depth(depth: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize (N, H, W[, 1]) depth by nearest sampling of pixel centres (no mixing across edges)."""
    d = np.asarray(depth, np.float32)
    if d.ndim == 4:
        d = d[..., 0]
    th, tw = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    n, h, w = d.shape
    rows = ((np.arange(th) + 0.5) * h / th).astype(int).clip(0, h - 1)
    cols = ((np.arange(tw) + 0.5) * w / tw).astype(int).clip(0, w - 1)
    return d[:, rows][:, :, cols]


class ContextBuffer:
    """Frames + original indices + poses (+ depth), tour first, then the agent's frames.

    Args:
        frame_size: store frames at this (H, W) (or square size); None keeps them as given.
        max_agent_frames: keep at most this many of the agent's own frames (oldest dropped,
            the tour is always kept); None = unbounded (an episode has <= 500 steps).
    """

    def __init__(self, frame_size: int | tuple[int, int] | None = None, max_agent_frames: int | None = None):
        self.frame_size = frame_size
        self.max_agent_frames = max_agent_frames
        self.clear()

    def clear(self) -> None:
        self._frames: list[np.ndarray] = []
        self._depth: list[np.ndarray | None] = []
        self._indices: list[int] = []
        self._poses: list[np.ndarray] = []
        self._is_tour: list[bool] = []
        self._thumbs: list[np.ndarray] = []  # view_thumbnails of the frames, filled lazily
        self._next_index = 0

    # ------------------------------------------------------------------ filling
    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, H, W, 3), got {rgb.dtype} {rgb.shape}")
        return rgb if self.frame_size is None else area_resize(rgb, self.frame_size)

    def _fit_depth(self, depth, n: int, hw: tuple[int, int]):
        if depth is None:
            return [None] * n
        d = np.asarray(depth, np.float32)
        if d.ndim == 4:
            d = d[..., 0]
        if d.ndim != 3 or d.shape[0] != n:
            raise ValueError(f"depth must be (N, H, W[, 1]) with N = {n} frames, got {np.shape(depth)}")
        if d.shape[1:] != hw:
            d = resize_depth(d, hw)
        return list(d)

    def add_tour(self, rgb, poses, indices=None, depth=None) -> None:
        """Add the context tour (before any agent frame): rgb (T, H, W, 3), poses (T, 3) in the
        start frame, indices (T,) the tour's original indices (strictly increasing; default 0..T-1)."""
        if any(not t for t in self._is_tour):
            raise RuntimeError("add_tour after agent frames: add the tour first (call clear() to start over)")
        fr = self._fit(rgb)
        n = len(fr)
        p = np.asarray(poses, np.float64).reshape(-1, 3)
        if len(p) != n:
            raise ValueError(f"{n} tour frames but {len(p)} poses")
        idx = np.arange(n) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        if len(idx) != n:
            raise ValueError(f"{n} tour frames but {len(idx)} indices")
        if n and ((np.diff(idx) <= 0).any() or idx[0] < self._next_index):
            raise ValueError(f"tour indices must be strictly increasing and >= {self._next_index}, got {idx.tolist()}")
        ds = self._fit_depth(depth, n, fr.shape[1:3])
        for k in range(n):
            self._frames.append(fr[k])
            self._depth.append(ds[k])
            self._indices.append(int(idx[k]))
            self._poses.append(p[k])
            self._is_tour.append(True)
        if n:
            self._next_index = int(idx[-1]) + 1

    def append(self, rgb, pose, depth=None) -> int:
        """Append one agent frame (H, W, 3) at ``pose`` (x, y, yaw); returns its original index."""
        fr = self._fit(np.asarray(rgb)[None])
        ds = self._fit_depth(None if depth is None else np.asarray(depth)[None], 1, fr.shape[1:3])
        idx = self._next_index
        self._frames.append(fr[0])
        self._depth.append(ds[0])
        self._indices.append(idx)
        self._poses.append(np.asarray(pose, np.float64).reshape(3))
        self._is_tour.append(False)
        self._next_index += 1
        if self.max_agent_frames is not None:
            agent = [i for i, t in enumerate(self._is_tour) if not t]
            for i in reversed(agent[: max(0, len(agent) - int(self.max_agent_frames))]):
                for lst in (self._frames, self._depth, self._indices, self._poses, self._is_tour):
                    del lst[i]
                if i < len(self._thumbs):
                    del self._thumbs[i]
        return idx

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._frames)

    @property
    def num_tour(self) -> int:
        return int(sum(self._is_tour))

    @property
    def frames(self) -> np.ndarray:
        return np.stack(self._frames) if self._frames else np.zeros((0, 0, 0, 3), np.uint8)

    @property
    def indices(self) -> np.ndarray:
        return np.asarray(self._indices, np.int64)

    @property
    def poses(self) -> np.ndarray:
        return np.asarray(self._poses, np.float64).reshape(-1, 3)

    @property
    def is_tour(self) -> np.ndarray:
        return np.asarray(self._is_tour, bool)

    def thumbnails(self) -> np.ndarray:
        """(N, 256) ``planners.rollout_reader.view_thumbnails`` of every frame (16 x 16), computed once
        per frame: retrieval of an imagined view against all posed frames is one matrix product."""
        from planners.rollout_reader import view_thumbnails

        if len(self._thumbs) < len(self._frames):
            self._thumbs.extend(view_thumbnails(np.stack(self._frames[len(self._thumbs):])))
        return np.stack(self._thumbs) if self._thumbs else np.zeros((0, 256))

    def frame(self, position: int) -> np.ndarray:
        """The stored frame (H, W, 3) at buffer ``position``."""
        return self._frames[position]

    def depth(self, position: int) -> np.ndarray | None:
        """Depth (H, W) stored with the frame at buffer ``position`` (None if none was given)."""
        return self._depth[position]

    def newest(self) -> tuple[np.ndarray, int, np.ndarray]:
        if not self._frames:
            raise RuntimeError("the context buffer is empty")
        return self._frames[-1], self._indices[-1], self._poses[-1]

    # ------------------------------------------------------------------ sampling
    def sample(self, k: int, rng: np.random.Generator, mode: str = "noncontiguous",
               relevance: np.ndarray | None = None, temperature: float = 1.0) -> ContextSample:
        """K frames with their original indices (sorted), always ending with the newest frame.

        * ``noncontiguous`` (Video4Spatial, the world model's training distribution,
          ``world_model.data.sample_context_indices``): the newest frame plus a uniformly
          random subset of k - 1 earlier frames (tour and agent alike);
        * ``contiguous`` (the ablation): the k newest frames;
        * ``recent``: the newest frame plus k - 1 earlier frames drawn without replacement
          with probability proportional to (1 + position), favouring the agent's recent
          views while still reaching back into the tour;
        * ``relevant``: the newest frame plus k - 1 earlier frames drawn without replacement
          with probability proportional to exp(z / ``temperature``), z = the z-scored
          ``relevance`` (one score per buffered frame, e.g. CLIP image-text similarity to the
          instruction): frames that likely show the target enter the context more often,
          still non-contiguous and with their original indices.
        Fewer than k frames in the buffer: all of them.
        """
        if mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {SAMPLE_MODES}, got {mode!r}")
        n = len(self._frames)
        if n == 0:
            raise RuntimeError("cannot sample from an empty context buffer")
        k = max(1, min(int(k), n))
        weights = None
        if mode == "relevant" and k < n:
            if relevance is None or len(relevance) < n - 1:
                raise ValueError(f"mode='relevant' needs a relevance score per buffered frame ({n}), got "
                                 f"{None if relevance is None else len(relevance)}")
            r = np.asarray(relevance, np.float64)[:n - 1]
            z = (r - r.mean()) / max(float(r.std()), 1e-9)
            weights = np.maximum(np.exp((z - z.max()) / max(float(temperature), 1e-6)), 1e-12)
        elif mode == "recent" and k < n:
            weights = np.arange(1, n, dtype=np.float64)
        pos = sample_context_indices(n, k, rng, contiguous=mode == "contiguous", weights=weights)
        return ContextSample(frames=np.stack([self._frames[i] for i in pos]), indices=self.indices[pos],
                             poses=self.poses[pos], positions=pos)


__all__ = ["ContextBuffer", "ContextSample", "SAMPLE_MODES", "resize_depth"]
