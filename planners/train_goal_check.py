"""Train the goal check (``planners.goal_check``) on rendered views the simulator labels.

Data. For each generated episode of a split (``envs.episodes.generate_episodes``), views are
rendered with the env's own camera (128x128 RGB-D, the env's hfov, level) at poses of five kinds,
so the model sees the arrivals the agent makes and the mistakes it makes there:

* ``at_goal``: a view point of the target (the success region's lattice), facing the target
  with a N(0, 25 deg) error;
* ``short``: a navigable point 0.1-2 m (geodesic) outside the success region, facing the target
  (the "stopped short" arrivals);
* ``look_alike``: 0.5-1.6 m from another instance of the target's category, facing it (the
  "stopped at a look-alike" arrivals; only where the scene has one);
* ``aimed``: 1-4 m from a random instance, facing it (the "stopped at a wrong place" arrivals:
  an object in view, not the one asked for);
* ``random``: a random navigable point and heading.

Labels come from the same geometry the env scores a STOP with: ``success`` = the pose is within
the env's success distance (geodesic, ``NavGrid.field_distance``) of a view point *and* the
target covers at least ``VISIBLE_FRACTION`` of the view; ``visible`` = the target covers that
much. A pose inside the region with the target out of view says nothing a view can tell, and is
left out. Half the instructions are reworded by ``envs.paraphrase`` (free wording).

Training: binary cross-entropy on both logits (the ``visible`` one is an auxiliary target),
AdamW, the CLIP towers at a tenth of the head's learning rate, a cosine schedule, random
shifts of the images (``world_model.ssg.train_clip._augment``), under the project's training loop (``world_model.training``:
Accelerate, diffusers' cosine schedule, a checkpoint every ``--ckpt-every`` steps in ``--out/ckpt``
that the next invocation resumes, the run's totals in ``--out/training.json``). Evaluation: ROC AUC
and the acceptance rate of each kind of view on a held-out split (``--eval-only DIR``). On the
world-model agent's own recorded arrivals: ``python -m research.goal_check``.

    python -m planners.train_goal_check --out runs/goalcheck --train-episodes 3000 --val-episodes 300 --steps 2500
    python -m planners.train_goal_check --out runs/goalcheck --eval-only runs/goalcheck/final
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from planners.goal_check import (
    VISIBLE_FRACTION,
    GoalCheck,
    build_goal_check,
    load_goal_check,
)

KINDS = ("at_goal", "short", "look_alike", "aimed", "random")
DEFAULT_PER_EPISODE = {"at_goal": 6, "short": 5, "look_alike": 3, "aimed": 3, "random": 2}
IMAGE_SIZE = 64


def _facing(p, c, rng, sd_deg: float = 25.0) -> float:
    return math.atan2(c[1] - p[1], c[0] - p[0]) + float(rng.normal(0.0, math.radians(sd_deg)))


def sample_poses(episode, scene, grid, rng: np.random.Generator, per_episode: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """World poses (N, 3) and their kinds for one episode (module docstring)."""
    from envs.episodes import _grid_cells_xy

    per = {**DEFAULT_PER_EPISODE, **(per_episode or {})}
    vp = np.asarray(episode.view_points, np.float64).reshape(-1, 3)
    tc = np.asarray(episode.target_center, np.float64)[:2]
    field = grid.geodesic_field(vp[:, :2])
    rc, cells = _grid_cells_xy(grid)
    cell_d = field[rc[:, 0], rc[:, 1]]
    poses, kinds = [], []

    def add(xy, yaw, kind):
        poses.append([float(xy[0]), float(xy[1]), float(yaw)])
        kinds.append(kind)

    for i in rng.choice(len(vp), size=min(per["at_goal"], len(vp)), replace=False):
        add(vp[i, :2], _facing(vp[i, :2], tc, rng), "at_goal")
    near = np.nonzero((cell_d > 0.15) & (cell_d <= 2.0))[0]
    for i in rng.choice(near, size=min(per["short"], len(near)), replace=False) if len(near) else []:
        add(cells[i], _facing(cells[i], tc, rng), "short")
    others = [o for o in scene.instances if o.category == episode.object_category and o.id != int(episode.target_id)]
    for k in range(per["look_alike"] if others else 0):
        o = others[int(rng.integers(len(others)))]
        d = np.linalg.norm(cells - np.asarray(o.center)[:2], axis=1)
        ok = np.nonzero((d >= 0.5) & (d <= 1.6))[0]
        if len(ok):
            i = int(rng.choice(ok))
            add(cells[i], _facing(cells[i], o.center, rng), "look_alike")
    for k in range(per["aimed"]):
        o = scene.instances[int(rng.integers(len(scene.instances)))]
        d = np.linalg.norm(cells - np.asarray(o.center)[:2], axis=1)
        ok = np.nonzero((d >= 1.0) & (d <= 4.0))[0]
        if len(ok):
            i = int(rng.choice(ok))
            add(cells[i], _facing(cells[i], o.center, rng), "aimed")
    for i in rng.choice(len(cells), size=per["random"], replace=False):
        add(cells[i], rng.uniform(-math.pi, math.pi), "random")
    return np.asarray(poses, np.float64).reshape(-1, 3), kinds


def render_episode_views(episode, scene, grid, renderer, rng: np.random.Generator, success_distance: float = 0.1,
                         paraphrase_p: float = 0.5, per_episode: dict | None = None) -> dict[str, np.ndarray]:
    """Rendered, labelled views of one episode (module docstring)."""
    from envs.paraphrase import paraphrase
    from world_model.frames import area_resize

    poses, kinds = sample_poses(episode, scene, grid, rng, per_episode)
    out = {"rgb": [], "depth": [], "instruction": [], "success": [], "visible": [], "distance_m": [], "kind": []}
    vp = np.asarray(episode.view_points, np.float64).reshape(-1, 3)[:, :2]
    field = grid.geodesic_field(vp)
    tid = int(episode.target_id)
    for pose, kind in zip(poses, kinds):
        r = renderer.render(pose, outputs=("rgb", "depth", "instance"))
        inst = r["instance"][0]
        frac = float((inst == tid).mean())
        d = float(np.asarray(grid.field_distance(field, pose[:2])).reshape(-1)[0])
        inside = d <= success_distance + 1e-9
        visible = frac >= VISIBLE_FRACTION
        if inside and not visible:
            continue  # nothing in view tells that this is the place
        rgb = np.round(area_resize(r["rgb"], IMAGE_SIZE)).clip(0, 255).astype(np.uint8)[0]
        dep = area_resize(r["depth"][..., None], 32)[0, ..., 0].astype(np.float16)
        text = episode.instruction
        if rng.random() < paraphrase_p:
            text = paraphrase(episode.spec, rng)
        out["rgb"].append(rgb)
        out["depth"].append(dep)
        out["instruction"].append(text)
        out["success"].append(inside and visible)
        out["visible"].append(visible)
        out["distance_m"].append(d)
        out["kind"].append(KINDS.index(kind))
    return {"rgb": np.asarray(out["rgb"], np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3),
            "depth": np.asarray(out["depth"], np.float16).reshape(-1, 32, 32),
            "instruction": np.asarray(out["instruction"], dtype=object).astype(str),
            "success": np.asarray(out["success"], bool), "visible": np.asarray(out["visible"], bool),
            "distance_m": np.asarray(out["distance_m"], np.float32), "kind": np.asarray(out["kind"], np.int8)}


def build_split(split: str, n_episodes: int, seed: int = 0, width: int = 128, height: int = 128,
                hfov_deg: float = 79.0, log=print) -> dict[str, np.ndarray]:
    """Views of ``n_episodes`` generated episodes of ``split`` (deterministic in split, seed)."""
    from envs.episodes import generate_episodes
    from envs.navigation import NavGrid
    from envs.renderer import Renderer
    from envs.scenes import load_scene

    t0 = time.time()
    eps = generate_episodes(split, n_episodes, seed=seed, renderer_threads=1)
    parts, cache = [], {}
    for k, ep in enumerate(eps):
        if ep.scene_id not in cache:
            cache.clear()
            scene = load_scene(ep.scene_id)
            cache[ep.scene_id] = (scene, NavGrid.from_scene(scene),
                                  Renderer(scene, width=width, height=height, hfov_deg=hfov_deg, threads=1))
        scene, grid, renderer = cache[ep.scene_id]
        rng = np.random.default_rng([seed, k])
        parts.append(render_episode_views(ep, scene, grid, renderer, rng))
        if log and (k + 1) % 200 == 0:
            log(f"{split}: {k + 1}/{len(eps)} episodes, {sum(len(p['success']) for p in parts)} views, "
                f"{time.time() - t0:.0f} s")
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def load_or_build(path: Path, split: str, n_episodes: int, seed: int, log=print) -> dict[str, np.ndarray]:
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    data = build_split(split, n_episodes, seed=seed, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return data


# -- metrics ----------------------------------------------------------------------------------
def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n+ n-), ties count half); nan if one class."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def predict(model: GoalCheck, data: dict, batch: int = 256) -> np.ndarray:
    """(N, 2) probabilities for a data dict (rgb 64 px, depth 32 px, instruction)."""
    out = []
    for i in range(0, len(data["success"]), batch):
        out.append(model.probabilities(data["rgb"][i:i + batch], data["depth"][i:i + batch].astype(np.float32),
                                       list(data["instruction"][i:i + batch])))
    return np.concatenate(out) if out else np.zeros((0, 2))


def evaluate(model: GoalCheck, data: dict) -> dict:
    p = predict(model, data)
    y = data["success"].astype(bool)
    res = {"n": len(y), "positives": int(y.sum()), "auc": roc_auc(p[:, 0], y),
           "acc@threshold": float(((p[:, 0] >= model.threshold) == y).mean()),
           "visible_auc": roc_auc(p[:, 1], data["visible"])}
    for k, name in enumerate(KINDS):
        m = data["kind"] == k
        if m.any():
            res[f"accept_rate_{name}"] = float((p[m, 0] >= model.threshold).mean())
    return res


# -- training -----------------------------------------------------------------------------------
def train(args) -> dict:
    """Train (or resume from ``args.out/ckpt``) and save ``args.out/final``; returns the run's totals."""
    from envs.atomic import write_text_atomic
    from world_model.ssg.train_clip import _augment
    from world_model.training import (
        GeneratorState,
        RunClock,
        drop_rows_after,
        make_accelerator,
        make_schedule,
        resume_checkpoint,
        save_checkpoint,
        train_logger,
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    acc = make_accelerator(out)
    if acc.num_processes > 1:
        raise ValueError("the goal-check trainer runs in one process: run it without `accelerate launch`")
    log = train_logger(acc, out / "train.log", echo=lambda m: print(m, flush=True))
    train_data = load_or_build(out / "train.npz", "train", args.train_episodes, args.seed, log)
    val_data = load_or_build(out / "val.npz", "val", args.val_episodes, args.seed + 1, log)
    n = len(train_data["success"])
    log(f"train {n} views ({train_data['success'].mean():.2f} positive), val {len(val_data['success'])}")
    if n < args.batch_size:
        raise ValueError(f"only {n} training views for batch size {args.batch_size}: render more episodes")
    model = build_goal_check(args.init_clip, hidden=args.hidden, seed=args.seed)
    clip_params = [p for p in model.clip.parameters() if p.requires_grad]
    other = [p for name, p in model.named_parameters() if not name.startswith("clip.")]
    opt = torch.optim.AdamW([{"params": clip_params, "lr": args.lr * args.clip_lr_scale},
                             {"params": other, "lr": args.lr}], weight_decay=0.01)
    sched = make_schedule("cosine", opt, args.warmup, args.steps)
    gen = torch.Generator().manual_seed(args.seed)  # image shifts
    rng = np.random.default_rng(args.seed)  # batches
    model, opt, sched = acc.prepare(model, opt, sched)
    acc.register_for_checkpointing(GeneratorState(gen))
    acc.register_for_checkpointing(GeneratorState(rng))
    step = resume_checkpoint(acc, out, args.seed, log)
    clock = RunClock.resume(out, step, args.batch_size)
    step = step or 0
    # Every instruction's sentence embedding once (MiniLM is frozen).
    uniq = [str(t) for t in np.unique(train_data["instruction"])]
    sent = dict(zip(uniq, model.clip.sentence_embeddings(uniq)))
    y_all = torch.as_tensor(np.stack([train_data["success"], train_data["visible"]], 1).astype(np.float32))
    pos_w = torch.tensor([args.pos_weight, 1.0])
    drop_rows_after(out / "log.jsonl", step)  # rows of steps this run does again (a killed run's)

    def save() -> None:
        totals = clock.totals(step)
        save_checkpoint(acc, out, step, 2, state=totals)
        clock.write(out, step, totals)

    model.train()
    while step < args.steps:
        idx = rng.choice(n, size=args.batch_size, replace=False)
        pv = _augment(model.pixel_values(train_data["rgb"][idx]), 4, gen)  # per-image shifts, as the CLIPs train
        dv = model.depth_values(train_data["depth"][idx].astype(np.float32))
        se = torch.stack([sent[str(t)] for t in train_data["instruction"][idx]])
        loss = F.binary_cross_entropy_with_logits(model(pv, dv, se), y_all[idx], pos_weight=pos_w, reduction="none")
        loss = (loss[:, 0] + args.visible_weight * loss[:, 1]).mean()
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % 50 == 0:
            log(f"step {step} loss {loss.item():.4f} {clock.wall_seconds() / max(1, step):.2f} s/step")
        last = step == args.steps
        if step % args.eval_every == 0 or last:
            res = {"step": step, "train_minutes": clock.wall_seconds() / 60, "loss": float(loss.item()),
                   **evaluate(model, val_data)}
            model.train()
            with (out / "log.jsonl").open("a") as f:
                f.write(json.dumps(res) + "\n")
            log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}))
        if step % args.ckpt_every == 0 or last:
            save()
    totals = clock.totals(step)
    model.info.update({"steps": step, "batch_size": args.batch_size, "train_views": int(n),
                       "train_episodes": args.train_episodes, "train_hours": totals["wall_hours"],
                       "command": "python -m planners.train_goal_check " + " ".join(args.argv)})
    model.eval()
    model.save_pretrained(out / "final")
    write_text_atomic(out / "final" / "TRAINING.json", json.dumps(totals, indent=1) + "\n")
    return totals


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m planners.train_goal_check", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/goalcheck")
    ap.add_argument("--train-episodes", type=int, default=2000)
    ap.add_argument("--val-episodes", type=int, default=200)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip-lr-scale", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--pos-weight", type=float, default=1.0)
    ap.add_argument("--visible-weight", type=float, default=0.5)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-clip", default=None, help="MiniLM-text CLIP to start from (default: shipped clip-minilm)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-only", action="store_true", help="render the data sets and stop")
    ap.add_argument("--eval-only", default=None, help="a saved goal-check directory to evaluate")
    args = ap.parse_args(argv)
    args.argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    torch.set_num_threads(args.threads)
    if args.data_only:
        out = Path(args.out)
        load_or_build(out / "train.npz", "train", args.train_episodes, args.seed)
        load_or_build(out / "val.npz", "val", args.val_episodes, args.seed + 1)
        return
    if args.eval_only:
        model = load_goal_check(args.eval_only)
        val = load_or_build(Path(args.out) / "val.npz", "val", args.val_episodes, args.seed + 1)
        print(json.dumps(evaluate(model, val), indent=1))
    else:
        train(args)


if __name__ == "__main__":
    main()
