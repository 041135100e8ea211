"""The planner pieces on the real env: look around, explore frontiers, check the map against the scene.

The env's NavGrid is privileged (Oracle-only); here it only grades the map.
"""

import math

import numpy as np
from scipy import ndimage

from envs.actions import Action
from envs.gym_env import ObjectNavEnv
from planners.mapping import ObstacleMap, disk
from planners.path import Navigator


def start_to_world(xy, start_pose):
    c, s = math.cos(start_pose[2]), math.sin(start_pose[2])
    return np.stack([start_pose[0] + c * xy[:, 0] - s * xy[:, 1], start_pose[1] + s * xy[:, 0] + c * xy[:, 1]], -1)


def test_map_from_real_depth_matches_the_scene_and_exploration_is_collision_free():
    env = ObjectNavEnv(split="val", n_episodes=1, width=96, height=96)
    obs, info = env.reset(seed=0, options={"episode_index": 0})
    m = ObstacleMap()
    nav = Navigator(m)
    nav.observe(obs)
    for _ in range(12):  # look around
        obs, _, _, _, info = env.step(int(Action.TURN_LEFT))
        nav.observe(obs, Action.TURN_LEFT)
    explored_after_spin = m.explored.sum()
    for _ in range(30):  # drive to the nearest frontier at least 1 m away
        fr = m.frontiers(min_size=8)
        if not fr:
            break
        far = [f for f in fr if np.linalg.norm(f.target_xy - nav.pose[:2]) > 1.0] or fr
        goal = min(far, key=lambda f: np.linalg.norm(f.target_xy - nav.pose[:2])).target_xy
        a = nav.act(goal)
        if a is None or a == Action.STOP:
            a = Action.TURN_LEFT
        obs, _, term, trunc, info = env.step(int(a))
        nav.observe(obs, a)
        assert not (term or trunc)
    assert m.explored.sum() > 1.2 * explored_after_spin  # it went somewhere new
    assert info["collisions"] <= 2

    occ = np.argwhere(m.occupied)
    occ_world = start_to_world(m.cell_to_world(occ[:, 0], occ[:, 1]), env.start_pose)
    assert len(occ_world) > 200
    assert 1.0 - env.grid.is_navigable(occ_world).mean() >= 0.97  # mapped obstacles are real
    core = m.free & ~ndimage.binary_dilation(m.occupied, disk((m.agent_radius + 0.1) / m.cell_size))
    fr_cells = np.argwhere(core)
    free_world = start_to_world(m.cell_to_world(fr_cells[:, 0], fr_cells[:, 1]), env.start_pose)
    assert env.grid.is_navigable(free_world).mean() >= 0.97  # mapped free space is navigable
    # The agent's own position in the map agrees with the env's.
    assert np.allclose(start_to_world(nav.pose[None, :2], env.start_pose)[0], env.pose[:2], atol=1e-3)
    img = m.to_image(pose=nav.pose, path=nav.path, frontiers=m.frontiers())
    assert img.ndim == 3 and img.dtype == np.uint8
