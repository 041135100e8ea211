"""World-model training data from the simulator: ``spatialnav collect`` (``python -m world_model.collect``).

One *sample* (Video4Spatial's context/target pair, on our procedural scenes):

* context video: the scene's scripted tour (``envs.tour.context_tour``) followed by
  a few agent-like frames at the start pose (``agent_prelude``: the agent turning into its
  start heading; the last one is the current view), each with its ORIGINAL frame index
  (the tour's raw-frame index; agent frames follow the tour's raw length);
* instruction: the episode's spatial instruction;
* target video: the agent's views along the shortest path (``path_to_target``:
  ``ShortestPathFollower`` to the episode's view points) from the start pose, then turning in
  place until the target is within half a turn of the image centre and a final exactly
  centred view;
* the auxiliary bbox frame: that final view with a red (255, 0, 0) rectangle
  around the target, from the renderer's instance mask (``world_model.boxes.draw_box``);
* camera poses (world frame x, y, yaw) of every frame, the target instance id
  and its pixel box.

``collect`` renders them scene by scene (``collect_scene``) in worker processes and writes
shards plus ``index.json`` (the format: ``world_model.shards``); an interrupted collection
resumes. ``world_model.data.ContextVideoDataset`` reads them for training, and the world
model's evaluation (``world_model.eval_samples.build_sample``) builds its ground truth the same way.
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

from envs.actions import TURN_ANGLE_DEG
from envs.geometry import wrap_angle

from .boxes import draw_box, target_box
from .shards import FORMAT_VERSION, INDEX_FILE, write_index, write_shard

_TURN = math.radians(TURN_ANGLE_DEG)


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
        write_index(out, split, seed, cfg, shards, done=False, n=n, tasks_done=consumed)
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
    idx = write_index(out, split, seed, cfg, shards, done=True, n=n, tasks_done=consumed)
    say(f"done: {total} samples in {len(shards)} shards, {time.time() - t0:.0f}s, {failed} scenes failed")
    return idx


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


# ----------------------------------------------------------------------------- command line
def main(cfg=None) -> Path:
    """Entry point for ``spatialnav collect world_model=small split=train n=8000 out_dir=DIR``.

    Accepts the CLI's composed config (its ``world_model.data`` section, with the
    top-level ``split``, ``n_episodes``/``n``, ``out_dir`` and ``seed`` overriding),
    a flat mapping of ``collect`` arguments, or (``cfg=None``) ``key=value``
    pairs on the command line (``python -m world_model.collect split=train n=8000
    out_dir=runs/wm/data/train``; ``python -m world_model.data ...`` runs this too).
    A log goes to ``out_dir/collect.log``.
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
