"""Held-out flow-matching loss of a frozen backbone with and without its SSG adapter.

    python -m research.ssg.heldout ssg=runs/ssg/default/ssg [data_dir=runs/wm/data/val] [pipeline=DIR]
        [n=200] [draws=4] [batch_size=16] [seed=0] [threads=2] [shuffle_prompts=false] [oracle=false]
        [out=FILE.json]
    python -m research.ssg.heldout dependence=[OWN.json,SHUFFLED.json] [out=FILE.json]

Grounding metrics (``spatialnav eval-wm``) count hits, which at this model size are rare
(a few percent of samples), so a small effect of the adapter drowns in their noise. This
measures what the adapter was trained to lower, on data it never saw: for every held-out
sample and ``draws`` fixed (noise, t) pairs, the velocity error of the conditional
branch (context and instruction kept, the prompt of the real frames and instruction)
with SSG and with the adapter bypassed (``ssg_disabled``), on the same inputs. Reported
separately for the path frames and the bbox frames (the red box around the target: the
grounding signal), for all samples and for those whose instruction names a spatial
relation, as means with a paired bootstrap 95% interval of ``gain = backbone - SSG``
(positive = SSG lowers the error). ``shuffle_prompts=true`` is the control: each sample
gets another sample's prompt, so what gain remains does not come from its own context
and instruction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from research.heldout import frame_parts, relation_pattern


def _summary(base: np.ndarray, ssg: np.ndarray) -> dict[str, Any]:
    from research.heldout import paired_summary

    r = paired_summary(base, ssg)
    return {"n": r["n"], "backbone": r["base"], "ssg": r["other"], "gain": r["gain"], "gain_ci95": r["gain_ci95"],
            "gain_rel": r["gain_rel"], "ssg_better_frac": r["other_better_frac"]}


@torch.no_grad()
def heldout_loss(pipe, data_dir: str, n: int = 200, draws: int = 4, batch_size: int = 16, seed: int = 0,
                 num_context: int = 8, shuffle_prompts: bool = False, oracle: bool = False) -> dict[str, Any]:
    """Per-sample velocity errors with SSG and with the adapter bypassed; see the module docstring.

    ``pipe``: a ``Video4SpatialPipeline`` with an SSG adapter loaded (``load_ssg``).
    ``shuffle_prompts``: give each sample the SSG prompt of the next sample in its batch (a
    control: a gain that survives it does not come from the sample's own context and
    instruction). ``oracle``: build the prompts from the true target masks
    (``world_model.ssg.oracle.OracleRelevance``), for adapters trained with ``oracle_relevance``.
    Returns the summaries (``all``/``relation`` x ``path``/``bbox``/``total``)
    and the per-sample arrays. The inputs, (noise, t) draws and errors are
    ``research.heldout``'s, shared with the backbone comparison.
    """
    from research.heldout import heldout_items, velocity_errors
    from world_model.ssg.adapter import append_ssg_tokens, ssg_disabled
    from world_model.ssg.prompting import context_positions

    if pipe.ssg_prompter is None:
        raise ValueError("the pipeline has no SSG adapter loaded: pipe.load_ssg(<dir>) first")
    model = pipe.model.float().eval()
    n_t, n_b = int(pipe.config.num_target_frames), int(pipe.config.num_bbox_frames)
    items = heldout_items(data_dir, n, num_context, n_t, n_b, int(model.config.frame_size[0]), seed)
    n = len(items)
    rel = relation_pattern()
    is_rel = np.array([bool(rel.search(it["instruction"].lower())) for it in items])
    oracle_fn = None
    if oracle:
        from research.ssg.localisation import ds_frame_size
        from world_model.ssg.oracle import OracleRelevance

        oracle_fn = OracleRelevance(pipe.ssg_prompter.clip.grid_size, mask_size=ds_frame_size(data_dir))

    def with_prompt(batch, text):
        frames = torch.as_tensor(np.stack([it["context"] for it in batch]))
        ctx_idx = torch.as_tensor(np.stack([it["context_indices"] for it in batch]))
        relevance = None
        if oracle_fn is not None:
            relevance = oracle_fn([it["scene_id"] for it in batch], [it["target_id"] for it in batch],
                                  np.stack([it["context_poses"] for it in batch]))
        poses = torch.as_tensor(np.stack([it["context_poses"] for it in batch]))
        tokens = pipe.ssg_prompter(frames, [it["instruction"] for it in batch], context_positions(ctx_idx),
                                   relevance, poses).to(text.device, text.dtype)
        if shuffle_prompts:
            tokens = tokens.roll(1, dims=0)
        return append_ssg_tokens(text, tokens)

    err = {"ssg": velocity_errors(pipe, items, draws, batch_size, seed, states=with_prompt, model=model)}
    with ssg_disabled(model.transformer):
        err["backbone"] = velocity_errors(pipe, items, draws, batch_size, seed, model=model)
    out: dict[str, Any] = {"n": n, "n_relation": int(is_rel.sum()), "draws": draws, "data_dir": str(data_dir),
                           "shuffle_prompts": bool(shuffle_prompts), "oracle": bool(oracle),
                           "frames": {"path": n_t, "bbox": n_b}}
    for subset, mask in (("all", np.ones(n, bool)), ("relation", is_rel)):
        out[subset] = {k: _summary(err["backbone"][mask][:, :, sl].mean(axis=(1, 2)),
                                   err["ssg"][mask][:, :, sl].mean(axis=(1, 2)))
                       for k, sl in frame_parts(n_t, n_b).items()}
    out["per_sample"] = {"backbone": err["backbone"].mean(axis=1).tolist(), "ssg": err["ssg"].mean(axis=1).tolist(),
                         "relation": is_rel.tolist()}
    return out


def prompt_dependence(own: dict[str, Any], shuffled: dict[str, Any]) -> dict[str, Any]:
    """Does the adapter read *its own* prompt? Pairs two :func:`heldout_loss` results of one adapter on the
    same samples and draws, with own and with shuffled prompts, sample by sample.

    Per part (``path``/``bbox``/``total``) and subset: ``own_vs_shuffled`` = the paired gain of the own
    prompt over another sample's (``e_shuffled - e_own``, positive = the own prompt lowers the error more),
    with its bootstrap interval, far tighter than comparing the two runs' gains over the backbone; and
    ``dependence`` = mean |e_own - e_shuffled| / mean |e_own - e_backbone|: how much of the adapter's
    per-sample effect changes when the prompt is swapped (0 = it ignores the prompt's content)."""
    from research.heldout import paired_summary

    if own.get("shuffle_prompts") or not shuffled.get("shuffle_prompts"):
        raise ValueError("give the own-prompt result first and the shuffle_prompts=true result second")
    keys = ("n", "draws", "data_dir", "oracle", "frames", "ssg_path", "pipeline")
    diff = {k: (own.get(k), shuffled.get(k)) for k in keys if own.get(k) != shuffled.get(k)}
    if diff:
        raise ValueError(f"the two results are not of the same adapter, samples and draws: {diff}")
    base = np.asarray(own["per_sample"]["backbone"])
    if not np.allclose(base, np.asarray(shuffled["per_sample"]["backbone"]), rtol=1e-5, atol=1e-7):
        raise ValueError("the two results' backbone errors differ: not the same inputs and draws")
    e_own, e_shuf = np.asarray(own["per_sample"]["ssg"]), np.asarray(shuffled["per_sample"]["ssg"])
    is_rel = np.asarray(own["per_sample"]["relation"], bool)
    parts = frame_parts(int(own["frames"]["path"]), int(own["frames"]["bbox"]))
    out: dict[str, Any] = {"ssg_path": own.get("ssg_path"), "oracle": bool(own.get("oracle")), "n": int(len(base))}
    for subset, mask in (("all", np.ones(len(base), bool)), ("relation", is_rel)):
        out[subset] = {}
        for k, sl in parts.items():
            b, o, sh = (a[mask][:, sl].mean(axis=1) for a in (base, e_own, e_shuf))
            r = paired_summary(sh, o)
            effect = float(np.abs(o - b).mean())
            out[subset][k] = {"n": r["n"], "own_vs_shuffled": r["gain"], "own_vs_shuffled_ci95": r["gain_ci95"],
                              "own_better_frac": r["other_better_frac"],
                              "dependence": float(np.abs(o - sh).mean()) / effect if effect > 0 else float("nan")}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from world_model.loading import resolve_pipeline_path as resolve_pipeline
    from world_model.pipeline import Video4SpatialPipeline

    args = {"ssg": None, "data_dir": "runs/wm/data/val", "pipeline": None, "n": 200, "draws": 4,
            "batch_size": 16, "seed": 0, "threads": 2, "shuffle_prompts": False, "oracle": False,
            "out": None, "dependence": None}
    given = OmegaConf.to_container(OmegaConf.from_dotlist(list(sys.argv[1:] if argv is None else argv)))
    unknown = sorted(set(given) - set(args))
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}; known: {sorted(args)}")
    args.update(given)
    if args["dependence"] is not None:  # dependence=[own.json,shuffled.json]: pair two saved results
        files = list(args["dependence"])
        if len(files) != 2 or not all(Path(f).is_file() for f in files):
            raise SystemExit(f"dependence=[OWN.json,SHUFFLED.json] takes two existing out= files, got {files}")
        try:
            dep = prompt_dependence(*(json.loads(Path(f).read_text()) for f in files))
        except ValueError as e:
            raise SystemExit(str(e)) from None
        for subset in ("all", "relation"):
            for part, r in dep[subset].items():
                print(f"{subset:8s} {part:5s} n={r['n']:3d} own - shuffled gain {r['own_vs_shuffled']:+.6f} "
                      f"[{r['own_vs_shuffled_ci95'][0]:+.6f}, {r['own_vs_shuffled_ci95'][1]:+.6f}], own better on "
                      f"{100 * r['own_better_frac']:.0f}%, dependence {r['dependence']:.3f}")
        if args["out"]:
            Path(args["out"]).write_text(json.dumps(dep, indent=1) + "\n")
        return dep
    if not args["ssg"]:
        raise SystemExit("ssg=<SSG checkpoint dir> is required (e.g. ssg=world_model/weights/v4s-small-ssg)")
    if not (Path(args["data_dir"]) / "index.json").is_file():
        raise SystemExit(f"no collected data in {args['data_dir']}: make some with "
                         f"`python -m world_model.collect split=val n=200 out_dir={args['data_dir']}`")
    torch.set_num_threads(int(args["threads"]))
    pipe = Video4SpatialPipeline.from_pretrained(resolve_pipeline(args["pipeline"]), with_ssg=False)
    pipe.load_ssg(args["ssg"])
    res = heldout_loss(pipe, args["data_dir"], int(args["n"]), int(args["draws"]), int(args["batch_size"]),
                       int(args["seed"]), shuffle_prompts=bool(args["shuffle_prompts"]), oracle=bool(args["oracle"]))
    res["ssg_path"], res["pipeline"] = str(args["ssg"]), str(resolve_pipeline(args["pipeline"]))
    if args["out"]:
        Path(args["out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(args["out"]).write_text(json.dumps(res, indent=1) + "\n")
    for subset in ("all", "relation"):
        for part, r in res[subset].items():
            print(f"{subset:8s} {part:5s} n={r['n']:3d} backbone {r['backbone']:.5f} ssg {r['ssg']:.5f} "
                  f"gain {r['gain']:+.5f} [{r['gain_ci95'][0]:+.5f}, {r['gain_ci95'][1]:+.5f}] "
                  f"({100 * r['gain_rel']:+.2f}%), SSG better on {100 * r['ssg_better_frac']:.0f}%")
    return res


if __name__ == "__main__":
    main()
