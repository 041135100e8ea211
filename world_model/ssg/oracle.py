"""Ground-truth "where" for SSG prompting: the target's coverage of each CLIP cell, from the simulator.

``train-ssg oracle_relevance=true`` trains an adapter whose prompter reads this in place of CLIP's
relevance (``SpatialSignalPrompter.prompt(..., relevance=...)``): an upper bound on what a perfect
"where" signal buys, never a deployable prompt. The research diagnostics (``research.ssg``) use it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class OracleRelevance:
    """Ground-truth "where": (B, K, g, g) target coverage of each CLIP cell of the context frames.

    ``r`` = the fraction of the cell's pixels showing the target, re-rendered at ``mask_size``
    from the samples' context poses (0 everywhere when the context never shows it; top-k then
    takes the first cells, a fixed "not in view" pattern). A diagnostic upper bound for SSG
    prompting, never a deployable prompt (an agent does not know the target's mask)."""

    def __init__(self, grid: int, mask_size: int = 64, max_scenes: int = 4) -> None:
        self.grid, self.size, self.max_scenes = int(grid), int(mask_size) - int(mask_size) % int(grid), int(max_scenes)
        self._renderers: dict[str, Any] = {}

    def _renderer(self, scene_id: str):
        from envs.renderer import Renderer
        from envs.scenes import load_scene

        if scene_id not in self._renderers:
            if len(self._renderers) >= self.max_scenes:
                self._renderers.pop(next(iter(self._renderers)))
            self._renderers[scene_id] = Renderer(load_scene(scene_id), width=self.size, height=self.size, threads=1)
        return self._renderers[scene_id]

    def instance_masks(self, scene_id: str, poses) -> np.ndarray:
        """(K, size, size) instance ids seen from the (K, 3) poses (x, y, yaw; pitch 0)."""
        p = np.asarray(poses, np.float64)
        return self._renderer(str(scene_id)).render(p, pitch=np.zeros(len(p)), outputs=("instance",))["instance"]

    def __call__(self, scene_ids, target_ids, context_poses) -> torch.Tensor:
        g, out = self.grid, []
        for sid, tid, p in zip(scene_ids, [int(t) for t in target_ids], np.asarray(context_poses, np.float64)):
            inst = self.instance_masks(sid, p)
            k, h, w = inst.shape
            cover = (inst == tid).reshape(k, g, h // g, g, w // g).mean(axis=(2, 4))
            out.append(cover)
        return torch.as_tensor(np.stack(out), dtype=torch.float32)
