"""Score imagined rollouts by goal evidence and pick the one to act on (ranking mode).

Navigation World Models plans with CEM over imagined rollouts (sample, score, refit
on the elites). Our world model is not action-conditioned, so the candidates are
rollouts drawn with different seeds (best-of-N); the "refit" step becomes a
consensus over the elites. Per candidate (``read_candidate``):

1. **box**: ``find_box_in_frames`` over its bbox frames (confidence = mean box
   confidence x support, the fraction of bbox frames that agree);
2. **where the imagined final view stands** (``localize_view``): the imagined
   target frames are sub-sampled along the path to the target (not one action
   apart), so the final view is placed by retrieval instead of by integrating
   motions: the most similar real frame with a known pose (the context tour and
   the agent's own frames), similarity = ``view_similarity`` (normalised
   cross-correlation of 16x16 grey images). Below ``min_match`` the current pose
   is used (the box bearing is then read as if the final view were the current
   one, with the confidence discounted), or, when an inverse-dynamics model is
   given, the integrated imagined motion;
3. **goal**: ``box_to_goal`` from that pose, ranging with the real depth of the
   matched frame when the match is close (>= ``depth_match``), else ground
   contact + size prior;
4. **score** = box confidence x (0.5 + 0.5 match) x map consistency, where map
   consistency (``map_consistency``) is 1 when an obstacle lies within 0.4 m of
   the goal (targets are furniture: the map sees them as obstacles), 0.7 when the
   goal lies in unknown space, 0.3 when it lies in open, observed free space.

``rank_candidates`` multiplies each score by (0.5 + 0.5 agreement), agreement =
fraction of the other candidates whose goals lie within ``agree_m``; the elites
(top ``elite_frac``) that agree with the best are fused (product of Gaussians,
``fuse_goals``) into the goal the agent acts on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from planners.camera import check_pose, compose
from planners.mapping import OCCUPIED, UNKNOWN, ObstacleMap
from planners.rollout_reader import (BoxDetection, GoalEstimate, box_to_goal, find_box_in_frames, fuse_goals,
                                     view_thumbnails)


@dataclass
class Candidate:
    """One imagined rollout read as goal evidence."""

    index: int
    box: BoxDetection | None
    goal: GoalEstimate | None
    view_pose: np.ndarray | None = None  # pose of the imagined final view (start frame)
    localization: str = "none"  # "retrieval", "inverse_dynamics", "current" or "none"
    view_match: float = 0.0  # similarity of the imagined final view to its matched real frame
    map_consistency: float = 1.0
    agreement: float = 1.0
    score: float = 0.0
    extras: dict = field(default_factory=dict)


def localize_view(frame: np.ndarray, ref_frames: np.ndarray, size: int = 16,
                  ref_thumbs: np.ndarray | None = None) -> tuple[int, float]:
    """Index and similarity of the reference frame most similar to ``frame`` (``view_similarity``).

    ``ref_thumbs``: the references' ``view_thumbnails`` when the caller has them (one per frame).
    """
    refs = np.asarray(ref_frames)
    if refs.ndim != 4 or len(refs) == 0:
        raise ValueError(f"ref_frames must be (N, H, W, 3) with N >= 1, got shape {refs.shape}")
    thumbs = view_thumbnails(refs, size) if ref_thumbs is None else np.asarray(ref_thumbs)
    sims = thumbs @ view_thumbnails(frame, size)
    i = int(np.argmax(sims))
    return i, float(sims[i])


def map_consistency(obstacle_map: ObstacleMap | None, goal_xy, radius_m: float = 0.4) -> float:
    """How plausible a target at ``goal_xy`` is given the map (see module docstring): 1 / 0.7 / 0.3."""
    if obstacle_map is None:
        return 1.0
    g = np.asarray(goal_xy, np.float64).reshape(2)
    r = int(math.ceil(radius_m / obstacle_map.cell_size))
    row, col = (int(v) for v in obstacle_map.world_to_cell(g))
    h, w = obstacle_map.shape
    r0, r1, c0, c1 = max(row - r, 0), min(row + r + 1, h), max(col - r, 0), min(col + r + 1, w)
    if r0 >= r1 or c0 >= c1:
        return 0.7  # outside the map: never observed
    state = obstacle_map.state[r0:r1, c0:c1]
    if (state == OCCUPIED).any():
        return 1.0
    if (state == UNKNOWN).any():
        return 0.7
    return 0.3


def read_candidate(index: int, frames: np.ndarray, bbox_frames: np.ndarray, pose,
                   ref_frames: np.ndarray | None = None, ref_poses: np.ndarray | None = None,
                   ref_depth=None, obstacle_map: ObstacleMap | None = None, min_match: float = 0.3,
                   depth_match: float = 0.8, motion_rel_pose=None, box_kwargs: dict | None = None,
                   goal_kwargs: dict | None = None, ref_thumbs: np.ndarray | None = None) -> Candidate:
    """Read one imagined rollout (module docstring, steps 1-4).

    Args:
        frames: (T, H, W, 3) imagined target frames (the last is the imagined final view).
        bbox_frames: (B, H, W, 3) imagined final views with the red box.
        pose: the agent's current pose (x, y, yaw) in the start frame.
        ref_frames, ref_poses: posed real frames (the context buffer, whose newest frame is the
            current view) to localise the final view; ``ref_depth(i)`` returns the real depth of
            reference i (or None).
        motion_rel_pose: optional (dx, dy, dyaw) of the final view relative to the current view
            from inverse dynamics, used when retrieval finds no match.
        ref_thumbs: ``view_thumbnails(ref_frames)`` when the caller computed them (several candidates).
    """
    box_kwargs, goal_kwargs = dict(box_kwargs or {}), dict(goal_kwargs or {})
    box = find_box_in_frames(bbox_frames, **box_kwargs)
    if box is None:
        return Candidate(index=index, box=None, goal=None)
    pose = check_pose(pose)
    final = np.asarray(frames)[-1]
    view_pose, where, match, d, extras = pose, "current", 0.0, None, {}
    if ref_frames is not None and len(ref_frames):
        i, match = localize_view(final, ref_frames, ref_thumbs=ref_thumbs)
        extras["match_index"] = i  # the most similar posed real frame (shown in videos)
        if match >= min_match:
            view_pose, where = check_pose(np.asarray(ref_poses)[i]), "retrieval"
            if match >= depth_match and ref_depth is not None:
                d = ref_depth(i)
    if where == "current" and motion_rel_pose is not None:
        view_pose, where = compose(pose, motion_rel_pose), "inverse_dynamics"
    goal = box_to_goal(box, d, view_pose, **goal_kwargs)
    consistency = map_consistency(obstacle_map, goal.xy)
    localisation_weight = 0.5 + 0.5 * max(match, 0.0) if where == "retrieval" else 0.5
    score = float(box.confidence) * localisation_weight * consistency
    return Candidate(index=index, box=box, goal=goal, view_pose=view_pose, localization=where, view_match=match,
                     map_consistency=consistency, score=score, extras=extras)


def rank_candidates(candidates: list[Candidate], agree_m: float = 1.0, elite_frac: float = 0.4,
                    min_score: float = 0.0) -> tuple[Candidate | None, GoalEstimate | None]:
    """Best candidate and the consensus goal of the elites (module docstring); (None, None) if
    no candidate has a goal with score > ``min_score``."""
    with_goal = [c for c in candidates if c.goal is not None]
    if len(with_goal) > 1:
        xy = np.stack([c.goal.xy for c in with_goal])
        dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
        for i, c in enumerate(with_goal):
            c.agreement = float(((dist[i] <= agree_m).sum() - 1) / (len(with_goal) - 1))
            c.score *= 0.5 + 0.5 * c.agreement
    with_goal = [c for c in with_goal if c.score > min_score]
    if not with_goal:
        return None, None
    order = sorted(with_goal, key=lambda c: -c.score)
    best = order[0]
    n_elite = max(1, int(math.ceil(elite_frac * len(order))))
    goal = best.goal
    for c in order[1:n_elite]:
        if np.linalg.norm(c.goal.xy - best.goal.xy) <= agree_m:
            goal = fuse_goals(goal, c.goal)
    if goal is not best.goal:
        goal = GoalEstimate(xy=goal.xy, cov=goal.cov, range_m=best.goal.range_m, bearing=best.goal.bearing,
                            source=f"consensus({best.goal.source})", confidence=best.goal.confidence)
    return best, goal


__all__ = ["Candidate", "localize_view", "map_consistency", "read_candidate", "rank_candidates"]
