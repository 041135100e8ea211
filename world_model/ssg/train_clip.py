"""Train the in-project small CLIP on rendered views and generated captions.

    python -m world_model.ssg.train_clip --out runs/clip/small --steps 6000
    python -m world_model.ssg.train_clip --preset weak_clip      # configs/ssg/weak_clip.yaml: 2 layers x 64

Symmetric InfoNCE (``clip_loss``) with soft targets so that identical captions
in a batch are not each other's negatives; AdamW with diffusers' ``lr_schedule``
(warm-up, then cosine decay); held-out image->text and text->image recall@1/@5 on the
val-split scenes every ``eval_every`` steps, logged to ``<out>/log.jsonl``, each with a
checkpoint; the final model is written as a standard Hugging Face CLIP directory
(``<out>/clip-small``), loadable with ``world_model.ssg.clip.load_clip``. ``main(cfg)``
is what the CLI calls.

The loop is the project's (``world_model.training``): Accelerate (one process),
checkpoints in ``<out>/ckpt/step_*`` (model, optimiser, schedule, the batch and
augmentation generators; the newest ``keep_checkpoints`` kept, written atomically), the
same command resumes from the newest, and ``<out>/training.json`` holds the run's steps,
pairs seen and wall seconds over every invocation.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from envs.atomic import write_dir, write_text_atomic
from world_model.ssg.clip import (SmallClipSpec, SpatialClip, build_small_clip, build_word_tokenizer, clip_loss,
                                  grammar_vocabulary, load_clip, recall_at_k)


@dataclass
class ClipTrainConfig:
    """Hyper-parameters of small-CLIP training (one field per knob)."""

    out: str = "runs/clip/small"  # run directory: data cache, checkpoint, log, final model
    train_scenes: int = 400  # procgen train-split scenes rendered for training
    val_scenes: int = 40  # procgen val-split scenes for held-out recall
    views_per_scene: int = 40  # captioned views per scene (fewer survive the min-area filter)
    image_size: int = 64  # CLIP input resolution
    steps: int = 6000  # optimiser steps
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1  # on weight matrices only (not norms, biases, embeddings' scale)
    warmup: int = 200
    eval_every: int = 250  # steps between val recall + checkpoint
    max_shift: int = 4  # random translation augmentation, pixels (no flips: they swap left/right)
    threads: int = 1  # torch CPU threads (the machine is shared)
    seed: int = 0
    export: str = ""  # also copy the final model here (e.g. the package's shipped weights dir)
    lr_schedule: str = "cosine"  # diffusers.optimization.get_scheduler name (warm-up over `warmup` steps)
    keep_checkpoints: int = 2  # newest <out>/ckpt/step_* kept
    hard_negatives: bool = False  # add each relation caption reversed ("left of" <-> "right of") as a negative
    spec: SmallClipSpec = field(default_factory=SmallClipSpec)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipTrainConfig":
        d = dict(d)
        spec = d.pop("spec", None)
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown CLIP training options {bad}; known: {sorted(known)}")
        cfg = cls(**d)
        if spec:
            cfg.spec = SmallClipSpec(**dict(spec))
        return cfg


def load_or_build_data(cfg: ClipTrainConfig) -> tuple[dict, dict]:
    """Render (once) and cache the train/val pairs under ``<out>/data``."""
    from world_model.ssg.clip_data import build_split, load_shard, save_shard

    out = Path(cfg.out) / "data"
    shards = {}
    for split, n in (("train", cfg.train_scenes), ("val", cfg.val_scenes)):
        path = out / f"{split}_{n}x{cfg.views_per_scene}_{cfg.image_size}.npz"
        if not path.is_file():
            t0 = time.time()
            save_shard(path, build_split(split, n, cfg.views_per_scene, seed=cfg.seed, image_size=cfg.image_size))
            print(f"rendered {split} pairs -> {path} in {time.time() - t0:.0f}s", flush=True)
        shards[split] = load_shard(path)
    return shards["train"], shards["val"]


def _augment(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``max_shift`` px (replicate padding), per image."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    xp = F.pad(x, (max_shift,) * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    return torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


@torch.no_grad()
def evaluate_recall(clip: SpatialClip, images: np.ndarray, captions: np.ndarray, batch: int = 256) -> dict:
    """Held-out retrieval: images vs the set of distinct captions.

    image->text: rank all distinct captions for each image, hit if its own caption
    is in the top k. text->image: rank all images for each distinct caption, hit
    if any image with that caption is in the top k.
    """
    clip.eval()
    uniq, inverse = np.unique(captions, return_inverse=True)
    img = torch.cat([clip.encode_images(images[i:i + batch]) for i in range(0, len(images), batch)])
    txt = torch.cat([clip.encode_texts(list(uniq[i:i + batch])) for i in range(0, len(uniq), batch)])
    positives = torch.zeros(len(images), len(uniq), dtype=torch.bool)
    positives[torch.arange(len(images)), torch.as_tensor(inverse.reshape(-1))] = True
    res = recall_at_k(img @ txt.t(), (1, 5), positives)
    res.update(num_images=len(images), num_captions=len(uniq))
    return res


@torch.no_grad()
def evaluate_relations(clip: SpatialClip, images: np.ndarray, captions: np.ndarray, batch: int = 256) -> dict:
    """Held-out relation accuracy: for each image whose caption states a directional relation, does
    the image match its caption better than the same caption with the relation reversed
    (``clip_data.flip_relation``)? 0.5 = the relation words are ignored."""
    from world_model.ssg.clip_data import flip_relation

    clip.eval()
    keep = [(i, c, flip_relation(str(c))) for i, c in enumerate(captions)]
    keep = [(i, c, f) for i, c, f in keep if f is not None]
    if not keep:
        return {"relation_acc": float("nan"), "relation_n": 0}
    hits = []
    for s in range(0, len(keep), batch):
        part = keep[s:s + batch]
        img = clip.encode_images(images[[i for i, _, _ in part]])
        pos = clip.encode_texts([str(c) for _, c, _ in part])
        neg = clip.encode_texts([f for _, _, f in part])
        hits.append(((img * pos).sum(-1) > (img * neg).sum(-1)).float())
    return {"relation_acc": float(torch.cat(hits).mean()), "relation_n": len(keep)}


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


LEGACY_CHECKPOINT = "checkpoint.pt"  # the single-file checkpoint of the trainer before Accelerate


def resume_legacy(path: Path, model, opt, sched, gen: torch.Generator, rng: np.random.Generator,
                  log) -> tuple[int | None, float]:
    """Resume a run checkpointed by the earlier single-file trainer (``<out>/checkpoint.pt``: model,
    optimiser, step, generators; both CLIP trainers wrote it); returns (its step, its training
    seconds when it recorded them), or (None, 0.0) when there is none."""
    if not path.is_file():
        return None, 0.0
    from world_model.training import seek_schedule

    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["torch_rng"])
    rng.bit_generator.state = state["np_rng"]
    step = int(state["step"])
    seek_schedule(sched, step)
    log(f"resumed from {path} at step {step} (the earlier single-file checkpoint)")
    return step, float(state.get("trained_s", 0.0))


def main(cfg: ClipTrainConfig | dict | None = None) -> dict:
    """Train (or resume) and return the final val recall metrics."""
    from world_model.ssg.clip_data import flip_relation
    from world_model.training import (GeneratorState, RunClock, drop_rows_after, make_accelerator, make_schedule,
                                      resume_checkpoint, save_checkpoint, train_logger)

    cfg = ClipTrainConfig.from_dict(cfg) if isinstance(cfg, dict) else (cfg or ClipTrainConfig())
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    acc = make_accelerator(out)
    if acc.num_processes > 1:
        raise ValueError("the CLIP trainer runs in one process (its model is called through SpatialClip's "
                         "methods, which DDP does not wrap): run it without `accelerate launch`")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.json", json.dumps(asdict(cfg), indent=2))
    log = train_logger(acc, out / "train.log", echo=lambda m: print(m, flush=True))
    train, val = load_or_build_data(cfg)
    print(f"{len(train['images'])} train pairs ({len(set(train['captions']))} captions), "
          f"{len(val['images'])} val pairs", flush=True)

    tokenizer = build_word_tokenizer(grammar_vocabulary(list(train["captions"]) + list(val["captions"])),
                                     max_length=cfg.spec.max_text_len)
    clip = build_small_clip(tokenizer, cfg.spec, seed=cfg.seed)
    opt = torch.optim.AdamW(_param_groups(clip.model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = make_schedule(cfg.lr_schedule, opt, cfg.warmup, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)  # augmentation
    rng = np.random.default_rng(cfg.seed)  # batches
    clip, opt, sched = acc.prepare(clip, opt, sched)
    acc.register_for_checkpointing(GeneratorState(gen))
    acc.register_for_checkpointing(GeneratorState(rng))
    step = resume_checkpoint(acc, out, cfg.seed, log)
    if step is None:
        step, _ = resume_legacy(out / LEGACY_CHECKPOINT, clip.model, opt, sched, gen, rng, log)
        clock = RunClock({"steps": step, "wall_seconds_from": "unknown (the earlier single-file checkpoint)"}
                         if step else None, cfg.batch_size)
    else:
        clock = RunClock.resume(out, step, cfg.batch_size)
    step = step or 0

    def save(step: int, totals: dict) -> None:
        save_checkpoint(acc, out, step, cfg.keep_checkpoints, state=totals)
        clock.write(out, step, totals)
        write_dir(out / "clip-small", clip.save_pretrained)

    images = torch.from_numpy(train["images"])
    captions = train["captions"]
    drop_rows_after(out / "log.jsonl", step)  # rows of steps this run does again (a killed run's)
    logf = (out / "log.jsonl").open("a")
    clip.model.train()
    t0, seen = time.time(), 0
    metrics: dict = {}
    n = len(images)
    if n < cfg.batch_size:
        raise ValueError(f"only {n} training pairs for batch_size {cfg.batch_size}: render more scenes")
    while step < cfg.steps:
        idx = rng.choice(n, cfg.batch_size, replace=False)
        pix = _augment(clip.preprocess(images[idx]), cfg.max_shift, gen)
        caps = captions[idx]
        same = torch.as_tensor(caps[:, None] == caps[None, :], dtype=torch.float32)
        targets = same / same.sum(1, keepdim=True)
        negs = [f for f in (flip_relation(str(c)) for c in caps) if f is not None] if cfg.hard_negatives else []
        tok = clip.tokenize(list(caps) + negs)
        txt = clip.text_embeds(**tok)
        loss = clip_loss(clip.image_embeds(pix), txt[:len(caps)], clip.logit_scale(), targets,
                         negative_text_embeds=txt[len(caps):] if negs else None)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(clip.model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():  # CLIP's clamp: temperature at most 100
            clip.model.logit_scale.clamp_(0, math.log(100))
        step += 1
        seen += cfg.batch_size
        if step % 25 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{seen / (time.time() - t0):.1f} img/s", flush=True)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = evaluate_recall(clip, val["images"], val["captions"])
            metrics.update(evaluate_relations(clip, val["images"], val["captions"]))
            clip.model.train()
            totals = clock.totals(step)
            rec = {"step": step, "loss": loss.item(), "time_s": time.time() - t0,
                   "wall_seconds": totals["wall_seconds"], **metrics}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            print(json.dumps(rec), flush=True)
            save(step, totals)
            log(f"checkpoint step_{step:08d}")
    logf.close()
    if not metrics:
        metrics = evaluate_recall(clip, val["images"], val["captions"])
        metrics.update(evaluate_relations(clip, val["images"], val["captions"]))
    write_dir(out / "clip-small", clip.save_pretrained)
    if cfg.export:
        write_dir(cfg.export, clip.save_pretrained)
    write_text_atomic(out / "final_metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _cli(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="",
                   help="start from configs/ssg/<preset>.yaml's train_clip block (e.g. default, weak_clip); "
                        "flags given override it")
    for f in fields(ClipTrainConfig):
        if f.name == "spec":
            continue
        typ = (lambda v: str(v).lower() in ("1", "true", "yes")) if isinstance(f.default, bool) else type(f.default)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=None, help=f"default {f.default!r}")
    for f in fields(SmallClipSpec):  # model size: --spec-vision-layers 2 --spec-vision-width 64 ...
        p.add_argument(f"--spec-{f.name.replace('_', '-')}", dest=f"spec_{f.name}", type=int, default=None,
                       help=f"SmallClipSpec.{f.name} (default {f.default})")
    p.add_argument("--eval-only", default="", help="a CLIP directory to evaluate on the val pairs instead of training")
    a = vars(p.parse_args(argv))
    eval_only, preset = a.pop("eval_only"), a.pop("preset")
    base: dict = {}
    if preset:
        from world_model.ssg.train_adapter import load_preset

        base = dict(load_preset(preset).get("train_clip") or {})
    cfg = ClipTrainConfig.from_dict(base)
    for k, v in a.items():
        if v is None:
            continue
        if k.startswith("spec_"):
            setattr(cfg.spec, k[len("spec_"):], v)
        else:
            setattr(cfg, k, v)
    if eval_only:
        torch.set_num_threads(cfg.threads)
        _, val = load_or_build_data(cfg)
        model = load_clip(eval_only)
        res = evaluate_recall(model, val["images"], val["captions"])
        res.update(evaluate_relations(model, val["images"], val["captions"]))
        print(json.dumps(res, indent=2))
        return
    print(json.dumps(main(cfg), indent=2))


if __name__ == "__main__":
    _cli()
