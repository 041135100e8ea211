"""``GymAdapter``: any Gymnasium env behind the observation and action contract our agents read.

The agents (``agent.*``) were written against ``SpatialNav-ObjectNav-v0``; this module states
that env's contract once and maps a third-party env onto it, so the same agents run unchanged.

Observation contract (what ``agent.act(obs)`` receives)
-------------------------------------------------------
* ``rgb``: uint8 (H, W, 3), the egocentric camera.
* ``depth``: float32 (H, W, 1), z-depth (distance along the optical axis) in metres; 0 = no hit or
  beyond ``max_depth``. Optional in the contract, but the map-building agents (frontier_clip,
  world_model) need it; ``random`` does not.
* ``gps``: float32 (2,) = (forward, left) metres and ``compass``: float32 (1,) = yaw in radians,
  counter-clockwise positive, wrapped to (-pi, pi]: together the pose (x, y, yaw) of the agent in
  the **episode-start frame** (x forward, y left, z up at the start; right-handed). The adapter
  computes it from the env's world pose (``pose=``: any right-handed, z-up x, y, yaw source) or,
  without one, by odometry (dead reckoning of the commanded motions: every FORWARD advances
  ``forward_step_m``, which is wrong whenever the env blocks a move).
* ``instruction``: str, the goal in words.
* Context (optional, not in ``obs``): ``context_tour()`` returns a dict of ``rgb`` (T, H, W, 3),
  ``depth`` (T, H, W, 1), ``poses`` (T, 3) in the episode-start frame, ``pitch`` (T,) and
  ``indices`` (T,), as ``ObjectNavEnv.context_tour``; None when the adapter has no ``context=``.
* Camera attributes the agents read: ``hfov_deg`` (horizontal field of view), ``max_depth``,
  ``width``, ``height``. The agents' obstacle maps assume the camera ``0.88`` m above the floor
  (``planners.camera.SENSOR_HEIGHT``); mount the env's camera there, or pass the agents
  ``mapping={"sensor_height": h, "max_height": ...}``.

Actions: the agents emit ``envs.actions.Action`` (0 STOP, 1 MOVE_FORWARD 0.25 m, 2 TURN_LEFT 30 deg,
3 TURN_RIGHT 30 deg). ``action_map`` maps each to a sequence of the env's actions (run until the env
ends the episode); STOP mapped to None ends the episode in the adapter (terminated) without a call
to the env.

Success and metrics: success is the wrapped env's own verdict (default: it terminated with a
positive reward; ``success=`` overrides it). ``info`` carries the runner's metric keys
(``envs.metrics.METRIC_KEYS``): success; spl and softspl from ``goal_distance`` (metres to the goal
region, read at reset and every step; the start value is the shortest-path length d0 unless
``shortest_path`` gives it); path_length from the pose; collisions (a FORWARD that moved less than
half of ``forward_step_m``); steps (agent actions). Without ``goal_distance`` distance, spl and
softspl are NaN (``summarize`` drops non-finite values and counts them).

Episodes: ``episodes`` lists ``n_episodes`` ``AdapterEpisode`` (id and seed); ``reset(options=
{"episode_index": i})`` resets the wrapped env with episode i's seed, so ``agent.runner.evaluate``
runs it like ``ObjectNavEnv``; ``reset(seed=s)`` resets with seed s.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import FORWARD_STEP_M, NUM_ACTIONS, TURN_ANGLE_DEG, Action, check_action
from envs.geometry import wrap_angle
from envs.metrics import METRIC_KEYS, softspl, spl
from envs.spaces import InstructionText

# Characters an adapted env's instruction may hold (printable ASCII without tabs/newlines).
ADAPTER_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "
ADAPTER_MAX_INSTRUCTION = 512
SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000}

Source = str | Callable[..., Any] | None


@dataclass(frozen=True)
class AdapterEpisode:
    """One episode of an adapted env: an id and the seed its ``reset`` uses."""

    episode_id: str
    seed: int


def _check_source(name: str, src: Source, optional: bool) -> None:
    if src is None and optional:
        return
    if not (isinstance(src, str) or callable(src)):
        raise TypeError(f"{name} must be an observation key (str) or a callable, got {src!r}")


class GymAdapter(gym.Env):
    """Wrap ``env`` (any Gymnasium env) into the agents' observation/action contract (module docstring).

    Args:
        env: the Gymnasium env (an instance, not an id).
        rgb: where the image comes from: a key of the env's dict observation, "obs" for the
            observation itself (an image-only env), or ``f(env, obs) -> (H, W, 3) uint8``.
        depth: None, a key, or ``f(env, obs) -> (H, W[, 1])`` z-depth in metres.
        pose: None (odometry) or ``f(env, obs, info) -> (x, y, yaw)`` in any right-handed z-up world
            frame, metres and radians (counter-clockwise); the adapter re-expresses it in the start frame.
        instruction: a fixed string, or ``f(env, obs, info) -> str`` (read at reset).
        action_map: {agent action: sequence of env actions, or None (STOP ends the episode here)};
            all four actions are required.
        success: ``f(env, reward, terminated, truncated, info) -> bool`` for the env's verdict after
            each env step; default: terminated with reward > 0.
        goal_distance: None or ``f(env) -> metres`` from the agent to the goal region (0 = reached).
        shortest_path: None or ``f(env) -> metres`` of the optimal path at reset (default: the
            start's goal_distance).
        context: None or ``f(env) -> dict`` of a context tour (module docstring), read at reset.
        hfov_deg, max_depth: the camera (agents read them); depth beyond max_depth reads 0.
        forward_step_m: the distance one FORWARD commands (odometry and collision test).
        turn_deg: the angle one TURN commands (odometry).
        max_episode_steps: agent actions before the adapter truncates (the env may truncate first).
        n_episodes, split, episode_seed: ``episodes`` = seeds SPLIT_SEED_OFFSET[split] + episode_seed + i.
        name: prefix of episode ids (default: the env spec's id).
        render: None or ``f(env) -> (H, W, 3)`` for ``render()`` (default: the last rgb).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, env: gym.Env, *, rgb: Source = "obs", depth: Source = None,
                 pose: Callable[..., Any] | None = None, instruction: str | Callable[..., str] = "",
                 action_map: Mapping[int, Sequence[int] | None], success: Callable[..., bool] | None = None,
                 goal_distance: Callable[[Any], float] | None = None,
                 shortest_path: Callable[[Any], float] | None = None,
                 context: Callable[[Any], dict] | None = None, hfov_deg: float = 79.0, max_depth: float = 10.0,
                 forward_step_m: float = FORWARD_STEP_M, turn_deg: float = TURN_ANGLE_DEG,
                 max_episode_steps: int = 500, n_episodes: int = 50, split: str = "val", episode_seed: int = 0,
                 name: str | None = None, render: Callable[[Any], np.ndarray] | None = None,
                 render_mode: str | None = "rgb_array") -> None:
        super().__init__()
        if not isinstance(env, gym.Env):
            raise TypeError(f"env must be a gymnasium.Env instance, got {type(env).__name__}")
        _check_source("rgb", rgb, optional=False)
        _check_source("depth", depth, optional=True)
        for nm, fn in (("pose", pose), ("success", success), ("goal_distance", goal_distance),
                       ("shortest_path", shortest_path), ("context", context), ("render", render)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{nm} must be a callable or None, got {fn!r}")
        if not (isinstance(instruction, str) or callable(instruction)):
            raise TypeError(f"instruction must be a str or a callable, got {instruction!r}")
        self.action_map = self._check_action_map(action_map, env.action_space)
        if split not in SPLIT_SEED_OFFSET:
            raise ValueError(f"split={split!r}: expected one of {sorted(SPLIT_SEED_OFFSET)}")
        if int(n_episodes) < 1 or int(max_episode_steps) < 1:
            raise ValueError(f"n_episodes and max_episode_steps must be >= 1, got {n_episodes}, {max_episode_steps}")
        if not (0 < hfov_deg < 180 and max_depth > 0 and forward_step_m > 0 and turn_deg > 0):
            raise ValueError(f"need 0 < hfov_deg < 180 and max_depth, forward_step_m, turn_deg > 0; got "
                             f"{hfov_deg}, {max_depth}, {forward_step_m}, {turn_deg}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'rgb_array' or None")
        self.env = env
        self._rgb, self._depth, self._pose, self._instruction = rgb, depth, pose, instruction
        self._success, self._goal_distance, self._shortest = success, goal_distance, shortest_path
        self._context, self._render = context, render
        self.hfov_deg, self.max_depth = float(hfov_deg), float(max_depth)
        self.forward_step_m, self.turn_rad = float(forward_step_m), math.radians(turn_deg)
        self.max_episode_steps = int(max_episode_steps)
        self.n_episodes, self.split, self.episode_seed = int(n_episodes), split, int(episode_seed)
        self.name = name or (env.spec.id if env.spec is not None else type(env.unwrapped).__name__)
        self.render_mode = render_mode

        # Probe one reset for the image size (and to fail early on wrong keys).
        obs, info = env.reset(seed=SPLIT_SEED_OFFSET[split] + self.episode_seed)
        rgb0 = self._read_rgb(obs)
        self.height, self.width = int(rgb0.shape[0]), int(rgb0.shape[1])
        obs_spaces = {
            "rgb": spaces.Box(0, 255, (self.height, self.width, 3), np.uint8),
            "gps": spaces.Box(-1e4, 1e4, (2,), np.float32),
            "compass": spaces.Box(-np.pi, np.pi, (1,), np.float32),
            "instruction": InstructionText(max_length=ADAPTER_MAX_INSTRUCTION, min_length=0, charset=ADAPTER_CHARSET),
        }
        if depth is not None:
            self._read_depth(obs)  # shape check
            obs_spaces["depth"] = spaces.Box(0.0, self.max_depth, (self.height, self.width, 1), np.float32)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self._episodes = [AdapterEpisode(f"{self.name}:{split}:{i}", SPLIT_SEED_OFFSET[split] + self.episode_seed + i)
                          for i in range(self.n_episodes)]
        self._done = True
        self._last_rgb = rgb0
        self._n_resets = 0

    # -- checks ------------------------------------------------------------------------------
    @staticmethod
    def _check_action_map(action_map, space) -> dict[int, tuple | None]:
        if not isinstance(action_map, Mapping):
            raise TypeError(f"action_map must be a dict {{agent action: env actions}}, got {type(action_map).__name__}")
        out = {}
        for a in Action:
            if a not in action_map and int(a) not in action_map:
                raise ValueError(f"action_map has no entry for {a.name} ({int(a)}); give all four "
                                 "(None for STOP ends the episode in the adapter)")
            seq = action_map.get(a, action_map.get(int(a)))
            if seq is None:
                out[int(a)] = None
                continue
            seq = tuple(seq) if isinstance(seq, (list, tuple)) else (seq,)
            if not seq:
                raise ValueError(f"action_map[{a.name}] is empty: give env actions, or None for STOP")
            for e in seq:
                if not space.contains(e if not isinstance(e, int) else np.int64(e)):
                    raise ValueError(f"action_map[{a.name}] holds {e!r}, which is not in the env's action space {space}")
            out[int(a)] = seq
        if out[int(Action.MOVE_FORWARD)] is None:
            raise ValueError("action_map[MOVE_FORWARD] is None: only STOP may end the episode without an env action")
        return out

    def _read(self, src, obs, what: str):
        if callable(src):
            return src(self.env, obs)
        if src == "obs":
            return obs
        if not isinstance(obs, Mapping) or src not in obs:
            keys = sorted(obs) if isinstance(obs, Mapping) else f"a {type(obs).__name__}, not a dict"
            raise KeyError(f"{what}={src!r}: the env's observation has no such key (it has {keys})")
        return obs[src]

    def _read_rgb(self, obs) -> np.ndarray:
        rgb = np.asarray(self._read(self._rgb, obs, "rgb"))
        if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (H, W, 3) uint8, the env gave shape {rgb.shape} dtype {rgb.dtype}")
        return np.array(rgb, copy=True, order="C")  # the env may reuse its buffer

    def _read_depth(self, obs) -> np.ndarray:
        d = np.asarray(self._read(self._depth, obs, "depth"), np.float32)
        if d.ndim == 2:
            d = d[..., None]
        if d.shape != (self.height, self.width, 1):
            raise ValueError(f"depth must be (H, W[, 1]) = ({self.height}, {self.width}), the env gave {d.shape}")
        d = np.where(np.isfinite(d) & (d > 0) & (d <= self.max_depth), d, 0.0).astype(np.float32)
        return np.ascontiguousarray(d)

    def _world_pose(self, obs, info) -> np.ndarray:
        p = np.asarray(self._pose(self.env, obs, info), np.float64).reshape(-1)
        if p.shape != (3,) or not np.isfinite(p).all():
            raise ValueError(f"pose must return finite (x, y, yaw), got {p!r}")
        return p

    # -- episodes ------------------------------------------------------------------------------
    @property
    def episodes(self) -> list[AdapterEpisode]:
        return self._episodes

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"episode_index"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; valid: 'episode_index'")
        if options.get("episode_index") is not None:
            idx = int(options["episode_index"])
            if not 0 <= idx < len(self._episodes):
                raise ValueError(f"episode_index={idx} out of range: this adapter holds {len(self._episodes)} episodes")
            ep = self._episodes[idx]
        elif seed is not None:
            ep = AdapterEpisode(f"{self.name}:seed{int(seed)}", int(seed))
        else:
            self._n_resets += 1
            ep = AdapterEpisode(f"{self.name}:unseeded{self._n_resets}", -1)
        obs, info = self.env.reset(seed=None if ep.seed < 0 else ep.seed)
        self.episode = ep
        self._odo = np.zeros(3)
        self._start_world = self._world_pose(obs, info) if self._pose is not None else None
        instr = self._instruction(self.env, obs, info) if callable(self._instruction) else self._instruction
        if not isinstance(instr, str) or not self.observation_space["instruction"].contains(instr):
            bad = sorted(set(str(instr)) - set(ADAPTER_CHARSET))
            raise ValueError(f"instruction {instr!r} must be a str of at most {ADAPTER_MAX_INSTRUCTION} printable "
                             f"ASCII characters (outside the charset: {bad})")
        self.instruction = instr
        d0 = self._distance()
        if self._shortest is not None:
            d0 = float(self._shortest(self.env))
        self._d0 = d0
        self._dist = self._distance() if self._goal_distance is not None else math.nan
        self._path_length, self._collisions, self._steps = 0.0, 0, 0
        self._env_steps, self._env_reward, self._success_flag = 0, 0.0, False
        self._done, self._collided = False, False
        out = self._observe(obs, info)
        self._prev_xy = self._pose_now[:2].copy()
        return out, self._info()

    def _distance(self) -> float:
        if self._goal_distance is None:
            return math.nan
        d = float(self._goal_distance(self.env))
        if not (d >= 0):
            raise ValueError(f"goal_distance must return metres >= 0, got {d!r}")
        return d

    def context_tour(self) -> dict | None:
        """The optional context (module docstring), in the episode-start frame; None without ``context=``."""
        if self._context is None:
            return None
        if self._done and not hasattr(self, "episode"):
            raise RuntimeError("context_tour() needs an episode: call reset() first")
        return self._context(self.env)

    def step(self, action):
        a = check_action(action)
        if self._done:
            raise RuntimeError("step() called on a finished episode (STOP, success or truncation): call reset() first")
        seq = self.action_map[int(a)]
        terminated = truncated = False
        obs = info = None
        if seq is None:  # STOP handled by the adapter: the env is not called
            terminated = True
        else:
            for e in seq:
                obs, r, term, trunc, info = self.env.step(e)
                self._env_steps += 1
                self._env_reward += float(r)
                if (self._success or _default_success)(self.env, r, term, trunc, info):
                    self._success_flag = True
                if term or trunc:
                    terminated, truncated = bool(term), bool(trunc) and not term
                    break
        self._steps += 1
        if a == Action.MOVE_FORWARD:
            self._odo[:2] += self.forward_step_m * np.array([math.cos(self._odo[2]), math.sin(self._odo[2])])
        elif a in (Action.TURN_LEFT, Action.TURN_RIGHT):
            self._odo[2] = wrap_angle(self._odo[2] + (self.turn_rad if a == Action.TURN_LEFT else -self.turn_rad))
        if obs is not None:
            out = self._observe(obs, info)
            self._dist = self._distance() if self._goal_distance is not None else math.nan
        else:  # nothing new to see: a fresh copy of the last observation (callers may keep or edit theirs)
            out = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self._last_obs.items()}
        moved = float(np.linalg.norm(self._pose_now[:2] - self._prev_xy))
        self._path_length += moved
        self._prev_xy = self._pose_now[:2].copy()
        self._collided = bool(a == Action.MOVE_FORWARD and moved < 0.5 * self.forward_step_m)
        self._collisions += int(self._collided)
        if not (terminated or truncated) and self._steps >= self.max_episode_steps:
            truncated = True
        self._done = terminated or truncated
        reward = float(self._success_flag) if terminated else 0.0
        return out, reward, terminated, truncated, self._info()

    def _observe(self, obs, info) -> dict:
        rgb = self._read_rgb(obs)
        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(f"rgb changed size from {(self.height, self.width)} to {rgb.shape[:2]}")
        if self._pose is not None:
            w = self._world_pose(obs, info)
            s = self._start_world
            c, sn = math.cos(s[2]), math.sin(s[2])
            dx, dy = w[0] - s[0], w[1] - s[1]
            pose = np.array([c * dx + sn * dy, -sn * dx + c * dy, wrap_angle(w[2] - s[2])])
        else:
            pose = self._odo.copy()
        self._pose_now = pose
        out = {"rgb": rgb.copy(), "gps": pose[:2].astype(np.float32), "compass": np.array([pose[2]], np.float32),
               "instruction": self.instruction}
        if self._depth is not None:
            out["depth"] = self._read_depth(obs)
        self._last_rgb = rgb
        self._last_obs = out
        return out

    def _info(self) -> dict:
        dist, d0, L = self._dist, self._d0, self._path_length
        s = float(self._success_flag)
        finite = math.isfinite(dist) and math.isfinite(d0)
        info = {
            "episode_id": self.episode.episode_id,
            "success": s,
            "spl": spl(s, d0, L) if finite else math.nan,
            "softspl": softspl(dist, d0, L) if finite else math.nan,
            "distance_to_goal": dist,
            "path_length": L,
            "collisions": float(self._collisions),
            "steps": float(self._steps),
            "collided": self._collided,
            "env_steps": self._env_steps,
            "env_reward": self._env_reward,
        }
        assert set(METRIC_KEYS) <= set(info)
        return info

    def render(self):
        if self._render is not None:
            return np.asarray(self._render(self.env))
        return self._last_rgb

    def close(self):
        self.env.close()
        super().close()


def _default_success(env, reward, terminated, truncated, info) -> bool:
    return bool(terminated) and float(reward) > 0
