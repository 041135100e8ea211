"""spatialnav simulator: scenes, renderer, navigation, ObjectNav task and Gymnasium env.

Importing ``envs`` registers ``SpatialNav-ObjectNav-v0`` by entry-point string,
so nothing heavy (open3d, scene generation) is imported until an env is made.
"""

from __future__ import annotations

import gymnasium as _gym

ENV_ID = "SpatialNav-ObjectNav-v0"

if ENV_ID not in _gym.registry:
    # No max_episode_steps here: the env truncates itself (and reports metrics);
    # gymnasium.make(..., max_episode_steps=k) still adds a TimeLimit if wanted.
    _gym.register(id=ENV_ID, entry_point="envs.gym_env:ObjectNavEnv")

__all__ = ["ENV_ID"]
