"""MiniWorld (Farama's ``miniworld`` package, optional extra ``[miniworld]``) through ``envs.adapters``.

``make_miniworld("MiniWorld-OneRoom-v0")`` returns a ``GymAdapter`` over MiniWorld's own env,
task and termination: reach the red box; MiniWorld ends the episode (terminated, reward > 0)
when the agent comes within ``box.radius + agent.radius + 1.1 * max_forward_step`` of the box,
and that verdict is our success. What the adapter adds:

* pose from ``env.unwrapped.agent``: MiniWorld is y-up with x east, z south and ``dir`` the
  heading whose forward vector is (cos dir, 0, -sin dir); in our z-up right-handed frame that
  is (x, y) = (pos.x, -pos.z), yaw = dir (counter-clockwise). The adapter re-expresses it in
  the episode-start frame (gps/compass).
* depth from ``render_depth()`` (z-depth in metres, a second render per step).
* actions: FORWARD = 2 MiniWorld ``move_forward`` (0.15 m each: 0.30 m), TURN = 2 turns
  (15 deg each: 30 deg, as ours); STOP ends the episode in the adapter (MiniWorld has no stop
  action: an agent that stops early fails).
* camera: MiniWorld's defaults are a 60 deg vertical FOV at 1.5 m; we mount the camera at
  ``camera_height`` (0.88 m, the height our agents' maps assume) with ``hfov_deg`` 79 (ours),
  through MiniWorld's own domain parameters. Dynamics (step sizes, radii) stay MiniWorld's.
* distance to goal: metres from the agent to MiniWorld's success region (straight line, 0
  there). d0 for SPL is that distance at the start: exact in OneRoom (no obstacles), a lower
  bound where walls intervene (FourRooms), which makes SPL there optimistic.
* context: ``scan_views`` views at the start position, turning in place (rendered without
  stepping the env), as the context tour.

Headless rendering: set ``PYGLET_HEADLESS=True`` before pyglet is imported (done here when unset);
it needs libEGL and libGL/libGLU (Debian: libegl1, libgl1, libglu1-mesa; ``scripts/setup.sh
miniworld`` installs them).
"""

from __future__ import annotations

import math
import os

import numpy as np

from envs.actions import Action
from envs.adapters import GymAdapter
from envs.geometry import wrap_angle

MINIWORLD_TASKS = ("MiniWorld-OneRoom-v0", "MiniWorld-FourRooms-v0")
INSTRUCTION = "go to the red box"


def import_miniworld():
    """Import miniworld headless, or raise an ImportError that says how to install it."""
    os.environ.setdefault("PYGLET_HEADLESS", "True")
    try:
        import miniworld  # noqa: F401  (registers the MiniWorld-* ids)
    except ImportError as e:
        raise ImportError(f"MiniWorld is not installed ({e}): pip install -e '.[miniworld]' "
                          "(and the EGL/GL libraries: scripts/setup.sh miniworld)") from e
    return miniworld


def world_pose(env) -> np.ndarray:
    """MiniWorld agent -> (x, y, yaw) in a z-up right-handed frame (module docstring)."""
    a = env.unwrapped.agent
    return np.array([float(a.pos[0]), -float(a.pos[2]), wrap_angle(float(a.dir))])


def goal_distance(env) -> float:
    """Metres from the agent to MiniWorld's success region around ``env.box`` (0 inside it)."""
    u = env.unwrapped
    d = float(np.linalg.norm((u.agent.pos - u.box.pos)[[0, 2]]))
    return max(0.0, d - (u.agent.radius + u.box.radius + 1.1 * u.max_forward_step))


def _render_views(env, yaws) -> tuple[np.ndarray, np.ndarray]:
    u = env.unwrapped
    keep = u.agent.dir
    rgb, depth = [], []
    try:
        for yaw in yaws:
            u.agent.dir = keep + yaw
            rgb.append(u.render_obs())
            depth.append(u.render_depth())
    finally:
        u.agent.dir = keep
    return np.stack(rgb), np.stack(depth).astype(np.float32)


def make_scan(n_views: int, max_depth: float):
    """A ``context=`` callable: ``n_views`` views turning in place at the start (start frame poses)."""

    def scan(env) -> dict:
        yaws = [2 * math.pi * k / n_views for k in range(n_views)]
        rgb, depth = _render_views(env, yaws)
        depth = np.where((depth > 0) & (depth <= max_depth), depth, 0.0).astype(np.float32)
        poses = np.array([[0.0, 0.0, wrap_angle(y)] for y in yaws], np.float32)
        return {"rgb": rgb, "depth": depth, "poses": poses, "pitch": np.zeros(n_views, np.float32),
                "indices": np.arange(n_views)}

    return scan


def make_miniworld(env_id: str = "MiniWorld-OneRoom-v0", width: int = 128, height: int = 128,
                   hfov_deg: float = 79.0, camera_height: float = 0.88, max_depth: float = 10.0,
                   scan_views: int = 12, n_episodes: int = 50, split: str = "val", episode_seed: int = 0,
                   max_episode_steps: int = 500, instruction: str = INSTRUCTION, **env_kwargs) -> GymAdapter:
    """A MiniWorld object-goal env (reach the red box) as a ``GymAdapter`` (module docstring).

    ``env_kwargs`` go to ``gymnasium.make`` (e.g. ``max_episode_steps`` of MiniWorld itself is its
    own; ours, ``max_episode_steps``, caps agent actions). ``scan_views=0``: no context.
    """
    import gymnasium as gym

    import_miniworld()
    from miniworld.params import DEFAULT_PARAMS

    if env_id not in gym.registry:
        have = sorted(k for k in gym.registry if k.startswith("MiniWorld-"))
        raise ValueError(f"unknown MiniWorld env {env_id!r}; registered: {', '.join(have)}")
    if not (0 < hfov_deg < 180) or camera_height <= 0 or int(width) < 8 or int(height) < 8:
        raise ValueError(f"need 0 < hfov_deg < 180, camera_height > 0 and a camera of at least 8x8; got "
                         f"{hfov_deg}, {camera_height}, {width}x{height}")
    params = DEFAULT_PARAMS.copy()
    fov_y = math.degrees(2 * math.atan(math.tan(math.radians(hfov_deg) / 2) * int(height) / int(width)))
    params.set("cam_fov_y", fov_y)
    params.set("cam_height", float(camera_height))
    env = gym.make(env_id, obs_width=int(width), obs_height=int(height), params=params, **env_kwargs)
    acts = env.unwrapped.actions
    fwd, left, right = int(acts.move_forward), int(acts.turn_left), int(acts.turn_right)
    step_m = float(env.unwrapped.params.get_max("forward_step"))
    turn_deg = float(env.unwrapped.params.get_max("turn_step"))
    return GymAdapter(
        env, rgb="obs", depth=lambda e, obs: e.unwrapped.render_depth(),
        pose=lambda e, obs, info: world_pose(e), instruction=instruction,
        action_map={Action.STOP: None, Action.MOVE_FORWARD: [fwd, fwd], Action.TURN_LEFT: [left, left],
                    Action.TURN_RIGHT: [right, right]},
        goal_distance=goal_distance, context=make_scan(int(scan_views), float(max_depth)) if scan_views else None,
        hfov_deg=hfov_deg, max_depth=max_depth, forward_step_m=2 * step_m, turn_deg=2 * turn_deg,
        max_episode_steps=max_episode_steps, n_episodes=n_episodes, split=split, episode_seed=episode_seed,
        name=env_id,
    )


def miniworld_env(split: str = "val", episodes=None, n_episodes: int = 50, env_id: str = "MiniWorld-OneRoom-v0",
                  **kwargs) -> GymAdapter:
    """``agent.runner.evaluate(env_factory="envs.miniworld:miniworld_env")`` (configs/env/miniworld/*.yaml):
    ``n_episodes`` seeded MiniWorld episodes of ``split``; episode files do not apply."""
    if episodes is not None:
        raise ValueError(f"episodes={episodes!r}: MiniWorld makes its own episodes from seeds; leave episodes unset")
    return make_miniworld(env_id, split=split, n_episodes=n_episodes, **kwargs)
