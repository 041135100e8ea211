"""NavGrid (navigable cells, geodesic distance, collision rule) and ShortestPathFollower."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.actions import Action
from envs.geometry import MeshBuilder, wrap_angle
from envs.grid_graph import MOVES_8, MOVES_16, grid_graph
from envs.navigation import GRID_METRIC_MAX_RATIO, NavGrid, ShortestPathFollower
from envs.scene import ObjectInstance, Room, semantic_id

R = 0.18  # agent radius
WALL_T = 0.1
DOOR = (1.6, 2.6)  # doorway in the partition x = 4, y range
TABLE = ObjectInstance(1, "table", "blue", "A", center=[2, 2, 0.375], size=[1.0, 0.6, 0.75])
CABINET = ObjectInstance(2, "cabinet", "red", "B", center=[6, 3.6, 0.5], size=[0.8, 0.6, 1.0])


def _room_shell(b: MeshBuilder, x1: float) -> None:
    """Floor, ceiling and four outer walls of the box [0, x1] x [0, 4] (walls as solid boxes)."""
    b.add_box([x1 / 2, 2, -0.05], [x1 + 0.2, 4.2, 0.1], (128, 128, 128), semantic=semantic_id("floor"))
    b.add_box([x1 / 2, 2, 2.55], [x1 + 0.2, 4.2, 0.1], (240, 240, 240), semantic=semantic_id("ceiling"))
    for c, s in [((0, 2), (WALL_T, 4)), ((x1, 2), (WALL_T, 4)), ((x1 / 2, 0), (x1, WALL_T)),
                 ((x1 / 2, 4), (x1, WALL_T))]:
        b.add_box([c[0], c[1], 1.25], [s[0], s[1], 2.5], (200, 180, 150), semantic=semantic_id("wall"))


def two_rooms():
    """Rooms A = [0,4]x[0,4] and B = [4,8]x[0,4] joined by a 1 m doorway; a table and a cabinet."""
    b = MeshBuilder()
    _room_shell(b, 8.0)
    for cy, sy in [(DOOR[0] / 2, DOOR[0]), ((DOOR[1] + 4) / 2, 4 - DOOR[1])]:
        b.add_box([4, cy, 1.25], [WALL_T, sy, 2.5], (200, 180, 150), semantic=semantic_id("wall"))
    for o in (TABLE, CABINET):
        b.add_box(o.center, o.size, (50, 50, 200), instance=o.id, semantic=semantic_id(o.category))
    return b.build("test/two_rooms", [TABLE, CABINET], [Room(0, "A", (0, 0, 4, 4)), Room(1, "B", (4, 0, 8, 4))])


@pytest.fixture(scope="module")
def grid():
    return NavGrid.from_scene(two_rooms(), cell_size=0.05, agent_radius=R)


def _dist_to_box(xy: np.ndarray, lo, hi) -> np.ndarray:
    d = np.maximum(np.maximum(np.asarray(lo) - xy, xy - np.asarray(hi)), 0.0)
    return np.hypot(d[:, 0], d[:, 1])


def _nav_centres(g: NavGrid) -> np.ndarray:
    return g.cell_to_world(np.argwhere(g.navigable))


def test_navigable_keeps_agent_radius_from_obstacles(grid):
    xy = _nav_centres(grid)
    h = WALL_T / 2
    boxes = [  # footprints of every obstacle: table, cabinet, partition pieces, outer walls
        (TABLE.center[:2] - TABLE.size[:2] / 2, TABLE.center[:2] + TABLE.size[:2] / 2),
        (CABINET.center[:2] - CABINET.size[:2] / 2, CABINET.center[:2] + CABINET.size[:2] / 2),
        ((4 - h, 0), (4 + h, DOOR[0])), ((4 - h, DOOR[1]), (4 + h, 4)),
        ((-h, 0), (h, 4)), ((8 - h, 0), (8 + h, 4)), ((0, -h), (8, h)), ((0, 4 - h), (8, 4 + h)),
    ]
    for lo, hi in boxes:
        assert _dist_to_box(xy, lo, hi).min() >= R - 1e-6
    # ... and the erosion is not excessive: points well clear of everything are navigable.
    rng = np.random.default_rng(1)
    pts = np.c_[rng.uniform(0, 8, 4000), rng.uniform(0, 4, 4000)]
    clear = np.min([_dist_to_box(pts, lo, hi) for lo, hi in boxes], axis=0) > R + 0.1
    assert clear.sum() > 1000 and grid.is_navigable(pts[clear]).all()
    # Inside solid walls (no surface in the body column there) is never free floor.
    assert not grid.is_navigable([4.0, 0.5]) and not grid.free[grid.world_to_cell([4.0, 0.5])]


def test_zero_thickness_wall_of_a_scanned_mesh_blocks():
    """A single-sided plane as a wall (as in scans) is found by the horizontal probes."""
    b = MeshBuilder()
    _room_shell(b, 4.0)
    plane = np.array([[2, 0, 0], [2, 3, 0], [2, 3, 2.5], [2, 0, 2.5]], float)
    b.add_triangles(plane, [[0, 1, 2], [0, 2, 3]], (200, 200, 200), semantic=semantic_id("wall"))
    g = NavGrid.from_scene(b.build("test/plane_wall"), agent_radius=R)
    xy = _nav_centres(g)
    near = (np.abs(xy[:, 0] - 2) < R - 1e-6) & (xy[:, 1] < 3)
    assert not near.any()
    straight = math.hypot(2.0, 0.0)
    assert g.geodesic_distance([1.0, 1.0], [[3.0, 1.0]]) > straight + 2.0  # around the plane's end


def test_geodesic_matches_straight_line_in_an_empty_room():
    b = MeshBuilder()
    _room_shell(b, 6.0)
    g = NavGrid.from_scene(b.build("test/empty"), agent_radius=R)
    rng = np.random.default_rng(0)
    starts = g.sample_navigable(rng, 40)
    cells = np.argwhere(g.navigable)
    goals = g.cell_to_world(cells[rng.integers(0, len(cells), 40)])  # goal cell centres are exact
    euclid = np.hypot(*(starts - goals).T)
    keep = euclid > 2.0
    geo = np.array([g.geodesic_distance(s, [q]) for s, q in zip(starts[keep], goals[keep])])
    ratio = geo / euclid[keep]
    assert keep.sum() >= 15
    assert ratio.min() >= 1 - 1e-9 and ratio.max() <= 1.03
    assert GRID_METRIC_MAX_RATIO == pytest.approx(1.0274, abs=1e-4)


def test_geodesic_goes_around_the_wall(grid):
    a, b = np.array([3.0, 0.6]), np.array([5.0, 0.6])
    geo = grid.geodesic_distance(a, [b])
    corner_y = DOOR[0] + R  # the doorway's lower corners, kept at one agent radius
    around = 2 * math.hypot(1.0 - WALL_T / 2, corner_y - 0.6) + WALL_T  # continuous shortest path
    # grid metric (<= 2.7%), goal snapping (<= half a cell diagonal), the conservative
    # clearance (radius + half a cell diagonal) and the corner's staircase make the grid
    # path a little longer (measured 6%), never shorter
    assert around <= geo <= around * 1.08
    assert geo > 1.5 * np.hypot(*(a - b))
    # unreachable / non-navigable goal handling and caching
    assert grid.geodesic_field([b]) is grid.geodesic_field(np.array([b]))
    assert grid.geodesic_distance([100.0, 100.0], [b]) == math.inf
    many = grid.geodesic_distance(np.array([a, a]), [b])
    assert many.shape == (2,) and many[0] == pytest.approx(geo)


def test_walking_into_a_wall_stops_before_it(grid):
    xy, yaw = np.array([3.2, 0.5]), 0.0  # partition face at x = 3.95, below the doorway
    moved, collided = grid.try_move(xy, yaw)
    assert not collided and moved[0] == pytest.approx(3.45)
    moved, collided = grid.try_move(moved, yaw)
    assert collided and 3.45 < moved[0] <= 3.95 - R + 1e-9 and grid.is_navigable(moved)
    again, collided = grid.try_move(moved, yaw)
    assert collided and np.allclose(again, moved, atol=0.011)


def test_fuzz_random_actions_never_leave_navigable_or_cross_walls(grid):
    rng = np.random.default_rng(7)
    xy, yaw = grid.sample_navigable(rng, 1)[0], 0.0
    crossings = 0
    for a in rng.choice([1, 1, 2, 3], size=3000):
        if a == 1:
            new, _ = grid.try_move(xy, yaw)
            assert grid.is_navigable(new)
            if (xy[0] - 4) * (new[0] - 4) <= 0 and xy[0] != new[0]:  # crossed the partition
                y_cross = np.interp(4, sorted([xy[0], new[0]]), [xy[1], new[1]] if xy[0] < new[0] else [new[1], xy[1]])
                assert DOOR[0] + R - 0.06 <= y_cross <= DOOR[1] - R + 0.06
                crossings += 1
            xy = new
        else:
            yaw += math.radians(30 if a == 2 else -30)
    assert grid.is_navigable(xy) and crossings >= 1  # the walk did use the doorway
    # single steps from many random poses also always end on navigable cells
    starts = grid.sample_navigable(rng, 2000)
    yaws = rng.uniform(-np.pi, np.pi, 2000)
    for s, y in zip(starts, yaws):
        assert grid.is_navigable(grid.try_move(s, y)[0])


def test_follower_reaches_a_dense_goal_set_efficiently(grid):
    # Goal set: every navigable cell within 0.7 m of a point in front of the cabinet.
    centres = _nav_centres(grid)
    goals = centres[np.hypot(*(centres - [6.0, 2.9]).T) < 0.7]
    follower = ShortestPathFollower(grid, goals, stop_distance=0.1)
    rng = np.random.default_rng(3)
    ratios = []
    # a notch of the doorway's staircase boundary where every helpful single step is blocked
    notch = np.array([[3.79781129, 2.4116922]])
    for start in np.vstack([notch, grid.sample_navigable(rng, 25)]):
        d0 = follower.distance(start)
        xy, yaw, length, actions = start.copy(), float(rng.uniform(-np.pi, np.pi)), 0.0, []
        for _ in range(400):
            a = follower.next_action(xy, yaw)
            actions.append(a)
            if a == Action.STOP:
                break
            if a == Action.MOVE_FORWARD:
                new, _ = grid.try_move(xy, yaw)
                length += float(np.hypot(*(new - xy)))
                xy = new
            else:
                yaw += math.radians(30 if a == Action.TURN_LEFT else -30)
        assert actions[-1] == Action.STOP and follower.distance(xy) <= 0.1
        pairs = list(zip(actions, actions[1:]))
        assert (2, 3) not in pairs and (3, 2) not in pairs  # never undoes a turn
        if d0 > 1.0:
            ratios.append(length / d0)
    assert len(ratios) >= 15 and np.mean(ratios) <= 1.15


def test_grid_helpers(grid):
    rng = np.random.default_rng(0)
    pts = grid.sample_navigable(rng, 500)
    assert pts.shape == (500, 2) and grid.is_navigable(pts).all()
    r, c = grid.world_to_cell(pts)
    assert np.all(np.abs(grid.cell_to_world((r, c)) - pts) <= grid.cell_size / 2 + 1e-9)
    img = grid.to_image()
    assert img.shape == grid.shape + (3,) and img.dtype == np.uint8
    assert (img[::-1][grid.navigable] == 255).all() and (img[::-1][~grid.free] < 255).all()
    shaded = grid.to_image(grid.geodesic_field([[6.0, 2.0]]))
    assert shaded.shape == img.shape and not np.array_equal(shaded, img)
    with pytest.raises(ValueError, match="goals_xy"):
        grid.geodesic_field(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="dist"):
        grid.try_move([1.0, 1.0], 0.0, dist=-1.0)


def test_wrap_angle_numbers_and_arrays_agree_on_minus_pi_to_pi():
    a = np.array([0.0, math.pi, -math.pi, 3 * math.pi, -3 * math.pi, 7.0, -7.0, 2 * math.pi])
    w = wrap_angle(a)
    assert w.shape == a.shape and ((w > -math.pi) & (w <= math.pi)).all()
    assert w[1] == w[2] == w[3] == w[4] == math.pi  # the half-open end: -pi wraps to +pi
    assert [wrap_angle(float(v)) for v in a] == w.tolist()  # the math path and the numpy path, bit for bit
    assert isinstance(wrap_angle(np.float32(4.0)), float) and wrap_angle(7.0) == pytest.approx(7.0 - 2 * math.pi)


def test_grid_graph_joins_passable_cells_without_cutting_corners():
    passable = np.ones((3, 3), bool)
    passable[1, 1] = False
    graph, node = grid_graph(passable, MOVES_8, cell_size=0.5)
    assert node[1, 1] == -1 and node[2, 2] == 7 and graph.shape == (8, 8)
    assert graph[node[0, 0], node[0, 1]] == graph[node[0, 1], node[0, 0]] == 0.5  # both directions
    assert graph[node[0, 1], node[1, 0]] == 0  # the diagonal would cut the blocked centre
    assert graph.nnz == 2 * 8  # the ring of 8 cells, each edge twice
    cost = np.full((3, 3), 2.0)
    cost[0, 0] = 4.0
    weighted, _ = grid_graph(passable, MOVES_8, cell_size=0.5, cost=cost)
    assert weighted[node[0, 0], node[0, 1]] == pytest.approx(0.5 * (4.0 + 2.0) / 2)
    open_graph, _ = grid_graph(np.ones((3, 3), bool), MOVES_16)
    assert open_graph[0, 5] == pytest.approx(math.sqrt(5))  # a knight move (0, 0) -> (1, 2)
