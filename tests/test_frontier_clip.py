"""FrontierClipAgent: real env end to end with a tiny random CLIP (behaviour, not quality), and
the recognise -> approach -> STOP logic in a small kinematic world with a scripted view scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.frontier_clip import FrontierClipAgent, frontier_points
from envs.actions import Action


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """A randomly initialised small CLIP saved like the trained one (no training here)."""
    from world_model.ssg.clip import SmallClipSpec, build_small_clip, build_word_tokenizer, grammar_vocabulary

    spec = SmallClipSpec(image_size=32, patch_size=8, vision_layers=2, vision_width=32, vision_heads=2,
                         text_layers=1, text_width=32, text_heads=2, projection_dim=32, max_text_len=24)
    clip = build_small_clip(build_word_tokenizer(grammar_vocabulary()), spec, seed=0)
    path = tmp_path_factory.mktemp("clip") / "clip-tiny"
    clip.save_pretrained(path)
    return path


def test_frontier_clip_end_to_end_in_the_env(tmp_path, nav_episode_file, tiny_clip_dir):
    from agent.episode_log import read_episode_log
    from agent.runner import evaluate

    s = evaluate("frontier_clip", n_episodes=1, out_dir=tmp_path, episodes=nav_episode_file, video=1, width=32,
                 height=32, max_episode_steps=10, progress=False, print_summary=False,
                 agent_kwargs={"clip": str(tiny_clip_dir), "min_views": 4})
    row = read_episode_log(tmp_path / "episodes.jsonl")[0]
    assert s["n_episodes"] == 1 and 1 <= row["steps"] <= 10 and row["agent"] == "frontier_clip"
    assert row["agent_steps"] == row["steps"]  # the agent acted once per env step


def test_value_map_and_frontiers_from_the_tour(nav_episodes, tiny_clip_dir):
    from agent.fair_play import SensorView, public_context, public_info
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(episodes=nav_episodes[:1], width=32, height=32)
    agent = FrontierClipAgent(env=SensorView(env), clip=str(tiny_clip_dir), seed=0)
    obs, info = env.reset(options={"episode_index": 0})
    agent.reset(obs, public_info(info), public_context(env.unwrapped.context_tour(n_frames=16)))
    vm = agent.value_map
    assert len(vm.scores) == 16 and "value" in agent.map.layers and vm.map is agent.map
    for _ in range(4):
        a = agent.act(obs)
        assert env.action_space.contains(a)
        obs, *_ = env.step(a)
    assert len(vm.scores) == 16 + 4 and vm.last_view is not None
    s, rel = vm.score_views(obs["rgb"][None])
    assert s.shape == (1,) and rel.shape == (1, 4, 4) and np.isfinite(rel).all()
    # relevance is each patch's share of the score: P * r averages back to about s
    v = vm.pixel_values(float(s[0]), rel[0], (32, 32))
    assert v.shape == (32, 32) and np.isfinite(v).all()
    pts, sizes = frontier_points(agent.map, 5)
    assert pts.shape[1] == 2 and len(pts) == len(sizes)
    vals = vm.frontier_values(pts, agent.policy.value_radius_m)
    assert vals.shape == (len(pts),)
    assert agent.debug_panels()["map"].ndim == 3
    env.close()


class PillarWorld:
    """Open floor with one 0.6 m wide, 0.8 m high target at ``target``; exact kinematics."""

    def __init__(self, target=(3.0, 1.5), size=32):
        self.target, self.size, self.pose = np.asarray(target, float), size, np.zeros(3)
        self.f = (size / 2) / math.tan(math.radians(79 / 2))

    def view(self):
        d = self.target - self.pose[:2]
        z = float(np.hypot(*d))
        b = (math.atan2(d[1], d[0]) - self.pose[2] + math.pi) % (2 * math.pi) - math.pi
        return z, b

    def obs(self):
        z, b = self.view()
        s = self.size
        depth = np.zeros((s, s, 1), np.float32)
        if abs(b) < math.radians(39):
            zf = z * math.cos(b)
            u = s / 2 - 0.5 - self.f * math.tan(b)
            half = self.f * 0.3 / zf
            top = s / 2 - self.f * (0.8 - 0.88) / zf
            bottom = s / 2 + self.f * 0.88 / zf
            c0, c1 = int(max(0, u - half)), int(min(s - 1, u + half))
            r0, r1 = int(max(0, top)), int(min(s - 1, bottom))
            depth[r0:r1 + 1, c0:c1 + 1] = zf
        rgb = np.random.default_rng(abs(hash(tuple(np.round(self.pose, 3)))) % 2 ** 32).integers(
            0, 255, (s, s, 3), dtype=np.uint8)
        return {"rgb": rgb, "depth": depth, "gps": self.pose[:2].astype(np.float32),
                "compass": np.array([self.pose[2]], np.float32), "instruction": "find the green plant"}

    def step(self, a):
        if a == Action.MOVE_FORWARD:
            self.pose[:2] += 0.25 * np.array([math.cos(self.pose[2]), math.sin(self.pose[2])])
        elif a in (Action.TURN_LEFT, Action.TURN_RIGHT):
            self.pose[2] = (self.pose[2] + math.radians(30) * (1 if a == Action.TURN_LEFT else -1) + math.pi) \
                % (2 * math.pi) - math.pi
        return self.obs()


def test_recognise_approach_and_stop(tiny_clip_dir):
    """CLIP scripted to recognise the pillar when it is in view (the quality of a real CLIP is not
    under test here): the agent spins, recognises, walks to the pillar and calls STOP next to it."""
    world = PillarWorld(target=(2.5, 1.5))
    agent = FrontierClipAgent(clip=str(tiny_clip_dir), min_views=3, z_detect=1.0, seed=0)

    def scripted(rgb):
        z, b = world.view()
        seen = abs(b) < math.radians(30)
        rel = np.zeros((1, 4, 4))
        if seen:
            col = int(np.clip((world.size / 2 - world.f * math.tan(b)) // 8, 0, 3))
            rel[0, 2, col] = 1.0
        else:
            rel[0] = 1 / 16
        return np.array([1.0 if seen else 0.1 + 0.01 * len(agent.value_map.scores) % 3]), rel

    agent.value_map.score_views = scripted
    obs = world.obs()
    agent.reset(obs, {"episode_id": "toy"}, None)
    assert agent.policy.look_around == 11  # no tour: VLFM's initial spin
    a = None
    for _ in range(60):
        a = agent.act(obs)
        if a == Action.STOP:
            break
        obs = world.step(a)
    assert a == Action.STOP
    z, b = world.view()
    assert z < 1.3 and abs(b) < math.radians(25)
    assert len(agent.value_map.recognised()) >= 1 and agent.goal is not None
    assert np.linalg.norm(agent.goal - world.target) < 0.6  # the candidate is on the pillar


def test_missing_clip_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_clip"):
        FrontierClipAgent(clip=str(tmp_path / "nothing"))


def test_far_free_point_leads_away_from_visited_places():
    from agent.frontier_clip import far_free_point
    from planners.mapping import ObstacleMap

    m = ObstacleMap(cell_size=0.1, size_m=10.0)
    depth = np.zeros((32, 32), np.float32)
    for yaw in np.radians([0, 90, 180, 270]):
        m.update(depth, (0.0, 0.0, yaw))  # open floor all around: no frontier problem, all free
    p = far_free_point(m, np.array([[0.0, 0.0], [1.0, 0.0]]), np.random.default_rng(0))
    assert p is not None and np.linalg.norm(p) > 2.5 and m.is_free(p)
    assert far_free_point(m, np.zeros((1, 2)), np.random.default_rng(0), min_m=50.0) is None
