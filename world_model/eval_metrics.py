"""Grounding metrics of one imagined rollout against the simulator's ground truth (``spatialnav eval-wm``).

Definitions (ours; Video4Spatial's exact ones are not public). Let the imagined final frame be
``F`` (the last target frame), the bbox frames ``B_1..B_b``, and ``p_hat`` (and yaw) the pose
whose rendered view is most similar to ``F`` (``world_model.eval_samples.SceneState.localize``):

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
  sigma 1.5, K1 = 0.01, K2 = 0.03, valid region; Wang et al. 2004), generated vs true frames
  (``world_model.metrics``).
* **clip_score** = cosine of the CLIP image embedding of ``F`` and the text embedding of the
  instruction (``clip_score_gt``: the same for the true final frame, the reference).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from envs.geometry import wrap_angle

from .boxes import find_box, find_box_in_frames
from .eval_config import EvalConfig
from .eval_samples import GroundTruthSample, SceneState, region_of
from .metrics import psnr, ssim


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


def grounding_metrics(frames: np.ndarray, bbox_frames: np.ndarray, sample: GroundTruthSample, state: SceneState,
                      cfg: EvalConfig) -> dict[str, Any]:
    """SD, IF (box and final-frame criteria), IF(SD<0.2), PSNR and SSIM of one imagined rollout."""
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
    """Cosine of each image's CLIP embedding with the text's (``clip``: a ``SpatialClip``)."""
    import torch

    with torch.no_grad():
        im = clip.encode_images(np.asarray(images, np.uint8))
        tx = clip.encode_texts([text])
    return [float(v) for v in (im @ tx[0]).tolist()]
