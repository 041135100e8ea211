"""Held-out velocity error of world models on the same inputs: releases and retrained ablations.

    python -m research.heldout pipelines=[world_model/weights/v4s-small,runs/wm3/pipeline]
        [data_dir=runs/wm/data/val] [n=200] [draws=4] [batch_size=16] [seed=0] [threads=2]
        [contiguous_context=false] [text_control=false] [out=FILE.json]

Grounding metrics (``spatialnav eval-wm``) count rare hits, so two checkpoints a few hundred
steps apart, or two arms of a retrained ablation, often tie within their noise. This measures
what training lowers, on data no model saw: for each held-out sample (one seeded context draw,
shared by every model) and ``draws`` fixed (noise, t) pairs from the training distribution, the
conditional velocity error ``|| v(x_t) - (eps - x0) ||^2`` per generated frame. Reported per
model for the path frames and the bbox frames, and for each model after the first, the paired
difference ``first - model`` (positive = the later model is better) with a bootstrap 95%
interval over samples. Models with different numbers of bbox frames are compared on the path
frames only (the no-bbox ablation); ``contiguous_context=true`` draws the contexts
contiguously (the contiguous-context ablation's own test condition). ``text_control=true``
adds, per model, the error with every sample's instruction swapped for another's and with
the null text (:func:`instruction_control`): how much the instruction, the goal, moves this
loss at all, the yardstick for a goal prompt's own-versus-shuffled gain.

:func:`velocity_errors` is the shared core; ``research.ssg.heldout`` uses it with and
without the SSG adapter.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from world_model.metrics import bootstrap_ci


def relation_pattern() -> re.Pattern:
    """Matches an instruction that uses one of the grammar's relation phrases (``envs.instructions``)."""
    from envs.instructions import relation_phrases

    heads = sorted({p.split("{r}")[0].strip() for ps in relation_phrases().values() for p in ps},
                   key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(h) for h in heads) + r") the\b")


def frame_parts(n_t: int, n_b: int) -> dict[str, slice]:
    """The frame slices reported: path, bbox (when there are bbox frames) and total."""
    parts = {"path": slice(0, n_t), "bbox": slice(n_t, n_t + n_b), "total": slice(0, n_t + n_b)}
    return {k: sl for k, sl in parts.items() if sl.stop > sl.start}


def heldout_items(data_dir: str, n: int, num_context: int, num_target: int, num_bbox: int, frame_size: int,
                  seed: int = 0, contiguous: bool = False) -> list[dict]:
    """The first ``n`` samples of ``data_dir`` with one seeded context draw each (the same in every run)."""
    from world_model.data import ContextVideoDataset

    ds = ContextVideoDataset(data_dir, num_context, num_target, num_bbox, frame_size, contiguous=contiguous, seed=seed)
    torch.manual_seed(int(seed))  # the loader's draws read torch.initial_seed()
    return [ds[i] for i in range(min(int(n), len(ds)))]


@torch.no_grad()
def velocity_errors(pipe, items: list[dict], draws: int = 4, batch_size: int = 16, seed: int = 0,
                    states: Callable[[list[dict], torch.Tensor], torch.Tensor] | None = None,
                    model: torch.nn.Module | None = None) -> np.ndarray:
    """(n, draws, frames) mean squared velocity error of each generated frame, conditional branch.

    ``states(batch, text)`` may replace the instruction states (e.g. append SSG tokens); ``model``
    defaults to ``pipe.model``. The (noise, t) of batch ``s`` and draw ``d`` depend only on
    ``seed``, ``d`` and ``s``, so every model and arm sees the same ones."""
    from world_model.latents import encode_frames
    from world_model.train import TrainConfig, encode_text_cached, flow_matching_loss, sample_t

    model = (pipe.model if model is None else model).float().eval()
    t_cfg = TrainConfig(shift=float(pipe.scheduler.config.get("shift", 1.0)))  # training's noise levels
    n_f = int(items[0]["target"].shape[0])
    out = np.zeros((len(items), draws, n_f))
    device = model.device
    cache: dict[str, torch.Tensor] = {}
    for s in range(0, len(items), batch_size):
        batch = items[s:s + batch_size]
        b = len(batch)
        ctx = encode_frames(torch.as_tensor(np.stack([it["context"] for it in batch])), pipe.autoencoder, device=device)
        tgt = encode_frames(torch.as_tensor(np.stack([it["target"] for it in batch])), pipe.autoencoder, device=device)
        ctx_idx = torch.as_tensor(np.stack([it["context_indices"] for it in batch])).to(device)
        text = encode_text_cached(pipe.text_encoder, [it["instruction"] for it in batch], cache).to(device)
        if states is not None:
            text = states(batch, text)
        for d in range(draws):
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + d * 10_007 + s)
            t = sample_t(b, t_cfg, generator=g).to(device)
            noise = torch.randn(tgt.shape, generator=g).to(device, tgt.dtype)
            err = flow_matching_loss(model, ctx, tgt, text, ctx_idx, t, noise=noise, reduction="none")
            out[s:s + b, d] = err.mean(dim=(1, 3, 4)).cpu().numpy()
    return out


def paired_summary(base: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Means of two per-sample error arrays and ``gain = base - other`` with its interval."""
    gain = base - other
    return {"n": int(len(gain)), "base": float(base.mean()), "other": float(other.mean()),
            "gain": float(gain.mean()), "gain_ci95": bootstrap_ci(gain),
            "gain_rel": float(gain.mean() / base.mean()) if len(gain) and base.mean() > 0 else float("nan"),
            "other_better_frac": float((gain > 0).mean()) if len(gain) else float("nan")}


_MIRROR = {"left of": "right of", "to the left of": "to the right of", "on the left side of": "on the right side of",
           "in front of": "behind", "facing the front of": "at the back of"}
_MIRROR.update({v: k for k, v in list(_MIRROR.items())})


def strip_relation(instruction: str) -> str | None:
    """The instruction without its relation clause ("find the red chair in the kitchen, left of
    the sofa" -> "find the red chair in the kitchen"): on a relation sample, the ambiguous
    instruction that fits the target and its look-alike alike. None without a relation."""
    m = relation_pattern().search(instruction.lower())
    if m is None:
        return None
    head = instruction[:m.start()].rstrip()
    for sep in (",", " that is"):
        if head.endswith(sep):
            head = head[:-len(sep)].rstrip()
    return head


def mirror_relation(instruction: str) -> str | None:
    """The directional relation mirrored (left <-> right, in front of <-> behind): an instruction
    that the target contradicts. None for instructions without a directional relation."""
    m = relation_pattern().search(instruction.lower())
    if m is None or m.group(1) not in _MIRROR:
        return None
    return instruction[:m.start(1)] + _MIRROR[m.group(1)] + instruction[m.end(1):]


def instruction_control(pipe, items: list[dict], own: np.ndarray, draws: int = 4, batch_size: int = 16,
                        seed: int = 0) -> dict[str, Any]:
    """How much the instruction, and its relation clause, lower a model's held-out error.

    Four arms on the same draws, each with an edited instruction:

    * ``shuffled``: the previous sample's instruction in its batch (all samples);
    * ``null``: the null text of classifier-free guidance (all samples);
    * ``no_relation``: the relation clause removed (:func:`strip_relation`; the relation samples);
    * ``mirrored``: the directional relation mirrored (:func:`mirror_relation`; those samples).

    ``own``: ``velocity_errors(pipe, items, draws, batch_size, seed)``. For each arm, subset and
    part (``path``/``bbox``/``total``), the paired summary of ``gain = e_arm - e_own`` (positive
    = the sample's own instruction lowers the error). This is the scale of what goal
    conditioning can buy on this loss, and the last two are what reading the relation buys on
    the samples that need it: an SSG prompt's own-versus-shuffled gain is read against these.
    """
    if len(items) < 2 or batch_size < 2:
        raise ValueError("the instruction control needs at least 2 samples per batch to swap instructions")
    n_t = int(pipe.config.num_target_frames)
    n_b = int(own.shape[2]) - n_t
    rel = relation_pattern()
    is_rel = np.array([bool(rel.search(it["instruction"].lower())) for it in items])
    every = np.ones(len(items), bool)
    same = 0
    for s in range(0, len(items), batch_size):
        ins = [it["instruction"] for it in items[s:s + batch_size]]
        same += sum(a == b for a, b in zip(ins, ins[-1:] + ins[:-1])) if len(ins) > 1 else 1
    out: dict[str, Any] = {"n": len(items), "n_relation": int(is_rel.sum()), "same_instruction_after_swap": int(same)}

    def summarise(e: np.ndarray, subsets: dict[str, np.ndarray]) -> dict[str, Any]:
        return {subset: {k: paired_summary(e[mask][:, :, sl].mean(axis=(1, 2)), own[mask][:, :, sl].mean(axis=(1, 2)))
                         for k, sl in frame_parts(n_t, n_b).items()}
                for subset, mask in subsets.items() if mask.any()}

    out["shuffled"] = summarise(velocity_errors(pipe, items, draws, batch_size, seed,
                                                states=lambda batch, text: text.roll(1, dims=0)),
                                {"all": every, "relation": is_rel})
    out["null"] = summarise(velocity_errors(pipe, items, draws, batch_size, seed,
                                            states=lambda batch, text: pipe.model.null_text(len(batch)).to(
                                                text.device, text.dtype)),
                            {"all": every, "relation": is_rel})
    for arm, edit in (("no_relation", strip_relation), ("mirrored", mirror_relation)):
        edited = [edit(it["instruction"]) for it in items]
        mask = np.array([e is not None for e in edited])
        if not mask.any():
            continue
        # unedited samples keep their instruction, so their errors equal ``own`` and only the edited ones are reported
        e = velocity_errors(pipe, [dict(it, instruction=t) if t is not None else it for it, t in zip(items, edited)],
                            draws, batch_size, seed)
        out[arm] = summarise(e, {"relation" if arm == "no_relation" else "directional": mask})
    return out


def compare_pipelines(paths: list[str], data_dir: str, n: int = 200, draws: int = 4, batch_size: int = 16,
                      seed: int = 0, num_context: int = 8, contiguous: bool = False,
                      text_control: bool = False) -> dict[str, Any]:
    """Held-out errors of each pipeline and the paired gain of each over the first; see the module doc.

    ``text_control``: also run :func:`instruction_control` for each pipeline (two more passes each)."""
    from world_model.pipeline import Video4SpatialPipeline

    if len(paths) < 1:
        raise ValueError("give at least one pipeline")
    pipes = [Video4SpatialPipeline.from_pretrained(p, with_ssg=False) for p in paths]
    sizes = {int(p.model.config.frame_size[0]) for p in pipes}
    n_t = {int(p.config.num_target_frames) for p in pipes}
    if len(sizes) > 1 or len(n_t) > 1:
        raise ValueError(f"pipelines differ in frame size {sorted(sizes)} or path frames {sorted(n_t)}: not comparable")
    n_t0, size = n_t.pop(), sizes.pop()
    res: dict[str, Any] = {"pipelines": [str(p) for p in paths], "data_dir": str(data_dir), "draws": int(draws),
                           "contiguous_context": bool(contiguous), "models": [], "vs_first": []}
    errs = []
    for path, pipe in zip(paths, pipes):
        n_b = int(pipe.config.num_bbox_frames)
        items = heldout_items(data_dir, n, num_context, n_t0, n_b, size, seed, contiguous)
        e = velocity_errors(pipe, items, draws, batch_size, seed)
        errs.append(e)
        row = {"pipeline": str(path), "n": len(items), "num_bbox": n_b, "path": float(e[:, :, :n_t0].mean())}
        if n_b:
            row["bbox"] = float(e[:, :, n_t0:].mean())
        if text_control:
            row["instruction"] = instruction_control(pipe, items, e, draws, batch_size, seed)
        res["models"].append(row)
    base = errs[0]
    for path, e in zip(paths[1:], errs[1:]):
        parts = {"path": slice(0, n_t0)}
        if base.shape[2] > n_t0 and e.shape[2] > n_t0:
            parts["bbox"] = slice(n_t0, None)
        res["vs_first"].append({"pipeline": str(path), **{k: paired_summary(base[:, :, sl].mean(axis=(1, 2)),
                                                                              e[:, :, sl].mean(axis=(1, 2)))
                                                           for k, sl in parts.items()}})
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from omegaconf import OmegaConf

    args = {"pipelines": None, "data_dir": "runs/wm/data/val", "n": 200, "draws": 4, "batch_size": 16, "seed": 0,
            "threads": 2, "num_context": 8, "contiguous_context": False, "text_control": False, "out": None}
    given = OmegaConf.to_container(OmegaConf.from_dotlist(list(sys.argv[1:] if argv is None else argv)))
    unknown = sorted(set(given) - set(args))
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}; known: {sorted(args)}")
    args.update(given)
    if not args["pipelines"]:
        raise SystemExit("pipelines=[DIR,DIR,...] is required (the first is the reference)")
    if not (Path(args["data_dir"]) / "index.json").is_file():
        raise SystemExit(f"no collected data in {args['data_dir']}: make some with "
                         f"`python -m world_model.collect split=val n=200 out_dir={args['data_dir']}`")
    torch.set_num_threads(int(args["threads"]))
    res = compare_pipelines([str(p) for p in args["pipelines"]], args["data_dir"], int(args["n"]), int(args["draws"]),
                            int(args["batch_size"]), int(args["seed"]), int(args["num_context"]),
                            bool(args["contiguous_context"]), bool(args["text_control"]))
    if args["out"]:
        Path(args["out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(args["out"]).write_text(json.dumps(res, indent=1) + "\n")
    for m in res["models"]:
        bb = f"  bbox {m['bbox']:.5f}" if "bbox" in m else ""
        print(f"{m['pipeline']}: n={m['n']} path {m['path']:.5f}{bb}")
        for arm in ("shuffled", "null", "no_relation", "mirrored"):
            for subset, parts in m.get("instruction", {}).get(arm, {}).items():
                for part, g in parts.items():
                    print(f"  own instruction vs {arm:8s} {subset:8s} {part:5s} n={g['n']:3d}: gain {g['gain']:+.6f} "
                          f"[{g['gain_ci95'][0]:+.6f}, {g['gain_ci95'][1]:+.6f}] ({100 * g['gain_rel']:+.2f}%)")
    for r in res["vs_first"]:
        for part in ("path", "bbox"):
            if part in r:
                g = r[part]
                print(f"  {r['pipeline']} vs first, {part}: gain {g['gain']:+.5f} [{g['gain_ci95'][0]:+.5f}, "
                      f"{g['gain_ci95'][1]:+.5f}] ({100 * g['gain_rel']:+.2f}%), better on "
                      f"{100 * g['other_better_frac']:.0f}% of samples")
    return res


if __name__ == "__main__":
    main()
