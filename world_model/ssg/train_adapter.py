"""Train the SSG-Adapter and the prompt pooler on a frozen Video4Spatial backbone.

    python -m world_model.ssg.train_adapter [preset=default|no_attention_mask|no_mlp_mask|weak_clip] [key=value ...]
    spatialnav train-ssg [train_ssg.preset=...] [train_ssg.<key>=value ...]

Options: ``configs/ssg/<preset>.yaml`` (its ``train_adapter:`` block, plus the
preset's ``clip``, ``prompter`` and ``adapter.lam``), then the overrides; every key
is documented on :class:`AdapterTrainConfig`.

What trains: the adapter's processors (``W_k_ssg``, ``W_v_ssg``, ``norm_k_ssg`` in
every block) and the prompter's pooler, projector and null prompt. The backbone
(the whole Video4Spatial model, its null text included) and the CLIP are frozen;
``freeze_backbone`` leaves ``requires_grad`` on the adapter only.

The objective, its noise-level sampling and its condition dropout are
``world_model.train``'s own functions (``sample_t``, ``condition_dropout``,
``flow_matching_loss``, ``encode_text_cached``), on the same data
(``ContextVideoDataset``). The SSG prompt of a sample is computed from its real
context frames and instruction when both are kept; a sample whose context or
instruction was dropped gets the learned null prompt instead, which is exactly
what the null branches of CFG get at sampling time (docs/ssg.md).

The run starts from a snapshot of the backbone pipeline (``out_dir/backbone``),
so a backbone that keeps training elsewhere does not change a run under way or
its resume. Accelerate (CPU, or ``accelerate launch`` on GPUs), optional bf16
autocast, checkpoints every ``ckpt_every_minutes`` / ``ckpt_every_steps`` in
``out_dir/ckpt`` (a restarted run resumes from the newest), a log in
``out_dir/train.log`` (with the backbone-only loss on the same batch, noise and
t every ``log_every`` steps: the gain the SSG branch gives), the run's totals (steps,
samples, wall seconds over every invocation) in ``out_dir/training.json`` and in the
exported checkpoint's ``training`` block (``world_model.training``), and the SSG
checkpoint (EMA weights, ``Video4SpatialPipeline.load_ssg`` format) exported to
``out_dir/ssg`` at every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from envs.atomic import replace_dir, write_text_atomic
from world_model.ssg.checkpoint import DEFAULT_PROMPTER

PRESETS = ("default", "no_attention_mask", "no_mlp_mask", "weak_clip")
BACKBONE_CANDIDATES = ("runs/wm/pipeline", str(Path(__file__).resolve().parents[1] / "weights" / "v4s-small"))


@dataclass
class AdapterTrainConfig:
    """Adapter training options (``configs/ssg/default.yaml`` -> ``train_adapter:``).

    Attributes:
        preset: the configs/ssg preset these options came from (recorded in the checkpoint).
        pipeline: frozen backbone pipeline dir; None = runs/wm/pipeline if present, else the
            shipped world_model/weights/v4s-small.
        clip: CLIP directory (None = the shipped small CLIP).
        prompter: SpatialSignalPrompter kwargs (num_tokens, layers, keep_ratio, use_attention_mask,
            use_mlp_mask, hidden_dim, num_heads, pooling).
        lam: adapter scale lambda.
        data_dir: collected world-model data (``spatialnav collect``).
        out_dir: run directory (backbone snapshot, ckpt/, train.log, ssg/).
        num_context: K context frames; num_target / num_bbox: None = the pipeline's.
        contiguous_context: the contiguous-context ablation of the data loader.
        batch_size, lr, weight_decay, warmup_steps, grad_clip: AdamW (linear warm-up, then constant).
        max_steps: total optimiser steps (across resumes); max_minutes: stop this invocation after it.
        t_sampling, logit_mean, logit_std, shift (None = the pipeline scheduler's shift): noise levels,
            as world_model.train.
        p_drop_context, p_drop_text, p_drop_both: condition dropout, as world_model.train.
        ema_decay: EMA of the trained parameters (0 = none); the export uses the EMA weights.
        ckpt_every_steps, ckpt_every_minutes, keep_checkpoints, log_every: checkpoints and log.
        num_workers: DataLoader workers; mixed_precision: "no" | "bf16" | "fp16" (Accelerate autocast).
        seed; num_threads: torch CPU threads (None: torch's default).
        prompt_contrast: weight of the prompt-contrast term (0 = off, the plain objective). On the rows
            that keep their condition, each sample's flow-matching error with its own prompt ``e_own`` is
            compared with its error under another kept sample's prompt ``e_shuf`` (same noise, t, context
            and text; only the SSG tokens swapped), and ``prompt_contrast * mean(relu(e_own - e_shuf +
            contrast_margin))`` is added to the loss. The plain objective can be lowered by a correction
            that ignores the prompt's content (docs/ssg.md, the shuffle control); this term only falls
            when the sample's own prompt helps more than a wrong one. One extra forward/backward on the
            kept rows (~1.7x the step time).
        contrast_margin: the hinge's margin, in units of the per-sample mean squared velocity error.
        bbox_weight: weight of the bbox frames against the path frames in the objective (and in the
            contrast term's errors); the weights are normalised to mean 1, so 1.0 is the plain
            objective. The "where" an SSG prompt carries shows mostly in the bbox frames' red box;
            the logged ``loss``/``gain`` stay the unweighted error, comparable across runs.
        train_prompter: False freezes the prompter's pooler and projector at their (seeded)
            initialisation, so only the adapter and the null prompt train. Trained prompters collapse
            to one prompt for every sample (docs/experiments/2026-12-04-ssg-why-the-prompt-is-not-read.md);
            a frozen one keeps the spread of its CLIP features.
        oracle_relevance: a diagnostic, not a model to deploy: the prompter reads the true target
            masks of the context frames (re-rendered at ``oracle_mask_size``, the collection's frame
            size) in place of CLIP's relevance (``world_model.ssg.oracle.OracleRelevance``), to
            measure what a perfect "where" signal buys the adapter. Recorded in the checkpoint.
    """

    preset: str = "default"
    pipeline: str | None = None
    clip: str | None = None
    prompter: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PROMPTER))
    lam: float = 1.0
    data_dir: str = "runs/wm/data/train"
    out_dir: str = "runs/ssg/default"
    num_context: int = 8
    num_target: int | None = None
    num_bbox: int | None = None
    contiguous_context: bool = False
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    max_steps: int = 3000
    max_minutes: float | None = None
    t_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float | None = None
    p_drop_context: float = 0.1
    p_drop_text: float = 0.1
    p_drop_both: float = 0.1
    ema_decay: float = 0.999
    ckpt_every_steps: int = 500
    ckpt_every_minutes: float = 10.0
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 0
    mixed_precision: str = "no"
    seed: int = 0
    num_threads: int | None = None
    prompt_contrast: float = 0.0
    contrast_margin: float = 1e-3
    bbox_weight: float = 1.0
    train_prompter: bool = True
    oracle_relevance: bool = False
    oracle_mask_size: int = 64

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AdapterTrainConfig":
        from world_model.training import check_keys

        check_keys(cls, d, "SSG adapter training")
        d = dict(d)
        if d.get("prompter") is not None:
            p = dict(DEFAULT_PROMPTER)
            p.update(d["prompter"])
            unknown = sorted(set(p) - set(DEFAULT_PROMPTER))
            if unknown:
                raise ValueError(f"unknown prompter key(s) {unknown}; valid: {sorted(DEFAULT_PROMPTER)}")
            d["prompter"] = p
        return cls(**{k: v for k, v in d.items() if not (k == "prompter" and v is None)})


# ----------------------------------------------------------------------------- config
def ssg_config_dir() -> Path:
    env = os.environ.get("SPATIALNAV_CONFIG_DIR")
    return (Path(env) if env else Path(__file__).resolve().parents[2] / "configs") / "ssg"


def load_preset(preset: str = "default") -> dict[str, Any]:
    """``configs/ssg/<preset>.yaml`` with its Hydra-style ``defaults`` list applied (or a .yaml path)."""
    from omegaconf import OmegaConf

    path = Path(preset) if str(preset).endswith((".yaml", ".yml")) else ssg_config_dir() / f"{preset}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in ssg_config_dir().glob("*.yaml"))
        raise FileNotFoundError(f"no SSG preset {preset!r} ({path} missing); presets: {have or list(PRESETS)}")
    node = OmegaConf.load(path)
    defaults = list(node.pop("defaults", []) or [])
    merged = OmegaConf.create({})
    self_done = False
    for entry in defaults:
        if entry == "_self_":
            merged, self_done = OmegaConf.merge(merged, node), True
        else:
            merged = OmegaConf.merge(merged, OmegaConf.create(load_preset(str(entry))))
    if not self_done:
        merged = OmegaConf.merge(merged, node)
    return OmegaConf.to_container(merged, resolve=True)


def resolve_config(preset: str = "default", overrides: dict[str, Any] | None = None) -> AdapterTrainConfig:
    """A preset's ``train_adapter`` block + its ``clip``/``prompter``/``adapter.lam``, then ``overrides``."""
    from omegaconf import OmegaConf

    d = load_preset(preset)
    flat = dict(d.get("train_adapter") or {})
    flat["clip"] = d.get("clip")
    flat["prompter"] = dict(d.get("prompter") or {})
    flat["lam"] = float((d.get("adapter") or {}).get("lam", 1.0))
    flat["preset"] = str(preset)
    merged = OmegaConf.merge(OmegaConf.create(flat), OmegaConf.create(dict(overrides or {})))
    return AdapterTrainConfig.from_dict(OmegaConf.to_container(merged, resolve=True))


def config_from_any(cfg) -> AdapterTrainConfig:
    """From an AdapterTrainConfig, a flat mapping (optionally with ``preset``), or the CLI's composed config
    (its ``train_ssg`` node: ``preset`` + keys; a top-level ``out_dir`` when set)."""
    from omegaconf import OmegaConf

    if isinstance(cfg, AdapterTrainConfig):
        return cfg
    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    d = dict(cfg or {})
    top_out = None
    if "train_ssg" in d:  # the spatialnav CLI's composed config
        top_out = d.get("out_dir")
        d = dict(d["train_ssg"] or {})
    preset = str(d.pop("preset", None) or "default")
    if top_out:
        d["out_dir"] = top_out
    return resolve_config(preset, d)


def resolve_backbone(path: str | None) -> str:
    if path:
        if not (Path(path) / "model_index.json").is_file():
            raise FileNotFoundError(f"no Video4Spatial pipeline at {path} (model_index.json missing)")
        return str(path)
    for cand in BACKBONE_CANDIDATES:
        if (Path(cand) / "model_index.json").is_file():
            return cand
    raise FileNotFoundError(f"no backbone pipeline found at {list(BACKBONE_CANDIDATES)}: train one with "
                            f"`spatialnav train world_model=small` or pass pipeline=<dir>")


# ----------------------------------------------------------------------------- the trained module
class SSGTrainModule(nn.Module):
    """The frozen model + the prompter; ``forward`` returns the flow-matching loss with SSG tokens.

    ``keep`` (B,) bool marks samples whose context and instruction were both kept by condition
    dropout: they get the prompt of their real frames and instruction, the rest the null prompt.
    """

    def __init__(self, model: nn.Module, prompter: nn.Module, num_bbox: int = 0, bbox_weight: float = 1.0):
        super().__init__()
        if bbox_weight <= 0:
            raise ValueError(f"bbox_weight must be > 0, got {bbox_weight}")
        self.model = model
        self.prompter = prompter
        self.num_bbox, self.bbox_weight = int(num_bbox), float(bbox_weight)

    def frame_weights(self, num_frames: int, device) -> torch.Tensor | None:
        """(1, 1, F, 1, 1) per-frame weights of the objective (mean 1), or None for the plain mean."""
        if self.num_bbox <= 0 or self.bbox_weight == 1.0:
            return None
        w = torch.ones(num_frames, device=device)
        w[num_frames - self.num_bbox:] = self.bbox_weight
        return (w / w.mean()).view(1, 1, -1, 1, 1)

    def ssg_tokens(self, frames, instructions: list[str], ctx_idx: torch.Tensor, keep: torch.Tensor,
                   relevance: torch.Tensor | None = None, poses=None) -> torch.Tensor:
        from world_model.ssg.prompting import context_positions

        b = ctx_idx.shape[0]
        tokens = self.prompter.null_prompt(b)
        rows = keep.nonzero().flatten()
        if len(rows):
            r = rows.cpu()
            real = self.prompter(frames[r], [instructions[i] for i in r.tolist()],
                                 context_positions(ctx_idx[rows]).to(ctx_idx.device),
                                 None if relevance is None else relevance[r],
                                 None if poses is None else torch.as_tensor(np.asarray(poses))[r])
            tokens = tokens.index_put((rows,), real.to(tokens.dtype))
        return tokens

    def forward(self, ctx, tgt, text, ctx_idx, t, noise, frames, instructions, keep, relevance=None,
                contrast: float = 0.0, margin: float = 1e-3, poses=None) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss and its parts: ``fm`` (flow matching, SSG on) and, when ``contrast`` > 0
        and at least two rows keep their condition, ``own`` / ``shuffled`` (mean error of the kept rows
        with their own and with a rolled prompt) and ``hinge`` (see ``AdapterTrainConfig.prompt_contrast``)."""
        from world_model.ssg.adapter import append_ssg_tokens
        from world_model.train import flow_matching_loss

        tokens = self.ssg_tokens(frames, instructions, ctx_idx, keep, relevance, poses)
        sq = flow_matching_loss(self.model, ctx, tgt, append_ssg_tokens(text, tokens), ctx_idx, t, noise=noise,
                                reduction="none")
        w = self.frame_weights(sq.shape[2], sq.device)
        weigh = (lambda x: x) if w is None else (lambda x: x * w)
        fm = sq.mean()
        objective = weigh(sq).mean()
        parts = {"fm": float(fm.detach())}
        rows = keep.nonzero().flatten()
        if contrast <= 0 or len(rows) < 2:
            return objective, parts
        e_own = weigh(sq[rows]).flatten(1).mean(1)
        wrong = tokens[rows.roll(1)]  # every kept row gets the next kept row's prompt
        e_shuf = weigh(flow_matching_loss(self.model, ctx[rows], tgt[rows], append_ssg_tokens(text[rows], wrong),
                                          ctx_idx[rows], t[rows], noise=noise[rows], reduction="none")).flatten(1).mean(1)
        hinge = torch.relu(e_own - e_shuf + margin).mean()
        parts.update(own=float(e_own.detach().mean()), shuffled=float(e_shuf.detach().mean()),
                     hinge=float(hinge.detach()))
        return objective + contrast * hinge, parts


def _snapshot_backbone(src: str, dst: Path) -> None:
    from world_model.pipeline import Video4SpatialPipeline

    pipe = Video4SpatialPipeline.from_pretrained(src, with_ssg=False)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    (tmp / "SOURCE.json").write_text(json.dumps({"path": str(src), "copied": time.strftime("%Y-%m-%d %H:%M:%S")}))
    replace_dir(tmp, dst)  # atomic: a reader never sees it half-written


# ----------------------------------------------------------------------------- training
def oracle_rows(oracle, batch: dict, keep: torch.Tensor) -> torch.Tensor:
    """(B, K, g, g) true target coverage for the rows that keep their condition (``keep``); zeros for
    the dropped rows, whose prompt is the null prompt (rendering their masks would be wasted)."""
    b, k = batch["context"].shape[:2]
    out = torch.zeros(b, k, oracle.grid, oracle.grid)
    rows = keep.nonzero().flatten().cpu().tolist()
    if rows:
        out[rows] = oracle([batch["scene_id"][i] for i in rows], [batch["target_id"][i] for i in rows],
                           np.asarray(batch["context_poses"])[rows])
    return out


def train(cfg: AdapterTrainConfig, dataset=None, text_encoder=None) -> dict[str, Any]:
    """Run (or resume) adapter training; returns step, last loss, s/step, out_dir and the pipeline.

    ``dataset``: any map-style dataset yielding ``ContextVideoDataset`` items (default: ``cfg.data_dir``);
    ``text_encoder``: a pre-loaded instruction encoder (default: the pipeline's).
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from tqdm import tqdm

    from world_model.data import ContextVideoDataset
    from world_model.latents import encode_frames
    from world_model.pipeline import Video4SpatialPipeline
    from world_model.ssg.adapter import freeze_backbone, ssg_disabled
    from world_model.train import (_infinite, condition_dropout, encode_text_cached, flow_matching_loss, make_ema,
                                   make_loader, make_optimizer, sample_t)
    from world_model.training import RunClock, resume_checkpoint, save_checkpoint, train_logger

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    out = Path(cfg.out_dir)
    acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available(),
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    log_path = out / "train.log"
    log = train_logger(acc, log_path)

    snap = out / "backbone"
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "train_config.json", json.dumps(dataclasses.asdict(cfg), indent=1))
        if not (snap / "model_index.json").is_file():
            _snapshot_backbone(resolve_backbone(cfg.pipeline), snap)
    acc.wait_for_everyone()
    backbone_src = json.loads((snap / "SOURCE.json").read_text())["path"]
    pipe = Video4SpatialPipeline.from_pretrained(snap, with_ssg=False)
    if text_encoder is not None:
        pipe._text_encoder = text_encoder
    model = pipe.model.float().to(acc.device)
    if pipe.autoencoder is not None:
        pipe.autoencoder.requires_grad_(False).eval().to(acc.device)
    if cfg.shift is None:
        cfg = dataclasses.replace(cfg, shift=float(pipe.scheduler.config.get("shift", 1.0)))

    set_seed(cfg.seed)  # the same adapter/prompter initialisation on every process
    pipe.init_ssg(cfg.clip, lam=cfg.lam, **cfg.prompter)
    oracle = None
    if cfg.oracle_relevance:
        from world_model.ssg.oracle import OracleRelevance

        oracle = OracleRelevance(pipe.ssg_prompter.clip.grid_size, mask_size=cfg.oracle_mask_size)
        pipe.ssg_config["oracle_relevance"] = True  # recorded in the checkpoint: not a deployable prompt
    pipe.ssg_config["backbone"]["path"] = backbone_src
    prompter = pipe.ssg_prompter
    adapter_params = freeze_backbone(model.transformer)
    keep_grad = {id(p) for p in adapter_params}
    for p in model.parameters():  # the model's null text too: only the adapter trains
        p.requires_grad_(id(p) in keep_grad)
    if not cfg.train_prompter:  # pooler and projector stay at their initialisation; the null prompt trains
        for name, p in prompter.named_parameters():
            p.requires_grad_(name == "null_tokens")
    params = adapter_params + [p for p in prompter.parameters() if p.requires_grad]
    set_seed(cfg.seed + acc.process_index)

    n_t = cfg.num_target if cfg.num_target is not None else int(pipe.config.num_target_frames)
    n_b = cfg.num_bbox if cfg.num_bbox is not None else int(pipe.config.num_bbox_frames)
    if dataset is None:
        dataset = ContextVideoDataset(cfg.data_dir, cfg.num_context, n_t, n_b, int(model.config.frame_size[0]),
                                      cfg.contiguous_context, seed=cfg.seed)
    loader = make_loader(dataset, cfg)
    module = SSGTrainModule(model, prompter, n_b, cfg.bbox_weight)
    ema = make_ema(params, cfg.ema_decay) if cfg.ema_decay > 0 else None
    opt, sched = make_optimizer(params, cfg)
    module, opt, loader, sched = acc.prepare(module, opt, loader, sched)
    if ema is not None:
        acc.register_for_checkpointing(ema)

    step = resumed_at = resume_checkpoint(acc, out, cfg.seed, log)
    if step is None:
        step = 0
        n_train = sum(p.numel() for p in params)
        log(f"start: {n_train / 1e6:.3f}M trainable params (adapter {sum(p.numel() for p in adapter_params)}), "
            f"backbone {backbone_src} frozen, {len(dataset)} samples, config {json.dumps(dataclasses.asdict(cfg))}")
    if ema is not None:
        ema.to(acc.device)
    null = model.null_text_embedding.detach()
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    prog = "python -m world_model.ssg.train_adapter" if prog == "train_adapter.py" else prog
    command = " ".join([prog] + sys.argv[1:]) if prog else ""

    def export(step: int, totals: dict[str, Any]) -> None:
        pipe.ssg_config["training"] = {
            "steps": step, "batch_size": cfg.batch_size, "samples_seen": totals["samples"],
            "wall_hours": round(totals["wall_seconds"] / 3600, 3), "invocations": totals["invocations"],
            "preset": cfg.preset,
            "data_dir": cfg.data_dir, "ema_decay": cfg.ema_decay, "lr": cfg.lr, "command": command,
            "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
        if ema is not None:
            ema.store(params)
            ema.copy_to(params)
        try:
            pipe.save_ssg(out / "ssg")
        finally:
            if ema is not None:
                ema.restore(params)

    saved = {"step": step}

    def save(step: int) -> None:
        saved["step"] = step
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        totals = clock.totals(step)
        log(f"checkpoint {save_checkpoint(acc, out, step, cfg.keep_checkpoints, state=totals).name}")
        clock.write(out, step, totals)
        export(step, totals)

    clock = RunClock.resume(out, resumed_at, cfg.batch_size * acc.num_processes, log_path)
    t_start = t_last_ckpt = t_window = time.time()
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train ssg", disable=not acc.is_main_process,
               dynamic_ncols=True)
    it = _infinite(loader)
    losses: list[float] = []
    contrast_log: list[float] = []  # shuffled - own prompt error of the kept rows, per step
    loss_val = float("nan")
    start_step = step
    text_cache: dict[str, torch.Tensor] = {}
    module.train()
    while step < cfg.max_steps:
        if cfg.max_minutes is not None and (time.time() - t_start) / 60 >= cfg.max_minutes:
            log(f"max_minutes={cfg.max_minutes} reached at step {step}")
            break
        batch = next(it)
        instructions = list(batch["instruction"])
        with torch.no_grad():
            ctx = encode_frames(batch["context"], pipe.autoencoder, device=acc.device)
            tgt = encode_frames(batch["target"], pipe.autoencoder, device=acc.device)
            text = encode_text_cached(pipe.text_encoder, instructions, text_cache).to(acc.device)
        ctx_idx = batch["context_indices"].to(acc.device)
        ctx_d, text_d, mode = condition_dropout(ctx, text, null[None], cfg)
        t = sample_t(ctx.shape[0], cfg).to(acc.device)
        noise = torch.randn_like(tgt)
        keep = mode == 0
        with acc.accumulate(module):
            relevance = None
            if oracle is not None:  # the diagnostic: true target masks in place of CLIP's relevance
                relevance = oracle_rows(oracle, batch, keep)
            loss, parts = module(ctx_d, tgt, text_d, ctx_idx, t, noise, batch["context"], instructions, keep,
                                 relevance, cfg.prompt_contrast, cfg.contrast_margin,
                                 batch.get("context_poses") if prompter.pose_encoding else None)
            acc.backward(loss)
            if acc.sync_gradients and cfg.grad_clip:
                acc.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        if not acc.sync_gradients:
            continue
        if ema is not None:
            ema.step(params)
        step += 1
        loss_val = parts["fm"]
        losses.append(loss_val)
        if "own" in parts:
            contrast_log.append(parts["shuffled"] - parts["own"])
        bar.update(1)
        bar.set_postfix(loss=f"{loss_val:.4f}")
        if step % cfg.log_every == 0:
            # Backbone alone on this very batch (same noise, t, dropout): what the SSG branch gains.
            with torch.no_grad(), acc.autocast(), ssg_disabled(model.transformer):
                base = float(flow_matching_loss(model, ctx_d, tgt, text_d, ctx_idx, t, noise=noise))
            dt = (time.time() - t_window) / len(losses)
            own_gap = f" own-gap {np.mean(contrast_log):+.6f}" if contrast_log else ""
            log(f"step {step} loss {np.mean(losses):.5f} batch {loss_val:.5f} backbone {base:.5f} "
                f"gain {base - loss_val:+.5f}{own_gap} lr {sched.get_last_lr()[0]:.2e} {dt:.2f}s/step "
                f"{cfg.batch_size * acc.num_processes / dt:.1f} samples/s")
            losses, contrast_log, t_window = [], [], time.time()
        if step % cfg.ckpt_every_steps == 0 or (time.time() - t_last_ckpt) / 60 >= cfg.ckpt_every_minutes:
            save(step)
            t_last_ckpt = time.time()
    bar.close()
    if step > saved["step"] or not (out / "ssg").exists():
        save(step)
    elapsed = time.time() - t_start
    summary = {"step": step, "loss": loss_val, "s_per_step": elapsed / max(1, step - start_step),
               "out_dir": str(out)}
    log(f"finished: {json.dumps(summary)}")
    summary["pipeline"] = pipe
    return summary


def main(cfg=None) -> int:
    """``spatialnav train-ssg`` / ``python -m world_model.ssg.train_adapter [preset=NAME] key=value ...``.

    ``cfg``: an :class:`AdapterTrainConfig`, a mapping of its keys (plus ``preset``), the CLI's
    composed config (``train_ssg`` node), or None to read ``key=value`` pairs from the command line.
    Returns the exit code 0 (the CLI's contract); :func:`train` returns the run summary.
    """
    if cfg is None:
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(OmegaConf.from_dotlist(sys.argv[1:]), resolve=True)
    out = train(config_from_any(cfg))
    print(f"trained SSG to step {out['step']} ({out['s_per_step']:.2f} s/step); checkpoint {out['out_dir']}/ssg "
          f"(load with Video4SpatialPipeline.load_ssg)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
