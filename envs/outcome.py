"""Per-episode ground-truth facts about how an episode went, for failure analysis.

``EpisodeOutcome`` is kept by ``ObjectNavEnv`` beside the metrics (``envs.metrics``) and
changes none of them. It adds to ``info`` (so to each ``episodes.jsonl`` row):

* ``target_first_seen_step``: the first step whose observation showed the target (its
  instance covers at least ``VISIBLE_MIN_FRACTION`` of the frame, occlusion included;
  0 = the start view), -1 if it never did; ``target_seen_steps``: how many observations
  did; ``target_max_view_fraction``: the largest share of a frame it covered;
* ``tour_target_frames``: frames of the context tour that show the target (None until the
  tour was rendered: agents without context never see it);
* ``min_distance_to_goal``: the smallest geodesic distance to a view point over the
  episode (the start included); ``approach_step``: the first step at which it was within
  ``APPROACH_M`` of success (``success_distance + APPROACH_M``), -1 if never;
* ``target_distance_m``: straight-line distance from the agent to the target's footprint
  (its oriented box on the floor, 0 inside it); ``distractor_distance_m``: the same to the
  nearest *other* instance of the target's category (None when the scene has none).

These are ground truth: like the metrics they never reach a non-privileged agent
(``agent.fair_play.public_info``). ``agent.failure_modes`` reads them.
"""

from __future__ import annotations

import math

import numpy as np

VISIBLE_MIN_FRACTION = 0.005  # 82 px of a 128x128 frame: a 0.5 m object ~5 m away
APPROACH_M = 1.0  # "approached": within success_distance + this (geodesic)
OUTCOME_KEYS = ("target_first_seen_step", "target_seen_steps", "target_max_view_fraction", "tour_target_frames",
                "min_distance_to_goal", "approach_step", "target_distance_m", "distractor_distance_m")


def footprint_distance(xy, center, size, yaw: float) -> float:
    """Distance (m) from a floor point to an oriented box's footprint (0 inside it)."""
    d = np.asarray(xy, np.float64).reshape(2) - np.asarray(center, np.float64).reshape(-1)[:2]
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])  # R(-yaw) d
    out = np.maximum(np.abs(local) - np.asarray(size, np.float64).reshape(-1)[:2] / 2.0, 0.0)
    return float(np.linalg.norm(out))


class EpisodeOutcome:
    """Accumulates the module's fields over one episode.

    >>> o = EpisodeOutcome(target, distractors, success_distance=0.1)
    >>> o.observe(step, instance_image, distance_to_goal, xy)   # at reset (step 0) and after each step
    >>> o.observe_tour(instance_images)                          # when the context tour is rendered
    >>> o.fields()

    ``observe_pixels`` / ``observe_tour_pixels`` take the target's pixel count per frame instead
    of the instance images (``Renderer.render(..., count_instance=target.id)``), which is all
    these fields read: the env's per-step path then builds no instance image.
    """

    def __init__(self, target, distractors=(), success_distance: float = 0.1,
                 visible_min_fraction: float = VISIBLE_MIN_FRACTION, approach_m: float = APPROACH_M) -> None:
        self.target = target
        self.distractors = list(distractors)
        self.approach_within = float(success_distance) + float(approach_m)
        self.visible_min_fraction = float(visible_min_fraction)
        self.first_seen, self.seen_steps, self.max_fraction = -1, 0, 0.0
        self.tour_frames: int | None = None
        self.min_distance, self.approach_step = math.inf, -1
        self.xy = None
        # (xy, target_distance_m, distractor_distance_m) of the last fields(): the footprint
        # distances change only when the agent moves, and fields() runs every step.
        self._dist_cache: tuple | None = None

    def observe(self, step: int, instance, distance_to_goal: float, xy) -> None:
        """One observation (``instance``: its (H, W) instance-id image, or None if not rendered)."""
        if instance is None:
            self.observe_pixels(step, None, 0, distance_to_goal, xy)
        else:
            inst = np.asarray(instance)
            self.observe_pixels(step, np.count_nonzero(inst == int(self.target.id)), inst.size, distance_to_goal, xy)

    def observe_pixels(self, step: int, target_pixels, frame_pixels: int, distance_to_goal: float, xy) -> None:
        """One observation given how many of its ``frame_pixels`` pixels show the target
        (``target_pixels`` None: not rendered)."""
        if target_pixels is not None:
            frac = float(target_pixels) / max(1, int(frame_pixels))
            if frac > self.max_fraction:
                self.max_fraction = frac
            if frac >= self.visible_min_fraction:
                self.seen_steps += 1
                if self.first_seen < 0:
                    self.first_seen = int(step)
        d = float(distance_to_goal)
        if math.isfinite(d):
            if d < self.min_distance:
                self.min_distance = d
            if self.approach_step < 0 and d <= self.approach_within:
                self.approach_step = int(step)
        self.xy = np.asarray(xy, np.float64).reshape(-1)[:2].copy()

    def observe_tour(self, instances) -> None:
        """The context tour's (T, H, W) instance images."""
        inst = np.asarray(instances)
        inst = inst.reshape(len(inst), -1)
        self.observe_tour_pixels(np.count_nonzero(inst == int(self.target.id), axis=1), inst.shape[1])

    def observe_tour_pixels(self, target_pixels, frame_pixels: int) -> None:
        """The context tour's per-frame target pixel counts (T,), out of ``frame_pixels`` each."""
        frac = np.asarray(target_pixels) / max(1, int(frame_pixels))
        self.tour_frames = int((frac >= self.visible_min_fraction).sum())

    def _distances(self) -> tuple[float | None, float | None]:
        if self.xy is None:
            return None, None
        key = (float(self.xy[0]), float(self.xy[1]))
        if self._dist_cache is None or self._dist_cache[0] != key:
            t = self.target
            dist_t = footprint_distance(self.xy, t.center, t.size, t.yaw)
            dist_d = None
            if self.distractors:
                dist_d = min(footprint_distance(self.xy, o.center, o.size, o.yaw) for o in self.distractors)
            self._dist_cache = (key, dist_t, dist_d)
        return self._dist_cache[1], self._dist_cache[2]

    def fields(self) -> dict:
        dist_t, dist_d = self._distances()
        return {
            "target_first_seen_step": self.first_seen,
            "target_seen_steps": self.seen_steps,
            "target_max_view_fraction": self.max_fraction,
            "tour_target_frames": self.tour_frames,
            "min_distance_to_goal": self.min_distance if math.isfinite(self.min_distance) else None,
            "approach_step": self.approach_step,
            "target_distance_m": dist_t,
            "distractor_distance_m": dist_d,
        }


__all__ = ["EpisodeOutcome", "OUTCOME_KEYS", "VISIBLE_MIN_FRACTION", "APPROACH_M", "footprint_distance"]
