"""A CLIP value map over an ObstacleMap, and the frontier policy that reads it (in the style of VLFM).

VLFM (Yokoyama et al., ICRA 2024) builds an obstacle map from depth, scores every view by
the image-text similarity of a vision-language model to the target, projects that score
into a top-down *value map*, drives to the frontier of highest value, and approaches and
stops once a detector recognises the target. Two components do that here, on an
``ObstacleMap`` their owner keeps:

``ClipValueMap`` (perception), with the in-project small CLIP (``world_model.ssg.clip.load_clip``):

* **view score** s = cos(CLIP image embedding, CLIP text embedding of the instruction);
* **patch relevance** r[p] (``SpatialSignalPrompter``'s direct-effect decomposition,
  docs/ssg.md: each patch's share of s) gives a per-pixel value
  v = (1 - beta) s + beta P r[p(pixel)], P = number of patches (so v = s everywhere when
  relevance is uniform), projected onto the map with ``ObstacleMap.project_scores`` (mean);
* **recognition**: CLIP cosines have no fixed scale, so a view counts as showing the target
  when its score's z-score over every view seen so far (the tour included) is >= ``z_detect``;
  its most relevant patch, back-projected with the real depth, becomes a goal candidate.

``ClipGuide`` (policy): approach the best recognised candidate; STOP there when within
``stop_range_m``, the target is centred (most relevant patch in the central ``centre_fraction``
of columns) and the current view is still recognised; a candidate that fails that check is
dropped. Without candidates: the frontier point maximising value - ``distance_weight`` x
distance, where a point's value is the largest projected value within ``value_radius_m``; with no
frontier left (the tour mapped the scene), a free point far from where it has been.

``agent.frontier_clip.FrontierClipAgent`` is the two of them as an agent; the world-model agent
owns a ``ClipValueMap`` (its frame relevance and its stop evidence) and asks a ``ClipGuide`` for
an action whenever it holds no imagined goal.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from envs.actions import Action
from envs.geometry import wrap_angle
from planners.camera import HFOV_DEG, backproject
from planners.mapping import ObstacleMap
from planners.path import FrontierExplorer, Navigator, PathPlanner


def load_clip_checkpoint(path=None):
    """``load_clip(resolve_clip(path))`` (both ``world_model.ssg.clip``): a missing checkpoint is an
    error that says how to make one."""
    from world_model.ssg.clip import load_clip, resolve_clip

    return load_clip(str(resolve_clip(path)))


class ClipValueMap:
    """CLIP scores of every view, their projection onto a map layer ``value``, and recognition.

    Args:
        clip: a ``SpatialClip``, the directory of a saved CLIP, or None for the shipped small CLIP
            (world_model/ssg/weights/clip-small), else runs/clip/small/clip-small.
        relevance_weight: beta, the weight of patch relevance in the per-pixel value.
        z_detect: z-score of the view score above which the target counts as recognised.
        min_views: views needed before z-scores are trusted.
        hfov_deg: camera field of view (back-projection of the most relevant patch).
        device: torch device of the CLIP.

    Per episode: ``reset(instruction, obstacle_map)``, then ``add_tour(context)`` (optional) and
    ``observe(rgb, depth, pose)`` for each real view. ``scores`` holds one score per view in
    order (tour frames first), ``last_view`` the record of the newest view.
    """

    def __init__(self, clip=None, relevance_weight: float = 0.5, z_detect: float = 2.0, min_views: int = 8,
                 hfov_deg: float = HFOV_DEG, device: str = "cpu") -> None:
        self.clip = load_clip_checkpoint(clip) if clip is None or isinstance(clip, (str, Path)) else clip
        self.clip.to(device).eval()
        from world_model.ssg.prompting import SpatialSignalPrompter

        # Only the relevance (pass 1) is used: no masks, no trained pooler; the last <= 3 layers.
        n_layers = int(self.clip.vision_config.num_hidden_layers)
        self.prompter = SpatialSignalPrompter(self.clip, out_dim=8, num_tokens=1,
                                              layers=tuple(range(-min(3, n_layers), 0)),
                                              use_attention_mask=False, use_mlp_mask=False).to(device).eval()
        self.beta = float(relevance_weight)
        self.z_detect, self.min_views = float(z_detect), int(min_views)
        self.hfov_deg = float(hfov_deg)
        self.map: ObstacleMap | None = None
        self.text = None
        self._clear()

    def _clear(self) -> None:
        self.scores: list[float] = []
        self.views: list[dict] = []  # {"score", "xy", "offset", "z"} of every view with a depth hit
        self.rejected: list[np.ndarray] = []  # candidate places found not to hold the target
        self.last_view: dict | None = None

    def reset(self, instruction: str, obstacle_map: ObstacleMap) -> None:
        """A new episode: encode the instruction, forget every view, project onto ``obstacle_map``."""
        import torch

        self._clear()
        self.map = obstacle_map
        with torch.no_grad():
            self.text = self.clip.encode_texts([str(instruction)])

    # ------------------------------------------------------------------ CLIP
    def score_views(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """View scores s (N,) and per-patch relevance (N, g, g) of uint8 views (N, H, W, 3)."""
        import torch

        if self.text is None:
            raise RuntimeError("ClipValueMap.reset(instruction, obstacle_map) first")
        with torch.no_grad():
            img = self.clip.encode_images(np.asarray(rgb))
            s = (img @ self.text.T)[:, 0].cpu().numpy()
            rel = self.prompter.prompt(np.asarray(rgb)[:, None], self.text.expand(len(rgb), -1)).relevance[:, 0]
        return s.astype(np.float64), rel.cpu().numpy().astype(np.float64)

    def pixel_values(self, s: float, rel: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """v = (1 - beta) s + beta P r[patch of pixel] (module docstring), at depth resolution."""
        g = rel.shape[0]
        rows = (np.arange(hw[0]) * g // hw[0]).clip(0, g - 1)
        cols = (np.arange(hw[1]) * g // hw[1]).clip(0, g - 1)
        return (1 - self.beta) * s + self.beta * rel.size * rel[rows][:, cols]

    def z(self, s: float) -> float:
        """z-score of a view score over every view so far (-inf before ``min_views`` views)."""
        if len(self.scores) < self.min_views:
            return -math.inf
        sd = float(np.std(self.scores))
        return (s - float(np.mean(self.scores))) / sd if sd > 1e-9 else 0.0

    def _peak_point(self, rel: np.ndarray, depth: np.ndarray, pose) -> tuple[np.ndarray | None, float]:
        """World xy of the most relevant patch (median depth inside it) and its column offset in [-1, 1]."""
        d = np.asarray(depth, np.float32).reshape(depth.shape[0], depth.shape[1])
        g = rel.shape[0]
        pr, pc = np.unravel_index(int(np.argmax(rel)), rel.shape)
        h, w = d.shape
        r0, r1, c0, c1 = pr * h // g, (pr + 1) * h // g, pc * w // g, (pc + 1) * w // g
        patch = d[r0:r1, c0:c1]
        offset = ((pc + 0.5) / g) * 2 - 1
        if not (patch > 0).any():
            return None, offset
        pts = backproject(d, pose, self.hfov_deg)[r0:r1, c0:c1][patch > 0]
        return np.median(pts[:, :2], axis=0), offset

    def _add_view(self, depth, pose, s: float, rel: np.ndarray) -> dict:
        """Score bookkeeping and value-map projection for one view; returns the view record."""
        dd = np.asarray(depth, np.float32)
        self.map.project_scores("value", self.pixel_values(s, rel, dd.shape[:2]), dd, pose, mode="mean")
        xy, offset = self._peak_point(rel, dd, pose)
        view = {"score": float(s), "xy": xy, "offset": offset}
        self.scores.append(float(s))
        self.views.append(view)
        view["z"] = self.z(float(s))
        return view

    # ------------------------------------------------------------------ per episode
    def add_tour(self, context: dict, update_map: bool = True) -> None:
        """Score the context tour's frames; with depth, project them (and, with ``update_map``, integrate
        their depth into the map first, frame by frame). Tilted frames count toward the score
        statistics only (the value projection assumes a level camera)."""
        poses = np.asarray(context["poses"], np.float64)
        pitch = np.asarray(context.get("pitch", np.zeros(len(poses))), np.float64).reshape(-1)
        s, rel = self.score_views(context["rgb"])
        for k in range(len(poses)):
            if context.get("depth") is not None:
                if update_map:
                    self.map.update(context["depth"][k], poses[k], pitch=float(pitch[k]))
                if abs(pitch[k]) < 1e-6:
                    self._add_view(context["depth"][k], poses[k], s[k], rel[k])
                    continue
            self.scores.append(float(s[k]))

    def observe(self, rgb, depth, pose) -> dict:
        """Score one real view and project it: ``{"score", "z", "xy", "offset"}`` (also ``last_view``)."""
        s, rel = self.score_views(np.asarray(rgb)[None])
        self.last_view = self._add_view(depth, pose, float(s[0]), rel[0])
        return self.last_view

    def recognised(self) -> list[dict]:
        """Views whose score is recognised against the statistics of *all* views so far (so views
        seen before ``min_views`` count too), minus rejected places; best first."""
        if len(self.scores) < self.min_views:
            return []
        mu, sd = float(np.mean(self.scores)), max(float(np.std(self.scores)), 1e-9)
        out = [v for v in self.views if v["xy"] is not None and (v["score"] - mu) / sd >= self.z_detect
               and not any(np.linalg.norm(v["xy"] - q) < 0.5 for q in self.rejected)]
        return sorted(out, key=lambda v: -v["score"])

    def reject(self, xy) -> None:
        """A candidate place found not to hold the target: its views no longer count as recognised."""
        self.rejected.append(np.asarray(xy, np.float64))

    def frontier_values(self, pts: np.ndarray, radius_m: float) -> np.ndarray:
        """Largest projected value within ``radius_m`` of each point, minus the mean score (0 where none
        was projected)."""
        if "value" not in self.map.layers or len(pts) == 0:
            return np.zeros(len(pts))
        layer = self.map.layer("value")
        seen = self.map._layer_counts["value"] > 0  # cells that received a projection (ObstacleMap internals)
        r = int(math.ceil(radius_m / self.map.cell_size))
        rows, cols = self.map.world_to_cell(pts)
        out = np.zeros(len(pts))
        mean = float(np.mean(self.scores)) if self.scores else 0.0
        for i, (rr, cc) in enumerate(zip(np.atleast_1d(rows), np.atleast_1d(cols))):
            win = (slice(max(rr - r, 0), rr + r + 1), slice(max(cc - r, 0), cc + r + 1))
            m = seen[win]
            out[i] = float(layer[win][m].max()) - mean if m.any() else 0.0
        return out


class ClipGuide:
    """The Frontier+CLIP policy on a ``ClipValueMap`` (module docstring): ``act(pose)`` proposes an action.

    It plans with its own ``Navigator`` on the value map's ObstacleMap: the owner calls
    ``observe(obs, last_action, update_map)`` every step (the pose and collisions; the map update
    when the guide is the one that keeps the map) and ``act()`` for the proposal.

    Args:
        value_map: the perception it reads (``ClipValueMap``).
        stop_range_m: STOP within this distance (m) of the candidate.
        centre_fraction: the target must sit in this central fraction of the columns to STOP.
        value_radius_m, distance_weight: frontier value look-up radius and distance penalty (per m).
        give_up_steps: STOP after this many steps with neither candidate nor frontier.
        hfov_deg: camera field of view.
        path, navigator: keyword blocks of PathPlanner and Navigator.
        frontier_min_size: smallest frontier cluster (cells).
    """

    def __init__(self, value_map: ClipValueMap, stop_range_m: float = 0.9, centre_fraction: float = 0.5,
                 value_radius_m: float = 1.0, distance_weight: float = 0.05, give_up_steps: int = 24,
                 hfov_deg: float = HFOV_DEG, path: dict | None = None, navigator: dict | None = None,
                 frontier_min_size: int = 5) -> None:
        self.value_map = value_map
        self.stop_range_m, self.centre_fraction = float(stop_range_m), float(centre_fraction)
        self.value_radius_m, self.distance_weight = float(value_radius_m), float(distance_weight)
        self.give_up_steps, self.hfov_deg = int(give_up_steps), float(hfov_deg)
        self.path_kwargs, self.nav_kwargs = dict(path or {}), dict(navigator or {})
        self.frontier_min_size = int(frontier_min_size)
        self.rng = np.random.default_rng(0)
        self.navigator: Navigator | None = None  # made by reset, on the value map's ObstacleMap
        self.goal: np.ndarray | None = None
        self.pose = np.zeros(3)
        self.candidates = 0

    def reset(self, rng: np.random.Generator, look_around: int = 0) -> None:
        """A new episode on the value map's (already reset) ObstacleMap; ``look_around`` turns first."""
        m = self.value_map.map
        self.navigator = Navigator(m, PathPlanner(m, **self.path_kwargs), **self.nav_kwargs)
        self.explorer = FrontierExplorer(self.navigator, give_up_steps=self.give_up_steps,
                                         frontier_min_size=self.frontier_min_size)
        self.rng = rng
        self.goal: np.ndarray | None = None
        self.visited: list[np.ndarray] = []
        self.pose = np.zeros(3)
        self.look_around = int(look_around)
        self.candidates = 0  # recognised views at the last act()

    def observe(self, obs: dict, last_action: int | None, update_map: bool = True) -> np.ndarray:
        """Track the pose (and, with ``update_map``, integrate depth and collisions into the map)."""
        self.pose = self.navigator.observe(obs, last_action, update_map=update_map)
        return self.pose

    def act(self) -> int:
        """The proposal for the pose of the last ``observe`` and the value map's newest view."""
        if self.look_around > 0:
            self.look_around -= 1
            return int(Action.TURN_LEFT)
        vm = self.value_map
        view = vm.last_view
        cands = vm.recognised()
        self.candidates = len(cands)
        if cands:
            best = cands[0]
            self.goal = best["xy"]
            dist = float(np.linalg.norm(self.goal - self.pose[:2]))
            if dist <= self.stop_range_m:
                bearing = wrap_angle(math.atan2(self.goal[1] - self.pose[1], self.goal[0] - self.pose[0]) - self.pose[2])
                if abs(bearing) > math.radians(self.hfov_deg / 2 * self.centre_fraction):
                    return int(Action.TURN_LEFT if bearing > 0 else Action.TURN_RIGHT)
                if vm.z(view["score"]) >= vm.z_detect and abs(view["offset"]) <= self.centre_fraction:
                    return int(Action.STOP)
                vm.reject(best["xy"])  # at the candidate and facing it, but the target is not recognised
                return self.act()
            a = self.navigator.act(self.goal)
            if a is not None and a != Action.STOP:
                self.explorer.idle_steps = 0
                return int(a)
            vm.reject(best["xy"])
            return self.act()
        self.goal = None
        return self._explore()

    def _explore(self) -> int:
        """The frontier point of highest value - ``distance_weight`` x distance (``FrontierExplorer``)."""
        self.visited.append(self.pose[:2].copy())
        return self.explorer.act(self.pose, self.visited, self.rng,
                                 score=lambda pts, d: (self.value_map.frontier_values(pts, self.value_radius_m)
                                                       - self.distance_weight * d))


__all__ = ["ClipValueMap", "ClipGuide", "load_clip_checkpoint"]
