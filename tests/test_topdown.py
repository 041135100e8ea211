"""envs.topdown: the top-down map (background, what is drawn where, +y up) and the env's render frame."""

from __future__ import annotations

import numpy as np
import pytest

from envs.scene import ObjectInstance
from envs.topdown import beside, draw_topdown, map_background, upscale

ORANGE, RED, GREEN, BLUE = (245, 140, 0), (235, 60, 60), (120, 200, 130), (40, 90, 220)


class BareGrid:
    """The least a grid needs here: ``navigable`` (rows grow with y), ``origin``, ``cell_size``,
    ``world_to_cell``; no ``to_image``, so the map's own free/blocked colours are used."""

    def __init__(self, navigable, origin=(0.0, 0.0), cell_size=0.1):
        self.navigable = np.asarray(navigable, bool)
        self.origin, self.cell_size = np.asarray(origin, np.float64), float(cell_size)

    def world_to_cell(self, xy):
        p = np.asarray(xy, np.float64)
        return (np.floor((p[..., 1] - self.origin[1]) / self.cell_size).astype(np.int64),
                np.floor((p[..., 0] - self.origin[0]) / self.cell_size).astype(np.int64))


def _where(img, colour):
    """Mean (x, y) of the pixels of ``colour`` with image y measured upwards from the bottom row."""
    rr, cc = np.nonzero((img == np.array(colour, np.uint8)).all(-1))
    assert len(rr), f"no pixel of colour {colour}"
    return cc.mean(), img.shape[0] - 1 - rr.mean()


def test_background_follows_the_grid_and_to_image():
    nav = np.zeros((20, 30), bool)
    nav[2:18, 2:28] = True
    base = map_background(BareGrid(nav))
    assert base.shape == (20, 30, 3) and base.dtype == np.uint8
    assert (base[nav] == (235, 235, 235)).all() and (base[~nav] == (90, 90, 100)).all()

    class ImageGrid(BareGrid):
        def to_image(self):  # NavGrid's convention: flipped so +y is up
            return np.where(self.navigable[..., None], 255, 70).astype(np.uint8)[::-1].copy()

    nav[5, 3] = False
    assert (map_background(ImageGrid(nav))[~nav] == 70).all()  # back in grid row order


@pytest.mark.parametrize("yaw", [0.0, np.pi / 2, np.pi, -np.pi / 2])
def test_agent_target_path_and_view_points_land_where_they_are(yaw):
    """+y is up and +x right; the arrow points along the yaw; each item sits at its world place."""
    grid = BareGrid(np.ones((40, 60), bool))  # 6 x 4 m, 10 cm cells
    base = map_background(grid)
    target = ObjectInstance(1, "chair", "red", "room", center=[5.0, 3.0, 0.4], size=[0.6, 0.6, 0.8])
    pose = np.array([2.0, 1.0, yaw])
    path = np.array([[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [2.0, 1.0]])
    view = np.array([[4.4, 3.0], [5.6, 3.0]])
    h = 200  # 5 px per cell, 50 px per metre
    img = draw_topdown(base, grid, path, pose, target, view, h)
    assert img.shape == (200, 300, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    tx, ty = _where(img, RED)
    assert tx == pytest.approx(5.0 * 50, abs=3) and ty == pytest.approx(3.0 * 50, abs=3)
    gx, gy = _where(img, GREEN)
    assert gx == pytest.approx(5.0 * 50, abs=3) and gy == pytest.approx(3.0 * 50, abs=3)
    ax, ay = _where(img, ORANGE)
    # the arrow's pixels lie ahead of the agent's position, along (cos yaw, sin yaw)
    d = np.array([ax - 2.0 * 50, ay - 1.0 * 50])
    assert np.linalg.norm(d) > 2 and d @ [np.cos(yaw), np.sin(yaw)] > 0.5 * np.linalg.norm(d)
    bx, by = _where(img, BLUE)
    assert 0.5 * 50 <= bx <= 2.0 * 50 and 0.5 * 50 <= by <= 1.0 * 50
    # no path, no target: the agent alone on the background
    bare = draw_topdown(base, grid, path[:1], pose, None, np.zeros((0, 2)), h)
    assert not (bare == np.array(RED, np.uint8)).all(-1).any() and (bare == np.array(ORANGE, np.uint8)).all(-1).any()


def test_upscale_and_beside():
    rgb = np.arange(32 * 24 * 3, dtype=np.uint8).reshape(32, 24, 3)
    big = upscale(rgb, 256)
    assert big.shape == (256, 192, 3)
    np.testing.assert_array_equal(big[::8, ::8], rgb)
    assert upscale(rgb, 20) is not rgb and upscale(rgb, 20).shape == rgb.shape  # never shrinks
    frame = beside(big, np.zeros((256, 100, 3), np.uint8), gap=4)
    assert frame.shape == (256, 192 + 4 + 100, 3) and (frame[:, 192:196] == 255).all()


def test_env_map_and_render_frame(nav_episodes):
    """The env's map is draw_topdown of its episode, and render() is the upscaled observation beside it."""
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(episodes=nav_episodes, width=32, height=32)
    obs, _ = env.reset(options={"episode_index": 0})
    for a in (1, 1, 2, 1):
        obs, *_ = env.step(a)
    m = env.topdown_map(128)
    assert m.shape[0] == 128 and m.dtype == np.uint8
    want = draw_topdown(map_background(env.grid), env.grid, np.asarray(env.path), env.pose,
                        env.scene.instance(int(env.episode.target_id)), env._goals_xy, 128)
    np.testing.assert_array_equal(m, want)
    frame = env.render()
    big = upscale(obs["rgb"], 256)
    np.testing.assert_array_equal(frame, beside(big, env.topdown_map(256)))
    env.close()
    with pytest.raises(RuntimeError, match="reset"):
        ObjectNavEnv(episodes=nav_episodes, width=32, height=32).topdown_map()
