"""World-model training throughput: the plain eager fp32 step against the default training path.

    spatialnav bench train [bench.kwargs.out=runs/bench_train.json] [bench.kwargs.threads=1]
    spatialnav bench train bench.kwargs.device=cuda        # the same on a GPU
    spatialnav bench train bench.kwargs.context_grad_every=1   # ablate one speed-up of the default arm
    .venv/bin/python benchmarks/bench_train.py --threads 1 --out runs/bench_train.json

Two arms of the small config (configs/world_model/small.yaml: batch 16, K = 8 context + 4 target + 1
bbox frames at 32x32, prefix attention), each a full optimiser step as ``world_model.train`` takes
it (condition dropout, logit-normal t, flow-matching loss, backward, gradient clipping, AdamW,
EMA update), on random tensors of the real shapes:

* **baseline**: eager fp32, back-propagation through every token (context and target) on every step;
* **default**: what ``spatialnav train world_model=small`` runs: ``mixed_precision`` resolved as
  training resolves it (``auto``: bf16 autocast where the device has bf16 units, else fp32),
  ``compile`` (each transformer block ``torch.compile``d in place; its compilation falls in the
  untimed warm-up steps) and ``context_grad_every`` (the context tokens are back-propagated on every n-th step only; the other
  steps run them once without autograd, ``Video4SpatialModel.forward(context_grad=False)``).

The arms alternate step by step (baseline, default, baseline, ...), so load from other processes
on a shared machine falls on both alike. The baseline's figure is the median over ``steps`` timed
steps after ``warmup`` untimed ones; the default arm's timed steps cover whole
``context_grad_every`` periods, and its figure is the median of its steps with the context's
backward and of those without, weighted by how often each occurs. FLOPs per step are counted once per arm (and per context-grad
setting) with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and attention, forward
and backward); GFLOP/s = counted FLOPs / median step time. The core's peak is *measured*: the
best of a few large square matrix products in fp32 and bf16 at the same thread count.

Whether the default path learns as well per wall-clock hour is not a speed question: see
docs/world_model.md ("Training throughput") for the held-out comparison.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

if "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # spinning OpenMP threads collapse on a shared 2-core machine

REPO = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 1.5          # issue target on an AVX2-only CPU
TARGET_SPEEDUP_BF16 = 2.0     # where the device has bf16 units


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def train_config(config: str | None = None):
    """The ``TrainConfig`` of ``config`` (default: configs/world_model/small.yaml), with no init_from
    (speed depends on the architecture, not on the weights)."""
    from omegaconf import OmegaConf

    from world_model.train import TrainConfig, flatten_config

    path = Path(config) if config else REPO / "configs" / "world_model" / "small.yaml"
    flat = flatten_config(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    flat["init_from"] = None
    return TrainConfig.from_dict(flat)


class Arm:
    """One training path: its model copy, optimiser, EMA and precision; ``step(i)`` takes optimiser step i."""

    def __init__(self, name: str, cfg, mixed_precision: str, context_grad_every: int, batch, device,
                 compile: bool = False) -> None:
        import dataclasses

        import torch

        from world_model.train import build_model, compile_blocks, make_ema, make_optimizer

        self.name, self.device = name, torch.device(device)
        self.cfg = dataclasses.replace(cfg, context_grad_every=int(context_grad_every), compile=bool(compile))
        self.mixed_precision = mixed_precision
        torch.manual_seed(0)
        self.model = build_model(self.cfg).to(self.device).train()
        if self.cfg.compile:
            compile_blocks(self.model)
        self.opt, self.sched = make_optimizer(self.model.parameters(), self.cfg)
        self.ema = make_ema(self.model.parameters(), self.cfg.ema_decay)
        self.batch = batch
        self.gen = torch.Generator().manual_seed(1)

    def loss(self, step: int, context_grad: bool | None = None):
        import torch

        from world_model.train import condition_dropout, context_grad_at, flow_matching_loss, sample_t

        if context_grad is None:
            context_grad = context_grad_at(self.cfg, step)

        ctx, tgt, text, idx = self.batch
        null = self.model.null_text_embedding
        ctx_d, text_d, _ = condition_dropout(ctx, text, null[None], self.cfg, generator=self.gen)
        t = sample_t(ctx.shape[0], self.cfg, generator=self.gen).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mixed_precision == "bf16"):
            return flow_matching_loss(self.model, ctx_d, tgt, text_d, idx, t, context_grad=context_grad)

    def step(self, step: int) -> float:
        import torch

        t0 = time.perf_counter()
        loss = self.loss(step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.ema.step(self.model.parameters())
        _sync(self.device)
        return time.perf_counter() - t0

    def flops(self, context_grad: bool) -> int:
        """Counted FLOPs of one step's forward and backward, with or without the context's backward.
        Count on an eager (uncompiled) arm: compiled kernels bypass the counter. FLOPs do not depend
        on the precision."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            self.loss(0, context_grad=context_grad).backward()
        self.opt.zero_grad(set_to_none=True)
        return int(fc.get_total_flops())


def random_batch(cfg, batch_size: int, device):
    """Random tensors of a real batch's shapes: context, target (+bbox), text states, sorted context indices."""
    import torch

    g = torch.Generator().manual_seed(0)
    s, k = int(cfg.frame_size), int(cfg.num_context)
    f = int(cfg.num_target) + int(cfg.num_bbox)
    text_dim = int(cfg.transformer["text_dim"])
    ctx = torch.randn(batch_size, 3, k, s, s, generator=g)
    tgt = torch.randn(batch_size, 3, f, s, s, generator=g)
    text = torch.randn(batch_size, int(cfg.text_len), text_dim, generator=g)
    idx = torch.stack([torch.sort(torch.randperm(96, generator=g)[:k]).values for _ in range(batch_size)])
    return tuple(x.to(device) for x in (ctx, tgt, text, idx))


def period_weighted_median(times: list[float], context_grad: list[bool]) -> float:
    """Seconds per step of a path whose steps come in two kinds (with / without the context's backward):
    the median of each kind, weighted by how often it occurs. A plain median would report the
    common cheap step and hide the periodic expensive one."""
    full = [t for t, g in zip(times, context_grad) if g]
    cheap = [t for t, g in zip(times, context_grad) if not g]
    if not full or not cheap:
        return statistics.median(times)
    w = len(full) / len(times)
    return w * statistics.median(full) + (1 - w) * statistics.median(cheap)


def matmul_peak_gflops(device, n: int = 1536, repeats: int = 5) -> dict:
    """Best GFLOP/s of an n x n matrix product in fp32 and bf16 (the measured peak of this core/card)."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b
        _sync(device)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        out[name] = 2 * n**3 / best / 1e9
    return out


def run(threads: int = 1, steps: int = 16, warmup: int = 4, batch_size: int | None = None,
        device: str = "cpu", config: str | None = None, out: str | None = None,
        context_grad_every: int | None = None, compile: bool | None = None,
        mixed_precision: str | None = None) -> dict:
    """Samples/s of the baseline (eager fp32, full backward) and the default training path; writes
    ``out`` (JSON) when given. Keys: baseline_samples_per_s, samples_per_s, speedup, gflops_per_s,
    baseline_gflops_per_s, peak_gflops_per_s, threads, device, and the settings behind them.
    ``context_grad_every``, ``compile``, ``mixed_precision``: override the config's value for the
    default arm (an ablation of one speed-up, e.g. ``bench.kwargs.context_grad_every=1``)."""
    import torch

    from world_model.pipeline import native_bf16
    from world_model.train import context_grad_at, resolve_mixed_precision

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"bench train device={device!r}, but torch sees no CUDA device; use device=cpu")
    if int(steps) < 1 or int(warmup) < 0:
        raise ValueError(f"bench train needs steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    torch.set_num_threads(int(threads))
    cfg = train_config(config)
    over = {k: v for k, v in (("context_grad_every", context_grad_every), ("compile", compile),
                              ("mixed_precision", mixed_precision)) if v is not None}
    if over:
        import dataclasses

        cfg = dataclasses.replace(cfg, **over)
    bs = int(batch_size or cfg.batch_size)
    batch = random_batch(cfg, bs, dev)
    mp = resolve_mixed_precision(cfg.mixed_precision, dev.type)
    base = Arm("baseline", cfg, "no", 1, batch, dev)
    default = Arm("default", cfg, mp, cfg.context_grad_every, batch, dev, compile=cfg.compile)
    period = max(1, int(cfg.context_grad_every))
    n_timed = period * -(-max(int(steps), period) // period)  # whole periods
    times = {"baseline": [], "default": []}
    with warnings.catch_warnings():  # rms_norm under CPU autocast: "Mismatch dtype ... fused implementation"
        warnings.filterwarnings("ignore", message="Mismatch dtype")
        for i in range(int(warmup)):
            base.step(i)
            default.step(i)
        for i in range(n_timed):
            times["baseline"].append(base.step(i))
            times["default"].append(default.step(i))
        flops_base = base.flops(True)
        flops_default = statistics.mean(base.flops(context_grad_at(default.cfg, i)) for i in range(period))
    peak = matmul_peak_gflops(dev)
    s_base = statistics.median(times["baseline"])
    s_def = period_weighted_median(times["default"], [context_grad_at(default.cfg, i) for i in range(n_timed)])
    dev_name = (f"{dev} ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda"
                else f"cpu ({platform.processor() or platform.machine()}; bf16 units: {native_bf16('cpu')})")
    res = {
        "config": str(config or "configs/world_model/small.yaml"),
        "overrides": over,
        "baseline_samples_per_s": bs / s_base,
        "samples_per_s": bs / s_def,
        "speedup": s_base / s_def,
        "gflops_per_s": flops_default / s_def / 1e9,
        "baseline_gflops_per_s": flops_base / s_base / 1e9,
        "peak_gflops_per_s": peak,
        "threads": int(threads),
        "device": dev_name,
        "bf16_units": bool(native_bf16(dev)),
        "batch_size": bs,
        "baseline": {"mixed_precision": "no", "context_grad_every": 1, "s_per_step": s_base,
                     "gflop_per_step": flops_base / 1e9, "step_times_s": times["baseline"]},
        "default": {"mixed_precision": mp, "context_grad_every": int(cfg.context_grad_every),
                    "compile": bool(cfg.compile), "s_per_step": s_def,
                    "gflop_per_step": flops_default / 1e9, "step_times_s": times["default"]},
        "steps_timed": n_timed, "warmup": int(warmup),
        "target_speedup": TARGET_SPEEDUP_BF16 if native_bf16(dev) else TARGET_SPEEDUP,
        "load_avg": list(os.getloadavg()),
        "torch": torch.__version__,
    }
    res["target_met"] = res["speedup"] >= res["target_speedup"]
    print_report(res)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {out}")
    return res


def print_report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    c.print(f"device: {r['device']}; {r['threads']} thread(s); batch {r['batch_size']}; "
            f"median of {r['steps_timed']} alternating steps; load avg {r['load_avg'][0]:.1f}")
    t = Table(title="bench train: one optimiser step of the small world model")
    for col in ("path", "precision", "compiled", "context grad", "s/step", "samples/s", "GFLOP/step", "GFLOP/s"):
        t.add_column(col, justify="right" if col not in ("path",) else "left")
    for name, key in (("baseline (eager fp32)", "baseline"), ("default", "default")):
        a = r[key]
        sps = r["baseline_samples_per_s"] if key == "baseline" else r["samples_per_s"]
        gf = r["baseline_gflops_per_s"] if key == "baseline" else r["gflops_per_s"]
        every = a["context_grad_every"]
        t.add_row(name, a["mixed_precision"], "yes" if a.get("compile") else "no", "every step" if every == 1 else ("never" if every == 0 else f"every {every}th"),
                  f"{a['s_per_step']:.3f}", f"{sps:.2f}", f"{a['gflop_per_step']:.1f}", f"{gf:.1f}")
    c.print(t)
    pk = r["peak_gflops_per_s"]
    c.print(f"measured matmul peak at {r['threads']} thread(s): fp32 {pk['fp32']:.0f} GFLOP/s, bf16 {pk['bf16']:.0f} GFLOP/s")
    c.print(f"speedup {r['speedup']:.2f}x (target >= {r['target_speedup']}x: {'met' if r['target_met'] else 'NOT met'})")


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(REPO))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    run(threads=a.threads, steps=a.steps, warmup=a.warmup, batch_size=a.batch_size, device=a.device,
        config=a.config, out=a.out)
