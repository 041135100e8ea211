"""Training data for the Video4Spatial world model: collection from the simulator and a loader.

One *sample* (Video4Spatial's context/target pair, on our procedural scenes):

* context video: the scene's scripted tour (``envs.tour.context_tour``) followed by
  a few agent-like frames at the start pose (the agent turning into its start
  heading; the last one is the current view), each with its ORIGINAL frame index
  (the tour's raw-frame index; agent frames follow the tour's raw length);
* instruction: the episode's spatial instruction;
* target video: the agent's views along the shortest path (``ShortestPathFollower``
  to the episode's view points) from the start pose, then turning in place until
  the target is within half a turn of the image centre and a final exactly
  centred view;
* the auxiliary bbox frame: that final view with a red (255, 0, 0) rectangle
  around the target, from the renderer's instance mask;
* camera poses (world frame x, y, yaw) of every frame, the target instance id
  and its pixel box.

``collect`` writes shards (compressed ``.npz``, whole scenes per shard so a tour
is stored once for all its samples) plus ``index.json``; ``ContextVideoDataset``
reads them and samples the context non-contiguously (a random sorted subset that
always ends with the current view) or contiguously (the ablation).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from envs.atomic import atomic_write, write_text_atomic
from envs.geometry import wrap_angle

from .boxes import default_line_width
from .frames import area_resize
from .rollout import BOX_COLOR

INDEX_FILE = "index.json"
FORMAT_VERSION = 1
_TURN = math.radians(30.0)


# ----------------------------------------------------------------------------- boxes
def target_box(instance: np.ndarray, target_id: int, min_pixels: int = 1) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1), inclusive, of ``target_id`` in an instance mask; None if hidden."""
    ys, xs = np.nonzero(np.asarray(instance) == int(target_id))
    if len(xs) < min_pixels:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def draw_box(frame: np.ndarray, box, thickness: int = 2, color=BOX_COLOR) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3) with a ``thickness``-px rectangle drawn *outside-in* on ``box``.

    ``box`` = (x0, y0, x1, y1) inclusive pixel coordinates; the rectangle's outer
    edge is the box edge, so the drawn lines lie on the target's outermost pixels.
    """
    out = np.array(frame, copy=True)
    h, w = out.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1, w - 1))
    y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1, h - 1))
    t = max(1, int(thickness))
    c = np.asarray(color, np.uint8)
    out[y0:min(y0 + t, y1 + 1), x0:x1 + 1] = c
    out[max(y1 - t + 1, y0):y1 + 1, x0:x1 + 1] = c
    out[y0:y1 + 1, x0:min(x0 + t, x1 + 1)] = c
    out[y0:y1 + 1, max(x1 - t + 1, x0):x1 + 1] = c
    return out


# ----------------------------------------------------------------------------- trajectories
def agent_prelude(start_pose: np.ndarray, n: int) -> np.ndarray:
    """Poses (n, 3) of an agent turning right into its start heading; the last is the start pose."""
    p = np.asarray(start_pose, np.float64)
    return np.array([[p[0], p[1], wrap_angle(p[2] + (n - 1 - i) * _TURN)] for i in range(n)])


def path_to_target(grid, start_pose: np.ndarray, view_points: np.ndarray, target_center: np.ndarray,
                   max_steps: int = 200, centre_tol_deg: float = 15.0) -> np.ndarray | None:
    """Poses (P, 3) along the shortest path to the view points, ending centred on the target.

    Follows ``ShortestPathFollower`` until STOP, turns 30 deg at a time while
    the target centre is more than ``centre_tol_deg`` off the optical axis, and
    ends with one exactly centred pose. None if the path does not reach a stop.
    """
    from envs.actions import FORWARD_STEP_M, Action
    from envs.navigation import ShortestPathFollower

    follower = ShortestPathFollower(grid, np.asarray(view_points, np.float64)[:, :2])
    pose = np.asarray(start_pose, np.float64).copy()
    poses = [pose.copy()]
    stopped = False
    for _ in range(max_steps):
        a = int(follower.next_action(pose[:2], pose[2]))
        if a == Action.STOP:
            stopped = True
            break
        if a == Action.MOVE_FORWARD:
            new_xy, collided = grid.try_move(pose[:2], pose[2], FORWARD_STEP_M)
            if collided and np.allclose(new_xy, pose[:2]):
                return None
            pose[:2] = new_xy
        else:
            pose[2] = wrap_angle(pose[2] + (_TURN if a == Action.TURN_LEFT else -_TURN))
        poses.append(pose.copy())
    if not stopped:
        return None
    want = math.atan2(target_center[1] - pose[1], target_center[0] - pose[0])
    for _ in range(12):
        err = wrap_angle(want - pose[2])
        if abs(err) <= math.radians(centre_tol_deg):
            break
        pose[2] = wrap_angle(pose[2] + math.copysign(_TURN, err))
        poses.append(pose.copy())
    if abs(wrap_angle(want - pose[2])) > 1e-6:
        pose[2] = want
        poses.append(pose.copy())
    return np.stack(poses)


# ----------------------------------------------------------------------------- collection
@dataclass
class CollectConfig:
    """Knobs of ``collect``.

    Attributes:
        frame_size: rendered frame size (square, pixels). The loader can average-pool
            it down by an integer factor to the model's size.
        tour_frames: frames kept from the scripted tour (``context_tour(n_frames=...)``).
        agent_frames: agent-like frames appended after the tour (last = start view).
        episodes_per_scene: episodes (distinct targets) per scene.
        starts_per_episode: start poses per episode (the episode's own + random ones
            at 1.5-15 m geodesic from the view points).
        max_path_steps: action cap for the path to the target.
        min_target_pixels: drop samples whose final view shows fewer target pixels.
        box_thickness: thickness of the red box in the stored bbox frame (pixels).
        workers: collection processes.
    """

    frame_size: int = 64
    tour_frames: int = 96
    agent_frames: int = 3
    episodes_per_scene: int = 5
    starts_per_episode: int = 2
    max_path_steps: int = 200
    min_target_pixels: int = 6
    box_thickness: int = 2
    workers: int = 2


def collect_scene(split: str, scene_seed: int, seed: int, cfg: CollectConfig) -> dict[str, Any] | None:
    """Render every sample of one procedural scene; None if the scene yields none."""
    from envs.episodes import episodes_for_scene
    from envs.navigation import NavGrid
    from envs.renderer import Renderer
    from envs.scenes import load_scene, procgen_scene_id
    from envs.tour import context_tour

    scene = load_scene(procgen_scene_id(split, scene_seed))
    grid = NavGrid.from_scene(scene)
    s = int(cfg.frame_size)
    renderer = Renderer(scene, width=s, height=s, threads=1)
    rng = np.random.default_rng([int(seed), int(scene_seed), 7])
    episodes = episodes_for_scene(scene, grid, renderer, rng, cfg.episodes_per_scene, split=split,
                                  id_prefix=f"{split}_{scene_seed}_")
    if not episodes:
        return None
    tour = context_tour(scene, grid, n_frames=cfg.tour_frames, rng=rng, renderer=renderer, outputs=("rgb",))
    n_raw = int(tour["num_raw_frames"])
    samples = []
    for ep in episodes:
        vps = np.asarray(ep.view_points, np.float64)
        starts = [np.asarray(ep.start_pose, np.float64)]
        if cfg.starts_per_episode > 1:
            field_ = grid.geodesic_field(vps[:, :2])
            cand = np.asarray(grid.sample_navigable(rng, 64), np.float64).reshape(-1, 2)
            rc = np.asarray(grid.world_to_cell(cand)).reshape(-1, 2)
            d = field_[np.clip(rc[:, 0], 0, field_.shape[0] - 1), np.clip(rc[:, 1], 0, field_.shape[1] - 1)]
            ok = np.flatnonzero(np.isfinite(d) & (d >= 1.5) & (d <= 15.0))
            for k in rng.permutation(ok)[: cfg.starts_per_episode - 1]:
                starts.append(np.array([cand[k, 0], cand[k, 1], _TURN * int(rng.integers(12))]))
        for j, start in enumerate(starts):
            path = path_to_target(grid, start, vps, ep.target_center, cfg.max_path_steps)
            if path is None:
                continue
            final = renderer.render(path[-1], outputs=("rgb", "instance"))
            box = target_box(final["instance"][0], ep.target_id, cfg.min_target_pixels)
            if box is None:
                continue
            prelude = agent_prelude(start, cfg.agent_frames)
            rgb = renderer.render(np.concatenate([prelude, path[:-1]]), outputs=("rgb",))["rgb"]
            agent_rgb, path_rgb = rgb[: len(prelude)], np.concatenate([rgb[len(prelude):], final["rgb"]])
            samples.append({
                "episode_id": f"{ep.episode_id}/{j}",
                "instruction": ep.instruction,
                "target_id": int(ep.target_id),
                "target_center": np.asarray(ep.target_center, np.float64),
                "agent_rgb": agent_rgb, "agent_poses": prelude,
                "path_rgb": path_rgb, "path_poses": path,
                "box": np.array(box, np.int32),
                "bbox_rgb": draw_box(final["rgb"][0], box, cfg.box_thickness),
            })
    if not samples:
        return None
    return {
        "scene_id": scene.scene_id,
        "tour_rgb": tour["rgb"], "tour_poses": tour["poses"], "tour_indices": np.asarray(tour["indices"]),
        "tour_num_raw": n_raw, "samples": samples,
    }


def _collect_task(args):
    split, scene_seed, seed, cfg = args
    try:
        return scene_seed, collect_scene(split, scene_seed, seed, cfg), None
    except Exception as e:  # a broken scene must not kill a long collection run
        return scene_seed, None, f"{type(e).__name__}: {e}"


def write_shard(path: Path, scenes: list[dict[str, Any]]) -> int:
    """Write whole scenes into one compressed ``.npz``; returns the number of samples."""
    tours, tour_poses, tour_idx, tour_off, tour_raw, scene_ids = [], [], [], [0], [], []
    keys = ("agent_rgb", "agent_poses", "path_rgb", "path_poses")
    flat = {k: [] for k in keys}
    off = {"agent": [0], "path": [0]}
    per = {k: [] for k in ("sample_scene", "box", "bbox_rgb", "target_id", "target_center", "instruction",
                           "episode_id")}
    for si, sc in enumerate(scenes):
        scene_ids.append(sc["scene_id"])
        tours.append(sc["tour_rgb"])
        tour_poses.append(np.asarray(sc["tour_poses"], np.float32))
        tour_idx.append(np.asarray(sc["tour_indices"], np.int64))
        tour_off.append(tour_off[-1] + len(sc["tour_rgb"]))
        tour_raw.append(sc["tour_num_raw"])
        for smp in sc["samples"]:
            for k in keys:
                flat[k].append(smp[k])
            off["agent"].append(off["agent"][-1] + len(smp["agent_rgb"]))
            off["path"].append(off["path"][-1] + len(smp["path_rgb"]))
            per["sample_scene"].append(si)
            for k in ("box", "bbox_rgb", "target_id", "target_center", "instruction", "episode_id"):
                per[k].append(smp[k])
    n = len(per["sample_scene"])
    with atomic_write(path, "wb") as f:  # a kill mid-write leaves no truncated shard
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


def collect(split: str, n: int, out_dir: str | os.PathLike, shard_size: int = 200, seed: int = 0,
            progress: bool = True, log=None, **kwargs) -> Path:
    """Collect ``n`` samples of ``split`` into ``out_dir`` (shards + ``index.json``); returns the index path.

    Scenes are taken from the split's seed range in a seeded order and processed
    by ``workers`` processes, their results kept in that order (the data do not
    depend on ``workers``); a shard is written as soon as ``shard_size`` samples
    are buffered, atomically, then the index. ``kwargs`` are :class:`CollectConfig`
    fields. Re-running an interrupted collection with the same settings resumes
    after its last shard: the result equals an uninterrupted run's. A finished
    directory is refused (pick a new dir).
    """
    from envs.scenes import SPLITS

    cfg = CollectConfig(**kwargs)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1 samples, got {n}")
    out = Path(out_dir)
    shards, consumed = _resume_point(out, split, seed, cfg, int(n))
    out.mkdir(parents=True, exist_ok=True)
    for p in out.glob("*.tmp"):  # a write that a kill interrupted
        p.unlink()
    seeds = list(SPLITS[split])
    order = [int(seeds[i]) for i in np.random.default_rng([int(seed), 11]).permutation(len(seeds))]
    tasks = [(split, s, int(seed), cfg) for s in order[consumed:]]
    say = log or (lambda m: None)
    buffer, failed = [], 0
    total = sum(int(s["num_samples"]) for s in shards)
    if shards:
        say(f"resuming: {total} samples in {len(shards)} shards from the first {consumed} scenes")
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=int(n), initial=total, desc=f"collect {split}", unit="sample")

    def flush():
        nonlocal buffer
        if not buffer:
            return
        name = f"shard_{len(shards):05d}.npz"
        k = write_shard(out / name, buffer)
        shards.append({"file": name, "num_samples": k, "num_scenes": len(buffer)})
        _write_index(out, split, seed, cfg, shards, done=False, n=n, tasks_done=consumed)
        say(f"wrote {name}: {k} samples ({total} total, {time.time() - t0:.0f}s)")
        buffer = []

    if cfg.workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(cfg.workers)
        results = pool.imap(_collect_task, tasks)  # in task order: the shards do not depend on timing
    else:
        pool = None
        results = map(_collect_task, tasks)
    try:
        for scene_seed, res, err in (results if total < n else ()):
            consumed += 1
            if err is not None:
                failed += 1
                say(f"scene {split}/{scene_seed} failed: {err}")
            if res is None:
                continue
            res["samples"] = res["samples"][: int(n) - total]
            if not res["samples"]:
                continue
            buffer.append(res)
            total += len(res["samples"])
            if bar is not None:
                bar.update(len(res["samples"]))
            if sum(len(r["samples"]) for r in buffer) >= shard_size:
                flush()
            if total >= n:
                break
    finally:
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar.close()
    flush()
    if total == 0:
        raise RuntimeError(f"collect({split!r}): no scene yielded a sample ({failed} scenes failed)")
    idx = _write_index(out, split, seed, cfg, shards, done=True, n=n, tasks_done=consumed)
    say(f"done: {total} samples in {len(shards)} shards, {time.time() - t0:.0f}s, {failed} scenes failed")
    return idx


def _write_index(out: Path, split, seed, cfg, shards, done: bool, n: int | None = None,
                 tasks_done: int | None = None) -> Path:
    """``index.json``; ``n`` (samples asked for) and ``tasks_done`` (scenes, in collection order,
    that the listed shards cover) let an interrupted collection resume."""
    index = {
        "format_version": FORMAT_VERSION, "split": split, "seed": int(seed), "complete": bool(done),
        "frame_size": int(cfg.frame_size), "collect_config": asdict(cfg),
        "num_samples": int(sum(s["num_samples"] for s in shards)), "shards": shards,
    }
    if n is not None:
        index.update(n_requested=int(n), tasks_done=int(tasks_done))
    write_text_atomic(out / INDEX_FILE, json.dumps(index, indent=1))  # never half-written
    return out / INDEX_FILE


def _resume_point(out: Path, split: str, seed: int, cfg: CollectConfig, n: int) -> tuple[list[dict], int]:
    """The shards an interrupted ``collect`` into ``out`` finished, and how many scenes (in
    collection order) they cover; ``([], 0)`` for a new directory. A finished collection, one of
    other settings or one whose shards are missing is an error that says what to do."""
    path = out / INDEX_FILE
    if not path.exists():
        return [], 0
    try:
        index = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete {out} and collect again") from None
    if index.get("complete"):
        raise FileExistsError(f"{path} exists: collect into a new directory")
    if "tasks_done" not in index:
        raise FileExistsError(f"{path} is an interrupted collection from before collect could resume; "
                              f"delete {out} and collect again")
    content = {k: v for k, v in asdict(cfg).items() if k != "workers"}  # workers do not change the data
    want = {"format_version": FORMAT_VERSION, "split": split, "seed": int(seed), "n_requested": int(n),
            "collect_config": content}
    have = {k: index.get(k) for k in want}
    have["collect_config"] = {k: v for k, v in (index.get("collect_config") or {}).items() if k != "workers"}
    diff = [f"{k}: {have[k]!r} -> {want[k]!r}" for k in want if have[k] != want[k]]
    if diff:
        raise ValueError(f"{out} holds an interrupted collection with other settings ({'; '.join(diff)}): "
                         "rerun with its settings to finish it, or collect into a new directory")
    missing = [s["file"] for s in index["shards"] if not (out / s["file"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lists shards that are missing ({missing}); delete {out} and collect again")
    return list(index["shards"]), int(index["tasks_done"])


# ----------------------------------------------------------------------------- loading
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
        data_dir: a directory written by :func:`collect`.
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


def main(cfg=None) -> Path:
    """Entry point for ``spatialnav collect world_model=small split=train n=8000 out_dir=DIR``.

    Accepts the CLI's composed config (its ``world_model.data`` section, with the
    top-level ``split``, ``n_episodes``/``n``, ``out_dir`` and ``seed`` overriding),
    a flat mapping of ``collect`` arguments, or (``cfg=None``) ``key=value``
    pairs on the command line (``python -m world_model.data split=train n=8000
    out_dir=runs/wm/data/train``). A log goes to ``out_dir/collect.log``.
    """
    import sys

    from omegaconf import OmegaConf

    if cfg is None:
        cfg = OmegaConf.from_dotlist(sys.argv[1:])
    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    d = dict(cfg)
    if "world_model" in d:
        top = d
        d = dict(((top.get("world_model") or {}).get("data")) or {})
        for k in ("split", "out_dir", "seed"):
            if top.get(k) is not None:
                d[k] = top[k]
        n = top.get("n", top.get("n_episodes"))
        if n is not None:
            d["n"] = n
        d.pop("progress", None)
    d.setdefault("split", "train")
    if not d.get("out_dir"):
        d["out_dir"] = f"runs/wm/data/{d['split']}"
    if "n" not in d:
        raise ValueError("collect needs n=<number of samples>")
    out = Path(d["out_dir"])
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        with open(out / "collect.log", "a") as f:
            f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + msg + "\n")

    return collect(log=log, **d)


if __name__ == "__main__":
    main()
