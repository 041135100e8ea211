"""`FrontierClipAgent`: no imagination; a CLIP value map over frontiers (in the style of VLFM).

VLFM (Yokoyama et al., ICRA 2024) builds an obstacle map from depth, scores every view by
the image-text similarity of a vision-language model to the target, projects that score
into a top-down *value map*, drives to the frontier of highest value, and approaches and
stops once a detector recognises the target. Here, with the in-project small CLIP
(``world_model.ssg.clip.load_clip``):

* **view score** s = cos(CLIP image embedding, CLIP text embedding of the instruction);
* **patch relevance** r[p] (``SpatialSignalPrompter``'s direct-effect decomposition,
  docs/ssg.md: each patch's share of s) gives a per-pixel value
  v = (1 - beta) s + beta P r[p(pixel)], P = number of patches (so v = s everywhere when
  relevance is uniform), projected onto the map with ``ObstacleMap.project_scores`` (mean);
* **recognition**: CLIP cosines have no fixed scale, so a view counts as showing the target
  when its score's z-score over every view seen so far (the tour included) is >= ``z_detect``;
  its most relevant patch, back-projected with the real depth, becomes a goal candidate;
* **policy**: approach the best recognised candidate; STOP there when within ``stop_range_m``,
  the target is centred (most relevant patch in the central ``centre_fraction`` of columns)
  and the current view is still recognised; a candidate that fails that check is dropped.
  Without candidates: the frontier point maximising value - ``distance_weight`` x distance,
  where a point's value is the largest projected value within ``value_radius_m``; with no
  frontier left (the tour mapped the scene), a free point far from where it has been.

With ``use_tour`` the context tour's depth seeds the map and its frames seed the value map
and the candidates (the same information the world-model agent gets).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from agent.base import set_threads
from agent.baselines import episode_rng
from envs.actions import Action
from envs.geometry import wrap_angle
from planners.camera import HFOV_DEG, backproject, check_observation
from planners.mapping import ObstacleMap, far_free_point, frontier_points  # re-exported (moved to planners)
from planners.path import FrontierExplorer, Navigator, PathPlanner


def load_clip_checkpoint(path=None):
    """``load_clip(resolve_clip(path))`` (both ``world_model.ssg.clip``): a missing checkpoint is an
    error that says how to make one."""
    from world_model.ssg.clip import load_clip, resolve_clip

    return load_clip(str(resolve_clip(path)))


class FrontierClipAgent:
    """Frontier exploration ranked by a CLIP value map; approach and stop on recognition.

    Args:
        env: the runner's sensor view (camera settings); may be None.
        seed: agent seed (combined with the episode id).
        clip: a ``SpatialClip``, the directory of a saved CLIP, or None for the shipped small CLIP
            (world_model/ssg/weights/clip-small), else runs/clip/small/clip-small
            (``world_model.ssg.clip.resolve_clip``).
        use_tour: seed the map, the value map and the candidates from the context tour.
        relevance_weight: beta, the weight of patch relevance in the per-pixel value.
        z_detect: z-score of the view score above which the target counts as recognised.
        min_views: views needed before z-scores are trusted.
        stop_range_m: STOP within this distance (m) of the candidate.
        centre_fraction: the target must sit in this central fraction of the columns to STOP.
        value_radius_m, distance_weight: frontier value look-up radius and distance penalty (per m).
        give_up_steps: STOP after this many steps with neither candidate nor frontier.
        hfov_deg, max_depth: camera (read from ``env`` when it has them).
        mapping, path, navigator: keyword blocks of ObstacleMap, PathPlanner and Navigator.
        frontier_min_size: smallest frontier cluster (cells).
        device, threads: torch device and CPU threads (None: leave as is; "auto": the free cores).
    """

    needs_context = True
    privileged = False
    batchable = True  # all state is reset per episode and its rng re-seeded from (seed, episode id)

    def __init__(self, env=None, seed: int | None = 0, clip=None, use_tour: bool = True,
                 relevance_weight: float = 0.5, z_detect: float = 2.0, min_views: int = 8,
                 stop_range_m: float = 0.9, centre_fraction: float = 0.5, value_radius_m: float = 1.0,
                 distance_weight: float = 0.05, give_up_steps: int = 24, hfov_deg: float = HFOV_DEG,
                 max_depth: float = 10.0, mapping: dict | None = None, path: dict | None = None,
                 navigator: dict | None = None, frontier_min_size: int = 5, device: str = "cpu",
                 threads: int | str | None = "auto") -> None:
        self.threads = set_threads(threads)
        self.clip = load_clip_checkpoint(clip) if clip is None or isinstance(clip, (str, Path)) else clip
        self.clip.to(device).eval()
        from world_model.ssg.prompting import SpatialSignalPrompter

        # Only the relevance (pass 1) is used: no masks, no trained pooler; the last <= 3 layers.
        n_layers = int(self.clip.vision_config.num_hidden_layers)
        self.prompter = SpatialSignalPrompter(self.clip, out_dim=8, num_tokens=1,
                                              layers=tuple(range(-min(3, n_layers), 0)),
                                              use_attention_mask=False, use_mlp_mask=False).to(device).eval()
        self.seed = seed
        self.hfov_deg = float(getattr(env, "hfov_deg", hfov_deg)) if env is not None else float(hfov_deg)
        self.max_depth = float(getattr(env, "max_depth", max_depth)) if env is not None else float(max_depth)
        self.use_tour = bool(use_tour)
        self.beta = float(relevance_weight)
        self.z_detect, self.min_views = float(z_detect), int(min_views)
        self.stop_range_m, self.centre_fraction = float(stop_range_m), float(centre_fraction)
        self.value_radius_m, self.distance_weight = float(value_radius_m), float(distance_weight)
        self.give_up_steps = int(give_up_steps)
        self.map_kwargs = {"hfov_deg": self.hfov_deg, "max_depth": self.max_depth, **(mapping or {})}
        self.path_kwargs, self.nav_kwargs = dict(path or {}), dict(navigator or {})
        self.frontier_min_size = int(frontier_min_size)
        self.rng = np.random.default_rng(seed)
        self._reset_state()

    def _reset_state(self) -> None:
        self.map = ObstacleMap(**self.map_kwargs)
        self.navigator = Navigator(self.map, PathPlanner(self.map, **self.path_kwargs), **self.nav_kwargs)
        self.scores: list[float] = []
        self.views: list[dict] = []  # {"score", "xy", "offset", "z"} of every view with a depth hit
        self.rejected: list[np.ndarray] = []
        self.goal: np.ndarray | None = None
        self.explorer = FrontierExplorer(self.navigator, give_up_steps=self.give_up_steps,
                                         frontier_min_size=self.frontier_min_size)
        self.visited: list[np.ndarray] = []
        self.pose = np.zeros(3)
        self.last_action: int | None = None
        self.look_around = 0
        self.text = None
        self.last_view: dict | None = None
        self.stats = {"steps": 0, "candidates": 0}

    # ------------------------------------------------------------------ CLIP
    def score_views(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """View scores s (N,) and per-patch relevance (N, g, g) of uint8 views (N, H, W, 3)."""
        import torch

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

    def _z(self, s: float) -> float:
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

    def _observe_view(self, rgb, depth, pose, s: float, rel: np.ndarray) -> dict:
        """Score bookkeeping and value-map projection for one view; returns the view record."""
        dd = np.asarray(depth, np.float32)
        self.map.project_scores("value", self.pixel_values(s, rel, dd.shape[:2]), dd, pose, mode="mean")
        xy, offset = self._peak_point(rel, dd, pose)
        view = {"score": float(s), "xy": xy, "offset": offset}
        self.scores.append(float(s))
        self.views.append(view)
        view["z"] = self._z(float(s))
        return view

    def recognised(self) -> list[dict]:
        """Views whose score is recognised against the statistics of *all* views so far (so views
        seen before ``min_views`` count too), minus rejected places; best first."""
        if len(self.scores) < self.min_views:
            return []
        mu, sd = float(np.mean(self.scores)), max(float(np.std(self.scores)), 1e-9)
        out = [v for v in self.views if v["xy"] is not None and (v["score"] - mu) / sd >= self.z_detect
               and not any(np.linalg.norm(v["xy"] - q) < 0.5 for q in self.rejected)]
        return sorted(out, key=lambda v: -v["score"])

    # ------------------------------------------------------------------ episode
    def reset(self, obs: dict, info: dict | None = None, context: dict | None = None) -> None:
        self._reset_state()
        self.rng = episode_rng(self.seed, (info or {}).get("episode_id", ""))
        import torch

        with torch.no_grad():
            self.text = self.clip.encode_texts([str(obs["instruction"])])
        if self.use_tour and context is not None and len(context.get("rgb", ())):
            poses = np.asarray(context["poses"], np.float64)
            pitch = np.asarray(context.get("pitch", np.zeros(len(poses))), np.float64).reshape(-1)
            s, rel = self.score_views(context["rgb"])
            for k in range(len(poses)):
                if context.get("depth") is not None:
                    self.map.update(context["depth"][k], poses[k], pitch=float(pitch[k]))
                    if abs(pitch[k]) < 1e-6:  # the value projection assumes a level camera
                        self._observe_view(context["rgb"][k], context["depth"][k], poses[k], s[k], rel[k])
                        continue
                self.scores.append(float(s[k]))  # counts toward the score statistics only
        else:
            self.look_around = 11  # VLFM's initial spin: see all around before choosing a frontier

    # ------------------------------------------------------------------ acting
    def act(self, obs: dict) -> int:
        check_observation(obs, self.map.max_reach_m)  # a bad observation changes nothing
        self.pose = self.navigator.observe(obs, self.last_action)
        self.stats["steps"] += 1
        s, rel = self.score_views(np.asarray(obs["rgb"])[None])
        self.last_view = self._observe_view(obs["rgb"], obs["depth"], self.pose, float(s[0]), rel[0])
        action = self._policy()
        self.last_action = int(action)
        return int(action)

    def _policy(self) -> int:
        if self.look_around > 0:
            self.look_around -= 1
            return int(Action.TURN_LEFT)
        view = self.last_view
        cands = self.recognised()
        self.stats["candidates"] = len(cands)
        if cands:
            best = cands[0]
            self.goal = best["xy"]
            dist = float(np.linalg.norm(self.goal - self.pose[:2]))
            if dist <= self.stop_range_m:
                bearing = wrap_angle(math.atan2(self.goal[1] - self.pose[1], self.goal[0] - self.pose[0]) - self.pose[2])
                if abs(bearing) > math.radians(self.hfov_deg / 2 * self.centre_fraction):
                    return int(Action.TURN_LEFT if bearing > 0 else Action.TURN_RIGHT)
                if self._z(view["score"]) >= self.z_detect and abs(view["offset"]) <= self.centre_fraction:
                    return int(Action.STOP)
                self._reject(best)  # at the candidate and facing it, but the target is not recognised
                return self._policy()
            a = self.navigator.act(self.goal)
            if a is not None and a != Action.STOP:
                self.explorer.idle_steps = 0
                return int(a)
            self._reject(best)
            return self._policy()
        self.goal = None
        return self._explore()

    def _reject(self, cand: dict) -> None:
        self.rejected.append(cand["xy"])

    def frontier_values(self, pts: np.ndarray) -> np.ndarray:
        """Largest projected value within ``value_radius_m`` of each point (0 where none projected)."""
        if "value" not in self.map.layers or len(pts) == 0:
            return np.zeros(len(pts))
        layer = self.map.layer("value")
        seen = self.map._layer_counts["value"] > 0  # cells that received a projection (ObstacleMap internals)
        r = int(math.ceil(self.value_radius_m / self.map.cell_size))
        rows, cols = self.map.world_to_cell(pts)
        out = np.zeros(len(pts))
        mean = float(np.mean(self.scores)) if self.scores else 0.0
        for i, (rr, cc) in enumerate(zip(np.atleast_1d(rows), np.atleast_1d(cols))):
            win = (slice(max(rr - r, 0), rr + r + 1), slice(max(cc - r, 0), cc + r + 1))
            m = seen[win]
            out[i] = float(layer[win][m].max()) - mean if m.any() else 0.0
        return out

    def _explore(self) -> int:
        """The frontier point of highest value - ``distance_weight`` x distance (``FrontierExplorer``)."""
        self.visited.append(self.pose[:2].copy())
        return self.explorer.act(self.pose, self.visited, self.rng,
                                 score=lambda pts, d: self.frontier_values(pts) - self.distance_weight * d)

    # ------------------------------------------------------------------ introspection
    def episode_stats(self) -> dict:
        return dict(self.stats)

    def debug_panels(self) -> dict[str, np.ndarray]:
        """Video panel: the agent's map with the value layer, the current goal and path."""
        layer = "value" if "value" in self.map.layers else None
        return {"map": self.map.to_image(pose=self.pose, path=self.navigator.path, goal=self.goal, layer=layer)}


__all__ = ["FrontierClipAgent", "far_free_point", "frontier_points", "load_clip_checkpoint"]
