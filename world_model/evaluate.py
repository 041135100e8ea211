"""Grounding metrics of a Video4Spatial world model against simulator ground truth: ``spatialnav eval-wm``.

``evaluate`` walks the held-out episodes of a split. For each it builds the ground-truth sample
(``world_model.eval_samples``: context video, true path and bbox frame, as the training data are
made), lets the model imagine from the context, and scores the rollout (``world_model.eval_metrics``:
SD, IF, IF(SD<0.2), PSNR, SSIM, CLIP score). Options: ``world_model.eval_config.EvalConfig``.

``samples.jsonl`` gets one line per sample, flushed as it ends; rerunning the same command skips
the samples already there (``eval_config.json`` holds what decides the numbers, and a rerun with
other settings is refused). ``summary.json`` holds the means with 95% confidence intervals
(``world_model.eval_report``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from envs.logs import append_jsonl, read_jsonl

from .eval_config import EvalConfig, config_from_cli
from .eval_metrics import clip_scores, eval_clip, grounding_metrics
from .eval_report import format_table, summarize
from .eval_samples import SceneState, build_sample, select_episodes
from .loading import load_pipeline  # the pipeline loader is shared with the agent

SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "eval_config.json"


def weights_fingerprint(path: str | os.PathLike) -> str:
    """sha1 (12 hex) of the pipeline's model weight files: tells apart two exports of one run."""
    h = hashlib.sha1()
    for f in sorted(Path(path).rglob("*.safetensors")) + sorted(Path(path).rglob("*.bin")):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _fingerprint(cfg: EvalConfig, pipe_path: str, weights: str, n_t: int, n_b: int) -> dict:
    keep = ("split", "episodes", "num_steps", "guidance_scale", "cfg_mode", "num_context", "context_mode", "subset",
            "ssg", "ssg_path", "num_samples", "candidates", "seed", "render_scale", "tour_frames", "agent_frames", "loc_spacing",
            "loc_headings", "loc_margin", "loc_size", "refine_top", "if_margin", "box_min_side", "box_min_confidence",
            "centre_deg",
            "min_match", "episode_seed", "clip")
    d = {k: getattr(cfg, k) for k in keep}
    d.update(pipeline=str(pipe_path), weights_sha1=weights, num_target=n_t, num_bbox=n_b)
    return d


def _imagine_kwargs(pipe, cfg: EvalConfig, n_t: int, n_b: int) -> dict:
    from .pipeline import resolve_precision

    kw = dict(num_steps=int(cfg.num_steps), guidance_scale=float(cfg.guidance_scale), cfg_mode=cfg.cfg_mode,
              num_samples=int(cfg.num_samples), num_target_frames=n_t, num_bbox_frames=n_b,
              precision=resolve_precision(cfg.precision, pipe.model.device, pipe.model.dtype))
    kw.update(ssg_kwargs(pipe, cfg.ssg, cfg.ssg_path))
    return kw


def ssg_kwargs(pipe, ssg: bool | None, ssg_path: str | None = None) -> dict:
    """``{"ssg": ...}`` for imagine when the pipeline supports SSG (None = the pipeline's default: on when an
    adapter is loaded); a clear error when ssg=True cannot work. Loads ``ssg_path`` first when given; with
    ssg=True, no ssg_path and no adapter loaded, the shipped one (``world_model/weights/v4s-small-ssg``)."""
    takes_ssg = "ssg" in inspect.signature(pipe.imagine).parameters
    if ssg_path:
        if not hasattr(pipe, "load_ssg"):
            raise ValueError("ssg_path is set but this Video4SpatialPipeline has no load_ssg(); SSG support is missing")
        pipe.load_ssg(str(ssg_path))
    if ssg:
        if not takes_ssg:
            raise ValueError("ssg=true but Video4SpatialPipeline.imagine takes no `ssg` argument (no SSG support)")
        if getattr(pipe, "ssg_prompter", None) is None and not ssg_path:
            from .ssg.checkpoint import default_ssg_dir, is_ssg_checkpoint

            if is_ssg_checkpoint(default_ssg_dir()):  # the shipped adapter (it warns on another backbone)
                pipe.load_ssg(str(default_ssg_dir()))
        if getattr(pipe, "ssg_prompter", None) is None:
            raise ValueError("ssg=true but the pipeline has no SSG adapter loaded (pipe.ssg_prompter is None); "
                             "pass ssg_path=<adapter dir> or use a pipeline saved with its SSG adapter")
    if not takes_ssg:
        return {}
    return {"ssg": None if ssg is None else bool(ssg)}


def ssg_in_use(pipe, ssg: bool | None) -> bool:
    loaded = getattr(pipe, "ssg_prompter", None) is not None
    return loaded if ssg is None else bool(ssg) and loaded


# what a row's ``candidates`` entry keeps of each best-of-N rollout's grounding (eval_wm.candidates)
CANDIDATE_KEYS = ("if", "if_sd02", "if_box", "if_final", "sd", "p_hat", "match", "box_found", "box_confidence")


def evaluate(cfg: EvalConfig, pipe=None, clip=None, ssg_control=None) -> dict:
    """Run the evaluation (resumable) and return the summary; see the module doc for the metrics.

    ``ssg_control``: the hook for controls on the SSG prompt (``research.ssg.controls``; users leave it
    None). Called per sample as ``ssg_control(i, episode, sample, states)`` (``states``: the scene states
    by scene id, the current one included), it returns the ``ssg_prompt_fn`` that ``imagine`` then
    uses in place of the pipeline's own prompt. Its ``name`` attribute joins the run's fingerprint
    (``ssg_control``, None without one), so a resume with another control is refused; it needs SSG on.
    """
    import torch

    cfg = cfg.validate()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if pipe is None:
        pipe = load_pipeline(cfg.pipeline)
    pipe_path = getattr(pipe, "source_path", str(cfg.pipeline))
    weights = weights_fingerprint(pipe_path) if Path(pipe_path).is_dir() else "in-memory"
    S = int(pipe.model.config.frame_size[0])
    n_t = int(cfg.num_target if cfg.num_target is not None else pipe.config.num_target_frames)
    n_b = int(cfg.num_bbox if cfg.num_bbox is not None else pipe.config.num_bbox_frames)
    img_kw = _imagine_kwargs(pipe, cfg, n_t, n_b)
    out = Path(cfg.out_dir or f"runs/eval_wm/{cfg.split}_{cfg.subset}")
    out.mkdir(parents=True, exist_ok=True)
    fp = _fingerprint(cfg, pipe_path, weights, n_t, n_b)
    fp["ssg_used"] = ssg_in_use(pipe, cfg.ssg)
    fp["ssg_control"] = None if ssg_control is None else str(getattr(ssg_control, "name", type(ssg_control).__name__))
    if ssg_control is not None and not fp["ssg_used"]:
        raise ValueError(f"the SSG control {fp['ssg_control']!r} needs SSG on: eval_wm.ssg=true and an adapter "
                         "(eval_wm.ssg_path=... or the shipped one)")
    fp["precision"] = img_kw["precision"]  # resolved: fp32 | bf16
    cfg_path = out / CONFIG_FILE
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        old.setdefault("precision", "fp32")  # runs written before the option ran in fp32
        old.setdefault("candidates", False)  # nor recorded candidates
        # runs written before the controls left the library name them by two flags
        legacy = "oracle" if old.pop("ssg_oracle", False) else "shuffle" if old.pop("ssg_shuffle", False) else None
        old.setdefault("ssg_control", legacy)
        diff = {k: (old.get(k), v) for k, v in fp.items() if old.get(k) != v}
        if diff:
            raise ValueError(f"{out} holds results of another configuration ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                             "use a new out_dir (a training run's pipeline changes every export: copy it to a fixed dir)")
    else:
        cfg_path.write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
    clip_note = ""
    if clip is None:
        clip, clip_note = eval_clip(cfg.clip)
    episodes = select_episodes(cfg)
    log_path = out / SAMPLES_FILE
    done = {str(r["sample_id"]) for r in read_jsonl(log_path, repair=True)}
    todo = [(i, e) for i, e in enumerate(episodes) if str(e.episode_id) not in done]
    bar = None
    if cfg.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(episodes), initial=len(episodes) - len(todo), desc="eval-wm", unit="sample")
    states: dict[str, SceneState] = {}
    t_run = time.perf_counter()
    with open(log_path, "a") as f:
        for i, ep in todo:
            t0 = time.perf_counter()
            if ep.scene_id not in states:
                states.clear()  # episodes come grouped by scene; keep one scene's renderers alive
                states[ep.scene_id] = SceneState(ep.scene_id, S, cfg)
            st = states[ep.scene_id]
            sample, why = build_sample(ep, st, int(cfg.num_context), n_t, cfg, index=0)
            row: dict[str, Any] = {"sample_id": str(ep.episode_id), "index": i, "scene_id": ep.scene_id,
                                   "instruction": ep.instruction, "needs_relation": bool(ep.needs_relation)}
            if sample is None:
                row.update(status="skipped", reason=why)
            else:
                kw = dict(img_kw)
                if cfg.ssg:
                    kw["context_poses"] = sample.context_poses  # read by a pose-aware prompter
                if ssg_control is not None:
                    kw["ssg_prompt_fn"] = ssg_control(i, ep, sample, states)
                t1 = time.perf_counter()
                r = pipe.imagine(sample.context, sample.context_indices, ep.instruction,
                                 seed=int(cfg.seed) + i, **kw)
                t_img = time.perf_counter() - t1
                if cfg.candidates and r.samples is not None:  # every rollout's grounding; the row is the pick's
                    gs = [grounding_metrics(f, b, sample, st, cfg) for f, b in zip(r.samples, r.sample_bbox_frames)]
                    row.update(gs[int(r.best_index)], best_index=int(r.best_index),
                               candidates=[{k: g[k] for k in CANDIDATE_KEYS} for g in gs])
                else:
                    row.update(grounding_metrics(r.frames, r.bbox_frames, sample, st, cfg))
                if clip is not None:
                    row["clip_score"], row["clip_score_gt"] = clip_scores(clip, np.stack([r.frames[-1],
                                                                                          sample.target[-1]]),
                                                                          ep.instruction)
                row.update(status="ok", d_gt=sample.d_gt, p_gt=[round(float(v), 4) for v in sample.final_pose],
                           seconds_imagine=t_img, seconds=time.perf_counter() - t0)
            append_jsonl(f, row)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    rows = read_jsonl(log_path)
    ids = {str(e.episode_id) for e in episodes}
    rows = [r for r in rows if str(r["sample_id"]) in ids]
    summary = summarize(rows)
    summary.update(config=fp, clip_note=clip_note or ("" if clip is None else "CLIP given"),
                   out_dir=str(out), seconds_run=time.perf_counter() - t_run, frame_size=S)
    if clip is None:
        summary["clip_score"] = None
        summary["clip_note"] = clip_note
    tmp = out / (SUMMARY_FILE + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / SUMMARY_FILE)
    return summary


def main(cfg=None) -> int:
    """``spatialnav eval-wm split=test n=50 out_dir=DIR [eval_wm.cfg_mode=text ...]``.

    Accepts the CLI's composed config, a flat mapping of :class:`EvalConfig` keys, or
    (``cfg=None``) ``key=value`` pairs on the command line (``python -m world_model.evaluate n=5``).
    """
    import sys

    from omegaconf import OmegaConf
    from rich.console import Console

    if cfg is None:
        cfg = OmegaConf.to_container(OmegaConf.from_dotlist(sys.argv[1:]))
    ec = config_from_cli(cfg)
    summary = evaluate(ec)
    Console().print(format_table(summary, f"eval-wm {ec.split} subset={ec.subset} cfg_mode={ec.cfg_mode} "
                                          f"context={ec.context_mode} bbox={summary['config']['num_bbox']} "
                                          f"steps={ec.num_steps}"))
    print(f"wrote {summary['out_dir']}/{SUMMARY_FILE} and {SAMPLES_FILE} ({summary['n']} samples)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
