"""`spatialnav imagine`: imagine one episode's rollout and save it as a video and a picture.

    spatialnav imagine split=val imagine.episode_index=3
    spatialnav imagine episodes=data/episodes/val_100.json.gz imagine.episode_index=0 imagine.cfg_mode=text
    spatialnav imagine imagine.instruction="go to the blue chair left of the bed" imagine.out=runs/imagine/blue

The context is built like the training data and ``spatialnav eval-wm`` build it
(world_model.eval_samples.build_sample: the scene's tour plus agent frames turning into
the start heading, K frames sampled non-contiguously), the model imagines from it, and
``<out>.mp4`` / ``<out>.png`` show, with the 32x32 frames upscaled (nearest):

* video, one frame per time step: top row ``context frame | imagined frame t | imagined bbox
  frame``, bottom row ``current view | ground-truth frame t | ground-truth bbox frame``;
* picture: the K context frames (original indices), the imagined rollout + bbox frames and
  the ground-truth rollout + bbox frame, one row each, with the instruction as the title.

The grounding metrics of this one sample (SD, IF, PSNR; docs/world_model.md) are printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .frames import caption

# The options of ``spatialnav imagine`` and their defaults: the ``imagine:`` block of configs/config.yaml
# repeats them for the CLI (tests/test_config_defaults.py checks that the two agree).
DEFAULTS: dict[str, Any] = {
    "pipeline": None, "episode_index": 0, "instruction": None, "num_steps": 8, "guidance_scale": 3.0,
    "cfg_mode": "joint", "num_context": 8, "context_mode": "noncontiguous", "num_samples": 1, "ssg": False,
    "ssg_path": None, "precision": "auto", "seed": 0, "size": 128, "fps": 2, "out": None, "threads": 1,
}
OPTIONS = tuple(DEFAULTS)


# ----------------------------------------------------------------------------- pictures
def upscale(frame: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour upscale of (h, w, 3) to (size, size * w / h, 3)."""
    f = np.asarray(frame, np.uint8)
    k = max(1, int(round(size / f.shape[0])))
    return np.repeat(np.repeat(f, k, axis=0), k, axis=1)


def hstack(tiles: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    parts = []
    for i, t in enumerate(tiles):
        if t.shape[0] < h:
            t = np.concatenate([t, np.full((h - t.shape[0], *t.shape[1:]), 255, np.uint8)])
        parts.append(t)
        if i < len(tiles) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def vstack(rows: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    w = max(r.shape[1] for r in rows)
    parts = []
    for i, r in enumerate(rows):
        if r.shape[1] < w:
            r = np.concatenate([r, np.full((r.shape[0], w - r.shape[1], 3), 255, np.uint8)], axis=1)
        parts.append(r)
        if i < len(rows) - 1:
            parts.append(np.full((gap, w, 3), 255, np.uint8))
    return np.concatenate(parts)


def rollout_strip(context, context_indices, frames, bbox_frames, gt_frames, gt_bbox, instruction: str,
                  size: int = 128) -> np.ndarray:
    """The picture: context row, imagined row (rollout + bbox frames), ground-truth row."""
    ctx = [caption(upscale(f, size), f"ctx #{int(i)}") for f, i in zip(context, context_indices)]
    im = [caption(upscale(f, size), f"imagined {t}") for t, f in enumerate(frames)]
    im += [caption(upscale(f, size), "imagined bbox") for f in bbox_frames]
    gt = [caption(upscale(f, size), f"true {t}") for t, f in enumerate(gt_frames)]
    gt += [caption(upscale(f, size), "true bbox") for f in gt_bbox]
    body = vstack([hstack(ctx), hstack(im), hstack(gt)])
    return caption(body, instruction, band=24, font_size=16)


def rollout_video_frames(context, frames, bbox_frames, gt_frames, gt_bbox, size: int = 128) -> list[np.ndarray]:
    """Video frames: top ``context | imagined t | imagined bbox``, bottom ``current view | true t | true bbox``."""
    k, t = len(context), len(frames)
    blank = np.full((size, size, 3), 255, np.uint8)
    out = []
    for j in range(max(k, t)):
        ti = min(j, t - 1)
        tg = min(j, len(gt_frames) - 1)
        top = hstack([caption(upscale(context[j % k], size), f"context {j % k + 1}/{k}"),
                      caption(upscale(frames[ti], size), f"imagined {ti + 1}/{t}"),
                      caption(upscale(bbox_frames[-1], size) if len(bbox_frames) else blank, "imagined bbox")])
        bot = hstack([caption(upscale(context[-1], size), "current view"),
                      caption(upscale(gt_frames[tg], size), f"true {tg + 1}/{len(gt_frames)}"),
                      caption(upscale(gt_bbox[-1], size) if len(gt_bbox) else blank, "true bbox")])
        out.append(vstack([top, bot]))
    return out


# ----------------------------------------------------------------------------- command
def _options(cfg) -> tuple[dict[str, Any], dict[str, Any]]:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    d = dict(cfg or {})
    top: dict[str, Any] = {}
    if "imagine" in d:
        top = d
        d = dict(top.get("imagine") or {})
    unknown = sorted(set(d) - set(OPTIONS) - {"split", "episodes", "episode_seed"})
    if unknown:
        raise ValueError(f"unknown imagine option(s) {unknown}; valid: {sorted(OPTIONS)}")
    return d, top


def imagine_episode(opts: dict[str, Any], split: str = "val", episodes: str | None = None, episode_seed: int = 0,
                    pipe=None) -> dict[str, Any]:
    """Build one episode's context, imagine, write ``<out>.mp4`` and ``<out>.png``; returns paths and metrics."""
    import torch

    from envs.episodes import generate_episodes, load_episodes

    from .eval_config import EvalConfig
    from .eval_metrics import grounding_metrics
    from .eval_samples import SceneState, build_sample
    from .evaluate import ssg_kwargs
    from .loading import load_pipeline
    from .video_io import write_video

    opts = {**DEFAULTS, **opts}
    if opts["threads"]:
        torch.set_num_threads(int(opts["threads"]))
    given = opts.get("instruction")
    if given is not None and (not isinstance(given, str) or not given.strip()):  # checked before any loading
        raise ValueError(f"imagine.instruction={given!r} is empty: give the text to imagine, or leave it "
                         "unset (null) to use the episode's own instruction")
    idx = int(opts.get("episode_index", 0) or 0)
    if idx < 0:
        raise ValueError(f"imagine.episode_index must be >= 0, got {idx}")
    if episodes:
        eps = load_episodes(str(episodes))
        if idx >= len(eps):
            raise ValueError(f"imagine.episode_index={idx} but {episodes} holds {len(eps)} episodes")
        ep = eps[idx]
    else:
        ep = generate_episodes(split, idx + 1, seed=int(episode_seed))[idx]
    if pipe is None:
        pipe = load_pipeline(opts.get("pipeline"))
    ec = EvalConfig(split=split, num_steps=int(opts["num_steps"]), guidance_scale=float(opts["guidance_scale"]),
                    cfg_mode=str(opts["cfg_mode"]), num_context=int(opts["num_context"]),
                    context_mode=str(opts["context_mode"]), num_samples=int(opts["num_samples"]),
                    seed=int(opts["seed"] or 0)).validate()
    S = int(pipe.model.config.frame_size[0])
    n_t, n_b = int(pipe.config.num_target_frames), int(pipe.config.num_bbox_frames)
    state = SceneState(ep.scene_id, S, ec)
    sample, why = build_sample(ep, state, ec.num_context, n_t, ec)
    if sample is None:
        raise ValueError(f"episode {ep.episode_id}: cannot build its ground truth ({why}); pick another episode_index")
    instruction = ep.instruction if opts.get("instruction") is None else opts["instruction"]
    r = pipe.imagine(sample.context, sample.context_indices, instruction, num_steps=ec.num_steps,
                     guidance_scale=ec.guidance_scale, cfg_mode=ec.cfg_mode, num_samples=ec.num_samples, seed=ec.seed,
                     precision=str(opts["precision"] or "auto"),
                     **ssg_kwargs(pipe, bool(opts["ssg"]), opts["ssg_path"]))
    size = int(opts["size"] or DEFAULTS["size"])
    gt_bbox = np.repeat(sample.bbox[None], max(n_b, 1), axis=0)
    prefix = Path(opts.get("out") or f"runs/imagine/{str(ep.episode_id).replace('/', '_')}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    png = prefix.with_name(prefix.name + ".png")
    mp4 = prefix.with_name(prefix.name + ".mp4")
    from PIL import Image

    Image.fromarray(rollout_strip(sample.context, sample.context_indices, r.frames, r.bbox_frames, sample.target,
                                  gt_bbox, f"{ep.episode_id}: {instruction}", size)).save(png)
    write_video(rollout_video_frames(sample.context, r.frames, r.bbox_frames, sample.target, gt_bbox, size), mp4,
              fps=int(opts["fps"] or DEFAULTS["fps"]))
    metrics = grounding_metrics(r.frames, r.bbox_frames, sample, state, ec) if instruction == ep.instruction else {}
    return {"mp4": mp4, "png": png, "episode_id": ep.episode_id, "instruction": instruction, "metrics": metrics,
            "seconds_imagine": r.timings.get("total"), "precision": r.precision, "ssg": r.ssg}


def main(cfg=None) -> int:
    """``spatialnav imagine [split=val] [episodes=file] [imagine.episode_index=0] [imagine.* ...]``."""
    import sys

    from omegaconf import OmegaConf

    if cfg is None:
        cfg = OmegaConf.to_container(OmegaConf.from_dotlist(sys.argv[1:]))
    opts, top = _options(cfg)
    split = str(top.get("split") or opts.pop("split", "val"))
    episodes = top.get("episodes") or opts.pop("episodes", None)
    seed = (top.get("task") or {}).get("episode_seed", opts.pop("episode_seed", 0))
    res = imagine_episode(opts, split=split, episodes=episodes, episode_seed=int(seed or 0))
    m = res["metrics"]
    if m:
        print(f"{res['episode_id']}: SD {m['sd']:.3f}  IF {int(m['if'])}  PSNR {m['psnr']:.1f} dB  "
              f"SSIM {m['ssim']:.3f}  ({res['seconds_imagine']:.2f} s imagine, {res['precision']}, "
              f"SSG {'on' if res['ssg'] else 'off'})")
    print(f"wrote {res['mp4']} and {res['png']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
