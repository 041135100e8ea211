"""``ObjectNavEnv``: ObjectNav with spatial instructions as a Gymnasium env.

Registered as ``SpatialNav-ObjectNav-v0`` (``import envs``). One step is one
discrete action (``envs.actions``: 0 STOP, 1 MOVE_FORWARD 0.25 m, 2 TURN_LEFT
30 deg, 3 TURN_RIGHT 30 deg), habitat ObjectNav's defaults:

* observation: ``rgb`` uint8 (H, W, 3); ``depth`` float32 (H, W, 1) z-depth in
  metres (0 = no hit); ``gps`` float32 (2,) = (forward, left) displacement
  from the episode start in the start frame; ``compass`` float32 (1,) = yaw
  minus start yaw wrapped to (-pi, pi]; ``instruction`` str (``envs.spaces.InstructionText``,
  a ``Text`` space that ``AsyncVectorEnv`` with shared memory reads correctly).
* ``terminated`` when the agent calls STOP; ``truncated`` after
  ``max_episode_steps`` actions without STOP.
* ``info``: success, spl, softspl, distance_to_goal, path_length, collisions,
  steps (``envs.metrics``), collided (the last action was blocked),
  episode_id, scene_id, and the ground-truth outcome fields of ``envs.outcome``
  (when the target was first in view, the closest approach, where the agent
  stands relative to the target and its look-alikes) for failure analysis.
* reward: sparse, the episode's success (0 or 1) on STOP and 0 otherwise; this
  is an evaluation env, so shaping is left to wrappers.

Episodes come from ``episodes`` (a list of ``NavEpisode`` or a json.gz path)
or are generated for ``split``. ``reset(seed=s)`` picks the episode from the
env's seeded RNG, so the same seed gives the same episode and observation;
``options`` = {"split", "episode_file", "episode_index"} selects explicitly.

Privileged attributes (ground truth; only the Oracle baseline may read them):
``episode``, ``scene``, ``grid`` and ``pose`` (world-frame x, y, yaw). ``topdown_map()`` and
``render()`` picture them (drawn by ``envs.topdown``).
"""

from __future__ import annotations

import math
import os
import string
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import FORWARD_STEP_M, NUM_ACTIONS, TURN_ANGLE_DEG, Action, check_action
from envs.geometry import wrap_angle
from envs.spaces import InstructionText
from envs.topdown import beside, draw_topdown, map_background, upscale

ENV_ID = "SpatialNav-ObjectNav-v0"

# Every character the instruction grammar can emit (letters, digits, spaces
# and light punctuation); an episode whose text falls outside fails at load.
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.'-:;!?()/&"
INSTRUCTION_MAX_LENGTH = 256

_TURN = math.radians(TURN_ANGLE_DEG)
_MAX_CACHED_SCENES = 8  # renderer + grid per scene; a few hundred MB at most
# Generated episode lists per (split, n, seed): several envs in one process (the
# demo's agents, a SyncVectorEnv) share one generation. Episodes are read-only here.
_GENERATED: OrderedDict[tuple, list] = OrderedDict()


def world_to_start_frame(xy: np.ndarray, start_pose: np.ndarray) -> np.ndarray:
    """World xy (..., 2) -> (forward, left) in the frame of ``start_pose`` (x, y, yaw)."""
    d = np.asarray(xy, np.float64)[..., :2] - start_pose[:2]
    c, s = math.cos(start_pose[2]), math.sin(start_pose[2])
    return np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c], axis=-1)


def episode_start_pose(episode) -> np.ndarray:
    """(x, y, yaw) of an episode's start in our z-up frame.

    ``NavEpisode.start_pose`` converts from the habitat-layout fields
    (``start_position``/``start_rotation``, see ``envs.episodes``); other episode
    types with those two habitat fields are converted the same way.
    """
    pose = getattr(episode, "start_pose", None)
    if pose is not None:
        return np.asarray(pose, np.float64).reshape(3).copy()
    from envs.episodes import from_habitat_position, habitat_rotation_to_yaw

    xyz = from_habitat_position(episode.start_position)
    return np.array([xyz[0], xyz[1], habitat_rotation_to_yaw(episode.start_rotation)])


@dataclass
class _SceneAssets:
    """Everything built once per scene and reused across episodes."""

    scene: Any
    grid: Any
    renderer: Any
    map_base: np.ndarray | None = None  # (rows, cols, 3) uint8 top-down background


# Resource bounds checked up front: a frame of MAX_CAMERA_PX^2 pixels is ~64 MB of RGB + depth, and
# an episode of MAX_EPISODE_STEPS actions keeps its path (a few MB).
MAX_CAMERA_PX = 4096
MAX_EPISODE_STEPS = 100_000


class ObjectNavEnv(gym.Env):
    """ObjectNav with spatial instructions in procedural (or user) scenes.

    Args:
        split: episode split used when ``episodes`` is None ("train"/"val"/"test").
        episodes: None (generate ``n_episodes`` for ``split``), a json.gz path, or
            a list of ``NavEpisode``.
        width, height, hfov_deg: camera.
        max_episode_steps: actions before truncation (habitat ObjectNav: 500).
        success_distance: metres from a view point at STOP that count as success.
        n_episodes: how many episodes to generate when ``episodes`` is None.
        episode_seed: seed of episode generation.
        render_mode: only "rgb_array".
        backend: renderer backend, "open3d" (embedded) or "habitat" (optional).
        threads: ray-casting threads (None: open3d's default).
        max_depth: depth beyond this reads 0 (metres).
        paraphrase: reword every episode's instruction in free wording (``envs.paraphrase``; the
            spec, target and goals are unchanged), deterministic in (``paraphrase_seed``, episode id).
        instructions: a hand-written free-wording file keyed by episode id (e.g.
            ``envs/free_wording_val.json``); takes precedence over ``paraphrase``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        split: str = "val",
        episodes=None,
        width: int = 128,
        height: int = 128,
        hfov_deg: float = 79.0,
        max_episode_steps: int = 500,
        success_distance: float = 0.1,
        n_episodes: int = 50,
        episode_seed: int = 0,
        render_mode: str | None = "rgb_array",
        backend: str = "open3d",
        threads: int | None = None,
        max_depth: float = 10.0,
        paraphrase: bool = False,
        paraphrase_seed: int = 0,
        instructions: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None")
        if backend not in ("open3d", "habitat"):
            raise ValueError(f"backend={backend!r}: expected 'open3d' or 'habitat'")
        for name, value in (("width", width), ("height", height), ("max_episode_steps", max_episode_steps)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if not (8 <= int(width) <= MAX_CAMERA_PX and 8 <= int(height) <= MAX_CAMERA_PX):
            raise ValueError(f"camera must be 8..{MAX_CAMERA_PX} pixels a side, got {width}x{height}")
        if not 1 <= int(max_episode_steps) <= MAX_EPISODE_STEPS:
            raise ValueError(f"max_episode_steps must be in 1..{MAX_EPISODE_STEPS}, got {max_episode_steps}")
        if not (isinstance(hfov_deg, (int, float, np.number)) and 1.0 <= float(hfov_deg) <= 170.0):
            raise ValueError(f"hfov_deg must be a number of degrees in [1, 170], got {hfov_deg!r}")
        if not (isinstance(max_depth, (int, float, np.number)) and 0.1 <= float(max_depth) <= 1000.0):
            raise ValueError(f"max_depth must be in [0.1, 1000] metres, got {max_depth!r}")
        if not (isinstance(success_distance, (int, float, np.number)) and 0 < float(success_distance) < math.inf):
            raise ValueError(f"success_distance must be > 0 m, got {success_distance}")
        self.split = split
        self.width, self.height = int(width), int(height)
        self.hfov_deg = float(hfov_deg)
        self.max_episode_steps = int(max_episode_steps)
        self.success_distance = float(success_distance)
        self.n_episodes = int(n_episodes)
        self.episode_seed = int(episode_seed)
        self.render_mode = render_mode
        self.backend = backend
        self.threads = threads
        self.max_depth = float(max_depth)
        self.paraphrase, self.paraphrase_seed = bool(paraphrase), int(paraphrase_seed)
        self.instructions = None if instructions in (None, "", "null", "none", "None") else os.fspath(instructions)

        self.observation_space = spaces.Dict(
            {
                "rgb": spaces.Box(0, 255, (self.height, self.width, 3), np.uint8),
                "depth": spaces.Box(0.0, self.max_depth, (self.height, self.width, 1), np.float32),
                "gps": spaces.Box(-1e4, 1e4, (2,), np.float32),  # metres; any indoor scene fits
                "compass": spaces.Box(-np.pi, np.pi, (1,), np.float32),
                "instruction": InstructionText(  # a Text that AsyncVectorEnv's shared memory reads (envs.spaces)
                    max_length=INSTRUCTION_MAX_LENGTH, min_length=0, charset=INSTRUCTION_CHARSET
                ),
            }
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)

        self._episodes_arg = episodes
        self._episodes: list | None = None  # resolved lazily: generation can take seconds
        self._assets: OrderedDict[str, _SceneAssets] = OrderedDict()
        self._metrics = None
        self._tour_cache: tuple[str, dict, int | None] | None = None
        # Privileged state (see module docstring).
        self.episode = None
        self.scene = None
        self.grid = None
        self.renderer = None
        self.pose = np.zeros(3)
        self.start_pose = np.zeros(3)
        self.path: list[np.ndarray] = []
        self.episode_index = -1
        self._goals_xy = np.zeros((0, 2))
        self._goal_field = None
        self._start_cs = (1.0, 0.0)
        self._last_obs: dict | None = None
        self._done = True
        self._collided = False

    # -- episodes -----------------------------------------------------------
    @property
    def episodes(self) -> list:
        if self._episodes is None:
            self._episodes = self._load_episodes(self._episodes_arg, self.split)
        return self._episodes

    def _load_episodes(self, source, split: str) -> list:
        from envs import episodes as ep_mod

        if source is None:
            key = (split, self.n_episodes, self.episode_seed)
            if key not in _GENERATED:
                _GENERATED[key] = ep_mod.generate_episodes(split, self.n_episodes, seed=self.episode_seed)
                while len(_GENERATED) > 4:
                    _GENERATED.popitem(last=False)
            eps = list(_GENERATED[key])
            origin = f"generate_episodes({split!r}, n={self.n_episodes}, seed={self.episode_seed})"
        elif isinstance(source, (str, os.PathLike)):
            if not os.path.exists(source):
                raise FileNotFoundError(f"episode file {os.fspath(source)!r} does not exist")
            eps = ep_mod.load_episodes(source)
            origin = os.fspath(source)
        else:
            eps = list(source)
            origin = "the given episode list"
        if not eps:
            raise ValueError(f"no episodes in {origin}")
        if self.paraphrase or self.instructions:
            from envs.paraphrase import reword_episodes

            eps = reword_episodes(eps, self.paraphrase, self.paraphrase_seed, self.instructions)
        space = self.observation_space["instruction"]
        for ep in eps:
            if not space.contains(ep.instruction):
                bad = sorted(set(ep.instruction) - set(INSTRUCTION_CHARSET))
                raise ValueError(
                    f"episode {ep.episode_id} ({origin}): instruction {ep.instruction!r} does not fit "
                    f"the observation's Text space (max {INSTRUCTION_MAX_LENGTH} chars; "
                    f"characters outside the charset: {bad})"
                )
        return eps

    # -- per-scene assets -----------------------------------------------------
    def _scene_assets(self, scene_id: str) -> _SceneAssets:
        assets = self._assets.get(scene_id)
        if assets is not None:
            self._assets.move_to_end(scene_id)
            return assets
        from envs.navigation import NavGrid
        from envs.scenes import load_scene

        scene = load_scene(scene_id)
        grid = NavGrid.from_scene(scene)
        renderer = self._make_renderer(scene)
        assets = _SceneAssets(scene, grid, renderer)
        self._assets[scene_id] = assets
        while len(self._assets) > _MAX_CACHED_SCENES:
            self._assets.popitem(last=False)
        return assets

    def _make_renderer(self, scene):
        kw = dict(width=self.width, height=self.height, hfov_deg=self.hfov_deg, max_depth=self.max_depth)
        if self.backend == "habitat":
            try:
                from envs.backends.habitat import HabitatRenderer
            except ImportError as e:
                raise RuntimeError(
                    "backend='habitat' needs habitat-sim, which is not installed here "
                    f"({e}); use backend='open3d'"
                ) from e
            return HabitatRenderer(scene, **kw)
        from envs.renderer import Renderer

        return Renderer(scene, threads=self.threads, **kw)

    # -- gymnasium API --------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"split", "episode_file", "episode_index"}
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(unknown)}; valid: 'split', 'episode_file', 'episode_index'"
            )
        if "episode_file" in options:
            self._episodes = self._load_episodes(options["episode_file"], self.split)
        elif "split" in options and options["split"] != self.split:
            self._episodes = self._load_episodes(None, options["split"])  # raises before any change
            self.split = options["split"]
        n = len(self.episodes)
        if options.get("episode_index") is not None:
            idx = options["episode_index"]
            if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
                raise ValueError(f"episode_index must be an integer, got {idx!r} ({type(idx).__name__})")
            idx = int(idx)
            if not 0 <= idx < n:
                raise ValueError(f"episode_index={idx} out of range: this env holds {n} episodes")
        else:
            idx = int(self.np_random.integers(n))
        self._start_episode(idx)
        obs = self._observe()
        return obs, self._info()

    def _start_episode(self, idx: int) -> None:
        from envs.metrics import EpisodeMetrics

        ep = self.episodes[idx]
        assets = self._scene_assets(ep.scene_id)
        self.episode, self.episode_index = ep, idx
        self.scene, self.grid, self.renderer = assets.scene, assets.grid, assets.renderer
        self.start_pose = episode_start_pose(ep)
        self.pose = self.start_pose.copy()
        self.path = [self.pose[:2].copy()]
        vp = np.asarray(ep.view_points, np.float64).reshape(-1, 3)
        if len(vp) == 0:
            raise ValueError(f"episode {ep.episode_id} has no view points; regenerate the episode file")
        self._goals_xy = vp[:, :2]
        # One geodesic field per episode; each step is then a local lookup.
        self._goal_field = self.grid.geodesic_field(self._goals_xy)
        self._start_cs = (math.cos(self.start_pose[2]), math.sin(self.start_pose[2]))
        d0 = float(ep.geodesic_distance)
        if not math.isfinite(d0):
            raise ValueError(f"episode {ep.episode_id}: goal unreachable from the start (d0={d0})")
        self._metrics = EpisodeMetrics(self.success_distance)
        self._metrics.reset(self.pose[:2], d0)
        self._metrics.distance_to_goal = self._distance_to_goal()
        from envs.outcome import EpisodeOutcome

        target = self.scene.instance(int(ep.target_id))
        others = [o for o in self.scene.instances if o.id != target.id and o.category == target.category]
        self._outcome = EpisodeOutcome(target, others, self.success_distance)
        self._done = False
        self._collided = False

    def step(self, action):
        a = check_action(action)
        if self.episode is None:
            raise RuntimeError("step() called before reset(): call reset() first to start an episode")
        if self._done:
            raise RuntimeError("step() called on a finished episode (STOP or truncation): call reset() first")
        m = self._metrics
        collided = False
        if a == Action.STOP:
            m.on_stop()
        else:
            if a == Action.MOVE_FORWARD:
                new_xy, collided = self.grid.try_move(self.pose[:2], self.pose[2], FORWARD_STEP_M)
                self.pose[:2] = new_xy
                self.path.append(self.pose[:2].copy())
                # A blocked move may still have advanced part way: always re-measure.
                d = self._distance_to_goal()
            else:
                self.pose[2] = wrap_angle(self.pose[2] + (_TURN if a == Action.TURN_LEFT else -_TURN))
                d = m.distance_to_goal  # turning does not move the agent
            m.update(self.pose[:2], collided, d)
        self._collided = bool(collided)
        terminated = a == Action.STOP
        truncated = (not terminated) and m.steps >= self.max_episode_steps
        self._done = terminated or truncated
        obs = self._observe()
        return obs, 0.0 if not terminated else float(m.success), terminated, truncated, self._info()

    def _distance_to_goal(self) -> float:
        """Geodesic distance to the nearest view point (``NavGrid.field_distance``, whose
        single-point path is scalar math: the vectorised one costs ~10x more per step)."""
        return self.grid.field_distance(self._goal_field, self.pose[:2])

    def _observe(self) -> dict:
        # The same ray cast counts the target's pixels: was it in view (envs.outcome, ground truth)
        out = self.renderer.render(self.pose, outputs=("rgb", "depth"), count_instance=self._outcome.target.id)
        rgb = np.asarray(out["rgb"]).reshape(self.height, self.width, 3)
        self._outcome.observe_pixels(self._metrics.steps, int(out["instance_pixels"][0]), self.height * self.width,
                                     self._metrics.distance_to_goal, self.pose[:2])
        depth = np.asarray(out["depth"], np.float32).reshape(self.height, self.width, 1)
        # gps = R(-yaw0) (xy - xy0), scalar math: this runs every step.
        dx, dy = self.pose[0] - self.start_pose[0], self.pose[1] - self.start_pose[1]
        c, s = self._start_cs
        gps = np.array([dx * c + dy * s, -dx * s + dy * c], np.float32)
        compass = np.array([wrap_angle(self.pose[2] - self.start_pose[2])], np.float32)
        obs = {"rgb": rgb, "depth": depth, "gps": gps, "compass": compass,
               "instruction": self.episode.instruction}
        self._last_obs = obs
        return obs

    def _info(self) -> dict:
        info = self._metrics.result()
        info["collided"] = self._collided
        info["episode_id"] = str(self.episode.episode_id)
        info["scene_id"] = str(self.episode.scene_id)
        info.update(self._outcome.fields())
        return info

    # -- extras -----------------------------------------------------------------
    def context_tour(self, n_frames: int = 96, **tour_kwargs) -> dict[str, np.ndarray]:
        """The scripted scan of the current scene (``envs.tour``), rendered, in the
        episode-start frame.

        Returns ``rgb`` (T, H, W, 3) uint8, ``depth`` (T, H, W, 1) float32,
        ``poses`` (T, 3) float32 = (forward, left, yaw) relative to the start pose
        (the frame of gps/compass), ``pitch`` (T,) radians and ``indices`` (T,) the
        frames' original positions in the full tour (for non-contiguous context).
        The tour is seeded by the episode id, so it is the same on every reset.
        """
        if self.episode is None:
            raise RuntimeError("context_tour() needs an episode: call reset() first")
        key = f"{self.episode.scene_id}:{self.episode.episode_id}:{n_frames}:{sorted(tour_kwargs.items())}"
        if self._tour_cache is not None and self._tour_cache[0] == key:
            self._outcome.tour_frames = self._tour_cache[2]
            return {k: v.copy() for k, v in self._tour_cache[1].items()}
        import zlib

        from envs.tour import context_tour

        tour_kwargs.setdefault("seed", zlib.crc32(str(self.episode.episode_id).encode()))
        tour = context_tour(self.scene, self.grid, n_frames=n_frames, **tour_kwargs)
        poses = np.asarray(tour["poses"], np.float64).reshape(-1, 3)
        pitch = tour.get("pitch")
        pitch = np.zeros(len(poses)) if pitch is None else np.asarray(pitch, np.float64).reshape(-1)
        out = self.renderer.render(poses, pitch=pitch, outputs=("rgb", "depth"), count_instance=self._outcome.target.id)
        self._outcome.observe_tour_pixels(out["instance_pixels"], self.height * self.width)
        rel = np.empty_like(poses)
        rel[:, :2] = world_to_start_frame(poses[:, :2], self.start_pose)
        rel[:, 2] = [wrap_angle(y - self.start_pose[2]) for y in poses[:, 2]]
        t = len(poses)
        indices = tour.get("indices")
        result = {
            "rgb": np.asarray(out["rgb"]).reshape(t, self.height, self.width, 3),
            "depth": np.asarray(out["depth"], np.float32).reshape(t, self.height, self.width, 1),
            "poses": rel.astype(np.float32),
            "pitch": pitch.astype(np.float32),
            "indices": np.arange(t) if indices is None else np.asarray(indices, np.int64).reshape(-1),
        }
        self._tour_cache = (key, result, self._outcome.tour_frames)
        return {k: v.copy() for k, v in result.items()}

    def topdown_map(self, height: int | None = None) -> np.ndarray:
        """Top-down map (uint8 RGB): free space, obstacles, the target's box, its view
        points, the path so far and the agent as an arrow. ``height`` in pixels."""
        if self.episode is None:
            raise RuntimeError("topdown_map() needs an episode: call reset() first")
        assets = self._assets[self.episode.scene_id]
        if assets.map_base is None:
            assets.map_base = map_background(assets.grid)
        target = None
        try:
            target = self.scene.instance(int(self.episode.target_id))
        except KeyError:
            pass
        return draw_topdown(
            assets.map_base, self.grid, np.asarray(self.path), self.pose, target,
            self._goals_xy, height or max(self.height, 256),
        )

    def render(self):
        """The last observation's RGB (upscaled to >= 256 px high) beside the top-down map."""
        if self.render_mode is None:
            return None
        if self._last_obs is None:
            raise RuntimeError("render() needs an episode: call reset() first")
        big = upscale(self._last_obs["rgb"], 256)
        return beside(big, self.topdown_map(big.shape[0]))

    def close(self) -> None:
        self._assets.clear()
        self._tour_cache = None
        super().close()
