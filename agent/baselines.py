"""Baseline agents: Random (a floor) and Oracle (a ceiling, privileged).

* ``RandomAgent`` draws MOVE_FORWARD / TURN_LEFT / TURN_RIGHT uniformly and
  STOP with a small probability, so episodes end before the step limit. Its
  generator is re-seeded per episode from (seed, episode_id), so an episode's
  actions do not depend on which episodes ran before it (resumed and sharded
  evaluations reproduce a single run exactly).
* ``OracleAgent`` is **privileged**: it reads the simulator's ground truth
  (``env.unwrapped.grid``, ``.episode.view_points``, ``.pose``) and follows
  the geodesic shortest path (``envs.navigation.ShortestPathFollower``) to the
  nearest view point, then calls STOP. It bounds what a perfect navigator can
  score; it is never a fair comparison for agents that only see observations.
"""

from __future__ import annotations

import zlib

import numpy as np

from envs.actions import Action


def episode_rng(seed: int | None, episode_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, episode_id) (crc32 is stable across runs)."""
    return np.random.default_rng([0 if seed is None else int(seed), zlib.crc32(str(episode_id).encode())])


class RandomAgent:
    """Uniform over the three motions, STOP with probability ``stop_prob``."""

    batchable = True  # re-seeded per episode: copies side by side act as one instance (agent.runner.is_batchable)

    def __init__(self, env=None, seed: int | None = 0, stop_prob: float = 0.02) -> None:
        if not 0.0 <= stop_prob <= 1.0:
            raise ValueError(f"stop_prob must be in [0, 1], got {stop_prob}")
        self.seed = seed
        self.stop_prob = float(stop_prob)
        self.rng = np.random.default_rng(seed)

    def reset(self, obs: dict, info: dict | None = None, context: dict | None = None) -> None:
        if info is not None and "episode_id" in info:
            self.rng = episode_rng(self.seed, info["episode_id"])

    def act(self, obs: dict) -> int:
        if self.rng.random() < self.stop_prob:
            return int(Action.STOP)
        return int(self.rng.integers(1, 4))


class OracleAgent:
    """Privileged shortest-path agent (see module docstring).

    Args:
        env: the ObjectNav env (wrapped or not); the agent reads ``env.unwrapped``.
        seed: unused (the oracle is deterministic); accepted for the factory API.
        stop_distance: STOP once this close (m) to a view point; default: 0.9 x the
            env's success distance, a margin for float rounding.
    """

    privileged = True
    batchable = True  # deterministic per episode; each copy reads its own env

    def __init__(self, env=None, seed: int | None = None, stop_distance: float | None = None) -> None:
        if env is None:
            raise ValueError("OracleAgent is privileged: it needs env= (it reads the env's grid and episode)")
        self.env = env.unwrapped if hasattr(env, "unwrapped") else env
        if not hasattr(self.env, "grid"):  # e.g. an envs.adapters.GymAdapter over a third-party env
            raise ValueError(f"OracleAgent reads spatialnav's ObjectNavEnv ground truth (grid, episode view points); "
                             f"{type(self.env).__name__} has none: use a non-privileged agent there")
        self.stop_distance = stop_distance
        self.follower = None

    def reset(self, obs: dict, info: dict | None = None, context: dict | None = None) -> None:
        from envs.navigation import ShortestPathFollower

        sim = self.env
        if sim.episode is None:
            raise RuntimeError("OracleAgent.reset: the env has no episode yet; reset the env first")
        goals = np.asarray(sim.episode.view_points, np.float64).reshape(-1, 3)[:, :2]
        stop = self.stop_distance if self.stop_distance is not None else 0.9 * sim.success_distance
        self.follower = ShortestPathFollower(sim.grid, goals, stop_distance=stop)

    def act(self, obs: dict) -> int:
        if self.follower is None:
            raise RuntimeError("OracleAgent.act before reset()")
        pose = self.env.pose
        return int(self.follower.next_action(pose[:2], float(pose[2])))
