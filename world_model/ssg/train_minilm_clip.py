"""Train the MiniLM-text CLIP (``world_model.ssg.minilm_clip``) on rendered views with template and
paraphrased captions and relation hard negatives.

    OMP_NUM_THREADS=1 python -m world_model.ssg.train_minilm_clip --out runs/clip/minilm --minutes 45
    python -m world_model.ssg.train_minilm_clip --eval-only shipped       # clip-small on the same val views
    python -m world_model.ssg.train_minilm_clip --compare runs/clip/minilm/clip-minilm shipped   # paired bootstrap
    python -m world_model.ssg.train_minilm_clip --text-match small minilm   # free wording vs templates, text side

1. **Data**: ``clip_data.build_split_chunked`` renders ``train_scenes`` x ``views_per_scene``
   train views (cached in chunks under ``<out>/data``; a killed render resumes) and the val views
   that the shipped clip-small's held-out recall used (30 scenes x 30 views, seed 0: the same 875
   images and captions). Each view keeps its caption's spec (``specs``).
2. **Captions**: per train view, the rendered caption (half grammar-instruction, half caption
   wording) and one paraphrase of its spec (``envs.paraphrase.paraphrase(spec, [seed, 1,
   crc32(spec)])``: views with the same spec share it, which halves the strings to encode); per caption
   with a directional relation, the mirrored caption (``flip_relation`` for the template,
   ``paraphrase(mirror(spec), same seed)`` for the paraphrase: the same sentence with the relation
   reversed) as a hard negative.
3. **Text embeddings** are precomputed once with the frozen MiniLM and cached in
   ``<out>/text_cache.npz`` (float16; appended in chunks, so a killed run keeps what it encoded).
4. **Training**: symmetric InfoNCE with soft targets for equal captions, the hard negatives in the
   image->text softmax (``clip.clip_loss``); each view shows its paraphrase with probability
   ``p_paraphrase``. The vision tower starts from the shipped clip-small (``init_from``). AdamW with
   diffusers' ``lr_schedule`` (warm-up + cosine over ``steps``). The loop is the project's
   (``world_model.training``): Accelerate (one process), a checkpoint in ``<out>/ckpt/step_*`` (model,
   head, optimiser, schedule, generators; the newest ``keep_checkpoints`` kept, written atomically) at
   every evaluation and every ``ckpt_minutes``, the same command resumes from the newest, and
   ``<out>/training.json`` holds the steps, pairs seen and wall seconds over every invocation;
   ``--minutes`` stops (and exports) once that much training time is reached, over all invocations.
5. **Held-out recall** on the val views, with their rendered captions (comparable to clip-small's
   TRAINING.json figure) and with paraphrased captions (``paraphrase(spec, [seed, 2, i])``),
   plus relation accuracy; logged to ``<out>/log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from envs.atomic import write_dir, write_text_atomic
from world_model.metrics import bootstrap_mean
from world_model.ssg.clip import clip_loss


@dataclass
class MiniLMClipTrainConfig:
    out: str = "runs/clip/minilm"
    train_scenes: int = 1500
    views_per_scene: int = 60
    val_scenes: int = 30  # 30 x 30, seed 0: clip-small's held-out views
    val_views: int = 30
    image_size: int = 64
    init_from: str = "shipped"  # "shipped" = the shipped clip-small's vision tower; "" = random; or a CLIP dir
    hidden: int = 512  # text head width
    steps: int = 1500
    batch_size: int = 128
    lr_vision: float = 2e-4
    lr_head: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    p_paraphrase: float = 0.5
    hard_negatives: bool = True
    max_shift: int = 4
    eval_every: int = 250
    ckpt_minutes: float = 5.0
    keep_checkpoints: int = 2  # newest <out>/ckpt/step_* kept
    lr_schedule: str = "cosine"  # diffusers.optimization.get_scheduler name (warm-up over `warmup` steps)
    minutes: float = 0.0  # stop after this much training wall time, over all invocations (0 = run all steps)
    threads: int = 1
    seed: int = 0
    export: str = ""  # also save the final model here

    @classmethod
    def from_dict(cls, d: dict) -> "MiniLMClipTrainConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown MiniLM CLIP training options {bad}; known: {sorted(known)}")
        return cls(**d)


def _para_seed(spec_json: str, i: int, seed: int, stream: int, per_spec: bool) -> list[int]:
    return [seed, stream, zlib.crc32(spec_json.encode()) if per_spec else i]


def paraphrased_captions(specs: np.ndarray, seed: int, stream: int, per_spec: bool = False) -> list[str]:
    """One paraphrase per view: ``paraphrase(spec_i, [seed, stream, i])``; ``per_spec``: views with the
    same caption spec share one paraphrase (seed from the spec's crc32; fewer strings to encode)."""
    from envs.paraphrase import paraphrase
    from world_model.ssg.clip_data import CaptionSpec

    return [paraphrase(CaptionSpec.from_dict(json.loads(str(s))).instruction_spec(),
                       _para_seed(str(s), i, seed, stream, per_spec)) for i, s in enumerate(specs)]


def mirrored_paraphrases(specs: np.ndarray, seed: int, stream: int, per_spec: bool = False) -> list[str | None]:
    """The same paraphrases with the directional relation reversed (None where there is none)."""
    from envs.paraphrase import mirror, paraphrase
    from world_model.ssg.clip_data import CaptionSpec

    out: list[str | None] = []
    for i, s in enumerate(specs):
        m = mirror(CaptionSpec.from_dict(json.loads(str(s))).instruction_spec())
        out.append(None if m is None else paraphrase(m, _para_seed(str(s), i, seed, stream, per_spec)))
    return out


class TextTable:
    """Unique strings -> rows of a float16 sentence-embedding matrix, cached on disk in chunks."""

    def __init__(self, path: Path, encoder, log=print):
        self.path, self.encoder, self.log = Path(path), encoder, log
        self.index: dict[str, int] = {}
        self.rows: list[np.ndarray] = []
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as z:
                for t, e in zip(z["texts"], z["emb"]):
                    self.index[str(t)] = len(self.rows)
                    self.rows.append(e)
            self.log(f"text cache: {len(self.rows)} embeddings from {self.path}")

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, texts=np.asarray(list(self.index), dtype=str), emb=np.stack(self.rows))
        tmp.replace(self.path)

    def add(self, texts, chunk: int = 4096) -> None:
        todo = [t for t in dict.fromkeys(str(x) for x in texts if x is not None) if t not in self.index]
        todo.sort(key=len)  # batches of similar length: little padding
        t0 = time.time()
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            emb = self.encoder.encode(part).numpy()
            for t, e in zip(part, emb):
                self.index[t] = len(self.rows)
                self.rows.append(np.asarray(e, np.float16))
            self._save()
            done = i + len(part)
            self.log(f"encoded {done}/{len(todo)} captions with MiniLM ({done / (time.time() - t0):.0f}/s)")

    def ids(self, texts) -> np.ndarray:
        return np.asarray([-1 if t is None else self.index[str(t)] for t in texts], np.int64)

    def matrix(self) -> torch.Tensor:
        return torch.from_numpy(np.stack(self.rows).astype(np.float32))


@torch.no_grad()
def evaluate(clip, val: dict, seed: int) -> dict:
    """Held-out recall with the rendered captions (as clip-small's figure), with paraphrased captions,
    and relation accuracy (rendered captions vs their mirrored version)."""
    from world_model.ssg.train_clip import evaluate_recall, evaluate_relations

    res = {k: v for k, v in evaluate_recall(clip, val["images"], val["captions"]).items()}
    res.update(evaluate_relations(clip, val["images"], val["captions"]))
    if "specs" in val:
        para = np.asarray(paraphrased_captions(val["specs"], seed, 2), dtype=str)
        res.update({f"para_{k}": v for k, v in evaluate_recall(clip, val["images"], para).items()})
    clip.train()
    return res


@torch.no_grad()
def image_hits(clip, images: np.ndarray, captions: np.ndarray, ks=(1, 5), batch: int = 256) -> dict[str, np.ndarray]:
    """Per-image image->text hits (N,) at each k against the distinct captions (``evaluate_recall``'s
    i2t, image by image), for paired comparisons of two CLIPs on the same views."""
    clip.eval()
    uniq, inverse = np.unique(captions, return_inverse=True)
    img = torch.cat([clip.encode_images(images[i:i + batch]) for i in range(0, len(images), batch)])
    txt = torch.cat([clip.encode_texts(list(uniq[i:i + batch])) for i in range(0, len(uniq), batch)])
    order = (img @ txt.t()).argsort(dim=1, descending=True).numpy()
    rank = (order == np.asarray(inverse).reshape(-1, 1)).argmax(1)
    return {f"i2t_r{k}": (rank < k).astype(np.float64) for k in ks}


def compare_recall(a, b, val: dict, seed: int = 0, n_boot: int = 10000) -> dict:
    """Paired bootstrap over val views of i2t R@1/R@5, A - B, with rendered and paraphrased captions."""
    rng = np.random.default_rng(seed)
    out = {}
    sets = {"": val["captions"], "para_": np.asarray(paraphrased_captions(val["specs"], seed, 2), dtype=str)}
    for prefix, caps in sets.items():
        ha, hb = image_hits(a, val["images"], caps), image_hits(b, val["images"], caps)
        for k in ha:
            d = ha[k] - hb[k]
            out[prefix + k] = {"a": float(ha[k].mean()), "b": float(hb[k].mean()), "diff": float(d.mean()),
                               "ci95": bootstrap_mean(d, n_boot, rng)[0]}
    return out


@torch.no_grad()
def text_match(clip, path=None, seed: int = 9) -> dict:
    """Text side only: how near each hand-written instruction (``envs/free_wording_val.json``) and one
    generated paraphrase of the same spec land to their own template among all the file's templates:
    R@1 (own template nearest; identical templates count as hits), mean cosine to the own template and
    to the others."""
    from envs.instructions import InstructionSpec
    from envs.paraphrase import FREE_WORDING_VAL, load_free_wording, paraphrase

    table = load_free_wording(path or FREE_WORDING_VAL)
    ids = list(table)
    tmpl = [str(table[k]["template"]) for k in ids]
    para = [paraphrase(InstructionSpec.from_dict(table[k]["spec"]), [0, seed, i]) for i, k in enumerate(ids)]
    same = torch.as_tensor(np.asarray(tmpl)[:, None] == np.asarray(tmpl)[None, :])
    t = clip.encode_texts(tmpl)
    out = {"n": len(ids)}
    for name, texts in (("free", [str(table[k]["free"]) for k in ids]), ("paraphrase", para)):
        s = clip.encode_texts(texts) @ t.T
        own = s.diag()
        out[name] = {"r1": float(same[torch.arange(len(ids)), s.argmax(1)].float().mean()),
                     "cos_own": float(own.mean()),
                     "cos_others": float(((s * ~same).sum(1) / (~same).sum(1).clamp_min(1)).mean())}
    return out


def _groups(clip, cfg: MiniLMClipTrainConfig) -> list[dict]:
    vis_decay, vis_no, head_decay, head_no = [], [], [], []
    for name, p in clip.model.named_parameters():
        (vis_decay if p.ndim >= 2 and "embedding" not in name else vis_no).append(p)
    for name, p in clip.text_head.named_parameters():
        (head_decay if p.ndim >= 2 else head_no).append(p)
    return [{"params": vis_decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr_vision},
            {"params": vis_no, "weight_decay": 0.0, "lr": cfg.lr_vision},
            {"params": head_decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr_head},
            {"params": head_no + [clip.logit_scale_param], "weight_decay": 0.0, "lr": cfg.lr_head}]


def main(cfg: MiniLMClipTrainConfig | dict | None = None, log=None) -> dict:
    """Train (or resume) and return the final record (held-out metrics, steps, training minutes).
    ``log``: where progress lines go besides ``<out>/train.log`` (default: print)."""
    from world_model.ssg.clip_data import build_split_chunked, flip_relation
    from world_model.ssg.minilm_clip import build_minilm_clip
    from world_model.ssg.train_clip import _augment
    from world_model.training import (GeneratorState, RunClock, drop_rows_after, make_accelerator, make_schedule,
                                      resume_checkpoint, save_checkpoint, train_logger)

    cfg = MiniLMClipTrainConfig.from_dict(cfg) if isinstance(cfg, dict) else (cfg or MiniLMClipTrainConfig())
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    acc = make_accelerator(out)
    if acc.num_processes > 1:
        raise ValueError("the MiniLM CLIP trainer runs in one process (its model is called through MiniLMClip's "
                         "methods, which DDP does not wrap): run it without `accelerate launch`")
    out.mkdir(parents=True, exist_ok=True)
    log = train_logger(acc, out / "train.log", echo=log or (lambda m: print(m, flush=True)))
    write_text_atomic(out / "config.json", json.dumps(asdict(cfg), indent=1) + "\n")

    val = build_split_chunked("val", cfg.val_scenes, cfg.val_views, out / "data", seed=cfg.seed,
                              image_size=cfg.image_size, log=log)
    train = build_split_chunked("train", cfg.train_scenes, cfg.views_per_scene, out / "data", seed=cfg.seed,
                                image_size=cfg.image_size, chunk=100, log=log)
    n = len(train["images"])
    log(f"{n} train pairs from {cfg.train_scenes} scenes, {len(val['images'])} val pairs")
    if n < cfg.batch_size:
        raise ValueError(f"only {n} training pairs for batch_size {cfg.batch_size}: render more scenes")

    init = None if cfg.init_from == "shipped" else cfg.init_from
    clip = build_minilm_clip(init_from=init, hidden=cfg.hidden, seed=cfg.seed)

    # captions and their hard negatives, as rows of the cached MiniLM embedding table
    templ = [str(c) for c in train["captions"]]
    para = paraphrased_captions(train["specs"], cfg.seed, 1, per_spec=True)
    templ_neg = [flip_relation(c) for c in templ] if cfg.hard_negatives else [None] * n
    para_neg = mirrored_paraphrases(train["specs"], cfg.seed, 1, per_spec=True) if cfg.hard_negatives else [None] * n
    table = TextTable(out / "text_cache.npz", clip.encoder, log=log)
    # the most useful strings first, so a partial cache already covers every view
    table.add(templ)
    table.add(para)
    table.add([t for t in templ_neg + para_neg if t is not None])
    emb = table.matrix()
    ids = np.stack([table.ids(templ), table.ids(para)], 1)  # (n, 2): rendered caption, paraphrase
    neg = np.stack([table.ids(templ_neg), table.ids(para_neg)], 1)  # -1: none

    groups = _groups(clip, cfg)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg.lr_vision, betas=(0.9, 0.98), eps=1e-6)
    sched = make_schedule(cfg.lr_schedule, opt, cfg.warmup, cfg.steps)  # scales each group's own rate
    gen = torch.Generator().manual_seed(cfg.seed)  # augmentation
    rng = np.random.default_rng(cfg.seed)  # batches and caption choice
    clip, opt, sched = acc.prepare(clip, opt, sched)
    acc.register_for_checkpointing(GeneratorState(gen))
    acc.register_for_checkpointing(GeneratorState(rng))
    step = resume_checkpoint(acc, out, cfg.seed, log)
    if step is None:
        from world_model.ssg.train_clip import LEGACY_CHECKPOINT, resume_legacy

        step, trained_s = resume_legacy(out / LEGACY_CHECKPOINT, clip, opt, sched, gen, rng, log)
        clock = RunClock({"steps": step, "wall_seconds": trained_s} if step else None, cfg.batch_size)
    else:
        clock = RunClock.resume(out, step, cfg.batch_size)
    step = step or 0

    def save() -> dict:
        totals = clock.totals(step)
        save_checkpoint(acc, out, step, cfg.keep_checkpoints, state=totals)
        clock.write(out, step, totals)
        write_dir(out / "clip-minilm", clip.save_pretrained)
        return totals

    images = torch.from_numpy(train["images"])
    drop_rows_after(out / "log.jsonl", step)  # rows of steps this run does again (a killed run's)
    logf = (out / "log.jsonl").open("a")
    clip.train()
    metrics: dict = {}
    t_start, t_ckpt, seen = time.time(), time.time(), 0
    while step < cfg.steps:
        if cfg.minutes and clock.wall_seconds() >= cfg.minutes * 60:
            log(f"stopping at step {step}: {clock.wall_seconds() / 60:.1f} min of training (--minutes {cfg.minutes})")
            break
        idx = rng.choice(n, cfg.batch_size, replace=False)
        which = (rng.random(cfg.batch_size) < cfg.p_paraphrase).astype(np.int64)
        t_ids = ids[idx, which]
        n_ids = neg[idx, which]
        n_ids = n_ids[n_ids >= 0]
        same = torch.as_tensor(t_ids[:, None] == t_ids[None, :], dtype=torch.float32)
        targets = same / same.sum(1, keepdim=True)
        pix = _augment(clip.preprocess(images[idx]), cfg.max_shift, gen)
        txt = clip.text_embeds_from_sentences(emb[np.concatenate([t_ids, n_ids])])
        loss = clip_loss(clip.image_embeds(pix), txt[:len(t_ids)], clip.logit_scale(), targets,
                         negative_text_embeds=txt[len(t_ids):] if len(n_ids) else None)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            clip.logit_scale_param.clamp_(0, math.log(100))
        step += 1
        seen += cfg.batch_size
        if step % 10 == 0:
            log(f"step {step} loss {loss.item():.4f} scale {clip.logit_scale().item():.1f} "
                f"{seen / (time.time() - t_start):.1f} img/s")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = evaluate(clip, val, cfg.seed)
            rec = {"step": step, "loss": loss.item(), "train_minutes": clock.wall_seconds() / 60, **metrics}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(json.dumps(rec))
            save()
            t_ckpt = time.time()
        elif time.time() - t_ckpt > cfg.ckpt_minutes * 60:
            save()
            t_ckpt = time.time()
            log(f"checkpoint at step {step}")
    trained_s = clock.wall_seconds()
    metrics = evaluate(clip, val, cfg.seed)
    rec = {"step": step, "final": True, "train_minutes": trained_s / 60, "train_pairs": n, **metrics}
    logf.write(json.dumps(rec) + "\n")
    logf.close()
    save()
    if cfg.export:
        write_dir(cfg.export, clip.save_pretrained)
    write_text_atomic(out / "final_metrics.json", json.dumps(rec, indent=2) + "\n")
    return rec


def _cli(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(MiniLMClipTrainConfig):
        typ = (lambda v: str(v).lower() in ("1", "true", "yes")) if isinstance(f.default, bool) else type(f.default)
        p.add_argument(f"--{f.name.replace('_', '-')}", type=typ, default=None, help=f"default {f.default!r}")
    p.add_argument("--eval-only", default="", help="a CLIP directory (either kind; 'shipped' = clip-small) to "
                   "evaluate on the val views (rendered and paraphrased captions) instead of training")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="paired bootstrap of i2t R@1/R@5, A - B, over the val views ('shipped' = clip-small)")
    p.add_argument("--text-match", nargs="+", metavar="CLIP", default=None,
                   help="text side only: hand-written and paraphrased val instructions vs their templates "
                        "(names: small, minilm, or CLIP dirs)")
    a = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    p_text = a.pop("text_match", None)
    if p_text:
        from world_model.ssg.clip import load_clip, resolve_clip

        torch.set_num_threads(int(a.get("threads", 1)))
        print(json.dumps({c: text_match(load_clip(resolve_clip(c))) for c in p_text}, indent=1))
        return
    p_compare = a.pop("compare", None)
    eval_only = a.pop("eval_only", "")
    if p_compare:
        from world_model.ssg.clip import load_clip
        from world_model.ssg.clip_data import build_split_chunked

        cfg = MiniLMClipTrainConfig(**a)
        torch.set_num_threads(cfg.threads)
        val = build_split_chunked("val", cfg.val_scenes, cfg.val_views, Path(cfg.out) / "data", seed=cfg.seed,
                                  image_size=cfg.image_size)
        clips = [load_clip(None if c == "shipped" else c) for c in p_compare]
        print(json.dumps({"a": p_compare[0], "b": p_compare[1], **compare_recall(*clips, val, cfg.seed)}, indent=1))
        return
    if eval_only:
        from world_model.ssg.clip import load_clip
        from world_model.ssg.clip_data import build_split_chunked

        cfg = MiniLMClipTrainConfig(**a)
        torch.set_num_threads(cfg.threads)
        val = build_split_chunked("val", cfg.val_scenes, cfg.val_views, Path(cfg.out) / "data", seed=cfg.seed,
                                  image_size=cfg.image_size)
        res = evaluate(load_clip(None if eval_only == "shipped" else eval_only), val, cfg.seed)
        print(json.dumps({"clip": eval_only, **res}, indent=2))
        return
    print(json.dumps(main(MiniLMClipTrainConfig(**a)), indent=2))


if __name__ == "__main__":
    _cli()
