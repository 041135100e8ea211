"""A small convolutional frame autoencoder: the measured alternative to pixel space.

``FrameAutoencoder`` maps 64x64 RGB frames to an 8-channel 16x16 latent (a /4 spatial
compression) and back, one frame at a time (every frame keeps its own RoPE index, as
in pixel space). With the transformer's patch (1, 2, 2) its latent gives the same
64 tokens per frame as the shipped pixel-space model (32x32 frames, patch (1, 4, 4)),
so the two latent spaces cost the world model the same; the question is which one
keeps more of the 64x64 render. ``python -m research.latent_spaces`` answers it on
held-out frames (docs/world_model.md, "Latent space";
measured: docs/experiments/2026-12-01-latent-space-autoencoder.md).

The model is a diffusers ``ModelMixin``/``ConfigMixin`` (``save_pretrained`` /
``from_pretrained``), and a ``Video4SpatialPipeline`` component: ``encode_video`` /
``decode_video`` are what ``world_model.latents`` calls. Latents are standardised with
per-channel statistics measured on training frames after training (``latent_mean``,
``latent_std``), so the flow-matching noise and the latents have the same scale.

Command line::

    python -m world_model.autoencoder train data_dir=runs/wm/data/train out_dir=runs/ae max_steps=1500

Training is the project's loop (``world_model.training``): Accelerate, diffusers' lr schedule,
a checkpoint every ``ckpt_every_steps`` steps or ``ckpt_every_minutes`` minutes in
``out_dir/ckpt/step_*`` (model, optimiser, schedule, RNGs, the frame sampler; the newest
``keep_checkpoints`` kept), a restarted run resumes from the newest one, and
``out_dir/training.json`` holds the run's steps, frames and wall seconds over every invocation.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from envs.atomic import replace_dir, write_text_atomic

from .latents import frames_to_tensor, tensor_to_frames


# ============================================================================ model
class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class FrameAutoencoder(ModelMixin, ConfigMixin):
    """Per-frame conv autoencoder, frames in [-1, 1] -> standardised latents.

    Args:
        in_channels: image channels (3).
        latent_channels: channels of the latent.
        channels: width of each resolution level; ``len(channels) - 1`` stride-2
            stages, so (32, 64, 64) compresses 64x64 to 16x16.
        frame_size: the frame size the autoencoder was trained on (checked on encode).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, in_channels: int = 3, latent_channels: int = 8, channels: tuple[int, ...] = (32, 64, 64),
                 frame_size: int = 64) -> None:
        super().__init__()
        ch = [int(c) for c in channels]
        if len(ch) < 1 or any(c % 8 for c in ch):
            raise ValueError(f"channels must be a non-empty list of multiples of 8 (GroupNorm), got {channels}")
        enc: list[nn.Module] = [nn.Conv2d(in_channels, ch[0], 3, padding=1), _ResBlock(ch[0])]
        for a, b in zip(ch[:-1], ch[1:]):
            enc += [nn.Conv2d(a, b, 3, stride=2, padding=1), _ResBlock(b)]
        enc += [nn.GroupNorm(8, ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, ch[-1], 3, padding=1), _ResBlock(ch[-1])]
        for a, b in zip(ch[::-1][:-1], ch[::-1][1:]):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1), _ResBlock(b)]
        dec += [nn.GroupNorm(8, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        # latent standardisation, measured by `calibrate` after training (identity until then)
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    @property
    def compression(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    # ---------------------------------------------------------------- images (N, 3, H, W)
    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        s = int(self.config.frame_size)
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or tuple(x.shape[-2:]) != (s, s):
            raise ValueError(f"FrameAutoencoder expects frames (N, {self.config.in_channels}, {s}, {s}); "
                             f"got {tuple(x.shape)}: render or resize the frames to {s}x{s}")
        return self.encoder(x)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and the raw latent of images (N, 3, H, W) in [-1, 1]."""
        z = self.encode_raw(x)
        return self.decode_raw(z), z

    # ---------------------------------------------------------------- videos (B, C, F, H, W)
    def _norm(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean.view(1, -1, 1, 1)) / self.latent_std.view(1, -1, 1, 1)

    def _denorm(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std.view(1, -1, 1, 1) + self.latent_mean.view(1, -1, 1, 1)

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> standardised latents (B, C, F, h, w)."""
        b, c, f, h, w = x.shape
        p = next(self.parameters())
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(p.device, p.dtype)
        z = self._norm(self.encode_raw(frames))
        return z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_video(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised latents (B, C, F, h, w) -> frames (B, 3, F, H, W) in [-1, 1]."""
        b, c, f, h, w = z.shape
        p = next(self.parameters())
        lat = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(p.device, p.dtype)
        x = self.decode_raw(self._denorm(lat))
        return x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def calibrate(self, frames: torch.Tensor, batch: int = 256) -> None:
        """Set ``latent_mean``/``latent_std`` from images (N, 3, H, W) in [-1, 1]."""
        zs = [self.encode_raw(frames[i:i + batch]) for i in range(0, len(frames), batch)]
        z = torch.cat(zs).transpose(0, 1).reshape(self.config.latent_channels, -1)
        self.latent_mean.copy_(z.mean(1))
        self.latent_std.copy_(z.std(1).clamp_min(1e-6))


# ============================================================================ frames
class FrameBank:
    """All RGB frames (tour, agent and path views) of a collected directory at its render size.

    Args:
        data_dir: a directory written by ``world_model.data.collect``.
        max_shards: read at most this many shards (memory: ~30 MB of frames per 500 samples).
    """

    def __init__(self, data_dir: str | os.PathLike, max_shards: int | None = None) -> None:
        d = Path(data_dir)
        path = d / "index.json"
        if not path.exists():
            raise FileNotFoundError(f"no index.json in {d}: collect frames first "
                                    f"(`python -m world_model.data split=train n=... out_dir={d}`)")
        index = json.loads(path.read_text())
        shards = index["shards"][:max_shards] if max_shards else index["shards"]
        parts = []
        for s in shards:
            with np.load(d / s["file"]) as z:
                parts += [z["tour_rgb"], z["agent_rgb"], z["path_rgb"]]
        if not parts:
            raise ValueError(f"{path} lists no shards")
        self.frames = np.concatenate(parts)  # (N, S, S, 3) uint8
        self.frame_size = int(self.frames.shape[1])

    def __len__(self) -> int:
        return len(self.frames)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.frames[rng.integers(0, len(self.frames), n)]

    def spread(self, n: int) -> np.ndarray:
        """``n`` frames evenly spread over the bank (a fixed evaluation set)."""
        return self.frames[np.linspace(0, len(self.frames) - 1, min(n, len(self.frames))).astype(np.int64)]


def with_random_boxes(frames: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``frames`` (N, S, S, 3) with the data's red box outline (``world_model.data.draw_box``,
    2 px at 64 px) drawn at a random place and size into about ``fraction`` of them."""
    from .boxes import default_line_width
    from .data import draw_box

    out = frames.copy()
    s = frames.shape[1]
    thick = default_line_width(s)
    for i in np.flatnonzero(rng.random(len(frames)) < fraction):
        w, h = rng.integers(max(4, s // 10), s // 2 + 1, 2)
        x0, y0 = rng.integers(0, s - w + 1), rng.integers(0, s - h + 1)
        out[i] = draw_box(out[i], (int(x0), int(y0), int(x0 + w - 1), int(y0 + h - 1)), thick)
    return out


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1] (``latents.frames_to_tensor`` per image)."""
    return frames_to_tensor(frames)[0].transpose(0, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3) (``latents.tensor_to_frames`` per image)."""
    return tensor_to_frames(x.transpose(0, 1)[None])[0]


# ============================================================================ training
@dataclass
class AutoencoderTrainConfig:
    """Autoencoder training (``python -m world_model.autoencoder train key=value ...``).

    Args:
        data_dir: collected training frames (``world_model.data``; 64x64 renders).
        out_dir: run directory: ``ckpt/``, ``train.log``, ``training.json`` and the final ``autoencoder/``.
        latent_channels, channels: the architecture (see :class:`FrameAutoencoder`).
        batch_size, lr, max_steps: AdamW on the pixel MSE.
        lr_schedule, warmup_steps: the learning rate over ``max_steps`` (a schedule name of
            ``diffusers.optimization.get_scheduler``: "cosine" decays to 0 after the warm-up).
        latent_l2: weight of a small L2 penalty on the raw latent (keeps it bounded).
        box_fraction: share of training frames with a red box drawn in (random place and size, the
            data's 2 px line): the world model's bbox frames must survive the round trip.
        max_shards: shards of ``data_dir`` to read (None: all).
        ckpt_every_steps, ckpt_every_minutes, keep_checkpoints: a checkpoint (``out_dir/ckpt/step_*``,
            Accelerate's state: model, optimiser, schedule, RNGs, the frame sampler) every so many steps
            or minutes, whichever comes first; the newest ``keep_checkpoints`` are kept and a restarted
            run resumes from the newest.
        mixed_precision: Accelerate's "no", "fp16" or "bf16".
        calib_frames: training frames used to measure the latent statistics at the end.
        num_threads: torch threads (0: leave torch's default).
        seed: sampler and init seed.
    """

    data_dir: str = "runs/wm/data/train"
    out_dir: str = "runs/ae"
    latent_channels: int = 8
    channels: tuple[int, ...] = (32, 64, 64)
    batch_size: int = 32
    lr: float = 1e-3
    max_steps: int = 1500
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    latent_l2: float = 1e-4
    box_fraction: float = 0.25
    max_shards: int | None = 4
    ckpt_every_steps: int = 500
    ckpt_every_minutes: float = 5.0
    keep_checkpoints: int = 2
    mixed_precision: str = "no"
    calib_frames: int = 2048
    num_threads: int = 1
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AutoencoderTrainConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown autoencoder training key(s) {bad}; known: {sorted(known)}")
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)


LEGACY_STATE = "state.pt"  # the single-file checkpoint of the trainer before Accelerate (ckpt/state.pt)


def _resume_legacy(path: Path, model, opt, sched, rng: np.random.Generator, log) -> tuple[int, dict] | None:
    """Resume a run checkpointed by the earlier trainer (``ckpt/state.pt``: model, optimiser, step,
    sampler state, elapsed seconds); returns (step, the totals it implies) or None when there is none."""
    if not path.is_file():
        return None
    from .training import seek_schedule

    st = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["opt"])
    rng.bit_generator.state = st["rng"]
    step = int(st["step"])
    seek_schedule(sched, step)
    log(f"resumed from {path} at step {step} (the earlier single-file checkpoint)")
    return step, {"steps": step, "wall_seconds": float(st.get("elapsed", 0.0))}


def train_autoencoder(cfg: AutoencoderTrainConfig, bank: FrameBank | None = None) -> dict[str, Any]:
    """Train (or resume) a :class:`FrameAutoencoder`; saves ``out_dir/autoencoder``. Returns a summary.

    The loop is the project's (``world_model.training``): Accelerate, diffusers' lr schedule,
    atomic rotated checkpoints in ``out_dir/ckpt`` and the run's totals in ``out_dir/training.json``.
    """
    from accelerate.utils import set_seed

    from .training import (GeneratorState, RunClock, make_accelerator, make_schedule, resume_checkpoint,
                           save_checkpoint, to_stderr, train_logger)

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    out = Path(cfg.out_dir)
    acc = make_accelerator(out, cfg.mixed_precision)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    log = train_logger(acc, out / "train.log", echo=to_stderr("world_model.autoencoder"))

    bank = bank if bank is not None else FrameBank(cfg.data_dir, cfg.max_shards)
    set_seed(cfg.seed)  # the same initialisation on every process
    model = FrameAutoencoder(latent_channels=cfg.latent_channels, channels=cfg.channels,
                             frame_size=bank.frame_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = make_schedule(cfg.lr_schedule, opt, cfg.warmup_steps, cfg.max_steps)
    rng = np.random.default_rng(cfg.seed + acc.process_index)  # the frame sampler, checkpointed with the run
    model, opt, sched = acc.prepare(model, opt, sched)
    acc.register_for_checkpointing(GeneratorState(rng))

    step = resume_checkpoint(acc, out, cfg.seed, log)
    clock = None
    if step is None:
        legacy = _resume_legacy(out / "ckpt" / LEGACY_STATE, acc.unwrap_model(model), opt, sched, rng, log)
        if legacy is not None:
            step, base = legacy
            clock = RunClock(base, cfg.batch_size * acc.num_processes)
    if step is None:
        step = 0
        log(f"autoencoder training: {len(bank)} frames at {bank.frame_size}x{bank.frame_size}, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, config {json.dumps(asdict(cfg))}")
    if acc.is_main_process:
        write_text_atomic(out / "train_config.json", json.dumps(asdict(cfg), indent=1))
    if clock is None:
        clock = RunClock.resume(out, step or None, cfg.batch_size * acc.num_processes, out / "train.log")
    saved = {"step": step}

    def save(step: int) -> dict[str, Any]:
        saved["step"] = step
        acc.wait_for_everyone()
        totals = clock.totals(step)
        if acc.is_main_process:
            d = save_checkpoint(acc, out, step, cfg.keep_checkpoints, state=totals)
            clock.write(out, step, totals)
            log(f"checkpoint {d.name}")
        return totals

    t_start, t_ckpt, t_window, losses = time.perf_counter(), time.perf_counter(), time.perf_counter(), []
    model.train()
    while step < cfg.max_steps:
        x = to_tensor(with_random_boxes(bank.sample(cfg.batch_size, rng), cfg.box_fraction, rng)).to(acc.device)
        x = torch.where(torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5, x, x.flip(-1))  # horizontal flips
        with acc.autocast():
            rec, z = model(x)
            loss = F.mse_loss(rec.float(), x) + cfg.latent_l2 * z.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.max_steps:
            now = time.perf_counter()
            mse = float(np.mean(losses))
            log(f"step {step} loss {mse:.5f} (~{10 * np.log10(4.0 / max(mse, 1e-12)):.2f} dB) "
                f"lr {sched.get_last_lr()[0]:.2e} {(now - t_window) / len(losses):.2f}s/step")
            losses, t_window = [], now
        if step % max(1, cfg.ckpt_every_steps) == 0 or time.perf_counter() - t_ckpt > 60 * cfg.ckpt_every_minutes:
            save(step)
            t_ckpt = time.perf_counter()
    totals = save(step) if step > saved["step"] else clock.totals(step)
    acc.wait_for_everyone()
    model = acc.unwrap_model(model).eval()
    info = {"steps": step, "wall_hours": round(totals["wall_seconds"] / 3600, 3), "frames_seen": totals["samples"],
            "invocations": totals["invocations"], "data_dir": cfg.data_dir}
    if acc.is_main_process:
        model.calibrate(to_tensor(bank.spread(cfg.calib_frames)).to(acc.device))
        tmp = out / "autoencoder.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        (tmp / "TRAINING.json").write_text(json.dumps(info, indent=1))
        replace_dir(tmp, out / "autoencoder")  # a reader never loads a half-written autoencoder
        log(f"finished: {json.dumps(info)}; saved {out / 'autoencoder'} "
            f"({(time.perf_counter() - t_start) / 60:.1f} min this invocation)")
    return {**info, "model": model}


# ============================================================================ CLI
def _parse(argv: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.from_dotlist(argv), resolve=True) or {}


def main(argv: list[str] | None = None) -> Any:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "train":
        raise SystemExit("usage: python -m world_model.autoencoder train key=value ...  "
                         "(the latent-space comparison: python -m research.latent_spaces)")
    res = train_autoencoder(AutoencoderTrainConfig.from_dict(_parse(argv[1:])))
    res.pop("model")
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
