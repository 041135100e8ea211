"""Options of the world model's grounding evaluation, ``spatialnav eval-wm``: ``EvalConfig``.

The ``eval_wm:`` block of configs/config.yaml holds the same defaults (tests/test_config_defaults.py
checks they agree); ``config_from_cli`` makes one from the CLI's composed config, a flat mapping of
its keys, or another ``EvalConfig``. ``world_model.evaluate.evaluate`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

CONTEXT_MODES = ("noncontiguous", "contiguous")
SUBSETS = ("all", "relation")


@dataclass
class EvalConfig:
    """Options of ``spatialnav eval-wm`` (the ``eval_wm:`` block of configs/config.yaml).

    Attributes:
        pipeline: pipeline dir (None: shipped weights, else runs/wm/pipeline).
        split, n, episodes, out_dir: episodes of ``split`` (or an episode file), how many, where.
        num_steps, guidance_scale, cfg_mode, num_samples, seed: sampling (``imagine``).
        candidates: with num_samples > 1, also record each rollout's grounding (IF, SD, where its
            final frame was localised, its box's confidence) in the row's ``candidates``, so that
            verifiers other than the pipeline's can be scored offline (``research.best_of_n``).
        num_context: K context frames; context_mode: noncontiguous | contiguous (ablation).
        num_target, num_bbox: generated path / bbox frames (None: the pipeline's;
            num_bbox=0 = no bbox frames, IF from the final frame).
        subset: all | relation (only episodes whose target needs a spatial relation).
        ssg: pass ``ssg=True`` to imagine (needs an SSG adapter), False (plain backbone) or None (the
            pipeline's default: SSG when it has an adapter); ssg_path: load an adapter first.
        precision: the transformer's compute precision in imagine: auto (bf16 autocast where the
            device has bf16 units, else fp32) | fp32 | bf16. The resolved one is part of the run's
            fingerprint and summary.
        clip: CLIP dir for clip_score (None: the shipped/trained small CLIP if any; "none": skip).
        render_scale, tour_frames, agent_frames, max_path_steps, min_target_pixels, box_thickness:
            the sample construction (as ``world_model.collect.CollectConfig``).
        loc_spacing, loc_headings, loc_margin, loc_size, refine_top: localisation (``world_model.eval_samples``).
        if_margin: IF box margin as a fraction of the frame width; box_min_side, box_min_confidence:
            smallest box side (px at model size) and confidence the box reader accepts (true bbox
            frames at 32 px read 0.42-0.90, noise frames up to ~0.27); centre_deg, min_match: IF without bbox
            (``world_model.eval_metrics``).
        episode_seed: seed of generated episodes.
        threads: torch threads (None: leave torch's default). 1 by default: beside the renderer and
            other work on a 2-core machine, torch's 2 spinning OpenMP threads made imagine 8x slower
            (0.9 s -> 8 s); with OMP_WAIT_POLICY=PASSIVE in the environment 2 threads are safe.
    """

    pipeline: str | None = None
    split: str = "test"
    n: int = 50
    episodes: str | None = None
    out_dir: str | None = None
    num_steps: int = 8
    guidance_scale: float = 3.0
    cfg_mode: str = "joint"
    num_context: int = 8
    context_mode: str = "noncontiguous"
    num_target: int | None = None
    num_bbox: int | None = None
    subset: str = "all"
    ssg: bool | None = False
    ssg_path: str | None = None
    precision: str = "auto"
    num_samples: int = 1
    candidates: bool = False
    seed: int = 0
    clip: str | None = None
    render_scale: int = 2
    tour_frames: int = 96
    agent_frames: int = 3
    max_path_steps: int = 200
    min_target_pixels: int = 6
    box_thickness: int | None = None
    loc_spacing: float = 0.25
    loc_headings: int = 12
    loc_margin: float | None = 2.0
    loc_size: int = 16
    refine_top: int = 4
    if_margin: float = 0.1
    box_min_side: int = 3
    box_min_confidence: float = 0.3
    centre_deg: float = 15.0
    min_match: float = 0.5
    episode_seed: int = 0
    threads: int | None = 1
    progress: bool = True

    def validate(self) -> "EvalConfig":
        from .pipeline import CFG_MODES, PRECISIONS

        if self.precision not in PRECISIONS:
            raise ValueError(f"eval_wm.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.cfg_mode not in CFG_MODES:
            raise ValueError(f"eval_wm.cfg_mode must be one of {CFG_MODES}, got {self.cfg_mode!r}")
        if self.context_mode not in CONTEXT_MODES:
            raise ValueError(f"eval_wm.context_mode must be one of {CONTEXT_MODES}, got {self.context_mode!r}")
        if self.subset not in SUBSETS:
            raise ValueError(f"eval_wm.subset must be one of {SUBSETS}, got {self.subset!r}")
        for k in ("n", "num_steps", "num_context", "num_samples", "render_scale", "loc_headings", "loc_size",
                  "refine_top", "tour_frames"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"eval_wm.{k} must be >= 1, got {getattr(self, k)}")
        if self.num_bbox is not None and int(self.num_bbox) < 0:
            raise ValueError(f"eval_wm.num_bbox must be >= 0 (0 = no bbox frames), got {self.num_bbox}")
        if self.num_target is not None and int(self.num_target) < 2:
            raise ValueError(f"eval_wm.num_target must be >= 2 (start view + final view), got {self.num_target}")
        if float(self.loc_spacing) <= 0:
            raise ValueError(f"eval_wm.loc_spacing must be > 0 m, got {self.loc_spacing}")
        return self

    @classmethod
    def from_mapping(cls, d: dict[str, Any]) -> "EvalConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown eval-wm option(s) {unknown}; valid: {sorted(names)}")
        d = {k: (None if isinstance(v, str) and v.lower() in ("null", "") else v) for k, v in d.items()}
        return cls(**d).validate()


def config_from_cli(cfg) -> EvalConfig:
    """An :class:`EvalConfig` from the CLI's composed config (``eval_wm`` block + top-level
    split, n_episodes, episodes, out_dir, progress), a flat mapping, or an EvalConfig."""
    from omegaconf import OmegaConf

    if isinstance(cfg, EvalConfig):
        return cfg.validate()
    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    d = dict(cfg or {})
    if "eval_wm" in d:
        top = d
        d = dict(top.get("eval_wm") or {})
        for k in ("split", "episodes", "out_dir", "progress"):
            if top.get(k) is not None:
                d[k] = top[k]
        if top.get("n_episodes") is not None:
            d["n"] = top["n_episodes"]
        if (top.get("task") or {}).get("episode_seed") is not None:
            d.setdefault("episode_seed", top["task"]["episode_seed"])
    return EvalConfig.from_mapping(d)
