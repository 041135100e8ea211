"""World-model speed: seconds per imagine call, batched vs sequential CFG, training samples/s, memory, SSG.

    spatialnav bench wm [bench.kwargs.threads=[1,2]] [bench.kwargs.pipeline=DIR] [bench.kwargs.ssg_path=DIR]
    spatialnav bench wm bench.kwargs.device=cuda          # a GPU: the same timings on the card
    .venv/bin/python benchmarks/bench_wm.py --threads 1 2 [--device cuda]

At the agent's default sampling configuration (configs/agent/world_model.yaml: K = 8 context
frames, T = 4 target + B = 1 bbox frames, 8 Euler steps, joint CFG with w = 3) and with 16
steps, per torch thread count:

* **imagine**: wall seconds of ``pipe.imagine`` (instruction encoding, context K/V cache, the
  denoising loop, decoding), best and median of ``repeats`` calls after a warm-up call, at the
  default precision (``precision="auto"``: bf16 autocast where the CPU has bf16 units, AMX /
  AVX512-BF16, else fp32) and, for reference, in fp32;
* **best-of-N**: ``pipe.imagine(..., num_samples=N)`` at the first step count and the default
  precision, N = ``best_of`` (4: the agent's ``num_candidates=4`` ranking mode; target <= 0.5 s);
* **batched vs sequential CFG**: the 8-step denoising loop with both joint-CFG branches in one
  batch-2 forward (what ``imagine`` does) against two batch-1 single-branch forwards per step,
  each including its context encoding, at the default precision; speedup = sequential / batched;
* **training**: samples/s of a few AdamW steps of the small config (configs/world_model/small.yaml,
  batch 16, K = 8 + 5 target frames, bf16 autocast as that config trains) on random tensors;
* **SSG**: extra seconds per imagine call with the SSG adapter (``imagine(ssg=True)`` vs
  ``ssg=False``), when the pipeline has one loaded or ``ssg_path`` can be loaded with
  ``pipe.load_ssg``; skipped with the reason otherwise.

The weights are the shipped / trained pipeline when one is found (world_model.loading.resolve_pipeline_path),
else a freshly initialised model of the small architecture: speed depends on the architecture,
not on the weights. Peak memory is the process's max RSS (``resource.getrusage``) and, on a GPU,
the card's peak allocation (``torch.cuda.max_memory_allocated``). With ``device`` a GPU the
pipeline, the training step and every input move to it, each timing ends with a device
synchronisation, and the thread sweep is one row (host threads hardly matter there).
``OMP_WAIT_POLICY=PASSIVE`` is set when torch is not imported yet: on a shared 2-core machine
spinning OpenMP threads otherwise make 2 threads many times slower than 1.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

_OMP_SET = "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ
if _OMP_SET:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import numpy as np  # noqa: E402

TARGET_IMAGINE_S = 0.5
TARGET_CFG_SPEEDUP = 1.6
REPO = Path(__file__).resolve().parents[1]


def small_config():
    from omegaconf import OmegaConf

    return OmegaConf.load(REPO / "configs" / "world_model" / "small.yaml")


def fresh_small_model(seed: int = 0):
    import torch
    from omegaconf import OmegaConf

    from world_model.model import Video4SpatialModel

    m = small_config().model
    torch.manual_seed(seed)
    return Video4SpatialModel(transformer_config=OmegaConf.to_container(m.transformer), text_len=int(m.text_len),
                              text_encoder=str(m.text_encoder), target_index_offset=int(m.target_index_offset),
                              frame_size=(int(m.frame_size), int(m.frame_size)),
                              context_attention=str(m.get("context_attention", "full")))


def load_bench_pipeline(path=None):
    """(pipeline, description): ``path`` itself when it is a pipeline object, the pipeline saved there,
    the shipped/trained pipeline if any, else a fresh small model."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        return path, f"given {type(path).__name__}"
    from world_model.loading import load_pipeline, resolve_pipeline_path
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    try:
        p = resolve_pipeline_path(path)
    except FileNotFoundError:
        if path:
            raise
        p = None
    if p is not None:
        return load_pipeline(p), f"trained pipeline {p}"
    cfg = small_config()
    pipe = Video4SpatialPipeline(fresh_small_model().eval(), make_scheduler(), num_target_frames=int(cfg.train.num_target),
                                 num_bbox_frames=int(cfg.train.num_bbox))
    return pipe, "freshly initialised small model (configs/world_model/small.yaml; no trained pipeline found)"


def _inputs(pipe, k: int, seed: int = 0):
    s = int(pipe.model.config.frame_size[0])
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (k, s, s, 3), dtype=np.uint8)
    idx = np.sort(rng.choice(96, size=k - 1, replace=False)).tolist() + [99]  # non-contiguous, current last
    return frames, np.asarray(idx)


def _sync(device) -> None:
    """Wait for queued GPU work, so a wall-clock timing covers it (no-op on the CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _times(fn, repeats: int, device="cpu") -> list[float]:
    fn()  # warm-up
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def cfg_batched_vs_sequential(pipe, frames, idx, instruction: str, num_steps: int, repeats: int) -> dict:
    """Seconds of a ``num_steps`` joint-CFG denoising loop: both branches batched vs two single-branch passes."""
    import torch

    from world_model.latents import encode_frames

    m = pipe.model
    dev = m.device
    n_f = int(pipe.config.num_target_frames) + int(pipe.config.num_bbox_frames)
    with torch.no_grad():
        ctx = encode_frames(frames[None], pipe.autoencoder, device=dev, dtype=m.dtype)
        text = pipe.text_encoder.encode([instruction]).to(dev, m.dtype)
    null = m.null_text(1).to(dev, m.dtype)
    g = torch.Generator().manual_seed(0)
    z_ctx = torch.randn(ctx.shape, generator=g).to(dev)
    lat0 = torch.randn((1, ctx.shape[1], n_f, *ctx.shape[3:]), generator=g).to(dev)
    ci = torch.as_tensor(idx)[None].to(dev)
    ts = torch.linspace(1000.0, 1000.0 / num_steps, num_steps).to(dev)
    cached = m.uses_context_cache

    @torch.no_grad()
    def batched():
        lat = lat0.clone()
        c2, t2 = torch.cat([ctx, z_ctx]), torch.cat([text, null])
        cache = m.encode_context(c2, t2, ci.expand(2, -1), n_f) if cached else None
        for t in ts:
            x = lat.repeat(2, 1, 1, 1, 1)
            v = m.forward_cached(x, t.expand(2), t2, cache) if cached else m(c2, x, t.expand(2), t2, ci.expand(2, -1))
            vc, vu = v.chunk(2)
            lat = lat - 0.1 * (vu + 3.0 * (vc - vu))

    @torch.no_grad()
    def sequential():
        lat = lat0.clone()
        caches = [m.encode_context(c, tx, ci, n_f) for c, tx in ((ctx, text), (z_ctx, null))] if cached else None
        for t in ts:
            vs = []
            for j, (c, tx) in enumerate(((ctx, text), (z_ctx, null))):
                vs.append(m.forward_cached(lat, t.reshape(1), tx, caches[j]) if cached else m(c, lat, t.reshape(1), tx, ci))
            lat = lat - 0.1 * (vs[1] + 3.0 * (vs[0] - vs[1]))

    tb, tsq = [], []
    batched(), sequential()  # warm-up
    _sync(dev)
    for _ in range(repeats):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        batched()
        _sync(dev)
        tb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sequential()
        _sync(dev)
        tsq.append(time.perf_counter() - t0)
    b, s = min(tb), min(tsq)
    return {"batched_s": b, "sequential_s": s, "speedup": s / b, "context_cache": bool(cached)}


def train_samples_per_s(batch_size: int, steps: int, mixed_precision: str | None = None, device="cpu") -> dict:
    """A few AdamW steps of the small config on random tensors (flow matching loss, as train.py)."""
    import torch

    from world_model.train import flow_matching_loss

    cfg = small_config()
    dev = torch.device(device)
    mp = str(mixed_precision or cfg.train.get("mixed_precision", "no") or "no")
    model = fresh_small_model().to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    s, k = int(cfg.model.frame_size), int(cfg.train.num_context)
    f = int(cfg.train.num_target) + int(cfg.train.num_bbox)
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(batch_size, 3, k, s, s, generator=g)
    tgt = torch.randn(batch_size, 3, f, s, s, generator=g)
    text = torch.randn(batch_size, int(cfg.model.text_len), int(cfg.model.transformer.text_dim), generator=g)
    idx = torch.sort(torch.randperm(96, generator=g)[:k]).values[None].expand(batch_size, -1)
    ctx, tgt, text, idx = (x.to(dev) for x in (ctx, tgt, text, idx))

    def step():
        t = torch.rand(batch_size, generator=g).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=(mp == "bf16")):
            loss = flow_matching_loss(model, ctx, tgt, text, idx, t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    with warnings.catch_warnings():  # rms_norm under CPU autocast: "Mismatch dtype ... fused implementation"
        warnings.filterwarnings("ignore", message="Mismatch dtype")
        ts = _times(step, steps, dev)
    return {"batch_size": batch_size, "mixed_precision": mp, "s_per_step": statistics.median(ts),
            "samples_per_s": batch_size / statistics.median(ts), "steps_timed": steps}


def ssg_cost(pipe, frames, idx, instruction: str, ssg_path: str | None, num_steps: int, repeats: int,
             device="cpu") -> dict:
    """Extra seconds per imagine call with SSG, or {"skipped": reason}.

    The adapter is the pipeline's own, else ``ssg_path`` (``pipe.load_ssg``), else a freshly
    initialised one over the shipped small CLIP (``pipe.init_ssg()``): the cost does not depend on
    the adapter's weights. An adapter installed here is removed again afterwards."""
    import inspect

    if "ssg" not in inspect.signature(pipe.imagine).parameters:
        return {"skipped": "Video4SpatialPipeline.imagine has no ssg argument yet"}
    added = False
    if getattr(pipe, "ssg_prompter", None) is not None:
        which = "the pipeline's SSG adapter"
    else:
        try:
            if ssg_path:
                pipe.load_ssg(str(ssg_path))
                which = f"SSG adapter {ssg_path}"
            elif hasattr(pipe, "init_ssg"):
                pipe.init_ssg()
                which = "freshly initialised SSG adapter (timing only) over the shipped small CLIP"
            else:
                return {"skipped": "the pipeline has no SSG adapter and no load_ssg/init_ssg"}
        except Exception as e:  # report, do not fail the whole benchmark
            return {"skipped": f"could not set up SSG: {type(e).__name__}: {e}"}
        added = True
    try:
        kw = dict(num_steps=num_steps, guidance_scale=3.0, cfg_mode="joint", seed=0)
        off = _times(lambda: pipe.imagine(frames, idx, instruction, ssg=False, **kw), repeats, device)
        on = _times(lambda: pipe.imagine(frames, idx, instruction, ssg=True, **kw), repeats, device)
    finally:
        if added and hasattr(pipe, "unload_ssg"):
            pipe.unload_ssg()
    return {"adapter": which, "imagine_s_without": min(off), "imagine_s_with": min(on),
            "ssg_extra_s": min(on) - min(off)}


def run(pipeline: str | None = None, threads=(1, 2), repeats: int = 3, num_context: int = 8,
        steps=(8, 16), train_steps: int = 3, train_batch: int = 16, ssg_path: str | None = None,
        training: bool = True, device: str = "cpu", best_of: int = 4, ssg: bool = True) -> dict:
    """Measure imagine latency, batched-CFG speedup, training throughput, memory and SSG cost per thread count
    (``device``: "cpu", or a GPU such as "cuda" / "cuda:1", where the thread sweep is one row)."""
    import torch

    from world_model.pipeline import resolve_precision

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"bench wm device={device!r}, but torch sees no CUDA device "
                           f"(torch {torch.__version__}); use device=cpu")
    pipe, which = load_bench_pipeline(pipeline)
    if dev.type != "cpu":
        pipe.to(dev)
        threads = (torch.get_num_threads(),)
        torch.cuda.reset_peak_memory_stats(dev)
    prec = resolve_precision("auto", pipe.model.device, pipe.model.dtype)
    frames, idx = _inputs(pipe, int(num_context))
    instruction = "go to the blue chair left of the bed"
    _ = pipe.text_encoder  # load the instruction encoder outside the timings
    out = {"world_model": which, "device": str(dev) if dev.type == "cpu" else f"{dev} ({torch.cuda.get_device_name(dev)})",
           "params_m": pipe.model.num_parameters_m(),
           "context_attention": getattr(pipe.model.config, "context_attention", "full"),
           "num_context": int(num_context), "num_target": int(pipe.config.num_target_frames),
           "num_bbox": int(pipe.config.num_bbox_frames), "frame_size": list(pipe.model.config.frame_size),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"), "repeats": repeats,
           "ssg_in_imagine_timings": getattr(pipe, "ssg_prompter", None) is not None, "precision": prec,
           "load_avg": list(os.getloadavg()), "results": []}
    for th in threads:
        torch.set_num_threads(int(th))
        r: dict = {"threads": int(th)}
        for n in steps:
            for p, key in ((prec, f"imagine_{n}_steps"), ("fp32", f"imagine_{n}_steps_fp32")):
                if p == "fp32" and prec == "fp32" and key.endswith("fp32"):
                    r[f"{key}_s"] = r[f"imagine_{n}_steps_s"]
                    continue
                ts = _times(lambda: pipe.imagine(frames, idx, instruction, num_steps=int(n), guidance_scale=3.0,
                                                 cfg_mode="joint", seed=0, precision=p), repeats, dev)
                r[f"{key}_s"] = min(ts)
                r[f"{key}_median_s"] = statistics.median(ts)
        if int(best_of) > 1:  # N candidates in one batched call (the agent's ranking mode)
            ts = _times(lambda: pipe.imagine(frames, idx, instruction, num_steps=int(steps[0]), guidance_scale=3.0,
                                             cfg_mode="joint", seed=0, precision=prec, num_samples=int(best_of)),
                        repeats, dev)
            r["imagine_best_of_s"], r["imagine_best_of_median_s"] = min(ts), statistics.median(ts)
        with pipe.autocast(prec):
            r["cfg"] = cfg_batched_vs_sequential(pipe, frames, idx, instruction, int(steps[0]), max(1, repeats - 1))
        if training:
            r["train"] = train_samples_per_s(int(train_batch), int(train_steps), device=dev)
        out["results"].append(r)
    fastest = min(out["results"], key=lambda r: r[f"imagine_{steps[0]}_steps_s"])["threads"]
    torch.set_num_threads(int(fastest))  # SSG's cost at the thread count imagine runs fastest with
    out["ssg"] = (ssg_cost(pipe, frames, idx, instruction, ssg_path, int(steps[0]), max(1, repeats - 1), dev)
                  if ssg else {"skipped": "ssg=False"})
    out["ssg"]["threads"] = int(fastest)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    best = min(r[f"imagine_{steps[0]}_steps_s"] for r in out["results"])
    best_cfg = max(r["cfg"]["speedup"] for r in out["results"])
    out["best_of"] = int(best_of)
    out["targets"] = {"imagine_s": TARGET_IMAGINE_S, "imagine_best_s": best, "imagine_met": best <= TARGET_IMAGINE_S,
                      "cfg_speedup": TARGET_CFG_SPEEDUP, "cfg_speedup_best": best_cfg,
                      "cfg_met": best_cfg >= TARGET_CFG_SPEEDUP}
    if int(best_of) > 1:
        bo = min(r["imagine_best_of_s"] for r in out["results"])
        out["targets"].update({"imagine_best_of_best_s": bo, "imagine_best_of_met": bo <= TARGET_IMAGINE_S})
    print_report(out, steps)
    return out


def print_report(out: dict, steps=(8, 16)) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    c.print(f"device: {out.get('device', 'cpu')}; world model: {out['world_model']} ({out['params_m']:.2f} M params, {out['context_attention']} attention), "
            f"K={out['num_context']} context + {out['num_target']} target + {out['num_bbox']} bbox frames at "
            f"{out['frame_size'][0]}x{out['frame_size'][1]}, joint CFG w=3, precision {out['precision']}, SSG {'on' if out['ssg_in_imagine_timings'] else 'off'}; "
            f"OMP_WAIT_POLICY={out['omp_wait_policy']}; "
            f"load avg {out['load_avg'][0]:.1f}")
    t = Table(title=f"bench wm: seconds, best of {out['repeats']}")
    t.add_column("threads")
    for n in steps:
        t.add_column(f"imagine {n} st", justify="right")
    t.add_column(f"{steps[0]} st fp32", justify="right")
    if out.get("best_of", 1) > 1:
        t.add_column(f"{steps[0]} st N={out['best_of']}", justify="right")
    t.add_column(f"CFG {steps[0]} st batched", justify="right")
    t.add_column("2 x single", justify="right")
    t.add_column("speedup", justify="right")
    t.add_column("train smp/s", justify="right")
    for r in out["results"]:
        cells = [str(r["threads"])]
        cells += [f"{r[f'imagine_{n}_steps_s']:.3f}" for n in steps]
        cells.append(f"{r[f'imagine_{steps[0]}_steps_fp32_s']:.3f}")
        if "imagine_best_of_s" in r:
            cells.append(f"{r['imagine_best_of_s']:.3f}")
        cells += [f"{r['cfg']['batched_s']:.3f}", f"{r['cfg']['sequential_s']:.3f}", f"{r['cfg']['speedup']:.2f}x"]
        tr = r.get("train")
        cells.append(f"{tr['samples_per_s']:.1f} ({tr['s_per_step']:.2f} s/it)" if tr else "-")
        t.add_row(*cells)
    c.print(t)
    g = out["targets"]
    c.print(f"targets: imagine <= {g['imagine_s']} s at {steps[0]} steps: best {g['imagine_best_s']:.3f} s "
            f"({'met' if g['imagine_met'] else 'NOT met'}); batched CFG >= {g['cfg_speedup']}x: best "
            f"{g['cfg_speedup_best']:.2f}x ({'met' if g['cfg_met'] else 'NOT met'})")
    if "imagine_best_of_best_s" in g:
        c.print(f"best-of-{out['best_of']} imagine (one batched call) <= {g['imagine_s']} s at {steps[0]} steps: best "
                f"{g['imagine_best_of_best_s']:.3f} s ({'met' if g['imagine_best_of_met'] else 'NOT met'})")
    s = out["ssg"]
    if "skipped" in s:
        c.print(f"SSG: skipped ({s['skipped']})")
    else:
        c.print(f"SSG ({s['adapter']}): {s['imagine_s_with']:.3f} s with vs {s['imagine_s_without']:.3f} s "
                f"without (+{s['ssg_extra_s']:.3f} s per imagine call, {steps[0]} steps, {s['threads']} thread(s))")
    c.print(f"peak RSS {out['peak_rss_mb']:.0f} MB"
            + (f"; peak GPU allocation {out['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in out else ""))


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--ssg-path", default=None)
    ap.add_argument("--device", default="cpu", help='"cpu" or a GPU ("cuda", "cuda:1")')
    ap.add_argument("--best-of", type=int, default=4, help="N of the best-of-N imagine timing (1: skip it)")
    ap.add_argument("--json", action="store_true", help="also print the raw result dict as JSON")
    a = ap.parse_args(argv)
    res = run(a.pipeline, tuple(a.threads), a.repeats, train_steps=a.train_steps, ssg_path=a.ssg_path,
              training=not a.no_train, device=a.device, best_of=a.best_of)
    if a.json:
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
