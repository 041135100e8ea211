"""`FrontierClipAgent`: no imagination; a CLIP value map over frontiers (in the style of VLFM).

The agent is two planner components on its own ObstacleMap (planners/value_map.py has the method):
``ClipValueMap`` scores every view with the in-project small CLIP, projects the score onto the map
and recognises the target by the score's z-score over all views so far; ``ClipGuide`` approaches
the best recognised view and STOPs there when the target is close, centred and still recognised,
and otherwise drives to the frontier of highest value.

With ``use_tour`` the context tour's depth seeds the map and its frames seed the value map
and the candidates (the same information the world-model agent gets); without it the agent
first turns a full circle (VLFM's initial spin).
"""

from __future__ import annotations

import numpy as np

from agent.base import set_threads
from agent.baselines import episode_rng
from envs.instruction_reader import read_instruction as read_text
from planners.camera import HFOV_DEG, check_observation
from planners.mapping import ObstacleMap, far_free_point, frontier_points  # re-exported (moved to planners)
from planners.value_map import ClipGuide, ClipValueMap, load_clip_checkpoint  # noqa: F401 (re-exported)


class FrontierClipAgent:
    """Frontier exploration ranked by a CLIP value map; approach and stop on recognition.

    Args:
        env: the runner's sensor view (camera settings); may be None.
        seed: agent seed (combined with the episode id).
        clip: a ``SpatialClip``, the directory of a saved CLIP, or None for the shipped small CLIP
            (world_model/ssg/weights/clip-small), else runs/clip/small/clip-small
            (``world_model.ssg.clip.resolve_clip``).
        use_tour: seed the map, the value map and the candidates from the context tour.
        relevance_weight, z_detect, min_views: ``ClipValueMap``'s (the value map and recognition).
        stop_range_m, centre_fraction, value_radius_m, distance_weight, give_up_steps: ``ClipGuide``'s
            (the policy).
        hfov_deg, max_depth: camera (read from ``env`` when it has them).
        mapping, path, navigator: keyword blocks of ObstacleMap, PathPlanner and Navigator.
        frontier_min_size: smallest frontier cluster (cells).
        read_instruction: score views against the instruction's template wording, read back from free
            wording by ``envs.instruction_reader`` (the CLIP was trained on template captions); a template
            instruction is used as is. False: score against the instruction as given.
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
                 navigator: dict | None = None, frontier_min_size: int = 5, read_instruction: bool = True,
                 device: str = "cpu", threads: int | str | None = "auto") -> None:
        self.threads = set_threads(threads)
        self.seed = seed
        self.hfov_deg = float(getattr(env, "hfov_deg", hfov_deg)) if env is not None else float(hfov_deg)
        self.max_depth = float(getattr(env, "max_depth", max_depth)) if env is not None else float(max_depth)
        self.use_tour = bool(use_tour)
        self.read_instruction = bool(read_instruction)
        self.instruction = ""
        self.map_kwargs = {"hfov_deg": self.hfov_deg, "max_depth": self.max_depth, **(mapping or {})}
        self.value_map = ClipValueMap(clip, relevance_weight=relevance_weight, z_detect=z_detect,
                                      min_views=min_views, hfov_deg=self.hfov_deg, device=device)
        self.policy = ClipGuide(self.value_map, stop_range_m=stop_range_m, centre_fraction=centre_fraction,
                                value_radius_m=value_radius_m, distance_weight=distance_weight,
                                give_up_steps=give_up_steps, hfov_deg=self.hfov_deg, path=path,
                                navigator=navigator, frontier_min_size=frontier_min_size)
        self.map = ObstacleMap(**self.map_kwargs)
        self.last_action: int | None = None
        self.stats = {"steps": 0, "candidates": 0}

    # ------------------------------------------------------------------ episode
    def reset(self, obs: dict, info: dict | None = None, context: dict | None = None) -> None:
        self.map = ObstacleMap(**self.map_kwargs)
        text = str(obs["instruction"])
        self.instruction = read_text(text).canonical if self.read_instruction else text
        self.value_map.reset(self.instruction, self.map)
        tour = self.use_tour and context is not None and len(context.get("rgb", ()))
        self.policy.reset(episode_rng(self.seed, (info or {}).get("episode_id", "")),
                          look_around=0 if tour else 11)  # no tour: see all around before choosing a frontier
        if tour:
            self.value_map.add_tour(context)
        self.last_action = None
        self.stats = {"steps": 0, "candidates": 0}

    # ------------------------------------------------------------------ acting
    def act(self, obs: dict) -> int:
        check_observation(obs, self.map.max_reach_m)  # a bad observation changes nothing
        pose = self.policy.observe(obs, self.last_action)  # the map: depth and collisions
        self.stats["steps"] += 1
        self.value_map.observe(obs["rgb"], obs["depth"], pose)
        action = self.policy.act()
        self.stats["candidates"] = self.policy.candidates
        self.last_action = int(action)
        return int(action)

    # ------------------------------------------------------------------ introspection
    @property
    def pose(self):
        return self.policy.pose

    @property
    def goal(self):
        return self.policy.goal

    def episode_stats(self) -> dict:
        return {**self.stats, "instruction": self.instruction}

    def debug_panels(self) -> dict[str, np.ndarray]:
        """Video panel: the agent's map with the value layer, the current goal and path."""
        layer = "value" if "value" in self.map.layers else None
        return {"map": self.map.to_image(pose=self.pose, path=self.policy.navigator.path, goal=self.goal,
                                         layer=layer)}


__all__ = ["FrontierClipAgent", "ClipGuide", "ClipValueMap", "far_free_point", "frontier_points",
           "load_clip_checkpoint"]
