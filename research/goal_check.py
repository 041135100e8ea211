"""The goal check (``planners.goal_check``) on the world-model agent's own arrivals at imagined goals.

An eval run with ``agent=world_model agent.trace=true`` records, for every arrival at an imagined
goal, the pose and the CLIP z-score the stop decision saw (``agent.failure_modes.stop_checks`` joins
them with ground truth). Here every arrival is rendered again at its pose with the run's camera and
scored by a goal check; the ROC AUC of its p(success) against "a STOP here succeeds" is reported
beside the CLIP z-score's, and the run is replayed under ``p >= t`` for several thresholds
(``agent.failure_modes.stop_rule_outcomes``: exact up to the first accepted arrival; an episode whose
own STOP the rule refuses, with no earlier arrival accepted, is unknown and left out).

    python -m research.goal_check --model runs/goalcheck/final --runs runs/stopcal/val60 runs/stopcal/val60_z06
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from planners.goal_check import GoalCheck, load_goal_check
from planners.train_goal_check import roc_auc


def arrival_views(run_dir: str | Path, episodes: list[dict] | None = None) -> dict:
    """The world-model agent's recorded arrivals at imagined goals (``agent.trace=true`` run), each
    rendered again at its pose with the run's camera: rgb, depth, instruction, ``success`` (a STOP
    there succeeds), the CLIP ``z`` the agent saw, the decision it took."""
    from agent.failure_modes import _replay_episodes, _rows, _start_to_world, stop_checks

    run_dir = Path(run_dir)
    eps = stop_checks(run_dir) if episodes is None else episodes
    all_rows = _rows(run_dir)
    by_id = {str(e["row"]["episode_id"]): e for e in eps}
    out = {"rgb": [], "depth": [], "instruction": [], "success": [], "z": [], "decision": [], "episode_id": []}
    for r, env in _replay_episodes(run_dir, [e["row"] for e in eps], all_rows):
        for c in by_id[str(r["episode_id"])]["checks"]:
            pose = _start_to_world(c["pose"], env.start_pose)
            v = env.renderer.render(pose, outputs=("rgb", "depth"))
            out["rgb"].append(v["rgb"][0])
            out["depth"].append(v["depth"][0])
            out["instruction"].append(env.episode.instruction)
            out["success"].append(bool(c["at_target"]))
            out["z"].append(float("nan") if c.get("z") is None else float(c["z"]))
            out["decision"].append(c["decision"])
            out["episode_id"].append(str(r["episode_id"]))
    return {k: np.asarray(v) for k, v in out.items()}


def evaluate_arrivals(model: GoalCheck, run_dir: str | Path, episodes: list[dict] | None = None) -> dict:
    """ROC AUC of the goal check and of the CLIP z-score over a run's arrivals, and each arrival's
    scores; ``episodes``: the run's ``stop_checks`` when the caller has them already."""
    a = arrival_views(run_dir, episodes)
    p = model.probabilities(a["rgb"], a["depth"], list(a["instruction"]))[:, 0] if len(a["rgb"]) else np.zeros(0)
    y = a["success"].astype(bool)
    return {"run": str(run_dir), "arrivals": len(y), "at_target": int(y.sum()),
            "auc_goal_check": roc_auc(p, y), "auc_clip_z": roc_auc(np.nan_to_num(a["z"], nan=-1e9), y),
            "p_success": p.tolist(), "z": a["z"].tolist(), "label": y.tolist(),
            "episode_id": a["episode_id"].tolist(), "decision": a["decision"].tolist()}


def replay_table(model: GoalCheck, run_dir: str | Path, thresholds=(0.3, 0.4, 0.5, 0.6, 0.7)) -> tuple[str, dict]:
    """Markdown (the run as it ran, and replayed under ``p >= t``) and ``evaluate_arrivals``' result."""
    from agent.failure_modes import stop_checks, stop_rule_outcomes

    eps = stop_checks(run_dir)  # one replay of the run's episodes serves both
    res = evaluate_arrivals(model, run_dir, eps)
    k = 0
    for ep in eps:
        for c in ep["checks"]:
            if res["episode_id"][k] != str(ep["row"]["episode_id"]):
                raise RuntimeError("arrivals and stop checks are out of step")
            c["p"] = res["p_success"][k]
            k += 1
    head = (f"{run_dir}: {res['arrivals']} arrivals, {res['at_target']} at the target; ROC AUC goal check "
            f"{res['auc_goal_check']:.3f}, CLIP z {res['auc_clip_z']:.3f}")
    lines = [head, "",
             "| rule | episodes known | success | SPL | stops at imagined goals | false stops |", "|---|---|---|---|---|---|"]
    runs = [float(ep["row"].get("success", 0.0)) for ep in eps]
    spl = [float(ep["row"].get("spl", 0.0)) for ep in eps]
    lines.append(f"| as run | {len(eps)} | {np.mean(runs):.3f} | {np.mean(spl):.3f} | | |")
    for t in thresholds:
        r = stop_rule_outcomes(eps, lambda c, t=t: c["p"] >= t)
        s = [x for x in r["success"] if x is not None]
        sp = [x for x in r["spl"] if x is not None]
        lines.append(f"| p >= {t} | {len(s)} | {np.mean(s):.3f} | {np.mean(sp):.3f} | "
                     f"{r['stops_at_imagined_goals']} | {r['false_stops']} |")
    return "\n".join(lines), res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m research.goal_check", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="goal-check directory (default: the shipped one)")
    ap.add_argument("--runs", nargs="+", required=True, help="eval runs with agent=world_model agent.trace=true")
    ap.add_argument("--out", default=None, help="write each run's per-arrival scores to OUT/arrivals_<run>.json")
    args = ap.parse_args(argv)
    model = load_goal_check(args.model)
    for run in args.runs:
        table, res = replay_table(model, run)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / f"arrivals_{Path(run).name}.json").write_text(json.dumps(res) + "\n")
        print(table + "\n")


if __name__ == "__main__":
    main()
