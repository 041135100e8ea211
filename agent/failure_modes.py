"""How an evaluation's episodes failed, and how often an imagined box became a correct goal.

``classify_episode(row)`` gives each ``episodes.jsonl`` row one label from the ground-truth
fields the env records (``envs.outcome``: when the target was first in view, the closest
approach, where the agent ended relative to the target and its look-alikes):

============================  =====================================================================
``success``                   STOP within ``success_distance`` of a view point
``stopped_short``             STOP within ``success_distance + approach_m`` (geodesic) of a view point
``stopped_wrong_instance``    STOP elsewhere, nearer another instance of the target's category than
                              the target, within ``wrong_instance_m`` of it
``stopped_wrong_place``       any other STOP (including giving up)
``approached_not_stopped``    out of steps after coming within ``success_distance + approach_m``
``saw_not_approached``        out of steps; the target was in view at least once, never approached
``never_saw``                 out of steps; the target was never in the agent's own view
``unknown``                   the row lacks the outcome fields (an env that does not record them)
============================  =====================================================================

``failure_table(dirs)`` counts them for several eval out_dirs side by side (markdown; also
``spatialnav failures failures.dirs=[a,b]``). ``goal_placement(out_dir)`` joins the world-model
agent's candidate trace (``agent.trace=true``) with ground truth, re-rendering the real view each
imagined final view was placed on, to measure how often a rollout whose box lies on the target
becomes a goal within ``within_m`` of it, and what other placements of the same boxes would give.
``stop_checks(out_dir)`` does the same for the trace's arrivals at imagined goals (where the agent
really stood when it was allowed or refused to STOP), and ``stop_rule_table`` replays the run under
other stop rules.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from envs.outcome import APPROACH_M, footprint_distance

FAILURE_MODES = ("stopped_short", "stopped_wrong_instance", "stopped_wrong_place", "approached_not_stopped",
                 "saw_not_approached", "never_saw", "unknown")
WRONG_INSTANCE_M = 1.5


def classify_episode(row: dict, approach_m: float = APPROACH_M, success_distance: float = 0.1,
                     wrong_instance_m: float = WRONG_INSTANCE_M) -> str:
    """One label per episode row (module docstring)."""
    if float(row.get("success", 0.0)) > 0.5:
        return "success"
    near = float(success_distance) + float(approach_m)
    if row.get("called_stop"):
        if float(row["distance_to_goal"]) <= near:
            return "stopped_short"
        dt, dd = row.get("target_distance_m"), row.get("distractor_distance_m")
        if dd is not None and dt is not None and dd < dt and dd <= wrong_instance_m:
            return "stopped_wrong_instance"
        if dt is None and "min_distance_to_goal" not in row:
            return "unknown"
        return "stopped_wrong_place"
    if "target_first_seen_step" not in row or "min_distance_to_goal" not in row:
        return "unknown"
    md = row.get("min_distance_to_goal")
    if md is not None and float(md) <= near:
        return "approached_not_stopped"
    if int(row["target_first_seen_step"]) >= 0:
        return "saw_not_approached"
    return "never_saw"


def count_modes(rows: Iterable[dict], **kwargs) -> dict[str, int]:
    """{label: episodes} over ``rows`` (every label of ``FAILURE_MODES`` plus ``success``, zeros kept)."""
    out = {"success": 0, **{m: 0 for m in FAILURE_MODES}}
    for r in rows:
        out[classify_episode(r, **kwargs)] += 1
    return out


def _rows(out_dir) -> list[dict]:
    from agent.episode_log import EPISODES_FILE, read_episode_log

    path = Path(out_dir) / EPISODES_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {EPISODES_FILE} in {out_dir}: run `spatialnav eval ... out_dir={out_dir}` first")
    unique = {str(r["episode_id"]): r for r in read_episode_log(path)}
    return sorted(unique.values(), key=lambda r: (r.get("episode_index", 0), str(r["episode_id"])))


def failure_table(out_dirs: Sequence[str | Path], common: bool = False, **kwargs) -> str:
    """Markdown: one column per out_dir, one row per label (episodes and share of all), then how many
    episodes showed the target in the agent's own view (and the median first step) and in the context
    tour. ``common``: only the episodes every out_dir holds (paired; e.g. runs still in progress)."""
    cols = [(str(d), _rows(d)) for d in out_dirs]
    if common:
        ids = set.intersection(*({str(r["episode_id"]) for r in rows} for _, rows in cols))
        cols = [(d, [r for r in rows if str(r["episode_id"]) in ids]) for d, rows in cols]
    counts = [count_modes(rows, **kwargs) for _, rows in cols]
    names = [Path(d).name or d for d, _ in cols]
    if len(set(names)) < len(names):  # e.g. a/world_model and b/world_model: name them by their parent too
        names = ["/".join(Path(d).parts[-2:]) for d, _ in cols]
    head = "| how it ended | " + " | ".join(names) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for m in ("success",) + FAILURE_MODES:
        if m == "unknown" and not any(c[m] for c in counts):
            continue
        cells = [f"{c[m]} ({c[m] / max(1, len(rows)):.0%})" for c, (_, rows) in zip(counts, cols)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("| episodes | " + " | ".join(str(len(rows)) for _, rows in cols) + " |")

    def seen(rows):
        s = [int(r["target_first_seen_step"]) for r in rows if int(r.get("target_first_seen_step", -1)) >= 0]
        return f"{len(s)}/{len(rows)}, first at step {np.median(s):.0f} (median)" if s else f"0/{len(rows)}"

    def tour(rows):
        t = [r.get("tour_target_frames") for r in rows if r.get("tour_target_frames") is not None]
        return f"{sum(1 for v in t if v > 0)}/{len(t)}" if t else "-"

    lines.append("| target in the agent's own view | " + " | ".join(seen(rows) for _, rows in cols) + " |")
    lines.append("| target in a context-tour frame | " + " | ".join(tour(rows) for _, rows in cols) + " |")
    return "\n".join(lines)


def episode_labels(out_dirs: Sequence[str | Path], **kwargs) -> dict[str, list[str]]:
    """{episode_id: [label in each out_dir]} over the episodes all of them ran (for paired views)."""
    per = [{str(r["episode_id"]): classify_episode(r, **kwargs) for r in _rows(d)} for d in out_dirs]
    ids = sorted(set.intersection(*(set(p) for p in per)))
    return {i: [p[i] for p in per] for i in ids}


# -- goal placement ----------------------------------------------------------------------

def _start_to_world(pose, start) -> np.ndarray:
    """(x, y, yaw) in the episode-start frame -> world (x, y, yaw)."""
    p = np.asarray(pose, np.float64).reshape(3)
    c, s = math.cos(start[2]), math.sin(start[2])
    return np.array([start[0] + c * p[0] - s * p[1], start[1] + s * p[0] + c * p[1], p[2] + start[2]])


def _box(rec, hw=None):
    from planners.rollout_reader import BoxDetection

    x0, y0, x1, y1 = rec["box"]
    b = BoxDetection(x0=x0, y0=y0, x1=x1, y1=y1, cx=(x0 + x1) / 2, cy=(y0 + y1) / 2,
                     confidence=float(rec["box_confidence"]), image_hw=tuple(rec["image_hw"]))
    return b if hw is None else b.scaled_to(hw)


def box_coverage(instance: np.ndarray, box, target_id: int) -> float:
    """Share of the box's pixels (``box`` already in ``instance``'s size) that show the target."""
    h, w = instance.shape
    c0, c1 = max(int(math.floor(box.x0)), 0), min(int(math.ceil(box.x1)) + 1, w)
    r0, r1 = max(int(math.floor(box.y0)), 0), min(int(math.ceil(box.y1)) + 1, h)
    if r1 <= r0 or c1 <= c0:
        return 0.0
    return float((instance[r0:r1, c0:c1] == int(target_id)).mean())


def _consensus(goals: list[np.ndarray]) -> np.ndarray:
    """The goal with the smallest summed distance to the others (a medoid)."""
    g = np.stack(goals)
    return g[int(np.argmin(np.linalg.norm(g[:, None] - g[None], axis=-1).sum(1)))]


def _replay_episodes(out_dir: Path, rows: list[dict], all_rows: list[dict]):
    """Rebuild an eval run's env (run.json) and yield ``(row, env)`` with the env reset to each row's
    episode, checked by id; the env is closed afterwards. ``all_rows`` sizes the episode set."""
    from envs.gym_env import ObjectNavEnv

    run = json.loads((out_dir / "run.json").read_text())
    es = run["env"]
    n_eps = max([int(r["episode_index"]) for r in all_rows] + [0]) + 1
    env = ObjectNavEnv(split=run["split"], n_episodes=max(n_eps, int(run.get("n_episodes", 0) or 0)),
                       width=int(es["width"]), height=int(es["height"]), hfov_deg=float(es["hfov_deg"]),
                       max_depth=float(es["max_depth"]), episode_seed=int(es.get("episode_seed", 0)))
    try:
        for r in rows:
            env.reset(options={"episode_index": int(r["episode_index"])})
            if str(env.episode.episode_id) != str(r["episode_id"]):
                raise ValueError(f"episode index {r['episode_index']} is {env.episode.episode_id}, not {r['episode_id']}: "
                                 "the env does not rebuild this run's episodes")
            yield r, env
    finally:
        env.close()


def goal_placement(out_dir: str | Path, within_m: float = 1.0, on_target_cover: float = 0.25,
                   min_match: float = 0.3, hfov_deg: float | None = None, best_only: bool = False) -> dict:
    """Ground truth for the candidate trace of a world-model eval run with ``agent.trace=true``.

    For every boxed candidate: the real view its imagined final view was placed on (the matched
    frame, or the current view when retrieval found none) is re-rendered with instance ids; the box
    lies *on target* when the target covers at least ``on_target_cover`` of it there. Its goal is
    *correct* when it lies within ``within_m`` of the target's footprint. Besides the agent's own goal
    (``as_run``) the same boxes are placed three other ways: ``depth`` (the matched frame's real depth
    whenever retrieval matched, not only above ``depth_match``), ``top3_depth`` (the medoid of the
    depth-ranged goals from the top-3 retrieval matches with similarity >= ``min_match``) and
    ``oracle_view`` (the depth-ranged goal from whichever of the top-3 matches shows the target in the
    box: an upper bound on re-ranking the matches).
    """
    from planners.rollout_reader import box_to_goal

    out_dir = Path(out_dir)
    es = json.loads((out_dir / "run.json").read_text())["env"]
    all_rows = _rows(out_dir)
    hfov = float(es["hfov_deg"]) if hfov_deg is None else float(hfov_deg)
    recs = []
    for r, env in _replay_episodes(out_dir, [r for r in all_rows if r.get("agent_trace")], all_rows):
        tour = env.context_tour()
        start = env.start_pose.copy()
        target = env.scene.instance(int(env.episode.target_id))
        others = [o for o in env.scene.instances if o.id != target.id and o.category == target.category]

        def view(pose_s, is_tour, idx):
            pitch = float(tour["pitch"][idx]) if is_tour else 0.0
            out = env.renderer.render(_start_to_world(pose_s, start), pitch=[pitch], outputs=("instance", "depth"))
            return (np.asarray(out["instance"]).reshape(env.height, env.width),
                    np.asarray(out["depth"], np.float32).reshape(env.height, env.width, 1))

        def err(goal_s):
            g = _start_to_world([goal_s[0], goal_s[1], 0.0], start)[:2]
            dt = footprint_distance(g, target.center, target.size, target.yaw)
            dd = min((footprint_distance(g, o.center, o.size, o.yaw) for o in others), default=math.inf)
            return dt, dd

        for rec in r["agent_trace"]:
            if best_only and not rec.get("best"):
                continue
            retrieved = rec["localization"] == "retrieval"
            if retrieved:
                inst, depth = view(rec["match_poses"][0], rec["match_is_tour"][0], rec["matches"][0])
            else:
                inst, depth = view(rec["view_pose"], False, 0)
            box_hw = _box(rec, inst.shape)
            cover = box_coverage(inst, box_hw, target.id)
            dt, dd = err(rec["goal"])
            item = {"episode_id": r["episode_id"], "step": rec["step"], "best": bool(rec.get("best")),
                    "localization": rec["localization"], "view_match": rec["view_match"],
                    "goal_source": rec["goal_source"], "cover": cover, "on_target": cover >= on_target_cover,
                    "as_run": dt, "as_run_distractor": dd}
            box = _box(rec)
            if retrieved:
                item["depth"] = err(box_to_goal(box, depth, rec["match_poses"][0], hfov_deg=hfov).xy)[0]
                goals, oracle = [], None
                for k, (sim, pose_k) in enumerate(zip(rec["match_sims"], rec["match_poses"])):
                    if sim < min_match:
                        continue
                    inst_k, depth_k = (inst, depth) if k == 0 else view(pose_k, rec["match_is_tour"][k],
                                                                       rec["matches"][k])
                    gk = box_to_goal(box, depth_k, pose_k, hfov_deg=hfov).xy
                    goals.append(gk)
                    if oracle is None and box_coverage(inst_k, _box(rec, inst_k.shape), target.id) >= on_target_cover:
                        oracle = gk
                item["top3_depth"] = err(_consensus(goals))[0]
                item["oracle_view"] = None if oracle is None else err(oracle)[0]
            recs.append(item)
    return summarize_placement(recs, within_m), recs


def summarize_placement(recs: list[dict], within_m: float = 1.0) -> dict:
    """Shares of candidates whose goal lies within ``within_m`` of the target, by group and placement."""
    def share(items, key):
        vals = [it[key] for it in items if it.get(key) is not None]
        return {"n": len(vals), "within": int(sum(v <= within_m for v in vals)),
                "share": (sum(v <= within_m for v in vals) / len(vals)) if vals else math.nan,
                "median_m": float(np.median(vals)) if vals else math.nan}

    groups = {"all boxed": recs, "on target": [r for r in recs if r["on_target"]],
              "on target, retrieved": [r for r in recs if r["on_target"] and r["localization"] == "retrieval"],
              "retrieved": [r for r in recs if r["localization"] == "retrieval"]}
    out = {"n_candidates": len(recs), "n_on_target": len(groups["on target"]),
           "n_retrieved": len(groups["retrieved"]),
           "at_distractor": int(sum(r["as_run_distractor"] <= within_m < r["as_run"] for r in recs))}
    for name, items in groups.items():
        out[name] = {k: share(items, k) for k in ("as_run", "depth", "top3_depth", "oracle_view")}
    return out


def placement_markdown(summary: dict) -> str:
    lines = ["| candidates | n | as run | depth whenever matched | top-3 matches, medoid | matched view showing the target |",
             "|---|---|---|---|---|---|"]
    for name in ("all boxed", "retrieved", "on target", "on target, retrieved"):
        g = summary[name]

        def cell(k):
            s = g[k]
            return "-" if not s["n"] else f"{s['within']}/{s['n']} ({s['share']:.0%}), median {s['median_m']:.2f} m"

        lines.append(f"| {name} | {g['as_run']['n']} | {cell('as_run')} | {cell('depth')} | {cell('top3_depth')} | "
                     f"{cell('oracle_view')} |")
    return "\n".join(lines)


# -- stop checks ---------------------------------------------------------------------------------

def stop_checks(out_dir: str | Path) -> list[dict]:
    """Ground truth for the world-model agent's arrivals at imagined goals (``agent.trace=true``).

    Each row's ``agent_stop_checks`` (one record per time ``StopPolicy`` said "at the goal": the guide's
    CLIP z-score, the imagination's support, the decision taken) gets where the agent really stood:
    ``distance_m``, the distance from its position to the nearest view point of the target (a STOP
    there succeeds when it is at most the env's ``success_distance``), and the episode's start
    distance ``d0`` for SPL. Returns one dict per episode: ``{"row", "d0", "checks"}``.
    """
    out_dir = Path(out_dir)
    all_rows = _rows(out_dir)
    rows = [r for r in all_rows if "agent_stop_checks" in r]
    if not rows:
        raise ValueError(f"{out_dir}: no episode row holds agent_stop_checks; run the eval with "
                         "agent=world_model agent.trace=true")
    out = []
    for r, env in _replay_episodes(out_dir, rows, all_rows):
        vp = np.asarray(env.episode.view_points, np.float64).reshape(-1, 3)[:, :2]
        start = env.start_pose.copy()
        checks = []
        for c in r["agent_stop_checks"]:
            xy = _start_to_world(c["pose"], start)[:2]
            d = float(np.min(np.linalg.norm(vp - xy, axis=1))) if len(vp) else math.inf
            checks.append({**c, "distance_m": d, "at_target": d <= env.success_distance})
        out.append({"row": r, "d0": float(env.episode.geodesic_distance), "checks": checks,
                    "success_distance": float(env.success_distance)})
    return out


def stop_rule_outcomes(episodes: list[dict], accept) -> dict:
    """What the run's episodes would have scored had STOP at an imagined goal followed ``accept``.

    ``accept(check) -> bool`` decides each recorded arrival. Up to the first arrival it accepts, the
    run is unchanged (every earlier arrival was vetoed in the run too), so the episode ends there: a
    success when the agent stood within ``success_distance`` of a view point, with SPL from the
    odometry path length so far. An episode where it accepts none keeps its own outcome, unless the
    run's own STOP at an imagined goal is one the rule refuses: then what follows is unknown and
    the episode is left out (``unknown``). Returns per-episode ``success``/``spl`` lists (None when
    unknown) and counts.
    """
    succ, spl, stops, false_stops, unknown = [], [], 0, 0, 0
    for ep in episodes:
        r, checks = ep["row"], ep["checks"]
        hit = next((c for c in checks if accept(c)), None)
        ran_to_stop = bool(checks) and checks[-1]["decision"] in ("confirmed", "trusted")
        if hit is None and ran_to_stop:
            succ.append(None)
            spl.append(None)
            unknown += 1
            continue
        if hit is None:
            succ.append(float(r.get("success", 0.0)))
            spl.append(float(r.get("spl", 0.0)))
            continue
        stops += 1
        ok = bool(hit["at_target"])
        false_stops += int(not ok)
        succ.append(float(ok))
        spl.append(float(ok) * ep["d0"] / max(ep["d0"], float(hit["travelled_m"])) if ok else 0.0)
    return {"success": succ, "spl": spl, "stops_at_imagined_goals": stops, "false_stops": false_stops,
            "unknown": unknown}


def stop_rule_table(episodes: list[dict], thresholds: Sequence[float] = (2.0, 1.5, 1.0, 0.5, 0.0, -math.inf),
                    n_boot: int = 10000, seed: int = 0) -> str:
    """Markdown: success and SPL of the run under ``z >= t`` for each ``t``, paired against the run as it ran."""
    from world_model.metrics import bootstrap_ci

    base_s = [float(ep["row"].get("success", 0.0)) for ep in episodes]
    base_p = [float(ep["row"].get("spl", 0.0)) for ep in episodes]
    n_checks = sum(len(ep["checks"]) for ep in episodes)
    n_at = sum(c["at_target"] for ep in episodes for c in ep["checks"])
    lines = [f"{len(episodes)} episodes, {n_checks} arrivals at imagined goals, {n_at} of them within the success "
             "distance of a view point", "",
             "| STOP at an imagined goal when | episodes | success | SPL | stops there (false) | success vs as run | SPL vs as run |",
             "|---|---|---|---|---|---|---|"]
    for t in thresholds:
        res = stop_rule_outcomes(episodes, lambda c, t=t: c["decision"] == "trusted" or (c["z"] is not None and c["z"] >= t)
                                 or (c["z"] is None and c["decision"] == "confirmed"))
        keep = [k for k, v in enumerate(res["success"]) if v is not None]
        s = np.array([res["success"][k] for k in keep])
        p = np.array([res["spl"][k] for k in keep])
        bs, bp = np.array([base_s[k] for k in keep]), np.array([base_p[k] for k in keep])
        def fmt(a, b):
            if len(a) < 2:
                return "-"
            lo, hi = bootstrap_ci(a - b, n_boot=n_boot, seed=seed)
            return f"{(a - b).mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"

        rule = "always" if not math.isfinite(t) else f"CLIP z >= {t:g}"
        lines.append(f"| {rule} | {len(keep)} | {s.mean() if len(s) else math.nan:.3f} | "
                     f"{p.mean() if len(p) else math.nan:.3f} | {res['stops_at_imagined_goals']} ({res['false_stops']}) | "
                     f"{fmt(s, bs)} | {fmt(p, bp)} |")
    return "\n".join(lines)


def cmd_failures(cfg, args: list[str] | None = None) -> int:
    """``spatialnav failures failures.dirs=[runs/x/world_model,runs/x/world_model_noise]``: the failure-mode
    table of eval out_dirs; ``failures.placement=true`` adds the goal-placement table of each dir that
    holds a candidate trace (an eval with ``agent.trace=true``), ``failures.stops=true`` the stop-rule
    table of each such dir (``stop_rule_table``)."""
    from agent.cli import CLIError

    dirs = [str(d) for d in cfg.failures.dirs]
    if not dirs:
        raise CLIError("failures needs eval directories: spatialnav failures failures.dirs=[runs/a/world_model]")
    kw = {"approach_m": float(cfg.failures.approach_m)}
    print(failure_table(dirs, common=bool(cfg.failures.common), **kw))
    if cfg.failures.placement:
        for d in dirs:
            if not any(r.get("agent_trace") for r in _rows(d)):
                continue
            summary, _ = goal_placement(d, within_m=float(cfg.failures.within_m))
            print(f"\ngoal placement, {d}: {summary['n_candidates']} boxed candidates, {summary['n_on_target']} on "
                  f"target, {summary['at_distractor']} goals at a look-alike")
            print(placement_markdown(summary))
    if cfg.failures.get("stops", False):
        for d in dirs:
            if not any("agent_stop_checks" in r for r in _rows(d)):
                continue
            print(f"\nstop rule at imagined goals, {d} (what the run would have scored, replayed from its trace):")
            print(stop_rule_table(stop_checks(d)))
    return 0


__all__ = ["FAILURE_MODES", "classify_episode", "count_modes", "failure_table", "episode_labels", "goal_placement",
           "summarize_placement", "placement_markdown", "stop_checks", "stop_rule_outcomes", "stop_rule_table", "box_coverage", "cmd_failures"]
