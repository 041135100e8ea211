"""Train the Video4Spatial world model with flow matching (as Wan), on one CPU or many GPUs.

Objective (rectified flow / flow matching; Lipman et al. 2023, Esser et al. 2024, Wan 2025):

    x_t = (1 - t) * x0 + t * eps,   target velocity  v* = eps - x0,
    loss = || v_theta(x_t, t | ctx, instr) - v* ||^2   over target (and bbox) tokens only.

``t`` is drawn logit-normal (``sigmoid(N(m, s))``, SD3) or uniform, then shifted
as Wan's / SD3's scheduler does: ``t' = shift * t / (1 + (shift - 1) * t)``.
Condition dropout makes joint CFG possible: with probability ``p_drop_context``
the context frames become pure noise, with ``p_drop_text`` the instruction
becomes the learned null embedding, and with ``p_drop_both`` both.

Accelerate runs the same script on a CPU or under ``accelerate launch`` (DDP,
many GPUs/nodes). Checkpoints (model, EMA, optimizer, RNG, step) go to
``out_dir/ckpt/step_XXXXXXXX`` every ``ckpt_every_steps`` steps or
``ckpt_every_minutes`` minutes; a restarted run resumes from the newest one.
The EMA weights are also exported as a loadable pipeline to ``out_dir/pipeline``.
``out_dir/training.json`` (and its copy in the exported pipeline) holds what the run has cost
so far: optimiser steps, samples and wall-clock seconds over every invocation
(``world_model.training``, shared by all the project's training loops).
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
import torch.nn.functional as F

from envs.atomic import replace_dir, write_text_atomic

from .latents import encode_frames
from .model import SMALL_TRANSFORMER_CONFIG, Video4SpatialModel
from .training import (TRAINING_FILE, RunClock, check_keys, checkpoint_state, checkpoint_step, resume_checkpoint,
                       save_checkpoint, train_logger)


@dataclass
class TrainConfig:
    """Everything a training run needs (``configs/world_model/*.yaml`` -> ``train:``).

    Attributes:
        data_dir: a directory written by ``world_model.data.collect``.
        out_dir: checkpoints, log file, exported pipeline.
        transformer: ``WanTransformer3DModel`` kwargs (default: the CPU-sized config).
        text_encoder: "minilm" or "umt5:<wan dir>".
        text_len: instruction tokens.
        target_index_offset: RoPE gap between the last context frame and the first target.
        context_attention: "full" or "prefix" (context attends to context only; K/V cache at sampling).
        init_from: optional pipeline dir (or Wan checkpoint dir with ``wan=True``) to start from;
            ``"shipped"``: the released weights (``world_model/weights/v4s-small``). Ignored when
            ``out_dir`` holds a checkpoint: a run always resumes its own newest checkpoint.
        wan: ``init_from`` is a Wan diffusers checkpoint (loads its transformer + VAE).
        init_partial: build the model this config describes and copy from ``init_from`` only the
            tensors whose name and shape match; the rest keep their fresh initialisation. This
            moves trained blocks into another latent space (pixel -> autoencoder: a new patch
            embedding and output head, the same attention and MLP weights), the "distilled"
            start of the latent-vs-pixel comparison (docs/experiments).
        autoencoder: optional path of a saved autoencoder (latent space); None = pixel space.
        frame_size: model frame size (pixels, square).
        num_context, num_target, num_bbox: frames per sample (K, T, B).
        contiguous_context: the contiguous-context ablation.
        batch_size: per process.
        lr, weight_decay, warmup_steps, grad_clip: AdamW and schedule (linear warm-up, then constant).
        max_steps: stop after this many optimizer steps (total, across resumes).
        max_minutes: stop after this many minutes of this invocation (None: no limit).
        t_sampling: "logit_normal" or "uniform"; logit_mean, logit_std; shift.
        p_drop_context, p_drop_text, p_drop_both: condition dropout probabilities.
        ema_decay: EMA decay (with diffusers' warm-up: min(decay, 1 - (1 + n) ** (-2/3)) at step n).
        ckpt_every_steps, ckpt_every_minutes, keep_checkpoints: checkpointing.
        log_every: steps between log lines.
        num_workers: DataLoader workers.
        mixed_precision: "no", "fp16", "bf16" (Accelerate) or "auto" (bf16 where the device has
            native bf16 units, else fp32: :func:`resolve_mixed_precision`).
        context_grad_every: back-propagate through the context tokens on every n-th step only
            (1: every step, the paper's training; 0: never). The other steps run the context
            without autograd and differentiate the target tokens only (``context_attention="prefix"``).
        compile: ``torch.compile`` each transformer block in place (``nn.Module.compile``: the state
            dict keeps its keys). Fuses the element-wise work (modulation, norms, RoPE, GELU, casts)
            that dominates a small model's step; costs a few minutes of compilation per start.
        seed: global seed.
        num_threads: torch CPU threads (None: leave torch's default).
        text_states: a file of the instructions' encoder states (``text_encoder.save_text_states``),
            looked up instead of loading the encoder (a machine without its package: the lent GPU
            machine, ``scripts/device/train_wm_gpu.sh``). None: load ``text_encoder``.
    """

    data_dir: str = "runs/wm/data/train"
    out_dir: str = "runs/wm"
    transformer: dict[str, Any] = field(default_factory=lambda: dict(SMALL_TRANSFORMER_CONFIG))
    text_encoder: str = "minilm"
    text_len: int = 32
    target_index_offset: int = 1
    context_attention: str = "full"
    init_from: str | None = None
    wan: bool = False
    init_partial: bool = False
    autoencoder: str | None = None
    frame_size: int = 32
    num_context: int = 8
    num_target: int = 4
    num_bbox: int = 1
    contiguous_context: bool = False
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    max_steps: int = 200_000
    max_minutes: float | None = None
    t_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 1.0
    p_drop_context: float = 0.1
    p_drop_text: float = 0.1
    p_drop_both: float = 0.1
    ema_decay: float = 0.999
    ckpt_every_steps: int = 1000
    ckpt_every_minutes: float = 5.0
    keep_checkpoints: int = 2
    log_every: int = 10
    num_workers: int = 0
    mixed_precision: str = "no"
    context_grad_every: int = 1
    compile: bool = False
    seed: int = 0
    num_threads: int | None = None
    text_states: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        check_keys(cls, d, "train config")
        return cls(**d)


# ----------------------------------------------------------------------------- flow matching
def sample_t(n: int, cfg: TrainConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise levels t in (0, 1): logit-normal or uniform, then Wan/SD3's shift."""
    if cfg.t_sampling == "logit_normal":
        t = torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(n, generator=generator))
    elif cfg.t_sampling == "uniform":
        t = torch.rand(n, generator=generator)
    else:
        raise ValueError(f"t_sampling must be 'logit_normal' or 'uniform', got {cfg.t_sampling!r}")
    return cfg.shift * t / (1 + (cfg.shift - 1) * t)


def condition_dropout(ctx: torch.Tensor, text: torch.Tensor, null: torch.Tensor, cfg: TrainConfig,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace the context by noise / the instruction by null per sample; returns (ctx, text, mode).

    mode per sample: 0 kept, 1 context dropped, 2 instruction dropped, 3 both.
    """
    b = ctx.shape[0]
    u = torch.rand(b, generator=generator)
    p1, p2, p3 = cfg.p_drop_context, cfg.p_drop_text, cfg.p_drop_both
    mode = torch.zeros(b, dtype=torch.long)
    mode[u < p1] = 1
    mode[(u >= p1) & (u < p1 + p2)] = 2
    mode[(u >= p1 + p2) & (u < p1 + p2 + p3)] = 3
    mode = mode.to(ctx.device)
    drop_c = ((mode == 1) | (mode == 3)).view(b, 1, 1, 1, 1)
    drop_t = ((mode == 2) | (mode == 3)).view(b, 1, 1)
    noise = torch.randn(ctx.shape, generator=generator).to(ctx.device, ctx.dtype)
    ctx = torch.where(drop_c, noise, ctx)
    text = torch.where(drop_t, null.to(text.dtype).expand_as(text), text)
    return ctx, text, mode


def flow_matching_loss(model, ctx, target, text, ctx_idx, t, noise=None, reduction: str = "mean",
                       context_grad: bool = True) -> torch.Tensor:
    """Mean squared velocity error over the target frames: ``|| v(x_t) - (eps - x0) ||^2``
    (``reduction="none"``: the element-wise squared errors, shaped like ``target``).
    ``context_grad=False``: no backward pass through the context tokens (``Video4SpatialModel.forward``)."""
    eps = torch.randn_like(target) if noise is None else noise
    tt = t.view(-1, 1, 1, 1, 1).to(target.dtype)
    x_t = (1 - tt) * target + tt * eps
    kw = {} if context_grad else {"context_grad": False}
    v = model(context_latents=ctx, noisy_latents=x_t, timestep=t * 1000.0,
              encoder_hidden_states=text, context_indices=ctx_idx, **kw)
    return F.mse_loss(v.float(), (eps - target).float(), reduction=reduction)


# ----------------------------------------------------------------------------- model, export
def build_model(cfg: TrainConfig) -> Video4SpatialModel:
    if cfg.init_from and cfg.wan:
        return Video4SpatialModel.from_wan_pretrained(
            cfg.init_from, text_encoder=cfg.text_encoder if cfg.text_encoder not in (None, "minilm") else None,
            text_len=cfg.text_len, frame_size=(cfg.frame_size, cfg.frame_size),
            target_index_offset=cfg.target_index_offset)
    if cfg.init_from and not cfg.init_partial:
        from .pipeline import Video4SpatialPipeline

        return Video4SpatialPipeline.from_pretrained(cfg.init_from).model
    model = Video4SpatialModel(
        transformer_config=dict(cfg.transformer), text_len=cfg.text_len, text_encoder=cfg.text_encoder,
        target_index_offset=cfg.target_index_offset, frame_size=(cfg.frame_size, cfg.frame_size),
        latent_space="pixel" if cfg.autoencoder is None else "autoencoder",
        context_attention=cfg.context_attention,
    )
    if cfg.init_from:
        copy_matching_weights(model, cfg.init_from)
    return model


def copy_matching_weights(model: torch.nn.Module, pipeline_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Copy into ``model`` every tensor of the saved pipeline's model with the same name and shape.

    Returns ``{"copied": [...], "fresh": [...]}`` (parameter names). Raises when nothing but the
    fresh parts would be copied, which means the two models share no architecture.
    """
    from .pipeline import Video4SpatialPipeline

    src = Video4SpatialPipeline.from_pretrained(pipeline_dir).model.state_dict()
    dst = model.state_dict()
    copied = [k for k, v in dst.items() if k in src and src[k].shape == v.shape]
    fresh = [k for k in dst if k not in copied]
    if len(copied) < len(dst) / 2:
        raise ValueError(f"init_partial: only {len(copied)} of {len(dst)} tensors of {pipeline_dir} match this "
                         f"model's names and shapes (fresh: {fresh[:8]}...); the transformer widths must agree")
    model.load_state_dict({k: src[k] for k in copied}, strict=False)
    print(f"[world_model.train] init_partial: copied {len(copied)} tensors from {pipeline_dir}; "
          f"fresh: {', '.join(fresh) or 'none'}", flush=True)
    return {"copied": copied, "fresh": fresh}


def load_autoencoder(cfg: TrainConfig):
    if cfg.autoencoder is None:
        return None
    if cfg.wan:
        from diffusers import AutoencoderKLWan

        return AutoencoderKLWan.from_pretrained(cfg.autoencoder, subfolder="vae")
    from .autoencoder import FrameAutoencoder

    return FrameAutoencoder.from_pretrained(cfg.autoencoder)


def export_pipeline(model, ema, cfg: TrainConfig, autoencoder, path: Path,
                    training: dict[str, Any] | None = None) -> None:
    """Save the EMA weights as a ``Video4SpatialPipeline`` (what eval and the agent load); ``training``
    (the totals of the checkpoint the weights come from, ``RunClock.totals``) goes beside them as
    ``training.json``, which ``research.release`` reads."""
    from .pipeline import Video4SpatialPipeline, make_scheduler

    # a fresh module, not a deepcopy: the training copy's blocks may be compiled in place
    m = type(model).from_config(model.config).eval()
    m.load_state_dict(model.state_dict())
    if ema is not None:
        ema.copy_to(m.parameters())
    pipe = Video4SpatialPipeline(m, make_scheduler(cfg.shift), autoencoder=autoencoder,
                                 num_target_frames=cfg.num_target, num_bbox_frames=cfg.num_bbox)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    if training is not None:
        (tmp / TRAINING_FILE).write_text(json.dumps(training, indent=1) + "\n")
    replace_dir(tmp, path)  # a reader (eval, the agent) never loads a half-written pipeline


def export_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Export the EMA weights of one training checkpoint (``out_dir/ckpt/step_XXXXXXXX``) as a
    loadable pipeline at ``out``, as the run itself exports its newest one to ``out_dir/pipeline``.
    For comparing a run at chosen steps (``python -m world_model.train export=CKPT out=DIR``). The
    checkpoint's training totals (when it records them) go beside the weights as ``training.json``."""
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    if checkpoint_step(ckpt) is None or not (ckpt / "model.safetensors").exists():
        raise FileNotFoundError(f"{ckpt} is not a training checkpoint (needs train_state.json and model.safetensors)")
    cfg_path = ckpt.parent.parent / "train_config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"no train_config.json beside the run's ckpt/ folder ({cfg_path}); export needs it")
    cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    model = build_model(dataclasses.replace(cfg, init_from=None, wan=False))
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    ema = make_ema(model.parameters(), cfg.ema_decay)
    ema.load_state_dict(torch.load(ckpt / "custom_checkpoint_0.pkl", weights_only=False))
    out = Path(out)
    state = checkpoint_state(ckpt)
    totals = {k: v for k, v in state.items() if k not in ("step", "time")} if "wall_seconds" in state else None
    export_pipeline(model, ema, cfg, load_autoencoder(cfg), out, training=totals)
    return out


# ----------------------------------------------------------------------------- training
def encode_text_cached(text_encoder, instructions: list[str], cache: dict[str, torch.Tensor],
                       max_size: int = 50_000) -> torch.Tensor:
    """Text states for ``instructions``, encoding each distinct string once (the encoder is frozen)."""
    missing = sorted({s for s in instructions if s not in cache})
    if missing:
        if len(cache) + len(missing) > max_size:
            cache.clear()
        for s, e in zip(missing, text_encoder.encode(missing).cpu()):
            cache[s] = e
    return torch.stack([cache[s] for s in instructions])


def _any_rank(acc, flag: bool) -> bool:
    """``flag`` or-ed over the processes: a decision from each rank's own clock (max_minutes, timed
    checkpoints) taken by all of them at the same step, else one rank waits in a barrier while
    another waits in the gradient all-reduce (a hang under ``accelerate launch``)."""
    if acc.num_processes == 1:
        return bool(flag)
    return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), reduction="sum").item() > 0)


def _infinite(loader):
    while True:
        yield from loader


# ----------------------------------------------------------------------------- shared by the training scripts
# (this one and world_model.ssg.train_adapter): loader, optimiser, EMA. Checkpoints, the log and the
# run's totals (training.json) are world_model.training's, shared by every training loop.
def make_loader(dataset, cfg) -> torch.utils.data.DataLoader:
    """Shuffled, drop-last batches of ``cfg.batch_size`` with ``cfg.num_workers`` workers."""
    return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                       num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0)


def make_optimizer(params, cfg):
    """AdamW (betas 0.9, 0.99) and its schedule: linear warm-up over ``cfg.warmup_steps``, then constant."""
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    return opt, sched


def make_ema(params, decay: float):
    """diffusers' EMAModel with warm-up: at optimiser step n the decay is min(decay, 1 - (1 + n) ** (-2/3))."""
    from diffusers.training_utils import EMAModel

    return EMAModel(params, decay=decay, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)


def train(cfg: TrainConfig, dataset=None, text_encoder=None) -> dict[str, Any]:
    """Run (or resume) training; returns a summary (final step, last loss, s/step, the model).

    ``dataset`` overrides ``cfg.data_dir`` (any map-style dataset yielding the
    items of ``ContextVideoDataset``); ``text_encoder`` a pre-loaded encoder.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm import tqdm

    from .data import ContextVideoDataset
    from .text_encoder import load_text_encoder, load_text_states

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    out = Path(cfg.out_dir)
    check_train_config(cfg)
    cfg = dataclasses.replace(cfg, init_from=resolve_init_from(cfg.init_from, cfg.wan))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    acc = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision, device), cpu=device == "cpu")
    set_seed(cfg.seed + acc.process_index)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "train_config.json", json.dumps(dataclasses.asdict(cfg), indent=1))
    log = train_logger(acc, out / "train.log")

    if dataset is None:
        dataset = ContextVideoDataset(cfg.data_dir, cfg.num_context, cfg.num_target, cfg.num_bbox,
                                      cfg.frame_size, cfg.contiguous_context, seed=cfg.seed)
    loader = make_loader(dataset, cfg)
    model = build_model(cfg)
    if cfg.compile:
        compile_blocks(model)
    autoencoder = load_autoencoder(cfg)
    if autoencoder is not None:
        autoencoder.requires_grad_(False).eval().to(acc.device)
    if text_encoder is None and cfg.text_states:
        text_encoder = load_text_states(cfg.text_states, model.config.text_encoder, model.config.text_len)
    if text_encoder is None:
        text_encoder = load_text_encoder(model.config.text_encoder, max_length=model.config.text_len)
    ema = make_ema(model.parameters(), cfg.ema_decay)
    opt, sched = make_optimizer(model.parameters(), cfg)
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    acc.register_for_checkpointing(ema)

    step = resumed_at = resume_checkpoint(acc, out, cfg.seed, log)
    if step is None:
        step = 0
        how = (f"from {cfg.init_from} with a fresh optimiser" if cfg.init_from
               else "from scratch (random initialisation)")
        log(f"start: {sum(p.numel() for p in acc.unwrap_model(model).parameters()) / 1e6:.2f}M params, "
            f"{len(dataset)} samples, {how}, config {json.dumps(dataclasses.asdict(cfg))}")
        _say(acc, f"no checkpoint under {out / 'ckpt'}: training starts {how}")
    else:
        _say(acc, f"resuming {out / 'ckpt'} at step {step} (its weights, optimiser and EMA; init_from is not used)")
    ema.to(acc.device)

    saved = {"step": step}
    clock = RunClock.resume(out, resumed_at, cfg.batch_size * acc.num_processes, out / "train.log")

    def save(step: int) -> None:
        saved["step"] = step
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        totals = clock.totals(step)
        d = save_checkpoint(acc, out, step, cfg.keep_checkpoints, state=totals)
        clock.write(out, step, totals)
        export_pipeline(acc.unwrap_model(model), ema, cfg, autoencoder, out / "pipeline", training=totals)
        log(f"checkpoint {d.name}")

    t_start = time.time()
    t_last_ckpt = time.time()
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train wm", disable=not acc.is_main_process,
               dynamic_ncols=True)
    it = _infinite(loader)
    losses, t_window = [], time.time()
    loss_val = float("nan")
    start_step = step
    null = acc.unwrap_model(model).null_text_embedding
    text_cache: dict[str, torch.Tensor] = {}
    model.train()
    while step < cfg.max_steps:
        if cfg.max_minutes is not None and _any_rank(acc, (time.time() - t_start) / 60 >= cfg.max_minutes):
            log(f"max_minutes={cfg.max_minutes} reached at step {step}")
            break
        batch = next(it)
        with torch.no_grad():
            ctx = encode_frames(batch["context"], autoencoder, device=acc.device)
            tgt = encode_frames(batch["target"], autoencoder, device=acc.device)
            text = encode_text_cached(text_encoder, list(batch["instruction"]), text_cache).to(acc.device)
        ctx_idx = batch["context_indices"].to(acc.device)
        with acc.accumulate(model):
            ctx_d, text_d, _ = condition_dropout(ctx, text, null[None], cfg)
            t = sample_t(ctx.shape[0], cfg).to(acc.device)
            loss = flow_matching_loss(model, ctx_d, tgt, text_d, ctx_idx, t,
                                      context_grad=context_grad_at(cfg, step))
            acc.backward(loss)
            if acc.sync_gradients and cfg.grad_clip:
                acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        if acc.sync_gradients:
            ema.step(acc.unwrap_model(model).parameters())
            step += 1
            loss_val = float(loss.detach())
            losses.append(loss_val)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_val:.4f}")
            if step % cfg.log_every == 0:
                dt = (time.time() - t_window) / len(losses)
                log(f"step {step} loss {np.mean(losses):.5f} lr {sched.get_last_lr()[0]:.2e} "
                    f"{dt:.2f}s/step {cfg.batch_size * acc.num_processes / dt:.1f} samples/s")
                losses, t_window = [], time.time()
            if step % cfg.ckpt_every_steps == 0 or _any_rank(acc, (time.time() - t_last_ckpt) / 60 >= cfg.ckpt_every_minutes):
                save(step)
                t_last_ckpt = time.time()
    bar.close()
    if step > saved["step"]:
        save(step)
    elapsed = time.time() - t_start
    summary = {"step": step, "loss": loss_val, "s_per_step": elapsed / max(1, step - start_step),
               "out_dir": str(out)}
    log(f"finished: {json.dumps(summary)}")
    summary["model"] = acc.unwrap_model(model)
    return summary


def _say(acc, msg: str) -> None:
    """One line to stderr from the main process (which start a run made: resume, init, scratch)."""
    if acc.is_main_process:
        print(f"[world_model.train] {msg}", file=sys.stderr, flush=True)


def resolve_init_from(init_from: str | None, wan: bool = False) -> str | None:
    """``init_from`` as a directory: ``"shipped"`` is the released pipeline
    (``world_model/weights/v4s-small``); a missing directory is an error that says what to pass."""
    if init_from in (None, "", "null", "none", "None"):
        return None
    if str(init_from) == "shipped":
        from .loading import SHIPPED_PIPELINE

        if not (SHIPPED_PIPELINE / "model_index.json").exists():
            raise FileNotFoundError(f"init_from=shipped but the released weights are missing ({SHIPPED_PIPELINE}); "
                                    "restore them (git checkout) or train from scratch with init_from=null")
        return str(SHIPPED_PIPELINE)
    p = Path(str(init_from))
    marker = "transformer" if wan else "model_index.json"
    if not (p / marker).exists():
        raise FileNotFoundError(f"init_from={init_from!r}: no {'Wan checkpoint' if wan else 'saved pipeline'} there "
                                f"({p / marker} is missing); pass a pipeline directory, init_from=shipped, "
                                "or init_from=null to train from scratch")
    return str(p)


def compile_blocks(model: Video4SpatialModel) -> Video4SpatialModel:
    """``torch.compile`` every transformer block in place (static shapes; one graph per attention
    mode, grad mode and batch shape). Parameters and state-dict keys are unchanged."""
    import torch._dynamo.config as dynamo_config

    # Dynamo keys its cache on the shared code of WanTransformerBlock.forward: every block x
    # attention mode (prefix / write / read) x grad mode is one entry, beyond the default limit of 8
    # (past it, blocks silently run eagerly).
    blocks = model.transformer.blocks
    need = 8 * len(blocks)
    dynamo_config.recompile_limit = max(int(dynamo_config.recompile_limit), need)
    dynamo_config.accumulated_recompile_limit = max(int(dynamo_config.accumulated_recompile_limit), 4 * need)
    for block in blocks:
        block.compile(dynamic=False)
    return model


def context_grad_at(cfg: TrainConfig, step: int) -> bool:
    """Whether optimiser step ``step`` back-propagates through the context tokens (``context_grad_every``)."""
    n = int(cfg.context_grad_every)
    return n > 0 and step % n == 0


def resolve_mixed_precision(mixed_precision: str, device: str = "cpu") -> str:
    """Accelerate's ``mixed_precision`` for ``device``: ``"auto"`` is bf16 autocast where the device has
    native bf16 matrix units (CPU: AMX / AVX512-BF16; CUDA: Ampere or newer), else ``"no"`` (fp32:
    emulated bf16 on an AVX2-only CPU is slower than fp32)."""
    if mixed_precision is False or mixed_precision in ("no", "fp16", "bf16"):
        return "no" if mixed_precision is False else mixed_precision  # YAML reads a bare `no` as false
    if mixed_precision != "auto":
        raise ValueError(f"mixed_precision must be 'auto', 'no', 'fp16' or 'bf16', got {mixed_precision!r}")
    from .pipeline import native_bf16

    return "bf16" if native_bf16(device) else "no"


def check_train_config(cfg: TrainConfig) -> None:
    """Values that would only fail (or silently misbehave) deep inside the loop, checked up front."""
    resolve_mixed_precision(cfg.mixed_precision)
    if cfg.context_grad_every < 0:
        raise ValueError(f"context_grad_every must be >= 0 (1: every step, 0: never); got {cfg.context_grad_every}")
    attn = cfg.context_attention
    if cfg.context_grad_every != 1 and attn != "prefix" and not cfg.init_from:
        raise ValueError(f"context_grad_every={cfg.context_grad_every} needs context_attention=prefix "
                         f"(got {attn!r}): with full attention the context tokens see the target")


def main(cfg=None) -> dict[str, Any]:
    """Entry point for ``spatialnav train world_model=small`` and the command line.

    ``cfg`` may be a :class:`TrainConfig`; a mapping of its keys; a
    ``configs/world_model/*.yaml`` node (``model:`` and ``train:`` sections, merged
    into one flat TrainConfig); or the CLI's composed config, whose
    ``world_model`` node is used and whose top-level ``out_dir``/``seed`` (when
    set) override. With ``cfg=None`` the command line is read:
    ``python -m world_model.train [config=FILE.yaml] key=value ...``.
    """
    if cfg is None:
        argv = sys.argv[1:]
        if any(a.startswith("export=") for a in argv):
            kv = dict(a.split("=", 1) for a in argv if "=" in a)
            if "out" not in kv:
                raise SystemExit("usage: python -m world_model.train export=RUN/ckpt/step_XXXXXXXX out=DIR")
            print(f"exported {export_checkpoint(kv['export'], kv['out'])}")
            return {}
        cfg = _from_argv(argv)
    if isinstance(cfg, TrainConfig):
        return train(cfg)
    return train(TrainConfig.from_dict(flatten_config(cfg)))


def flatten_config(cfg) -> dict[str, Any]:
    """TrainConfig keys from any of the config shapes ``main`` accepts."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    d = dict(cfg)
    top = {}
    if "world_model" in d:
        if not d["world_model"]:
            raise ValueError("no world model config selected: add world_model=small (configs/world_model/*.yaml)")
        top = {k: d[k] for k in ("out_dir", "seed") if d.get(k) is not None}
        d = dict(d["world_model"])
    if "train" in d or "model" in d:
        flat = dict(d.get("model") or {})
        flat.update(d.get("train") or {})
        d = flat
    d.update(top)
    return d


def _from_argv(argv: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    base = OmegaConf.create({})
    rest = []
    for a in argv:
        if a.startswith("config="):
            base = OmegaConf.load(a.split("=", 1)[1])
        else:
            rest.append(a)
    node = flatten_config(OmegaConf.to_container(base, resolve=True) or {})
    merged = OmegaConf.merge(OmegaConf.create(node), OmegaConf.from_dotlist(rest))
    return OmegaConf.to_container(merged, resolve=True)


if __name__ == "__main__":
    main()
