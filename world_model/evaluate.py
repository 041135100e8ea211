"""Grounding metrics of a Video4Spatial world model against simulator ground truth (`spatialnav eval-wm`).

For every held-out episode of a split we build the sample exactly as
``world_model.collect.collect_scene`` does (so the model sees in-distribution inputs):
the scene's scripted tour + agent frames turning into the start heading as the
context video (rendered at ``render_scale`` x the model size and area-pooled, as
the training loader does), non-contiguous (or contiguous) context sampling, and the
ground-truth target video along the shortest path ending centred on the target,
plus the bbox frame. The model imagines from the context; we then compare.

Definitions (ours; Video4Spatial's exact ones are not public). Let the imagined
final frame be ``F`` (the last target frame), the bbox frames ``B_1..B_b``:

* **Localisation.** ``p_hat`` (and yaw) = the pose whose rendered view is most similar to ``F``:
  candidates are navigable NavGrid points every ``loc_spacing`` m (0.25) inside the bounding
  box of the start pose and the true path, grown by ``loc_margin`` m (2.0), times
  ``loc_headings`` (12) headings, plus the true path poses; similarity is the colour
  normalised cross-correlation ``ncc(a, b) = <a - mean a, b - mean b> / (|a - mean a| |b - mean b|)``
  of the RGB images area-resized to ``loc_size`` x ``loc_size`` (16). The coarse pass renders
  the whole scene's lattice at ``loc_size`` once per scene in batched ray casts; the best ``refine_top`` are refined in
  3 rounds of 3x3 positions x 3 headings (steps 0.125/0.0625/0.031 m and 15/7.5/3.75 deg),
  rendered exactly like the ground truth (``render_scale`` x model size, pooled). The
  ground-truth final frame is therefore localised at its own pose (similarity 1, SD = 0).
* **SD** (spatial distance) = ``||p_hat - p_gt|| / max(d_gt, 0.5 m)``, ``p_gt`` the true final
  position (centred on the target), ``d_gt`` the geodesic start-to-``p_gt`` distance.
* **IF** (instruction following). With bbox frames: a red box is found in the last bbox
  frame (``world_model.boxes.find_box``, confidence >= ``box_min_confidence`` = 0.3)
  and its centre lies inside the target's box, grown by ``if_margin`` x W px on each side,
  in the simulator's instance mask at the localised pose ``p_hat`` (the view ``F`` depicts;
  the target must be visible there). Without bbox frames (``num_bbox=0``, the ablation): the target is visible at ``p_hat`` (>=
  ``min_target_pixels`` at render size), its pixel centroid lies within ``centre_deg`` (15)
  of the optical axis, and the localisation similarity is >= ``min_match`` (0.5: ``F``
  looks like a real view). Both criteria are reported for every sample (``if_box``,
  ``if_final``); ``if`` is ``if_box`` when the model draws bbox frames, else ``if_final``.
  ``if_gtbox`` tests the box against the target's box in the *true* final view instead
  (weaker: the true target is always centred, so a centred box passes).
* **IF(SD<0.2)** = ``IF and SD < 0.2``.
* **PSNR** = mean over the T path frames of ``10 log10(255^2 / MSE)`` (capped at 100 dB);
  **SSIM** = mean over frames and RGB channels of the Gaussian-window SSIM (11 x 11,
  sigma 1.5, K1 = 0.01, K2 = 0.03, valid region; Wang et al. 2004), generated vs true frames.
* **clip_score** = cosine of the CLIP image embedding of ``F`` and the text embedding of the
  instruction (``clip_score_gt``: the same for the true final frame, the reference).

95% confidence intervals: Wilson for the binary IF metrics, mean +- 1.96 s / sqrt(n)
otherwise (``envs.metrics``). ``samples.jsonl`` gets one line per sample, flushed as it
ends; rerunning the same command skips the samples already there.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from envs.geometry import wrap_angle
from envs.logs import append_jsonl, read_jsonl

from .boxes import default_line_width
from .frames import area_resize
# the pipeline loader is shared with the agent (world_model.loading)
from .loading import load_pipeline
from .metrics import psnr, ssim

SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "eval_config.json"
CONTEXT_MODES = ("noncontiguous", "contiguous")
SUBSETS = ("all", "relation")
BINARY_KEYS = ("if", "if_box", "if_final", "if_gtbox", "if_sd02")
METRIC_KEYS = ("sd", "if", "if_sd02", "psnr", "ssim", "clip_score", "if_box", "if_final", "if_gtbox",
               "clip_score_gt", "match", "heading_err_deg")
_TURN = math.radians(30.0)


def weights_fingerprint(path: str | os.PathLike) -> str:
    """sha1 (12 hex) of the pipeline's model weight files: tells apart two exports of one run."""
    h = hashlib.sha1()
    for f in sorted(Path(path).rglob("*.safetensors")) + sorted(Path(path).rglob("*.bin")):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def spatial_distance(p_hat, p_gt, d_gt: float, min_d: float = 0.5) -> float:
    """SD = ||p_hat - p_gt|| / max(d_gt, min_d) (positions in metres)."""
    e = float(np.linalg.norm(np.asarray(p_hat, np.float64)[:2] - np.asarray(p_gt, np.float64)[:2]))
    return e / max(float(d_gt), float(min_d))


def centre_in_box(cx: float, cy: float, box, margin: float) -> bool:
    """Whether (cx, cy) lies inside ``box`` (x0, y0, x1, y1 inclusive pixels) grown by ``margin`` px."""
    if box is None:
        return False
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 - margin <= cx <= x1 + margin) and (y0 - margin <= cy <= y1 + margin)


def view_features(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, size*size*3) zero-mean unit-norm colour vectors: ``ncc(a, b) = feat(a) . feat(b)``."""
    f = area_resize(np.asarray(frames, np.float32), size).reshape(len(frames), -1)
    f = f - f.mean(1, keepdims=True)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-6)


# ============================================================================ config
@dataclass
class EvalConfig:
    """Options of ``spatialnav eval-wm`` (the ``eval_wm:`` block of configs/config.yaml).

    Attributes:
        pipeline: pipeline dir (None: shipped weights, else runs/wm/pipeline).
        split, n, episodes, out_dir: episodes of ``split`` (or an episode file), how many, where.
        num_steps, guidance_scale, cfg_mode, num_samples, seed: sampling (``imagine``).
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
        loc_spacing, loc_headings, loc_margin, loc_size, refine_top: localisation (module doc).
        if_margin: IF box margin as a fraction of the frame width; box_min_side, box_min_confidence:
            smallest box side (px at model size) and confidence the box reader accepts (true bbox
            frames at 32 px read 0.42-0.90, noise frames up to ~0.27); centre_deg, min_match: IF without bbox.
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


# ============================================================================ samples
@dataclass
class GroundTruthSample:
    """One held-out sample built from a simulator episode (model-size frames)."""

    sample_id: str
    episode: Any
    context: np.ndarray  # (K, S, S, 3) uint8
    context_indices: np.ndarray  # (K,)
    context_poses: np.ndarray  # (K, 3) world x, y, yaw of the context frames (pitch 0)
    target: np.ndarray  # (T, S, S, 3) uint8 true path frames (first = start view, last = centred view)
    bbox: np.ndarray  # (S, S, 3) uint8 the last true frame with the red box
    box: np.ndarray  # (4,) target box at model size (x0, y0, x1, y1)
    path_poses: np.ndarray  # (P, 3) world x, y, yaw of the full true path
    start_pose: np.ndarray
    final_pose: np.ndarray
    d_gt: float


class SceneState:
    """Per-scene simulator objects shared by its samples: grid, renderers, tour, localisation cache."""

    def __init__(self, scene_id: str, frame_size: int, cfg: EvalConfig) -> None:
        from envs.navigation import NavGrid
        from envs.renderer import Renderer
        from envs.scenes import load_scene
        from envs.tour import context_tour

        self.scene = load_scene(scene_id)
        self.grid = NavGrid.from_scene(self.scene)
        self.S = int(frame_size)
        self.factor = int(cfg.render_scale)
        self.hi = Renderer(self.scene, width=self.S * self.factor, height=self.S * self.factor, threads=1)
        self.loc_size = int(min(cfg.loc_size, self.S))
        self.lo = Renderer(self.scene, width=self.loc_size, height=self.loc_size, threads=1)
        rng = np.random.default_rng([int(cfg.seed), zlib.crc32(str(scene_id).encode()), 7])
        tour = context_tour(self.scene, self.grid, n_frames=int(cfg.tour_frames), rng=rng, renderer=self.hi,
                            outputs=("rgb",))
        self.tour_rgb = area_resize(tour["rgb"], self.S)
        self.tour_indices = np.asarray(tour["indices"], np.int64)
        self.tour_poses = np.asarray(tour["poses"], np.float64)
        self.tour_num_raw = int(tour["num_raw_frames"])
        self.cfg = cfg
        self._lattice: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ rendering
    def render_model(self, poses: np.ndarray, outputs=("rgb",)) -> dict[str, np.ndarray]:
        """Render at ``render_scale`` x model size; rgb pooled to the model size, others at render size."""
        out = dict(self.hi.render(np.asarray(poses, np.float64).reshape(-1, 3), outputs=outputs))
        if "rgb" in out:
            out["rgb"] = area_resize(out["rgb"], self.S)
        return out

    def _features_hi(self, poses: np.ndarray, chunk: int = 512) -> np.ndarray:
        return np.concatenate([view_features(self.render_model(poses[i:i + chunk])["rgb"], self.loc_size)
                               for i in range(0, len(poses), chunk)])

    def lattice(self) -> tuple[np.ndarray, np.ndarray]:
        """Coarse candidates of the whole scene (navigable points every loc_spacing x headings) and their
        features at loc_size, computed once per scene in batched casts."""
        if self._lattice is None:
            g = self.grid
            step = max(1, int(round(float(self.cfg.loc_spacing) / g.cell_size)))
            rows, cols = np.nonzero(g.navigable)
            keep = (rows % step == 0) & (cols % step == 0)
            xy = np.asarray(g.cell_to_world(np.stack([rows[keep], cols[keep]], -1)), np.float64).reshape(-1, 2)
            yaws = np.arange(int(self.cfg.loc_headings)) * (2 * math.pi / int(self.cfg.loc_headings))
            poses = np.concatenate([np.column_stack([xy, np.full(len(xy), y)]) for y in yaws])
            feats = [view_features(self.lo.render(poses[i:i + 2048], outputs=("rgb",))["rgb"], self.loc_size)
                     for i in range(0, len(poses), 2048)]
            self._lattice = (poses, np.concatenate(feats) if feats else np.zeros((0, self.loc_size ** 2 * 3)))
        return self._lattice

    # ------------------------------------------------------------------ localisation
    def localize(self, frame: np.ndarray, extra_poses: np.ndarray | None = None,
                 region: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, float]:
        """Pose (x, y, yaw) whose rendered view best matches ``frame`` (S, S, 3), and that similarity.

        Coarse: lattice candidates inside ``region`` (x0, y0, x1, y1; None = whole scene) and
        ``extra_poses`` scored by colour NCC at loc_size; fine: ``refine_top`` best refined in
        three rounds of 3x3 positions x 3 headings, rendered like the ground truth.
        """
        q = view_features(np.asarray(frame)[None], self.loc_size)[0]
        poses, feats = self.lattice()
        if region is not None and len(poses):
            x0, y0, x1, y1 = region
            m = (poses[:, 0] >= x0) & (poses[:, 0] <= x1) & (poses[:, 1] >= y0) & (poses[:, 1] <= y1)
            poses, feats = poses[m], feats[m]
        if extra_poses is not None and len(extra_poses):
            ex = np.asarray(extra_poses, np.float64).reshape(-1, 3)
            poses = np.concatenate([ex, poses])  # extras first: ties go to them
            feats = np.concatenate([self._features_hi(ex), feats])
        if not len(poses):
            raise ValueError(f"{self.scene.scene_id}: no localisation candidates (empty region)")
        s = feats @ q
        order = np.argsort(-s, kind="stable")[: int(self.cfg.refine_top)]
        best = poses[order]
        best_s = s[order]
        for dxy, dyaw in ((0.125, math.radians(15)), (0.0625, math.radians(7.5)), (0.03125, math.radians(3.75))):
            cands = [best]
            for ox in (-dxy, 0.0, dxy):
                for oy in (-dxy, 0.0, dxy):
                    for oyaw in (-dyaw, 0.0, dyaw):
                        if ox == oy == oyaw == 0.0:
                            continue
                        c = best + np.array([ox, oy, oyaw])
                        cands.append(c[np.asarray(self.grid.is_navigable(c[:, :2]), bool).reshape(-1)])
            cand = np.concatenate(cands)
            sc = self._features_hi(cand) @ q
            order = np.argsort(-sc, kind="stable")[: int(self.cfg.refine_top)]
            best, best_s = cand[order], sc[order]
        p = best[0].copy()
        p[2] = wrap_angle(p[2])
        return p, float(best_s[0])

    # ------------------------------------------------------------------ ground truth
    def target_view(self, pose, target_id: int) -> dict[str, Any]:
        """Where the target appears in the view from ``pose``: pixel count (render size), box at model size,
        bearing of its pixel centroid (radians, left positive)."""
        from .boxes import target_box

        inst = self.hi.render(np.asarray(pose, np.float64).reshape(1, 3), outputs=("instance",))["instance"][0]
        mask = inst == int(target_id)
        n = int(mask.sum())
        out = {"pixels": n, "box": None, "bearing": None}
        if n >= int(self.cfg.min_target_pixels):
            b = target_box(inst, target_id)
            out["box"] = np.array([b[0] // self.factor, b[1] // self.factor, b[2] // self.factor,
                                   b[3] // self.factor], np.int64)
            cx = float(np.nonzero(mask)[1].mean()) + 0.5
            out["bearing"] = -math.atan((cx - self.hi.cx) / self.hi.fx)
        return out


def build_sample(ep, state: SceneState, num_context: int, num_target: int, cfg: EvalConfig,
                 index: int = 0) -> tuple[GroundTruthSample | None, str]:
    """The ground-truth sample of one episode, constructed as ``world_model.collect.collect_scene`` and
    ``ContextVideoDataset`` do; (None, reason) when the path or the final view fails."""
    from .boxes import draw_box, target_box
    from .collect import agent_prelude, path_to_target
    from .data import sample_context_indices, subsample_path

    start = np.asarray(ep.start_pose, np.float64)
    path = path_to_target(state.grid, start, ep.view_points, ep.target_center, int(cfg.max_path_steps))
    if path is None:
        return None, "no shortest path to a view point"
    final = state.hi.render(path[-1], outputs=("rgb", "instance"))
    box = target_box(final["instance"][0], ep.target_id, int(cfg.min_target_pixels))
    if box is None:
        return None, "target not visible in the final view"
    prelude = agent_prelude(start, int(cfg.agent_frames))
    rgb = state.render_model(np.concatenate([prelude, path[:-1]]))["rgb"]
    agent_rgb = rgb[: len(prelude)]
    path_rgb = np.concatenate([rgb[len(prelude):], area_resize(final["rgb"], state.S)])
    frames = np.concatenate([state.tour_rgb, agent_rgb])
    poses = np.concatenate([state.tour_poses, prelude])
    indices = np.concatenate([state.tour_indices, state.tour_num_raw + np.arange(len(agent_rgb))])
    rng = np.random.default_rng([int(cfg.seed), zlib.crc32(str(ep.episode_id).encode()), int(index)])
    pos = sample_context_indices(len(frames), num_context, rng, cfg.context_mode == "contiguous")
    if len(pos) < num_context:
        return None, f"only {len(frames)} context frames < num_context={num_context}"
    tp = subsample_path(len(path_rgb), num_target)
    f = state.factor
    box_m = np.array([box[0] // f, box[1] // f, box[2] // f, box[3] // f], np.int64)
    thick = cfg.box_thickness if cfg.box_thickness is not None else default_line_width(state.S)
    d_gt = float(state.grid.geodesic_distance(start[:2], path[-1][None, :2]))
    if not math.isfinite(d_gt):
        d_gt = float(ep.geodesic_distance)
    return GroundTruthSample(
        sample_id=str(ep.episode_id), episode=ep, context=frames[pos], context_indices=indices[pos],
        context_poses=poses[pos],
        target=path_rgb[tp], bbox=draw_box(path_rgb[-1], box_m, thick), box=box_m, path_poses=path,
        start_pose=start, final_pose=path[-1].copy(), d_gt=d_gt,
    ), ""


def region_of(sample: GroundTruthSample, margin: float | None) -> tuple[float, float, float, float] | None:
    if margin is None:
        return None
    pts = np.concatenate([sample.start_pose[None, :2], sample.path_poses[:, :2]])
    lo, hi = pts.min(0) - float(margin), pts.max(0) + float(margin)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


# ============================================================================ per-sample metrics
def grounding_metrics(frames: np.ndarray, bbox_frames: np.ndarray, sample: GroundTruthSample, state: SceneState,
                      cfg: EvalConfig) -> dict[str, Any]:
    """SD, IF (box and final-frame criteria), IF(SD<0.2), PSNR and SSIM of one imagined rollout."""
    from .boxes import find_box, find_box_in_frames

    frames = np.asarray(frames)
    final = frames[-1]
    pose, match = state.localize(final, extra_poses=np.concatenate([sample.start_pose[None], sample.path_poses]),
                                 region=region_of(sample, cfg.loc_margin))
    sd = spatial_distance(pose[:2], sample.final_pose[:2], sample.d_gt)
    S = state.S
    tv = state.target_view(pose, sample.episode.target_id)
    margin = float(cfg.if_margin) * S
    det = None
    if len(bbox_frames):
        kw = {"min_side": int(cfg.box_min_side), "min_confidence": float(cfg.box_min_confidence)}
        det = find_box(bbox_frames[-1], **kw) if len(bbox_frames) == 1 else find_box_in_frames(bbox_frames, **kw)
    if_box = det is not None and centre_in_box(det.cx, det.cy, tv["box"], margin)
    if_gtbox = det is not None and centre_in_box(det.cx, det.cy, sample.box, margin)
    if_final = (tv["bearing"] is not None and abs(tv["bearing"]) <= math.radians(cfg.centre_deg)
                and match >= float(cfg.min_match))
    if_main = if_box if len(bbox_frames) else if_final
    n = min(len(frames), len(sample.target))
    dyaw = wrap_angle(pose[2] - sample.final_pose[2])
    return {
        "sd": sd, "if": bool(if_main), "if_sd02": bool(if_main and sd < 0.2),
        "if_box": bool(if_box) if len(bbox_frames) else None, "if_final": bool(if_final),
        "if_gtbox": bool(if_gtbox) if len(bbox_frames) else None,
        "psnr": psnr(frames[:n], sample.target[:n]), "ssim": ssim(frames[:n], sample.target[:n]),
        "match": match, "p_hat": [round(float(v), 4) for v in pose], "heading_err_deg": abs(math.degrees(dyaw)),
        "box_found": det is not None, "box_confidence": None if det is None else float(det.confidence),
        "target_pixels_at_p_hat": tv["pixels"],
    }


# ============================================================================ CLIP
def eval_clip(value) -> tuple[Any, str]:
    """(SpatialClip or None, note). ``value`` "none"/false: skip the CLIP score; None: the shipped / trained
    small CLIP if there is one (``world_model.ssg.clip.resolve_clip``), else skip with a note; a directory: that CLIP."""
    if isinstance(value, str) and value.lower() in ("none", "false", "off", "skip"):
        return None, "clip_score skipped (clip=none)"
    if value is False:
        return None, "clip_score skipped (clip=false)"
    from .ssg.clip import load_clip, resolve_clip

    try:
        p = resolve_clip(value)
    except FileNotFoundError as e:
        if value not in (None, ""):
            raise
        return None, f"clip_score skipped: {e}"
    return load_clip(str(p)).eval(), f"CLIP {p}"


def clip_scores(clip, images: np.ndarray, text: str) -> list[float]:
    import torch

    with torch.no_grad():
        im = clip.encode_images(np.asarray(images, np.uint8))
        tx = clip.encode_texts([text])
    return [float(v) for v in (im @ tx[0]).tolist()]


# ============================================================================ episodes
def select_episodes(cfg: EvalConfig) -> list:
    """Episodes of the split (or file), filtered to ``subset``; the first ``n``."""
    from envs.episodes import generate_episodes, load_episodes

    want = int(cfg.n)
    rel = cfg.subset == "relation"
    if cfg.episodes:
        eps = load_episodes(str(cfg.episodes))
        if rel:
            eps = [e for e in eps if e.needs_relation]
        if not eps:
            raise ValueError(f"{cfg.episodes} holds no {'relation ' if rel else ''}episodes")
        return eps[:want]
    if not rel:
        return generate_episodes(cfg.split, want, seed=int(cfg.episode_seed))
    # generate_episodes is prefix-stable in n: grow the pool until enough need a relation
    m = 5 * want
    while True:
        pool_ = generate_episodes(cfg.split, m, seed=int(cfg.episode_seed))
        eps = [e for e in pool_ if e.needs_relation]
        if len(eps) >= want or m >= 40 * want:
            if not eps:
                raise ValueError(f"no episode of split {cfg.split!r} needs a spatial relation among {m}")
            return eps[:want]
        m *= 2


# ============================================================================ the run
def _fingerprint(cfg: EvalConfig, pipe_path: str, weights: str, n_t: int, n_b: int) -> dict:
    keep = ("split", "episodes", "num_steps", "guidance_scale", "cfg_mode", "num_context", "context_mode", "subset",
            "ssg", "ssg_path", "num_samples", "seed", "render_scale", "tour_frames", "agent_frames", "loc_spacing",
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


def summarize(rows: list[dict]) -> dict:
    """Means with 95% CIs (Wilson for binary metrics, normal otherwise) over the ``ok`` rows."""
    from envs.metrics import normal_interval, wilson_interval

    ok = [r for r in rows if r.get("status") == "ok"]
    out: dict[str, Any] = {"n": len(ok), "n_skipped": len(rows) - len(ok)}
    for k in METRIC_KEYS:
        vals = np.array([float(r[k]) for r in ok if r.get(k) is not None], np.float64)
        vals = vals[np.isfinite(vals)]
        if not len(vals):
            out[k], out[f"{k}_ci95"] = None, [None, None]
            continue
        lo, hi = wilson_interval(float(vals.sum()), len(vals)) if k in BINARY_KEYS else normal_interval(vals)
        out[k] = float(vals.mean())
        out[f"{k}_ci95"] = [None if not math.isfinite(lo) else lo, None if not math.isfinite(hi) else hi]
    sd = [float(r["sd"]) for r in ok]
    out["sd_median"] = float(np.median(sd)) if sd else None
    secs = [float(r["seconds_imagine"]) for r in ok]
    out["seconds_per_imagine"] = float(np.mean(secs)) if secs else None
    out["seconds_per_sample"] = float(np.mean([float(r["seconds"]) for r in ok])) if ok else None
    if ok:
        rel = [r for r in ok if r.get("needs_relation")]
        out["n_relation"] = len(rel)
    return out


def format_table(summary: dict, title: str = ""):
    from rich.table import Table

    t = Table(title=title or f"world-model grounding ({summary.get('n', 0)} samples)")
    t.add_column("metric")
    t.add_column("mean", justify="right")
    t.add_column("95% CI", justify="right")
    names = {"sd": "SD", "if": "IF", "if_sd02": "IF(SD<0.2)", "psnr": "PSNR (dB)", "ssim": "SSIM",
             "clip_score": "CLIP score", "if_box": "IF box", "if_final": "IF final frame",
             "if_gtbox": "IF vs true-view box", "clip_score_gt": "CLIP score (true frame)",
             "match": "localisation NCC", "heading_err_deg": "heading error (deg)"}
    for k in METRIC_KEYS:
        v = summary.get(k)
        if v is None:
            if k == "clip_score":
                t.add_row(names[k], "-", summary.get("clip_note", ""))
            continue
        lo, hi = summary.get(f"{k}_ci95", [None, None])
        ci = "-" if lo is None else f"[{lo:.3f}, {hi:.3f}]"
        t.add_row(names[k], f"{v:.3f}", ci)
    if summary.get("sd_median") is not None:
        t.add_row("SD median", f"{summary['sd_median']:.3f}", "")
    if summary.get("seconds_per_imagine") is not None:
        t.add_row("s / imagine", f"{summary['seconds_per_imagine']:.2f}", "")
    t.add_row("samples (skipped)", f"{summary.get('n', 0)} ({summary.get('n_skipped', 0)})", "")
    return t


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
