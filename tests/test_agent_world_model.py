"""WorldModelAgent, ContextBuffer and candidate ranking: real code on tiny inputs.

* the context buffer keeps original indices and samples as documented;
* the agent runs end to end in the real env (32x32) with a tiny randomly initialised
  Video4Spatial pipeline, through the runner, and writes a 3-panel video;
* in a small kinematic world whose "world model" draws the red box where the target
  really is (a Rollout built directly), the goal estimate points the right way and the
  agent walks to the target and calls STOP; with ablation="noise" it never gets a goal.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agent.context import ContextBuffer
from agent.world_model_agent import WorldModelAgent
from envs.actions import Action
from envs.geometry import wrap_angle
from planners.ranking import Candidate, map_consistency, rank_candidates
from planners.rollout_reader import GoalEstimate
from world_model.boxes import draw_box
from world_model.rollout import Rollout


# ----------------------------------------------------------------------------- ContextBuffer
def test_context_buffer_keeps_original_indices_and_samples():
    buf = ContextBuffer(frame_size=8)
    tour = np.random.default_rng(0).integers(0, 255, (10, 16, 16, 3), dtype=np.uint8)
    tour_idx = np.array([0, 3, 5, 9, 12, 20, 21, 30, 41, 50])
    buf.add_tour(tour, np.zeros((10, 3)), tour_idx, depth=np.ones((10, 16, 16, 1), np.float32))
    assert buf.frames.shape == (10, 8, 8, 3)
    # 2x2 area averaging, as world_model/data.py makes the training frames
    np.testing.assert_array_equal(buf.frames[0, 0, 0],
                                  np.round(tour[0, :2, :2].reshape(4, 3).mean(0)).astype(np.uint8))
    new = [buf.append(np.full((16, 16, 3), i, np.uint8), (i, 0, 0)) for i in range(5)]
    assert new == [51, 52, 53, 54, 55]  # the agent's frames follow the tour's last index
    np.testing.assert_array_equal(buf.indices, np.concatenate([tour_idx, new]))
    rng = np.random.default_rng(1)
    for mode in ("noncontiguous", "contiguous", "recent"):
        for _ in range(20):
            s = buf.sample(6, rng, mode)
            assert len(s.indices) == 6 and (np.diff(s.indices) > 0).all()
            assert s.indices[-1] == 55 and s.poses[-1][0] == 4  # always the newest frame
            np.testing.assert_array_equal(s.indices, buf.indices[s.positions])
            np.testing.assert_array_equal(s.frames, buf.frames[s.positions])
    np.testing.assert_array_equal(buf.sample(3, rng, "contiguous").indices, [53, 54, 55])
    # non-contiguous reaches back into the tour
    seen = set()
    for _ in range(30):
        seen |= set(buf.sample(4, rng).indices.tolist())
    assert seen & set(tour_idx.tolist())
    assert buf.depth(0).shape == (8, 8) and buf.depth(12) is None
    with pytest.raises(RuntimeError, match="add the tour first"):
        buf.add_tour(tour[:1], np.zeros((1, 3)), [100])
    with pytest.raises(ValueError, match="mode"):
        buf.sample(2, rng, "sideways")
    # relevance-weighted: frames the scores favour enter the context far more often
    rel = np.zeros(len(buf))
    rel[[2, 7]] = 5.0
    counts = np.zeros(len(buf))
    for _ in range(200):
        s = buf.sample(3, rng, "relevant", relevance=rel)
        assert s.indices[-1] == 55 and (np.diff(s.indices) > 0).all()
        counts[s.positions] += 1
    assert counts[2] > 120 and counts[7] > 120 and counts[[0, 1, 3, 4, 5, 6, 8, 9]].max() < 40
    with pytest.raises(ValueError, match="relevance score per buffered frame"):
        buf.sample(3, rng, "relevant")


# ----------------------------------------------------------------------------- ranking
def _goal(xy, conf=0.8):
    return GoalEstimate(xy=np.asarray(xy, float), cov=np.eye(2) * 0.04, range_m=2.0, bearing=0.0,
                        source="depth", confidence=conf)


def test_ranking_prefers_agreeing_candidates_and_fuses_elites():
    cands = [Candidate(0, None, _goal([3.0, 0.0]), score=0.5), Candidate(1, None, _goal([3.2, 0.1]), score=0.45),
             Candidate(2, None, _goal([-4.0, 2.0]), score=0.6), Candidate(3, None, None)]
    best, goal = rank_candidates(cands, agree_m=1.0, elite_frac=0.5)
    assert best.index == 0  # the lone outlier had the highest raw score but no support
    assert cands[2].agreement == 0.0 and cands[0].agreement == pytest.approx(0.5)
    assert 3.0 < goal.xy[0] < 3.2 and np.linalg.det(goal.cov) < np.linalg.det(cands[0].goal.cov)
    assert rank_candidates([Candidate(0, None, None)]) == (None, None)


def test_map_consistency_uses_the_obstacle_map():
    from planners.mapping import ObstacleMap

    m = ObstacleMap(cell_size=0.1, size_m=8.0)
    depth = np.zeros((32, 32), np.float32)
    depth[:, 12:20] = 2.0  # a wall 2 m ahead in the middle columns, free elsewhere
    m.update(depth, (0.0, 0.0, 0.0))
    assert map_consistency(m, (2.0, 0.0)) == 1.0  # on the wall
    assert map_consistency(m, (1.0, 0.0)) == 0.3  # open, observed free floor
    assert map_consistency(m, (-3.0, 0.0)) == 0.7  # behind the agent: never observed


# ----------------------------------------------------------------------------- a kinematic world
class ToyWorld:
    """Open floor (no depth hits), a target at ``target``; the agent's pose follows the actions
    exactly. RGB is a texture seeded by the pose, so each view is distinct."""

    def __init__(self, target=(3.0, -2.0), size=32):
        self.target = np.asarray(target, float)
        self.size = size
        self.pose = np.zeros(3)

    def obs(self):
        key = tuple(np.round(self.pose, 3))
        rng = np.random.default_rng(abs(hash(key)) % 2 ** 32)
        rgb = rng.integers(40, 200, (self.size, self.size, 3), dtype=np.uint8)
        return {"rgb": rgb, "depth": np.zeros((self.size, self.size, 1), np.float32),
                "gps": self.pose[:2].astype(np.float32), "compass": np.array([self.pose[2]], np.float32),
                "instruction": "go to the red chair"}

    def step(self, a):
        if a == Action.MOVE_FORWARD:
            self.pose[:2] += 0.25 * np.array([math.cos(self.pose[2]), math.sin(self.pose[2])])
        elif a in (Action.TURN_LEFT, Action.TURN_RIGHT):
            self.pose[2] += math.radians(30) * (1 if a == Action.TURN_LEFT else -1)
            self.pose[2] = (self.pose[2] + math.pi) % (2 * math.pi) - math.pi
        return self.obs()

    def distance(self):
        return float(np.linalg.norm(self.pose[:2] - self.target))


class BoxOracleImagination:
    """A stand-in world model that imagines the current view with the red box where the target is.

    Built on the real ``Rollout`` type; the box is what a perfect Video4Spatial rollout would draw
    when the target is in view from here: bearing -> column, ground contact -> bottom row,
    0.8 m height and 0.6 m width -> box size. No box when the target is out of view.
    """

    def __init__(self, world: ToyWorld, size=64, num_target=2, noise=False):
        self.world, self.size = world, size
        self.model = SimpleNamespace(config=SimpleNamespace(frame_size=(size, size)))
        self.config = SimpleNamespace(num_target_frames=num_target, num_bbox_frames=1)
        self.calls = 0

    def imagine(self, context_frames, context_indices, instruction, num_samples=1, seed=0, **kw):
        self.calls += 1
        cur = np.asarray(context_frames)[-1]
        frames = np.repeat(cur[None], self.config.num_target_frames, 0)
        bbox = cur.copy()
        x, y, yaw = self.world.pose
        d = self.world.target - np.array([x, y])
        z = float(np.hypot(*d))
        bearing = math.atan2(d[1], d[0]) - yaw
        bearing = (bearing + math.pi) % (2 * math.pi) - math.pi
        s = self.size
        f = (s / 2) / math.tan(math.radians(79 / 2))
        if abs(bearing) < math.radians(30) and z > 0.3:
            zf = z * math.cos(bearing)
            u = s / 2 - 0.5 - f * math.tan(bearing)
            vb = s / 2 + f * 0.88 / zf
            hh, hw = f * 0.8 / zf, f * 0.6 / zf / 2
            # data.py's convention: the box is the object's own pixels; its lowest row ends at the contact
            box = (u - hw, vb - hh, u + hw, vb - 1)
            bbox = draw_box(bbox, np.clip(box, 0, s - 1), thickness=2)
        return Rollout(frames=frames, bbox_frames=bbox[None], instruction=instruction,
                       context_indices=np.asarray(context_indices))


def _tour(world, n=4):
    """A tiny look-around tour at the start (poses in the start frame)."""
    poses = np.array([[0.0, 0.0, math.radians(90 * i)] for i in range(n)])
    rgb = []
    for p in poses:
        world.pose = p.copy()
        rgb.append(world.obs()["rgb"])
    world.pose = np.zeros(3)
    return {"rgb": np.stack(rgb), "depth": np.zeros((n, world.size, world.size, 1), np.float32),
            "poses": poses, "indices": np.arange(n) * 3, "pitch": np.zeros(n)}


def test_goal_from_an_imagined_box_points_at_the_target_and_the_agent_gets_there():
    world = ToyWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), reimagine_every=4, seed=0, clip_guidance=False,
                            context_mode="noncontiguous", goal_check=None)
    obs = world.obs()
    agent.reset(obs, {"episode_id": "toy"}, _tour(world))
    a = agent.act(obs)
    g = agent.goal
    assert g is not None and agent.best.localization == "retrieval" and agent.best.view_match > 0.99
    true_bearing = math.atan2(-1.2, 2.6)
    assert abs(math.atan2(g.xy[1], g.xy[0]) - true_bearing) < math.radians(4)  # right of ahead
    # range from ground contact + size prior, no depth (open floor): within 35 %
    assert 0.8 < np.linalg.norm(g.xy) / np.hypot(2.6, 1.2) < 1.35
    assert a in (Action.MOVE_FORWARD, Action.TURN_RIGHT)  # the target is 25 deg to the right
    d0 = world.distance()
    for _ in range(40):
        if a == Action.STOP:
            break
        obs = world.step(a)
        a = agent.act(obs)
    assert a == Action.STOP, "the agent should call STOP near the target"
    assert world.distance() < 1.0 < d0
    assert agent.stats["imaginations"] >= 2  # receding horizon: it re-imagined on the way


def test_noise_ablation_never_gets_a_goal_and_explores():
    world = ToyWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), ablation="noise", explore_reimagine_every=1,
                            seed=0, clip_guidance=False, context_mode="noncontiguous", goal_check=None)
    obs = world.obs()
    agent.reset(obs, {"episode_id": "toy"}, _tour(world))
    actions = []
    for _ in range(10):
        actions.append(agent.act(obs))
        assert agent.goal is None and all(c.box is None for c in agent.candidates)
        obs = world.step(actions[-1])
    assert agent.pipeline.calls == 0 and agent.stats["imaginations"] == 10
    assert Action.STOP not in actions and Action.MOVE_FORWARD in actions  # it explores frontiers


class FixedValueMap:
    """Stands in for planners.value_map.ClipValueMap: every view has CLIP z-score ``z``."""

    def __init__(self, z: float):
        self.z, self.scores, self.last_view, self.map = z, [], None, None

    def reset(self, instruction, obstacle_map):
        self.scores, self.last_view, self.map = [], None, obstacle_map

    def add_tour(self, context, update_map=True):
        for d, p in zip(context["depth"], context["poses"]):
            if update_map:
                self.map.update(d, np.asarray(p, np.float64))
            self.scores.append(0.0)

    def observe(self, rgb, depth, pose):
        self.scores.append(0.0)
        self.last_view = {"z": self.z, "score": 0.0}
        return self.last_view


class FixedGuide:
    """Stands in for planners.value_map.ClipGuide: always proposes ``action``; records what it was told."""

    def __init__(self, value_map: FixedValueMap, action: int = Action.TURN_LEFT):
        self.value_map, self.action, self.calls, self.actions_told, self.candidates = value_map, int(action), 0, [], 0

    def reset(self, rng, look_around=0):
        self.calls, self.actions_told = 0, []

    def observe(self, obs, last_action, update_map=True):
        assert not update_map, "the world-model agent keeps the map itself"
        self.actions_told.append(last_action)
        return np.zeros(3)

    def act(self):
        self.calls += 1
        return self.action


def use_guide(agent, z: float, action: int = Action.TURN_LEFT) -> FixedGuide:
    """Give ``agent`` a scripted CLIP guide: its value map says z-score ``z``, its policy proposes ``action``."""
    agent.value_map = FixedValueMap(z)
    agent.guide = FixedGuide(agent.value_map, action)
    agent.guide_use_tour = True
    return agent.guide


def _walk_to_imagined_goal(agent, world, steps=40):
    obs = world.obs()
    agent.reset(obs, {"episode_id": "toy"}, _tour(world))
    actions = []
    for _ in range(steps):
        a = agent.act(obs)
        actions.append(a)
        if a == Action.STOP:
            break
        obs = world.step(a)
    return actions


def test_imagined_goal_stop_needs_the_guides_confirmation():
    # The guide recognises the target in view (z 3 >= stop_confirm_z 1): the imagined goal's STOP stands.
    world = ToyWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), reimagine_every=4, seed=0, clip_guidance=False,
                            context_mode="noncontiguous", goal_check=None)
    guide = use_guide(agent, z=3.0)
    actions = _walk_to_imagined_goal(agent, world)
    assert actions[-1] == Action.STOP and world.distance() < 1.0
    assert guide.calls == len(actions) and agent.stats["unconfirmed_goals"] == 0
    assert guide.actions_told == [None] + actions[:-1]  # the guide is told what was actually done
    assert agent.map is agent.value_map.map  # one map, kept by the agent, projected onto by the value map

    # The guide does not see it (z -1): no STOP; the goal is dropped, remembered, not re-adopted,
    # and the step goes to the guide.
    world = ToyWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), reimagine_every=4, seed=0, clip_guidance=False,
                            context_mode="noncontiguous", goal_check=None)
    use_guide(agent, z=-1.0)
    actions = _walk_to_imagined_goal(agent, world)
    assert Action.STOP not in actions
    assert agent.stats["unconfirmed_goals"] >= 1 and len(agent.rejected) >= 1
    assert agent.goal is None or min(np.linalg.norm(agent.goal.xy - q) for q in agent.rejected) > agent.reject_m
    assert agent.stats["guide_steps"] >= 1


class FixedGoalCheck:
    """Stands in for planners.goal_check.GoalCheck: answers ``stop`` at every arrival, records what it saw."""

    def __init__(self, stop: bool):
        self.stop, self.seen = bool(stop), []

    def check(self, rgb, depth, instruction):
        self.seen.append((np.asarray(rgb).shape, np.asarray(depth).shape, instruction))
        return {"p_success": 0.9 if self.stop else 0.1, "p_visible": 0.5, "stop": self.stop}


@pytest.mark.parametrize("z, stop", [(3.0, False), (-1.0, True)])
def test_goal_check_decides_the_stop_at_an_imagined_goal_not_the_z_score(z, stop):
    world = ToyWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), reimagine_every=4, seed=0, clip_guidance=False,
                            context_mode="noncontiguous", trace=True)
    use_guide(agent, z=z)
    agent.goal_check = FixedGoalCheck(stop)
    actions = _walk_to_imagined_goal(agent, world)
    assert agent.goal_check.seen, "the agent reached its imagined goal without asking the goal check"
    shape_rgb, shape_depth, text = agent.goal_check.seen[0]
    assert shape_rgb[-1] == 3 and shape_depth[:2] == shape_rgb[:2] and text == agent.instruction
    checks = agent.episode_stats()["stop_checks"]
    assert checks and all("goal_check_p" in c for c in checks)
    if stop:
        assert actions[-1] == Action.STOP and agent.stats["unconfirmed_goals"] == 0
    else:
        assert Action.STOP not in actions and agent.stats["unconfirmed_goals"] >= 1


class CountingGoalCheck(FixedGoalCheck):
    """Refuses the first ``refuse`` views it is shown, then accepts every one."""

    def __init__(self, refuse: int):
        super().__init__(stop=False)
        self.refuse = int(refuse)

    def check(self, rgb, depth, instruction):
        super().check(rgb, depth, instruction)
        ok = len(self.seen) > self.refuse
        return {"p_success": 0.9 if ok else 0.1, "p_visible": 0.5, "stop": ok}


@pytest.mark.parametrize("refuse", [3, 100])
def test_refused_arrival_turns_in_place_and_checks_each_view(refuse):
    # The goal check refuses the arrival view: the agent turns left on the spot, checking every new view;
    # it STOPs at the first view accepted, or gives the goal up after scan_deg (330 = 11 turns of 30 deg).
    world = ToyWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), reimagine_every=4, seed=0, clip_guidance=False,
                            context_mode="noncontiguous", trace=True, scan_deg=330.0)
    use_guide(agent, z=0.0)
    agent.goal_check = CountingGoalCheck(refuse)
    actions = _walk_to_imagined_goal(agent, world, steps=60)
    decisions = [c["decision"] for c in agent.episode_stats()["stop_checks"]]
    if refuse == 3:
        assert actions[-4:] == [Action.TURN_LEFT] * 3 + [Action.STOP]
        assert decisions == ["scan"] * 3 + ["confirmed"]
        assert agent.stats["scans"] == 1 and agent.stats["scan_stops"] == 1 and agent.stats["unconfirmed_goals"] == 0
    else:
        assert Action.STOP not in actions
        first = decisions.index("vetoed")
        assert decisions[:first] == ["scan"] * 11, decisions  # the arrival view + 10 turned views refused
        poses = [c["pose"] for c in agent.episode_stats()["stop_checks"][:first + 1]]
        assert all(np.allclose(p[:2], poses[0][:2]) for p in poses)  # turned in place
        turned = sum(abs(math.degrees(wrap_angle(b[2] - a[2]))) for a, b in zip(poses, poses[1:]))
        assert turned == pytest.approx(330.0)
        assert agent.stats["unconfirmed_goals"] >= 1 and agent.rejected


def test_scan_off_drops_a_refused_goal_at_once():
    world = ToyWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), reimagine_every=4, seed=0, clip_guidance=False,
                            context_mode="noncontiguous", trace=True, scan_deg=0)
    use_guide(agent, z=0.0)
    agent.goal_check = FixedGoalCheck(False)
    _walk_to_imagined_goal(agent, world)
    decisions = [c["decision"] for c in agent.episode_stats()["stop_checks"]]
    assert decisions and decisions[0] == "vetoed" and "scan" not in decisions and agent.stats["scans"] == 0
    with pytest.raises(ValueError, match=r"unknown guide setting\(s\) \['z_detec'\]"):
        WorldModelAgent(pipeline=BoxOracleImagination(world), guide={"z_detec": 2.0}, goal_check=None)
    with pytest.raises(ValueError, match="scan_deg"):
        WorldModelAgent(pipeline=BoxOracleImagination(world), clip_guidance=False, context_mode="noncontiguous",
                        goal_check=None, scan_deg=-1)


class TargetDepthWorld(ToyWorld):
    """ToyWorld whose depth shows the target: the central patch reads its distance when it is ahead (+-30 deg)."""

    def obs(self):
        o = super().obs()
        d = self.target - self.pose[:2]
        if abs(wrap_angle(math.atan2(d[1], d[0]) - self.pose[2])) < math.radians(30):
            c = self.size // 2
            o["depth"][c - 2:c + 2, c - 2:c + 2] = float(np.hypot(*d))
        return o


def test_close_in_count_reads_the_centre_of_the_view():
    from agent.world_model_agent import close_in_count

    depth = np.zeros((128, 128, 1), np.float32)
    depth[56:72, 56:72] = 1.3
    assert close_in_count(depth, 1.0, 2) == 2  # 1.3 m: one step past 1.0 m, one more per 0.25 m beyond
    assert close_in_count(depth, 1.0, 1) == 1
    assert close_in_count(depth, 1.2, 2) == 1
    assert close_in_count(depth, 1.3, 2) == 0
    assert close_in_count(depth, 1.0, 0) == 0
    depth[56:72, 56:72] = np.nan  # nothing measured in the centre: no step
    assert close_in_count(depth[..., 0], 0.5, 2) == 0


@pytest.mark.parametrize("close_in_steps", [0, 2])
def test_confirmed_arrival_closes_in_before_it_stops(close_in_steps):
    # The goal check accepts the arrival view; with close_in_steps the agent first steps towards what it
    # looks at while the centre of the view is farther than close_in_depth_m, then STOPs.
    world = TargetDepthWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), reimagine_every=4, seed=0, clip_guidance=False,
                            context_mode="noncontiguous", trace=True, close_in_steps=close_in_steps,
                            close_in_depth_m=0.3)
    use_guide(agent, z=0.0)
    agent.goal_check = FixedGoalCheck(True)
    actions = _walk_to_imagined_goal(agent, world, steps=60)
    assert actions[-1] == Action.STOP
    decisions = [c["decision"] for c in agent.episode_stats()["stop_checks"]]
    assert decisions == ["confirmed"] and len(agent.goal_check.seen) == 1  # checked once, not at each step in
    checked_at = agent.episode_stats()["stop_checks"][0]["pose"]
    moved = float(np.hypot(*(world.pose[:2] - np.asarray(checked_at[:2]))))
    if close_in_steps:
        assert actions[-3:] == [Action.MOVE_FORWARD] * 2 + [Action.STOP]
        assert agent.stats["close_in_steps"] == 2 and moved == pytest.approx(0.5)
    else:
        assert agent.stats["close_in_steps"] == 0 and moved == pytest.approx(0.0, abs=1e-6)  # STOP where checked
    with pytest.raises(ValueError, match="close_in_steps"):
        WorldModelAgent(pipeline=BoxOracleImagination(world), clip_guidance=False, context_mode="noncontiguous",
                        goal_check=None, close_in_steps=-1)


def test_guide_acts_without_a_goal_and_its_stop_is_honoured():
    world = ToyWorld(target=(2.6, -1.2))
    agent = WorldModelAgent(pipeline=BoxOracleImagination(world), ablation="noise", seed=0, clip_guidance=False,
                            context_mode="noncontiguous", goal_check=None)
    use_guide(agent, z=0.0, action=Action.TURN_RIGHT)
    obs = world.obs()
    agent.reset(obs, {"episode_id": "toy"}, _tour(world))
    assert [agent.act(obs) for _ in range(3)] == [Action.TURN_RIGHT] * 3  # noise: no goal, the guide drives
    agent.guide.action = int(Action.STOP)
    assert agent.act(obs) == Action.STOP and agent.stats["guide_stops"] == 1


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="spatialnav train"):
        WorldModelAgent(pipeline=str(tmp_path / "no_such_pipeline"))
    with pytest.raises(ValueError, match="ablation"):
        WorldModelAgent(pipeline=BoxOracleImagination(ToyWorld()), ablation="blindfold")


# ----------------------------------------------------------------------------- real env, real pipeline


def test_world_model_agent_end_to_end_in_the_env(tmp_path, nav_episode_file, tiny_pipeline):
    import imageio.v2 as imageio

    from agent.episode_log import read_episode_log
    from agent.runner import evaluate

    def factory(env=None, seed=None):
        return WorldModelAgent(env=env, seed=seed, pipeline=tiny_pipeline, num_context=4, num_candidates=2,
                               num_steps=2, reimagine_every=3, explore_reimagine_every=3)

    factory.needs_context = True
    s = evaluate(factory, n_episodes=1, out_dir=tmp_path, episodes=nav_episode_file, video=1, width=32, height=32,
                 max_episode_steps=8, progress=False, print_summary=False)
    row = read_episode_log(tmp_path / "episodes.jsonl")[0]
    assert 1 <= row["steps"] <= 8 and s["n_episodes"] == 1
    assert row["agent_imaginations"] >= 2 and row["agent_imagine_seconds"] > 0
    reader = imageio.get_reader(row["video"])
    frames = [f for f in reader]
    reader.close()
    assert len(frames) == row["steps"] + 1
    # caption band over obs | imagined strip (2 target frames, bbox frame, matched real view) | map
    assert frames[0].shape[0] == 256 + 22 and frames[0].shape[1] >= 256 * 6
    assert len({f.shape for f in frames}) == 1


def test_world_model_agent_actions_are_valid(nav_episodes, tiny_pipeline):
    from agent.fair_play import SensorView, public_context, public_info
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(episodes=nav_episodes[:1], width=32, height=32)
    agent = WorldModelAgent(env=SensorView(env), seed=0, pipeline=tiny_pipeline, num_context=3, num_steps=2)
    obs, info = env.reset(options={"episode_index": 0})
    agent.reset(obs, public_info(info), public_context(env.unwrapped.context_tour(n_frames=12)))
    assert len(agent.buffer) == 12 and agent.map.explored.any()  # the tour seeds the map
    for _ in range(5):
        a = agent.act(obs)
        assert a in (0, 1, 2, 3) and env.action_space.contains(a)
        obs, _, term, trunc, info = env.step(a)
        if term or trunc:
            break
    assert agent.rollout["frames"].shape == (2, 16, 16, 3) and agent.rollout["bbox_frames"].shape == (1, 16, 16, 3)
    assert agent.buffer.indices[-1] > agent.buffer.indices[11]
    env.close()


# ----------------------------------------------------------------------------- CLI: ablation rows, demo
@pytest.fixture(scope="module")
def tiny_pipeline_dir(tiny_pipeline, tmp_path_factory):
    path = tmp_path_factory.mktemp("wm") / "pipeline"
    tiny_pipeline.save_pretrained(path)
    return path


WM_ARGS = ["agent=world_model", "agent.num_steps=2", "agent.num_context=4", "agent.threads=null", "env=tiny",
           "progress=false", "task.max_episode_steps=6"]


def test_eval_agents_writes_rows_for_ablations(tmp_path, nav_episode_file, tiny_pipeline_dir, capsys):
    import json

    from agent import cli

    md = tmp_path / "results.md"
    args = ["eval", "agents=[world_model,world_model@noise,random,oracle]", "n_episodes=2",
            f"out_dir={tmp_path / 'ev'}", f"episodes={nav_episode_file}", f"results_md={md}",
            f"agent.pipeline={tiny_pipeline_dir}", *WM_ARGS]
    assert cli.main(args) == 0
    rows = {a: [json.loads(x) for x in (tmp_path / "ev" / a / "episodes.jsonl").read_text().splitlines()]
            for a in ("world_model", "world_model_noise", "random", "oracle")}
    ids = {a: sorted(r["episode_id"] for r in rs) for a, rs in rows.items()}
    assert len(set(map(tuple, ids.values()))) == 1 and len(ids["oracle"]) == 2  # the same 2 episodes
    assert all(r["agent_imaginations"] >= 1 for r in rows["world_model_noise"])
    text = md.read_text()
    assert "| world_model | 2 |" in text and "| world_model (ablation=noise) | 2 |" in text
    assert "| random | 2 |" in text and "| oracle (privileged) | 2 |" in text
    # the command that reproduces the rows, agent settings included
    assert "agents=[world_model,world_model@noise,random,oracle]" in text
    assert f"agent.pipeline={tiny_pipeline_dir}" in text and "task.max_episode_steps=6" in text


def test_demo_runs_the_world_model_agent_or_says_why_not(tmp_path, nav_episode_file, tiny_pipeline_dir,
                                                         monkeypatch, capsys):
    from agent import cli

    base = ["demo", f"episodes={nav_episode_file}", "demo.n_episodes=1", "demo.max_episode_steps=4",
            f"out_dir={tmp_path / 'demo'}", *[a for a in WM_ARGS if not a.startswith("task.")]]
    assert cli.main(base + [f"agent.pipeline={tiny_pipeline_dir}"]) == 0
    out = capsys.readouterr().out
    assert f"world model: {tiny_pipeline_dir}" in out and "world_model" in out and "oracle" in out
    assert list((tmp_path / "demo" / "world_model_val" / "videos").glob("*.mp4"))
    # beside its noise ablation, on the same episode, with the paired difference
    assert (tmp_path / "demo" / "world_model_noise_val" / "episodes.jsonl").exists()
    assert "world_model - world_model@noise on the same 1 episodes: success" in out
    # No checkpoint anywhere: oracle and random only, with a note.
    import world_model.loading as loading

    monkeypatch.setattr(loading, "SHIPPED_PIPELINE", tmp_path / "none")
    monkeypatch.setattr(loading, "TRAINED_PIPELINE", tmp_path / "none")
    monkeypatch.setattr(loading, "REPO_DIR", tmp_path)
    assert cli.main(base + [f"out_dir={tmp_path / 'demo2'}"]) == 0
    out = capsys.readouterr().out
    assert "no world-model checkpoint" in out and "oracle, random" in out
    assert not (tmp_path / "demo2" / "world_model_val").exists() and (tmp_path / "demo2" / "oracle_val").exists()


def test_agent_loads_an_ssg_adapter(tmp_path, tiny_pipeline_dir, monkeypatch):
    from world_model.pipeline import Video4SpatialPipeline
    from world_model.ssg import checkpoint, ssg_processors

    pipe = Video4SpatialPipeline.from_pretrained(tiny_pipeline_dir)
    pipe.init_ssg(None, num_tokens=2, hidden_dim=32, num_heads=2)  # over the shipped small CLIP
    pipe.save_ssg(tmp_path / "ssg")
    plain = WorldModelAgent(pipeline=str(tiny_pipeline_dir), threads=None)
    assert plain.pipeline.ssg_prompter is None
    agent = WorldModelAgent(pipeline=str(tiny_pipeline_dir), ssg=str(tmp_path / "ssg"), threads=None)
    assert agent.pipeline.ssg_prompter is not None and ssg_processors(agent.pipeline.model.transformer)
    monkeypatch.setattr(checkpoint, "default_ssg_dir", lambda: tmp_path / "ssg")
    shipped = WorldModelAgent(pipeline=str(tiny_pipeline_dir), ssg="shipped", threads=None)
    assert shipped.pipeline.ssg_config["num_ssg_tokens"] == 2
    with pytest.raises(FileNotFoundError, match="train-ssg"):
        WorldModelAgent(pipeline=str(tiny_pipeline_dir), ssg=str(tmp_path / "none"), threads=None)
