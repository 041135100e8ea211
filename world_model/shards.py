"""The on-disk format of collected world-model data: compressed ``.npz`` shards plus ``index.json``.

``world_model.collect`` writes it, ``world_model.data.ContextVideoDataset`` reads it. A shard
holds whole scenes, so a scene's tour is stored once for all its samples; per-frame arrays of
every scene (and sample) are concatenated and cut back apart with offset arrays:

* per scene: ``scene_ids``; ``tour_rgb`` / ``tour_poses`` (x, y, yaw) / ``tour_indices`` (each
  tour frame's raw-frame index), cut by ``tour_offsets``; ``tour_num_raw`` (the tour's raw length);
* per sample: ``agent_rgb`` / ``agent_poses`` cut by ``agent_offsets`` (the agent turning into its
  start heading), ``path_rgb`` / ``path_poses`` cut by ``path_offsets`` (the path to the target),
  ``sample_scene`` (its scene's position in the shard), ``box`` (the target's pixel box),
  ``bbox_rgb`` (the final view with the box drawn, for inspection), ``target_id``,
  ``target_center``, ``instruction``, ``episode_id``.

``index.json`` lists the shards in order with their sample counts, the split, seed and
collection settings, and whether the collection is complete.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from envs.atomic import atomic_write, write_text_atomic

INDEX_FILE = "index.json"
FORMAT_VERSION = 1
# the per-sample fields stored one entry per sample (the rest are frame arrays cut by offsets)
_SAMPLE_FIELDS = ("box", "bbox_rgb", "target_id", "target_center", "instruction", "episode_id")
_FRAME_FIELDS = ("agent_rgb", "agent_poses", "path_rgb", "path_poses")


def write_shard(path: Path, scenes: list[dict[str, Any]]) -> int:
    """Write whole scenes (``world_model.collect.collect_scene`` results) into one compressed
    ``.npz``, atomically (a kill mid-write leaves no truncated shard); returns the number of samples."""
    tours, tour_poses, tour_idx, tour_off, tour_raw, scene_ids = [], [], [], [0], [], []
    flat: dict[str, list] = {k: [] for k in _FRAME_FIELDS}
    off = {"agent": [0], "path": [0]}
    per: dict[str, list] = {k: [] for k in ("sample_scene",) + _SAMPLE_FIELDS}
    for si, sc in enumerate(scenes):
        scene_ids.append(sc["scene_id"])
        tours.append(sc["tour_rgb"])
        tour_poses.append(np.asarray(sc["tour_poses"], np.float32))
        tour_idx.append(np.asarray(sc["tour_indices"], np.int64))
        tour_off.append(tour_off[-1] + len(sc["tour_rgb"]))
        tour_raw.append(sc["tour_num_raw"])
        for smp in sc["samples"]:
            for k in _FRAME_FIELDS:
                flat[k].append(smp[k])
            off["agent"].append(off["agent"][-1] + len(smp["agent_rgb"]))
            off["path"].append(off["path"][-1] + len(smp["path_rgb"]))
            per["sample_scene"].append(si)
            for k in _SAMPLE_FIELDS:
                per[k].append(smp[k])
    n = len(per["sample_scene"])
    with atomic_write(path, "wb") as f:
        np.savez_compressed(
            f,
            scene_ids=np.array(scene_ids), tour_rgb=np.concatenate(tours),
            tour_poses=np.concatenate(tour_poses), tour_indices=np.concatenate(tour_idx),
            tour_offsets=np.array(tour_off, np.int64), tour_num_raw=np.array(tour_raw, np.int64),
            agent_rgb=np.concatenate(flat["agent_rgb"]), agent_poses=np.concatenate(flat["agent_poses"]).astype(np.float32),
            agent_offsets=np.array(off["agent"], np.int64),
            path_rgb=np.concatenate(flat["path_rgb"]), path_poses=np.concatenate(flat["path_poses"]).astype(np.float32),
            path_offsets=np.array(off["path"], np.int64),
            sample_scene=np.array(per["sample_scene"], np.int64), box=np.stack(per["box"]).astype(np.int32),
            bbox_rgb=np.stack(per["bbox_rgb"]), target_id=np.array(per["target_id"], np.int64),
            target_center=np.stack(per["target_center"]).astype(np.float32),
            instruction=np.array(per["instruction"]), episode_id=np.array(per["episode_id"]),
        )
    return n


def write_index(out: Path, split, seed, cfg, shards, done: bool, n: int | None = None,
                tasks_done: int | None = None) -> Path:
    """Write ``out/index.json`` atomically (never half-written) and return its path.

    ``cfg`` is the collection's ``CollectConfig`` (its ``frame_size`` is the shards'); ``shards``
    the ``{"file", "num_samples", "num_scenes"}`` entries in order; ``done`` whether the collection
    is complete. ``n`` (samples asked for) and ``tasks_done`` (scenes, in collection order, that the
    listed shards cover) let an interrupted collection resume.
    """
    index = {
        "format_version": FORMAT_VERSION, "split": split, "seed": int(seed), "complete": bool(done),
        "frame_size": int(cfg.frame_size), "collect_config": asdict(cfg),
        "num_samples": int(sum(s["num_samples"] for s in shards)), "shards": shards,
    }
    if n is not None:
        index.update(n_requested=int(n), tasks_done=int(tasks_done))
    write_text_atomic(out / INDEX_FILE, json.dumps(index, indent=1))
    return out / INDEX_FILE
