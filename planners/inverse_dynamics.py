"""Inverse dynamics: which action (and what relative pose) turns frame t into frame t+1.

Recovers the camera motion between imagined frames of a rollout, so the final
imagined view (the one with the box) can be placed relative to the agent.

Model: a small CNN on the two frames resized to ``image_size`` (channels: frame t,
frame t+1, and their difference: 9), stride-2 conv blocks, global average pool,
then two heads: logits over the motion actions (MOVE_FORWARD, TURN_LEFT,
TURN_RIGHT) and the relative pose (dx forward m, dy left m, dyaw rad) of frame
t+1's camera in frame t's.

Loss = cross-entropy(logits, action) + delta_weight * SmoothL1(delta / scale, target / scale),
scale = (0.25 m, 0.25 m, 30 deg): both terms are O(1) per sample.

Training data are transitions of a random walk in the simulator
(``collect_transitions`` with the Gymnasium env; collided forward steps are
dropped: an imagined rollout has none), or, for tests, ``synthetic_transitions``:
image pairs made by shifting (turns) and zooming (forward) random textures.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from scipy import ndimage
from torch import nn

from envs.actions import FORWARD_STEP_M, TURN_ANGLE_DEG, Action
from planners.camera import compose, pose_from_obs, relative

MOTIONS = (Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT)  # class index -> env action
_TURN = math.radians(TURN_ANGLE_DEG)
CANONICAL_DELTAS = np.array([[FORWARD_STEP_M, 0.0, 0.0], [0.0, 0.0, _TURN], [0.0, 0.0, -_TURN]])
DELTA_SCALE = np.array([FORWARD_STEP_M, FORWARD_STEP_M, _TURN])


class InverseDynamicsModel(ModelMixin, ConfigMixin):
    """Two frames -> (action logits (B, 3), relative pose (B, 3)). See the module docstring."""

    @register_to_config
    def __init__(self, image_size: int = 64, channels: tuple = (16, 32, 64, 64), hidden: int = 128,
                 num_actions: int = len(MOTIONS)):
        super().__init__()
        if image_size < 2 ** len(channels):
            raise ValueError(f"image_size={image_size} too small for {len(channels)} stride-2 blocks")
        layers, c_in = [], 9
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.SiLU()]
            c_in = c
        self.encoder = nn.Sequential(*layers)
        # Pooling to a 2x2 grid keeps where things moved (left/right, centre/edges) for the heads.
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.mlp = nn.Sequential(nn.Linear(c_in * 4, hidden), nn.SiLU())
        self.action_head = nn.Linear(hidden, num_actions)
        self.delta_head = nn.Linear(hidden, 3)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frame_a, frame_b: (B, 3, S, S) in [0, 1]. Returns logits (B, A) and deltas (B, 3) in metres/radians."""
        x = torch.cat([frame_a, frame_b, frame_b - frame_a], dim=1)
        z = self.mlp(self.pool(self.encoder(x)).flatten(1))
        scale = torch.as_tensor(DELTA_SCALE, dtype=z.dtype, device=z.device)
        return self.action_head(z), self.delta_head(z) * scale


def frames_to_tensor(frames, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) (or (H, W, 3)) -> float (N, 3, S, S) in [0, 1], area-resized."""
    f = np.asarray(frames)
    if f.ndim == 3:
        f = f[None]
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"frames must be (N, H, W, 3) RGB, got shape {np.shape(frames)}")
    t = torch.from_numpy(np.ascontiguousarray(f)).permute(0, 3, 1, 2).float()
    if f.dtype == np.uint8:
        t = t / 255.0
    if t.shape[-2:] != (image_size, image_size):
        t = F.interpolate(t, size=(image_size, image_size), mode="area")
    return t


@dataclass
class Transitions:
    """Frame pairs with labels. frames_a/frames_b (N, H, W, 3) uint8; actions (N,) class index into
    MOTIONS; deltas (N, 3) relative pose of b's camera in a's frame (dx, dy, dyaw)."""

    frames_a: np.ndarray
    frames_b: np.ndarray
    actions: np.ndarray
    deltas: np.ndarray

    def __post_init__(self):
        n = len(self.actions)
        if not (len(self.frames_a) == len(self.frames_b) == len(self.deltas) == n):
            raise ValueError("frames_a, frames_b, actions and deltas must have the same length")
        if n and (self.actions.min() < 0 or self.actions.max() >= len(MOTIONS)):
            raise ValueError(f"actions must be class indices 0..{len(MOTIONS) - 1} into MOTIONS")

    def __len__(self) -> int:
        return len(self.actions)

    def split(self, holdout: float, seed: int = 0) -> tuple["Transitions", "Transitions"]:
        idx = np.random.default_rng(seed).permutation(len(self))
        k = int(round(len(self) * (1 - holdout)))
        return self.subset(idx[:k]), self.subset(idx[k:])

    def subset(self, idx) -> "Transitions":
        return Transitions(self.frames_a[idx], self.frames_b[idx], self.actions[idx], self.deltas[idx])


def synthetic_transitions(n: int, image_size: int = 32, seed: int = 0, zoom: float = 1.15,
                          shift_frac: float = 0.3) -> Transitions:
    """Frame pairs that mimic the camera motions on smooth random textures.

    Turning left by 30 deg moves the scene right in the image by about f tan(30 deg) =
    0.35 W at hfov 79 deg (``shift_frac``); a 0.25 m step at ~2 m zooms by ~1.15.
    """
    rng = np.random.default_rng(seed)
    s = image_size
    big = 2 * s
    fa = np.empty((n, s, s, 3), np.uint8)
    fb = np.empty((n, s, s, 3), np.uint8)
    acts = rng.integers(0, len(MOTIONS), n)
    for i in range(n):
        tex = ndimage.gaussian_filter(rng.uniform(0, 255, (big, big, 3)), (s / 16, s / 16, 0))
        tex = (tex - tex.min()) / max(np.ptp(tex), 1e-6) * 255.0
        y0 = x0 = s // 2
        a = tex[y0:y0 + s, x0:x0 + s]
        sh = int(round(shift_frac * s * rng.uniform(0.8, 1.2)))
        if acts[i] == 0:  # forward: centre crop of 1/zoom, resized back up
            z = zoom * rng.uniform(0.95, 1.05)
            c = s / z
            b = _zoom_crop(tex, y0 + (s - c) / 2, c, s)
        elif acts[i] == 1:  # turn left: the view window moves left, the scene shifts right
            b = tex[y0:y0 + s, x0 - sh:x0 - sh + s]
        else:
            b = tex[y0:y0 + s, x0 + sh:x0 + sh + s]
        fa[i] = np.clip(a + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8)
        fb[i] = np.clip(b + rng.normal(0, 2, b.shape), 0, 255).astype(np.uint8)
    return Transitions(fa, fb, acts.astype(np.int64), CANONICAL_DELTAS[acts].copy())


def _zoom_crop(tex: np.ndarray, lo: float, c: float, s: int) -> np.ndarray:
    coords = lo + (np.arange(s) + 0.5) * (c / s) - 0.5
    rr, cc = np.meshgrid(coords, coords, indexing="ij")
    return np.stack([ndimage.map_coordinates(tex[..., k], [rr, cc], order=1) for k in range(3)], -1)


def collect_transitions(env, n: int, seed: int = 0, forward_prob: float = 0.6, min_move_m: float = 0.05,
                        episode_steps: int = 60) -> Transitions:
    """Random-walk transitions from a Gymnasium env with the spatialnav observation contract.

    Actions: MOVE_FORWARD with ``forward_prob``, else a turn. Labels come from gps/compass:
    the relative pose of the new frame in the old one. Forward steps that moved less than
    ``min_move_m`` (collisions) are dropped. A new episode starts every ``episode_steps``.
    """
    rng = np.random.default_rng(seed)
    fa, fb, acts, deltas = [], [], [], []
    obs, _ = env.reset(seed=seed)
    steps = 0
    while len(acts) < n:
        if rng.random() < forward_prob:
            k = 0
        else:
            k = 1 + int(rng.integers(2))
        obs2, _, term, trunc, _ = env.step(int(MOTIONS[k]))
        d = relative(pose_from_obs(obs), pose_from_obs(obs2))
        if not (k == 0 and math.hypot(d[0], d[1]) < min_move_m):
            fa.append(obs["rgb"])
            fb.append(obs2["rgb"])
            acts.append(k)
            deltas.append(d)
        obs = obs2
        steps += 1
        if term or trunc or steps >= episode_steps:
            obs, _ = env.reset(seed=int(rng.integers(1 << 31)))
            steps = 0
    return Transitions(np.stack(fa), np.stack(fb), np.array(acts, np.int64), np.stack(deltas).astype(np.float64))


def _batch(data: Transitions, idx, image_size: int, device) -> tuple:
    a = frames_to_tensor(data.frames_a[idx], image_size).to(device)
    b = frames_to_tensor(data.frames_b[idx], image_size).to(device)
    y = torch.as_tensor(data.actions[idx], device=device)
    d = torch.as_tensor(data.deltas[idx], dtype=torch.float32, device=device)
    return a, b, y, d


def inverse_dynamics_loss(model, a, b, y, d, delta_weight: float = 1.0) -> torch.Tensor:
    logits, delta = model(a, b)
    scale = torch.as_tensor(DELTA_SCALE, dtype=delta.dtype, device=delta.device)
    return F.cross_entropy(logits, y) + delta_weight * F.smooth_l1_loss(delta / scale, d / scale)


def train_inverse_dynamics(model: InverseDynamicsModel, data: Transitions, steps: int = 500, batch_size: int = 32,
                           lr: float = 1e-3, seed: int = 0, delta_weight: float = 1.0, flip_augment: bool = True,
                           max_seconds: float | None = None, device: str = "cpu", log_every: int = 0,
                           out_dir: str | Path | None = None, ckpt_every_steps: int = 500, keep_checkpoints: int = 2,
                           lr_schedule: str = "constant", warmup_steps: int = 0) -> list[float]:
    """AdamW on random minibatches; returns the per-step losses of this call.

    ``flip_augment`` mirrors both frames left-right half the time, swapping TURN_LEFT and
    TURN_RIGHT and negating dy and dyaw: the motion model is left-right symmetric.

    The loop is the project's (``world_model.training``): Accelerate (``device`` "cpu" or "cuda"),
    the learning rate from diffusers' ``get_scheduler(lr_schedule)`` over ``steps``. With an
    ``out_dir`` the run checkpoints there (``ckpt/step_*`` every ``ckpt_every_steps`` steps and at
    the end, the newest ``keep_checkpoints`` kept; model, optimiser, schedule, the batch sampler),
    a call with the same ``out_dir`` resumes from the newest checkpoint and trains up to ``steps``
    in all, and ``training.json`` and ``train.log`` record the run (steps, samples, wall seconds
    over every invocation). ``max_seconds`` bounds this call.
    """
    from accelerate.utils import set_seed

    from world_model.training import (GeneratorState, RunClock, make_accelerator, make_schedule, resume_checkpoint,
                                      save_checkpoint, train_logger)

    if len(data) == 0:
        raise ValueError("no transitions to train on")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    out = Path(out_dir) if out_dir is not None else None
    acc = make_accelerator(out if out is not None else ".", cpu=device == "cpu")
    gen = np.random.default_rng(seed + acc.process_index)
    set_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = make_schedule(lr_schedule, opt, warmup_steps, max(1, int(steps)))
    net, opt, sched = acc.prepare(model, opt, sched)
    acc.register_for_checkpointing(GeneratorState(gen))
    step, clock, log = 0, None, None
    if out is not None:
        if acc.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        log = train_logger(acc, out / "train.log", echo=print if log_every else None)
        resumed = resume_checkpoint(acc, out, seed, log)
        if resumed is None:
            log(f"start: inverse dynamics, {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M params, "
                f"{len(data)} transitions, batch {batch_size}, lr {lr} ({lr_schedule})")
        step = resumed or 0
        clock = RunClock.resume(out, resumed, batch_size * acc.num_processes, out / "train.log")

    def save(step: int) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            totals = clock.totals(step)
            log(f"checkpoint {save_checkpoint(acc, out, step, keep_checkpoints, state=totals).name}")
            clock.write(out, step, totals)

    dev = acc.device
    swap = torch.tensor([0, 2, 1], device=dev)
    sign = torch.tensor([1.0, -1.0, -1.0], device=dev)
    losses, t0, saved = [], time.monotonic(), step
    while step < int(steps):
        idx = gen.integers(0, len(data), min(batch_size, len(data)))
        a, b, y, d = _batch(data, idx, model.config.image_size, dev)
        if flip_augment:
            flip = torch.as_tensor(gen.random(len(idx)) < 0.5, device=dev)
            a = torch.where(flip[:, None, None, None], a.flip(-1), a)
            b = torch.where(flip[:, None, None, None], b.flip(-1), b)
            y = torch.where(flip, swap[y], y)
            d = torch.where(flip[:, None], d * sign, d)
        loss = inverse_dynamics_loss(net, a, b, y, d, delta_weight)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        sched.step()
        step += 1
        losses.append(float(loss.detach()))
        if log_every and len(losses) % log_every == 0:
            msg = f"inverse dynamics step {step}: loss {np.mean(losses[-log_every:]):.4f}"
            if log is not None:
                log(msg)
            else:
                print(msg, flush=True)
        if out is not None and step % max(1, ckpt_every_steps) == 0:
            save(step)
            saved = step
        if max_seconds is not None and time.monotonic() - t0 > max_seconds:
            break
    if out is not None and step > saved:
        save(step)
    model.eval()
    return losses


@torch.no_grad()
def predict(model: InverseDynamicsModel, frames_a, frames_b, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Action probabilities (N, 3) over MOTIONS and relative poses (N, 3) for frame pairs."""
    model.eval()
    dev = next(model.parameters()).device
    probs, deltas = [], []
    fa, fb = np.asarray(frames_a), np.asarray(frames_b)
    for i in range(0, len(fa), batch_size):
        a = frames_to_tensor(fa[i:i + batch_size], model.config.image_size).to(dev)
        b = frames_to_tensor(fb[i:i + batch_size], model.config.image_size).to(dev)
        logits, delta = model(a, b)
        probs.append(torch.softmax(logits, -1).cpu().numpy())
        deltas.append(delta.cpu().numpy())
    return np.concatenate(probs), np.concatenate(deltas).astype(np.float64)


def evaluate(model: InverseDynamicsModel, data: Transitions) -> dict[str, float]:
    """accuracy of the action class; mean absolute errors of dx, dy (m) and dyaw (deg)."""
    probs, deltas = predict(model, data.frames_a, data.frames_b)
    err = np.abs(deltas - data.deltas)
    return {"accuracy": float((probs.argmax(1) == data.actions).mean()), "n": int(len(data)),
            "mae_dx_m": float(err[:, 0].mean()), "mae_dy_m": float(err[:, 1].mean()),
            "mae_dyaw_deg": float(np.degrees(err[:, 2].mean()))}


def integrate(model: InverseDynamicsModel, frames, mode: str = "discrete", min_prob: float = 0.0) -> np.ndarray:
    """Relative camera poses (T, 3) of frames (T, H, W, 3) in frame 0's frame (frame 0 = (0, 0, 0)).

    mode="discrete" composes the canonical motion of the most likely action (the env's
    motions are exact: 0.25 m or +-30 deg); pairs whose top probability is below
    ``min_prob`` contribute no motion. mode="regress" composes the regressed deltas.
    """
    if mode not in ("discrete", "regress"):
        raise ValueError(f"mode must be 'discrete' or 'regress', got {mode!r}")
    f = np.asarray(frames)
    if f.ndim != 4 or len(f) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got shape {f.shape}")
    poses = [np.zeros(3)]
    if len(f) > 1:
        probs, deltas = predict(model, f[:-1], f[1:])
        for p, d in zip(probs, deltas):
            if mode == "discrete":
                d = CANONICAL_DELTAS[int(p.argmax())] if p.max() >= min_prob else np.zeros(3)
            poses.append(compose(poses[-1], d))
    return np.stack(poses)


def main(argv=None) -> dict:
    """Collect train/held-out transitions from the env, train for a time budget, report accuracy."""
    import argparse
    import json

    from envs.gym_env import ObjectNavEnv

    ap = argparse.ArgumentParser(prog="python -m planners.inverse_dynamics", description=main.__doc__)
    ap.add_argument("--n-train", type=int, default=3000, help="transitions from train-split scenes")
    ap.add_argument("--n-heldout", type=int, default=600, help="transitions from val-split scenes")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=240.0, help="training time budget")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", default=None, help="save_pretrained directory (optional)")
    ap.add_argument("--run-dir", default=None,
                    help="checkpoints (ckpt/step_*), train.log and training.json; the same command resumes (optional)")
    ap.add_argument("--steps", type=int, default=10 ** 9, help="optimiser steps in all (the time budget usually ends first)")
    ap.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints (with --run-dir)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    s = args.image_size
    train = collect_transitions(ObjectNavEnv(split="train", n_episodes=8, width=s, height=s), args.n_train, seed=0)
    held = collect_transitions(ObjectNavEnv(split="val", n_episodes=4, width=s, height=s), args.n_heldout, seed=1)
    model = InverseDynamicsModel(image_size=s)
    losses = train_inverse_dynamics(model, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                    max_seconds=args.seconds, log_every=200, out_dir=args.run_dir,
                                    ckpt_every_steps=args.ckpt_every)
    report = {"steps": len(losses), "heldout": evaluate(model, held),
              "train": evaluate(model, train.subset(np.arange(min(len(train), args.n_heldout))))}
    print(json.dumps(report, indent=1))
    if args.out:
        model.save_pretrained(args.out)
    return report


if __name__ == "__main__":
    main()
