"""Failure modes of an eval (agent.failure_modes), the env's outcome fields (envs.outcome) and the
world-model agent's candidate trace joined with ground truth (goal placement)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.failure_modes import (FAILURE_MODES, box_coverage, classify_episode, count_modes, failure_table,
                                 goal_placement)
from envs.outcome import EpisodeOutcome, footprint_distance


def _row(**kw):
    base = {"episode_id": "e", "success": 0.0, "called_stop": False, "distance_to_goal": 5.0,
            "target_first_seen_step": -1, "min_distance_to_goal": 5.0, "target_distance_m": 5.0,
            "distractor_distance_m": None}
    return {**base, **kw}


@pytest.mark.parametrize("row, label", [
    (_row(success=1.0, called_stop=True, distance_to_goal=0.05), "success"),
    (_row(called_stop=True, distance_to_goal=0.6), "stopped_short"),
    (_row(called_stop=True, distance_to_goal=4.0, target_distance_m=4.0, distractor_distance_m=0.9),
     "stopped_wrong_instance"),
    (_row(called_stop=True, distance_to_goal=4.0, target_distance_m=4.0, distractor_distance_m=3.0),
     "stopped_wrong_place"),
    (_row(called_stop=True, distance_to_goal=4.0, target_distance_m=1.0, distractor_distance_m=1.2),
     "stopped_wrong_place"),  # nearer the target than the look-alike: not a wrong instance
    (_row(min_distance_to_goal=0.8, target_first_seen_step=30), "approached_not_stopped"),
    (_row(min_distance_to_goal=3.0, target_first_seen_step=30), "saw_not_approached"),
    (_row(min_distance_to_goal=3.0, target_first_seen_step=-1), "never_saw"),
    ({"episode_id": "x", "success": 0.0, "called_stop": False, "distance_to_goal": 3.0}, "unknown"),
])
def test_each_ending_gets_its_label(row, label):
    assert classify_episode(row) == label


def test_approach_radius_is_a_setting():
    r = _row(min_distance_to_goal=1.6, target_first_seen_step=3)
    assert classify_episode(r) == "saw_not_approached"
    assert classify_episode(r, approach_m=2.0) == "approached_not_stopped"


def test_table_counts_every_row_once(tmp_path):
    rows = [_row(episode_id="a", success=1.0, called_stop=True, distance_to_goal=0.0),
            _row(episode_id="b"), _row(episode_id="c", min_distance_to_goal=0.5, target_first_seen_step=2)]
    d = tmp_path / "run"
    d.mkdir()
    (d / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:1]))  # a duplicate row
    c = count_modes(rows)
    assert c["success"] == 1 and c["never_saw"] == 1 and c["approached_not_stopped"] == 1
    assert sum(c.values()) == 3 and set(c) == {"success", *FAILURE_MODES}
    table = failure_table([d, d])
    assert "| never_saw | 1 (33%) | 1 (33%) |" in table and "| episodes | 3 | 3 |" in table
    assert "unknown" not in table


def test_footprint_distance_of_an_oriented_box():
    c, size = np.array([1.0, 2.0, 0.4]), np.array([2.0, 1.0, 0.8])
    assert footprint_distance([1.0, 2.0], c, size, 0.0) == 0.0
    assert footprint_distance([3.0, 2.0], c, size, 0.0) == pytest.approx(1.0)
    # turned 90 degrees the long side runs along y: the same point is 1.5 m from it
    assert footprint_distance([3.0, 2.0], c, size, math.pi / 2) == pytest.approx(1.5)
    assert footprint_distance([3.0, 4.0], c, size, 0.0) == pytest.approx(math.hypot(1.0, 1.5))


def test_outcome_tracks_first_view_and_closest_approach():
    from envs.scene import ObjectInstance

    t = ObjectInstance(id=7, category="chair", center=np.array([0.0, 0.0, 0.4]), size=np.array([0.5, 0.5, 0.8]))
    o = EpisodeOutcome(t, [], success_distance=0.1, visible_min_fraction=0.1)
    img = np.zeros((10, 10), np.int32)
    o.observe(0, img, 4.0, [3.0, 0.0])
    img[:2] = 7  # 20% of the frame
    o.observe(1, img, 2.5, [2.0, 0.0])
    o.observe(2, np.zeros((10, 10)), 0.9, [1.0, 0.0])
    o.observe(3, None, 1.5, [1.5, 0.0])
    f = o.fields()
    assert f["target_first_seen_step"] == 1 and f["target_seen_steps"] == 1
    assert f["target_max_view_fraction"] == pytest.approx(0.2)
    assert f["min_distance_to_goal"] == pytest.approx(0.9) and f["approach_step"] == 2
    assert f["target_distance_m"] == pytest.approx(1.25) and f["distractor_distance_m"] is None
    assert f["tour_target_frames"] is None


def test_outcome_from_pixel_counts_equals_outcome_from_images():
    """``observe_pixels`` / ``observe_tour_pixels`` (the env's path: the renderer counts the target's
    pixels) give the fields the image-based calls give, and the footprint distances follow the
    agent from one fields() call to the next."""
    from envs.scene import ObjectInstance

    t = ObjectInstance(id=7, category="chair", center=np.array([0.0, 0.0, 0.4]), size=np.array([0.5, 0.5, 0.8]))
    d = ObjectInstance(id=8, category="chair", center=np.array([4.0, 0.0, 0.4]), size=np.array([0.5, 0.5, 0.8]))
    rng = np.random.default_rng(0)
    a, b = EpisodeOutcome(t, [d], 0.1, visible_min_fraction=0.05), EpisodeOutcome(t, [d], 0.1, visible_min_fraction=0.05)
    for step in range(12):
        img = np.where(rng.random((6, 8)) < rng.uniform(0, 0.2), 7, 3).astype(np.int32)
        xy = [rng.uniform(-3, 3), 0.0] if step % 3 else [1.0, 0.0]
        a.observe(step, img, 5.0 - step / 3, xy)
        b.observe_pixels(step, int((img == 7).sum()), img.size, 5.0 - step / 3, xy)
        fa, fb = a.fields(), b.fields()
        assert fa == fb
        assert fb["target_distance_m"] == footprint_distance(xy, t.center, t.size, t.yaw)
        assert fb["distractor_distance_m"] == footprint_distance(xy, d.center, d.size, d.yaw)
    tour = np.where(rng.random((5, 6, 8)) < 0.1, 7, 0)
    a.observe_tour(tour)
    b.observe_tour_pixels((tour == 7).reshape(5, -1).sum(1), 48)
    assert a.fields() == b.fields() and a.fields()["target_seen_steps"] > 0


def test_env_records_the_outcome_without_touching_the_metrics(nav_episodes):
    from envs.gym_env import ObjectNavEnv
    from envs.metrics import METRIC_KEYS

    env = ObjectNavEnv(episodes=nav_episodes, width=32, height=32)
    obs, info = env.reset(options={"episode_index": 0})
    assert set(METRIC_KEYS) <= set(info) and info["min_distance_to_goal"] == pytest.approx(info["distance_to_goal"])
    tour = env.context_tour(n_frames=12)
    inst = env.renderer.render(_world_poses(env, tour["poses"]), pitch=tour["pitch"], outputs=("instance",))["instance"]
    frac = (inst == env.episode.target_id).reshape(len(inst), -1).mean(1)
    seen = []
    for k in range(8):
        view = env.renderer.render(env.pose, outputs=("instance",))["instance"]
        seen.append(float((view == env.episode.target_id).mean()))
        obs, _, _, _, info = env.step(2)  # turn on the spot: the distance stays the start's
    assert info["tour_target_frames"] == int((frac >= 0.005).sum())
    first = next((k for k, f in enumerate(seen) if f >= 0.005), -1)
    assert info["target_first_seen_step"] == first
    assert info["target_max_view_fraction"] >= max(seen)
    assert info["path_length"] == 0.0 and info["distance_to_goal"] == pytest.approx(info["min_distance_to_goal"])
    assert info["target_distance_m"] > 0.0
    env.close()


def _world_poses(env, poses_start):
    s = env.start_pose
    c, sn = math.cos(s[2]), math.sin(s[2])
    p = np.asarray(poses_start, np.float64)
    return np.stack([s[0] + c * p[:, 0] - sn * p[:, 1], s[1] + sn * p[:, 0] + c * p[:, 1], p[:, 2] + s[2]], 1)


def test_box_coverage():
    inst = np.zeros((8, 8), np.int32)
    inst[2:6, 2:6] = 3
    from planners.rollout_reader import BoxDetection

    box = BoxDetection(x0=2, y0=2, x1=5, y1=5, cx=3.5, cy=3.5, confidence=1.0, image_hw=(8, 8))
    assert box_coverage(inst, box, 3) == 1.0 and box_coverage(inst, box, 4) == 0.0
    half = BoxDetection(x0=2, y0=0, x1=5, y1=3, cx=3.5, cy=1.5, confidence=1.0, image_hw=(8, 8))
    assert box_coverage(inst, half, 3) == pytest.approx(0.5)


def test_goal_placement_joins_a_trace_with_ground_truth(tmp_path, nav_episode_file):
    """A run's rows with a hand-made trace: a box drawn on the target in a tour frame that shows it,
    with a goal on the target, is on target and correct; a box on empty space with a far goal is neither."""
    from agent.runner import evaluate
    from envs.gym_env import ObjectNavEnv

    evaluate("random", n_episodes=1, out_dir=tmp_path, episodes=nav_episode_file, width=32, height=32,
             max_episode_steps=3, progress=False, print_summary=False)
    env = ObjectNavEnv(episodes=nav_episode_file, width=32, height=32)
    env.reset(options={"episode_index": 0})
    tour = env.context_tour()
    tid = env.episode.target_id
    inst = env.renderer.render(_world_poses(env, tour["poses"]), pitch=tour["pitch"], outputs=("instance",))["instance"]
    k = int(np.argmax((inst == tid).reshape(len(inst), -1).sum(1)))
    assert (inst[k] == tid).sum() > 0, "the tour should show the target"
    rows_, cols = np.nonzero(inst[k] == tid)
    box = [float(cols.min()), float(rows_.min()), float(cols.max()), float(rows_.max())]
    t = env.scene.instance(tid)
    s = env.start_pose
    d = t.center[:2] - s[:2]
    goal_s = [d[0] * math.cos(s[2]) + d[1] * math.sin(s[2]), -d[0] * math.sin(s[2]) + d[1] * math.cos(s[2])]
    pose_k = [float(v) for v in tour["poses"][k]]
    env.close()
    rec = {"step": 1, "candidate": 0, "best": True, "box": box, "image_hw": [32, 32], "box_confidence": 0.8,
           "localization": "retrieval", "view_match": 0.9, "view_pose": pose_k, "pose": [0.0, 0.0, 0.0],
           "matches": [k], "match_sims": [0.9], "match_is_tour": [True], "match_poses": [pose_k],
           "goal": goal_s, "goal_source": "depth", "score": 0.5, "belief": goal_s}
    bad = {**rec, "best": False, "box": [0.0, 0.0, 1.0, 1.0] if inst[k][:2, :2].max() != tid else [30.0, 0, 31.0, 1.0],
           "goal": [goal_s[0] + 30.0, goal_s[1]]}
    path = tmp_path / "episodes.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    row["agent_trace"] = [rec, bad]
    path.write_text(json.dumps(row) + "\n")
    summary, recs = goal_placement(tmp_path)
    assert [r["on_target"] for r in recs] == [True, False]
    assert recs[0]["as_run"] == 0.0 and recs[1]["as_run"] > 20.0
    assert recs[0]["depth"] < 1.0 and recs[0]["oracle_view"] is not None  # the real depth ranges the box onto it
    assert summary["on target"]["as_run"] == {"n": 1, "within": 1, "share": 1.0, "median_m": 0.0}
    assert summary["all boxed"]["as_run"]["within"] == 1 and summary["n_candidates"] == 2


def test_world_model_agent_trace_records_candidates_and_acts_the_same():
    from test_agent_world_model import BoxOracleImagination, ToyWorld, _tour

    from agent.world_model_agent import WorldModelAgent

    def run(trace):
        world = ToyWorld(target=(2.6, -1.2))
        agent = WorldModelAgent(pipeline=BoxOracleImagination(world), reimagine_every=4, seed=0, clip_guidance=False,
                                context_mode="noncontiguous", trace=trace, goal_check=None)
        obs = world.obs()
        agent.reset(obs, {"episode_id": "toy"}, _tour(world))
        actions = []
        for _ in range(12):
            actions.append(agent.act(obs))
            if actions[-1] == 0:
                break
            obs = world.step(actions[-1])
        return agent, actions

    traced, a1 = run(True)
    plain, a2 = run(False)
    assert a1 == a2 and "trace" not in plain.episode_stats()
    recs = traced.episode_stats()["trace"]
    assert recs and all(r["best"] for r in recs)  # one candidate per imagination: it is the best
    r = recs[0]
    assert r["step"] == 1 and r["localization"] == "retrieval" and r["match_sims"][0] == max(r["match_sims"])
    assert len(r["matches"]) == len(r["match_sims"]) == len(r["match_poses"]) == 3
    assert np.allclose(r["goal"], traced.trace_records[0]["goal"]) and r["belief"] is not None
    json.dumps(recs)  # a row field: plain JSON
    (stop,) = traced.episode_stats()["stop_checks"]  # the one arrival: no guide, so the box alone decides
    assert a1[-1] == 0 and stop["decision"] == "confirmed" and stop["z"] is None and stop["step"] == len(a1)
    assert stop["travelled_m"] > 1.0 and np.allclose(stop["goal"], traced.goal.xy)
    json.dumps(stop)
    assert "stop_checks" not in plain.episode_stats()


def test_failures_command(tmp_path, capsys):
    from agent import cli

    d = tmp_path / "run"
    d.mkdir()
    rows = [_row(episode_id="a", called_stop=True, distance_to_goal=0.5), _row(episode_id="b")]
    (d / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["failures", f"failures.dirs=[{d}]"]) == 0
    out = capsys.readouterr().out
    assert "| stopped_short | 1 (50%) |" in out and "| never_saw | 1 (50%) |" in out
    assert cli.main(["failures"]) == 2  # no dirs: a one-line error
    assert cli.main(["failures", f"failures.dirs=[{tmp_path / 'none'}]"]) == 2
    assert "no episodes.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("trust", [None, 2])
def test_trust_support_brings_back_a_vetoed_goal_imagined_again(trust):
    from types import SimpleNamespace

    from test_agent_world_model import BoxOracleImagination, ToyWorld

    from agent.world_model_agent import WorldModelAgent
    from envs.actions import Action
    from planners.rollout_reader import GoalEstimate

    agent = WorldModelAgent(pipeline=BoxOracleImagination(ToyWorld()), seed=0, clip_guidance=False,
                            context_mode="noncontiguous", trust_support=trust, goal_check=None)
    agent.value_map = SimpleNamespace(last_view={"z": 0.0})  # a CLIP that never recognises the target

    def goal(x):
        return GoalEstimate(xy=np.array([x, 0.0]), cov=np.eye(2) * 0.01, range_m=x, bearing=0.0, source="depth",
                            confidence=0.8)

    agent._update_goal(goal(0.5), 0.5)
    assert agent.goal is not None and agent.goal_support == 1
    assert agent._act_on_goal(agent.goal) is None  # at the goal, not confirmed: dropped and remembered
    assert agent.goal is None and agent.stats["unconfirmed_goals"] == 1 and agent.rejected_support == [1]
    agent._update_goal(goal(0.6), 0.5)  # imagination puts the goal there again
    if trust is None:  # the default: a vetoed place stays vetoed
        assert agent.goal is None
        return
    assert agent.goal is not None and agent.goal_support == 2
    assert agent._act_on_goal(agent.goal) == Action.STOP and agent.stats["trusted_stops"] == 1


def test_trust_support_must_be_positive():
    from test_agent_world_model import BoxOracleImagination, ToyWorld

    from agent.world_model_agent import WorldModelAgent

    with pytest.raises(ValueError, match="trust_support"):
        WorldModelAgent(pipeline=BoxOracleImagination(ToyWorld()), clip_guidance=False,
                        context_mode="noncontiguous", trust_support=0)


def test_table_of_the_episodes_all_runs_hold(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, ids in ((a, "xyz"), (b, "xy")):
        d.mkdir()
        (d / "episodes.jsonl").write_text("".join(json.dumps(_row(episode_id=i)) + "\n" for i in ids))
    assert "| never_saw | 3 (100%) | 2 (100%) |" in failure_table([a, b])
    assert "| never_saw | 2 (100%) | 2 (100%) |" in failure_table([a, b], common=True)


def test_table_names_runs_of_one_agent_by_their_parent(tmp_path):
    dirs = []
    for parent in ("base", "fix"):
        d = tmp_path / parent / "world_model"
        d.mkdir(parents=True)
        (d / "episodes.jsonl").write_text(json.dumps(_row()) + "\n")
        dirs.append(d)
    assert failure_table(dirs).splitlines()[0] == "| how it ended | base/world_model | fix/world_model |"


def _check(z, at, decision="vetoed", travelled=4.0):
    return {"z": z, "decision": decision, "at_target": at, "travelled_m": travelled}


def test_stop_rule_outcomes_replay_the_run_up_to_the_first_accepted_arrival():
    from agent.failure_modes import stop_rule_outcomes

    eps = [  # vetoed at the target, then ran out of steps
        {"row": {"success": 0.0, "spl": 0.0}, "d0": 2.0, "checks": [_check(0.5, True, travelled=4.0), _check(-1.0, False)]},
        # vetoed away from the target, then confirmed at it
        {"row": {"success": 1.0, "spl": 0.5}, "d0": 3.0,
         "checks": [_check(0.8, False), _check(2.5, True, "confirmed", travelled=6.0)]},
        # no arrival at all: keeps its own outcome
        {"row": {"success": 1.0, "spl": 0.9}, "d0": 3.0, "checks": []},
    ]
    as_run = stop_rule_outcomes(eps, lambda c: c["decision"] == "confirmed")
    assert as_run["success"] == [0.0, 1.0, 1.0] and as_run["spl"] == [0.0, 0.5, 0.9]
    loose = stop_rule_outcomes(eps, lambda c: c["z"] >= 0.5)
    assert loose["success"] == [1.0, 0.0, 1.0] and loose["spl"] == [pytest.approx(0.5), 0.0, 0.9]
    assert loose["stops_at_imagined_goals"] == 2 and loose["false_stops"] == 1
    strict = stop_rule_outcomes(eps, lambda c: c["z"] >= 3.0)  # refuses the run's own STOP: unknown
    assert strict["success"] == [0.0, None, 1.0] and strict["unknown"] == 1


def test_stop_checks_join_arrivals_with_the_view_points(tmp_path, nav_episode_file):
    from agent.failure_modes import stop_checks, stop_rule_table
    from agent.runner import evaluate
    from envs.gym_env import ObjectNavEnv

    evaluate("random", n_episodes=1, out_dir=tmp_path, episodes=nav_episode_file, width=32, height=32,
             max_episode_steps=3, progress=False, print_summary=False)
    env = ObjectNavEnv(episodes=nav_episode_file, width=32, height=32)
    env.reset(options={"episode_index": 0})
    s, vp = env.start_pose.copy(), env.episode.view_points[0]
    d = vp[:2] - s[:2]  # the first view point in the episode-start frame
    at_vp = [d[0] * math.cos(s[2]) + d[1] * math.sin(s[2]), -d[0] * math.sin(s[2]) + d[1] * math.cos(s[2]), 0.0]
    start_d = float(np.min(np.linalg.norm(env.episode.view_points[:, :2] - s[:2], axis=1)))
    env.close()
    path = tmp_path / "episodes.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    row["agent_stop_checks"] = [{"step": 2, "pose": [0.0, 0.0, 0.0], "z": 0.3, "decision": "vetoed", "travelled_m": 0.0},
                                {"step": 9, "pose": at_vp, "z": 1.2, "decision": "vetoed", "travelled_m": 3.0}]
    path.write_text(json.dumps(row) + "\n")
    (ep,) = stop_checks(tmp_path)
    assert ep["checks"][0]["distance_m"] == pytest.approx(start_d) and not ep["checks"][0]["at_target"]
    assert ep["checks"][1]["distance_m"] == pytest.approx(0.0, abs=1e-9) and ep["checks"][1]["at_target"]
    table = stop_rule_table([ep], thresholds=(2.0, 1.0), n_boot=200)
    assert "| CLIP z >= 2 | 1 | 0.000 |" in table and "| CLIP z >= 1 | 1 | 1.000 |" in table
    path.write_text(json.dumps({k: v for k, v in row.items() if k != "agent_stop_checks"}) + "\n")
    with pytest.raises(ValueError, match="agent.trace=true"):
        stop_checks(tmp_path)


def test_close_in_replay_walks_from_the_accepted_arrival(tmp_path, nav_episode_file):
    # research.close_in: an episode that STOPped at an accepted arrival 0.5 m behind the edge of the success
    # region, facing into it; two steps in make the STOP a success, and SPL counts the 0.5 m walked.
    from agent.runner import evaluate
    from envs.gym_env import ObjectNavEnv
    from research.close_in import accepted_stops, replay, table

    evaluate("random", n_episodes=1, out_dir=tmp_path, episodes=nav_episode_file, width=32, height=32,
             max_episode_steps=3, progress=False, print_summary=False)
    env = ObjectNavEnv(episodes=nav_episode_file, width=32, height=32)
    env.reset(options={"episode_index": 0})
    ep, s = env.episode, env.start_pose.copy()
    vp = np.asarray(ep.view_points, np.float64)
    tc = np.asarray(ep.target_center, np.float64)[:2]
    field = env.grid.geodesic_field(vp[:, :2])
    found = None
    for v in vp[np.argsort(-np.linalg.norm(vp[:, :2] - tc, axis=1))]:  # the region's far edge first
        yaw = math.atan2(tc[1] - v[1], tc[0] - v[0])
        back = v[:2] - 0.5 * np.array([math.cos(yaw), math.sin(yaw)])
        xy, walked = back.copy(), []
        for _ in range(2):
            xy, _ = env.grid.try_move(xy, yaw, 0.25)
            walked.append(np.asarray(xy, np.float64))
        if (env.grid.field_distance(field, back) > 0.2 and np.allclose(walked[-1], v[:2], atol=1e-6)
                and env.grid.field_distance(field, walked[-1]) <= env.success_distance):
            found = (back, yaw)
            break
    env.close()
    assert found is not None, "the test scene has no view point with free floor 0.5 m behind it"
    back, yaw = found
    d = back - s[:2]  # the arrival in the episode-start frame
    pose = [d[0] * math.cos(s[2]) + d[1] * math.sin(s[2]), -d[0] * math.sin(s[2]) + d[1] * math.cos(s[2]),
            yaw - s[2]]
    path = tmp_path / "episodes.jsonl"
    row = json.loads(path.read_text().splitlines()[0])
    row.update(success=0.0, spl=0.0, called_stop=True, path_length=2.0,
               agent_stop_checks=[{"step": 3, "pose": pose, "z": 0.0, "decision": "confirmed", "travelled_m": 2.0}])
    path.write_text(json.dumps(row) + "\n")
    (rec,) = accepted_stops(tmp_path, max_steps=2)
    assert rec["walk"][0][0] > 0.2 and rec["walk"][2][0] <= 0.1 and rec["walk"][2][1] == pytest.approx(0.5)
    d0 = rec["d0"]
    still = replay([rec], 0, 1.0)
    assert still["success"].tolist() == [0.0] and still["stepped"] == 0
    rec["depth"] = np.full((32, 32), 1.3, np.float32)  # what the view's centre reads: 1.3 m -> two steps
    two = replay([rec], 2, 1.0)
    assert two["success"].tolist() == [1.0] and two["stepped"] == 1
    assert two["spl"][0] == pytest.approx(d0 / max(d0, 2.5))
    assert replay([rec], 1, 1.0)["success"].tolist() == [0.0]  # one step is not enough here
    assert "| 2 steps, depth > 1 m | 1.000 |" in table({"run": [rec]}, steps=(2,), depths=(1.0,), n_boot=100)
    run = json.loads((tmp_path / "run.json").read_text())
    run.setdefault("agent_settings", {})["close_in_steps"] = 2
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match="close_in_steps=0"):
        accepted_stops(tmp_path)
