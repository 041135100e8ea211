"""ObstacleMap: frames and signs, free space, frontiers, score projection, collisions, growth."""

import math

import numpy as np
import pytest

from planners.camera import backproject, column_bearing, compose, pixel_rays, relative
from planners.mapping import FREE, OCCUPIED, UNKNOWN, ObstacleMap

H = W = 96
HFOV = 79.0
HALF_WIDTH_AT_2M = 2.0 * math.tan(math.radians(HFOV / 2))  # lateral half-extent of the view at 2 m


def wall_depth(dist=2.0, columns="all", max_depth=10.0):
    """z-depth of a camera-facing wall `dist` ahead (in the given image columns) above a floor at -0.88 m.

    columns: "all", "right" (x_cam > 0 only) or "left". Elsewhere only the floor is seen;
    floor beyond max_depth and sky read 0 (no hit), as the env's sensor does.
    """
    r, u = pixel_rays(H, W, HFOV)
    floor = np.where(u < 0, 0.88 / np.maximum(-u, 1e-9), np.inf)
    wall = np.full((H, W), dist)
    if columns == "right":
        wall[r <= 0] = np.inf
    elif columns == "left":
        wall[r >= 0] = np.inf
    d = np.minimum(wall, floor)
    d[~np.isfinite(d) | (d > max_depth)] = 0.0
    return d.astype(np.float32)[..., None]


def occupied_xy(m):
    rc = np.argwhere(m.occupied)
    return m.cell_to_world(rc[:, 0], rc[:, 1])


def test_backproject_axes():
    d = np.full((H, W), 2.0, np.float32)
    p = backproject(d, (0.0, 0.0, 0.0), HFOV)
    assert np.allclose(p[..., 0], 2.0)
    assert p[H // 2, -1, 1] < 0 < p[H // 2, 0, 1]  # right image edge = agent's right = -y
    assert p[0, W // 2, 2] > 0.88 > p[-1, W // 2, 2]  # top row above the camera
    assert column_bearing(W - 1, W, HFOV) < 0 < column_bearing(0, W, HFOV)


def test_compose_relative_roundtrip():
    a, b = np.array([1.0, -2.0, 0.7]), np.array([-0.5, 0.3, -2.9])
    assert np.allclose(compose(a, relative(a, b)), b)
    assert np.allclose(compose((0, 0, math.pi / 2), (1, 0, 0))[:2], [0, 1])


def test_wall_straight_ahead_lands_at_the_right_cells():
    m = ObstacleMap(cell_size=0.05)
    m.update(wall_depth(2.0), (0.0, 0.0, 0.0))
    xy = occupied_xy(m)
    assert len(xy) > 40
    assert np.all(np.abs(xy[:, 0] - 2.0) <= 0.05)
    assert xy[:, 1].min() == pytest.approx(-HALF_WIDTH_AT_2M, abs=0.1)
    assert xy[:, 1].max() == pytest.approx(HALF_WIDTH_AT_2M, abs=0.1)
    st = m.state
    r, c = m.world_to_cell(np.array([[1.0, 0.0], [0.6, 0.3], [3.0, 0.0], [-1.0, 0.0]]))
    assert st[r[0], c[0]] == FREE and st[r[1], c[1]] == FREE
    assert st[r[2], c[2]] == UNKNOWN  # behind the wall
    assert st[r[3], c[3]] == UNKNOWN  # behind the agent, beyond its footprint


def test_pose_offset_and_compass_rotate_the_scan():
    m = ObstacleMap()
    m.update(wall_depth(2.0), (1.0, -1.0, math.pi / 2))  # at (1, -1), facing +y (start-left)
    xy = occupied_xy(m)
    assert np.all(np.abs(xy[:, 1] - 1.0) <= 0.05)  # wall 2 m along +y
    assert xy[:, 0].min() == pytest.approx(1.0 - HALF_WIDTH_AT_2M, abs=0.1)
    assert xy[:, 0].max() == pytest.approx(1.0 + HALF_WIDTH_AT_2M, abs=0.1)


@pytest.mark.parametrize("yaw, axis, sign", [(0.0, 1, -1), (math.pi / 2, 0, +1), (math.pi, 1, +1)])
def test_right_half_of_the_image_is_the_agents_right(yaw, axis, sign):
    # Facing +x the right is -y; facing +y (yaw 90 deg CCW) the right is +x; facing -x it is +y.
    m = ObstacleMap()
    m.update(wall_depth(2.0, columns="right"), (0.0, 0.0, yaw))
    xy = occupied_xy(m)
    assert len(xy) > 10
    assert np.all(sign * xy[:, axis] > -0.05)
    assert np.median(sign * xy[:, axis]) > 0.5


def test_free_space_reaches_through_openings_and_nohit_is_free():
    m = ObstacleMap(max_depth=10.0)
    m.update(wall_depth(2.0, columns="right"), (0.0, 0.0, 0.0))
    # Left half sees only floor up to 10 m and no hit above: free well beyond 2 m on the left.
    assert m.is_free((4.0, 1.0), radius=0.0)
    assert not m.is_free((3.0, -1.0), radius=0.0)  # behind the wall on the right
    m2 = ObstacleMap(nohit_is_free=False)
    m2.update(wall_depth(2.0, columns="right"), (0.0, 0.0, 0.0))
    assert m2.free.sum() < m.free.sum()


def test_obstacles_survive_later_free_passes_and_inflation():
    m = ObstacleMap()
    for _ in range(3):
        m.update(wall_depth(2.0), (0.0, 0.0, 0.0))
    m.update(wall_depth(1.5), (0.5, 0.0, 0.0))  # closer view of the same wall
    xy = occupied_xy(m)
    assert np.all(np.abs(xy[:, 0] - 2.0) <= 0.05)
    inf = m.inflated()
    r, c = m.world_to_cell(np.array([[2.0 - 0.15, 0.0], [2.0 - 0.3, 0.0]]))
    assert inf[r[0], c[0]] and not inf[r[1], c[1]]


def test_frontiers_of_a_partially_explored_room():
    m = ObstacleMap(size_m=12.0)
    room = np.zeros(m.shape, bool)
    (r0, r1), (c0, c1) = m.world_to_cell(np.array([[2.0, 2.0], [-2.0, -2.0]]))
    room[r0:r1 + 1, c0:c1 + 1] = True
    m.set_state(room, FREE)
    walls = room & ~np.pad(room, 1)[2:, 1:-1] | room & ~np.pad(room, 1)[:-2, 1:-1]
    walls |= room & ~np.pad(room, 1)[1:-1, 2:] | room & ~np.pad(room, 1)[1:-1, :-2]
    door = np.zeros(m.shape, bool)
    (dr0, _), (dc0, dc1) = m.world_to_cell(np.array([[2.0, 0.5], [2.0, -0.5]]))
    door[dr0, dc0:dc1 + 1] = True  # a 1 m opening in the +x wall
    m.set_state(walls & ~door, OCCUPIED)
    m.set_state(door, UNKNOWN)
    fr = m.frontiers(min_size=3)
    assert len(fr) == 1
    assert fr[0].centroid_xy[0] == pytest.approx(1.9, abs=0.2)
    assert fr[0].centroid_xy[1] == pytest.approx(0.0, abs=0.15)
    assert m.is_free(fr[0].target_xy, radius=0.0)
    m.set_state(door, FREE)
    beyond = np.zeros(m.shape, bool)
    beyond[:dr0] = True
    m.set_state(beyond, OCCUPIED)  # everything past the door explored (solid)
    assert m.frontiers(min_size=3) == []


def test_look_around_in_a_closed_room_leaves_no_frontier_but_an_opening_does():
    # A room whose walls stand 2 m away at every heading: 12 turns of 30 deg see it all.
    m = ObstacleMap()
    m.update(wall_depth(2.0), (0.0, 0.0, 0.0))
    assert m.frontiers(), "a single view must leave frontiers"
    for k in range(1, 12):
        m.update(wall_depth(2.0), (0.0, 0.0, k * math.pi / 6))
    assert m.frontiers() == []
    # Same room but one heading (-90 deg, the agent's start-right) looks out through an opening.
    m = ObstacleMap()
    for k in range(12):
        yaw = k * math.pi / 6
        m.update(wall_depth(2.0, columns="all" if k != 9 else "left", max_depth=4.0), (0.0, 0.0, yaw))
    fr = m.frontiers()
    assert fr
    assert fr[0].centroid_xy[1] < -2.0  # beyond the missing wall on the -y side


def test_project_scores_puts_detections_where_they_are():
    m = ObstacleMap()
    score = np.zeros((H, W), np.float32)
    score[30:50, 70:90] = 0.9  # something on the right of the image, on the wall
    layer = m.project_scores("target", score, wall_depth(2.0), (0.0, 0.0, 0.0))
    rc = np.argwhere(layer > 0.5)
    xy = m.cell_to_world(rc[:, 0], rc[:, 1])
    assert len(xy) > 0
    assert np.all(np.abs(xy[:, 0] - 2.0) < 0.1) and np.all(xy[:, 1] < 0)
    # max mode keeps the best score; mean mode averages
    m.project_scores("target", np.zeros((H, W)), wall_depth(2.0), (0.0, 0.0, 0.0))
    assert m.layer("target").max() == pytest.approx(0.9)
    m.project_scores("value", np.full((H, W), 1.0), wall_depth(2.0), (0.0, 0.0, 0.0), mode="mean")
    m.project_scores("value", np.zeros((H, W)), wall_depth(2.0), (0.0, 0.0, 0.0), mode="mean")
    assert np.nanmax(m.layer("value")) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="created with mode"):
        m.project_scores("value", np.zeros((H, W)), wall_depth(2.0), (0.0, 0.0, 0.0), mode="max")
    with pytest.raises(ValueError, match="must match depth"):
        m.project_scores("x", np.zeros((4, 4)), wall_depth(2.0), (0.0, 0.0, 0.0))


def test_collision_mark_blocks_ahead_not_the_agent():
    m = ObstacleMap()
    r, c = m.mark_collision((0.0, 0.0, math.pi / 2))
    x, y = m.cell_to_world(r, c)
    assert x == pytest.approx(0.0, abs=0.05) and y == pytest.approx(0.28, abs=0.05)
    assert not m.inflated()[m.world_to_cell(np.array([0.0, 0.0]))]  # the agent's own cell stays open
    assert m.inflated()[m.world_to_cell(np.array([0.0, 0.2]))]


def test_map_grows_and_keeps_its_contents():
    m = ObstacleMap(size_m=6.0, grow_m=2.0)
    m.update(wall_depth(2.0), (0.0, 0.0, 0.0))
    before = occupied_xy(m)
    shape0 = m.shape
    m.update(wall_depth(2.0), (4.0, 0.0, 0.0))  # wall at x = 6, outside the initial 6 m map
    assert m.shape[0] > shape0[0]
    after = occupied_xy(m)
    assert np.any(np.abs(after[:, 0] - 6.0) <= 0.05)
    kept = {tuple(np.round(p, 3)) for p in after}
    assert all(tuple(np.round(p, 3)) in kept for p in before)


def test_to_image_and_bad_inputs():
    m = ObstacleMap()
    m.update(wall_depth(2.0), (0.0, 0.0, 0.0))
    img = m.to_image(pose=(0, 0, 0), path=np.array([[0, 0], [1.5, 0]]), goal=(1.8, 0.0), goal_radius=0.3,
                     frontiers=m.frontiers())
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert (img == [30, 30, 30]).all(-1).any()  # obstacles drawn
    # forward is up: the wall (x = 2) is drawn above the agent
    rows = np.nonzero((img == [30, 30, 30]).all(-1))[0]
    agent_rows = np.nonzero((img == [0, 170, 0]).all(-1))[0]
    assert rows.mean() < agent_rows.mean()
    with pytest.raises(ValueError, match="depth must be"):
        m.update(np.zeros((2, 3, 4)), (0, 0, 0))
    with pytest.raises(ValueError, match="pose must be"):
        m.update(wall_depth(), (0, 0))
    with pytest.raises(ValueError, match="sensor_height"):
        ObstacleMap(max_height=0.5)


def test_incremental_inflation_equals_a_full_dilation():
    """inflated() redoes only the part of the grid near cells whose occupancy flipped (updates,
    free passes erasing a wall, collisions, set_state, growth): always equal to a full dilation."""
    from scipy import ndimage

    from planners.mapping import disk

    m = ObstacleMap(size_m=6.0, grow_m=2.0)
    rng = np.random.default_rng(0)

    def full(r=None):
        r = m.agent_radius if r is None else r
        return ndimage.binary_dilation(m.occupied, structure=disk(r / m.cell_size))

    m.update(wall_depth(2.0), (0.0, 0.0, 0.0))
    assert (m.inflated() == full()).all() and (m.inflated(0.3) == full(0.3)).all()
    for k in range(12):
        pose = (rng.uniform(-1, 4), rng.uniform(-1, 1), rng.uniform(-math.pi, math.pi))
        kind = k % 4
        if kind == 0:
            m.update(wall_depth(rng.uniform(1.0, 3.0), rng.choice(["all", "left", "right"])), pose)
        elif kind == 1:  # free passes through where walls were: cells flip back to free
            for _ in range(4):
                m.update(wall_depth(9.0), pose)
        elif kind == 2:
            m.mark_collision(pose)
        else:
            mask = np.zeros(m.shape, bool)
            mask[rng.integers(0, m.shape[0]), :] = True
            m.set_state(mask, OCCUPIED if k % 8 == 3 else FREE)
        assert (m.inflated() == full()).all(), k
        assert (m.inflated(0.3) == full(0.3)).all(), k
