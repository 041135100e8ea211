"""Closing in before a STOP, replayed from traced world-model runs (``agent.close_in_steps``).

At an arrival at an imagined goal the stop check accepted, the world-model agent STOPs where it stands
(``close_in_steps=0``), up to the stop radius (0.8 m) from its estimate of the target; the success region
ends 1 m from the target. With ``close_in_steps=k`` it first takes up to k forward steps while the centre
of its view is farther than ``close_in_depth_m`` (``agent.world_model_agent.close_in_count``, decided once
from the accepted view).

The replay is exact: a run made with ``close_in_steps=0`` and ``agent.trace=true`` records the pose of
each accepted arrival (``agent_stop_checks``, decision ``confirmed``), and the episode ended with a STOP
there. Up to that STOP the rule changes nothing; after it, the forward steps are the env's own motion
(``NavGrid.try_move``, collisions included) from the recorded pose, the STOP succeeds when the agent then
stands within the success distance of a view point, and SPL adds the distance moved to the run's path.
Episodes that ended any other way keep their outcome. The view the rule reads is rendered again at the
recorded pose with the run's camera.

    python -m research.close_in --runs runs/gc/val60 runs/scan/val60 --steps 1 2 3 --depth 1.0 1.5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from envs.actions import FORWARD_STEP_M


def accepted_stops(run_dir: str | Path, max_steps: int = 3) -> list[dict]:
    """Per episode of a traced run: the row, d0, and for an episode that ended by STOP at an accepted
    arrival, the rendered depth there and the distance to the nearest view point (and the distance moved)
    after 0..``max_steps`` forward steps."""
    from agent.failure_modes import _replay_episodes, _rows, _start_to_world

    run_dir = Path(run_dir)
    settings = json.loads((run_dir / "run.json").read_text()).get("agent_settings", {})
    if int(settings.get("close_in_steps", 0) or 0) > 0:
        raise ValueError(f"{run_dir} ran with close_in_steps={settings['close_in_steps']}: the replay needs a run "
                         "that STOPped where its stop check accepted (close_in_steps=0)")
    all_rows = _rows(run_dir)
    rows = [r for r in all_rows if "agent_stop_checks" in r]
    if not rows:
        raise ValueError(f"{run_dir}: no episode row holds agent_stop_checks; run the eval with "
                         "agent=world_model agent.trace=true")
    out = []
    for r, env in _replay_episodes(run_dir, rows, all_rows):
        rec = {"row": r, "d0": float(env.episode.geodesic_distance), "success_distance": float(env.success_distance),
               "walk": None, "depth": None}
        checks = r["agent_stop_checks"]
        if checks and checks[-1]["decision"] == "confirmed" and r.get("called_stop"):
            pose = _start_to_world(checks[-1]["pose"], env.start_pose)
            rec["depth"] = np.asarray(env.renderer.render(pose, outputs=("depth",))["depth"][0], np.float32)
            field = env.grid.geodesic_field(np.asarray(env.episode.view_points, np.float64).reshape(-1, 3)[:, :2])
            xy, moved, walk = pose[:2].copy(), 0.0, []
            for k in range(max_steps + 1):  # the env's geodesic distance to the nearest view point
                walk.append((float(env.grid.field_distance(field, xy)), moved))
                new, _ = env.grid.try_move(xy, pose[2], FORWARD_STEP_M)
                moved += float(np.hypot(*(np.asarray(new) - xy)))
                xy = np.asarray(new, np.float64)
            rec["walk"] = walk
        out.append(rec)
    return out


def replay(stops: list[dict], steps: int, depth_m: float) -> dict:
    """Success and SPL per episode under ``close_in_steps=steps, close_in_depth_m=depth_m``, and as run."""
    from agent.world_model_agent import close_in_count

    succ, spl, base_s, base_p, stepped = [], [], [], [], 0
    for rec in stops:
        r = rec["row"]
        base_s.append(float(r.get("success", 0.0)))
        base_p.append(float(r.get("spl", 0.0)))
        if rec["walk"] is None:
            succ.append(base_s[-1])
            spl.append(base_p[-1])
            continue
        k = close_in_count(rec["depth"], depth_m, steps)
        if k >= len(rec["walk"]):
            raise ValueError(f"the replay walked {len(rec['walk']) - 1} steps; call accepted_stops with max_steps >= {k}")
        stepped += int(k > 0)
        d, moved = rec["walk"][k]
        ok = d <= rec["success_distance"] + 1e-9
        succ.append(float(ok))
        spl.append(float(ok) * rec["d0"] / max(rec["d0"], float(r["path_length"]) + moved))
    return {"success": np.array(succ), "spl": np.array(spl), "base_success": np.array(base_s),
            "base_spl": np.array(base_p), "stepped": stepped,
            "accepted": sum(rec["walk"] is not None for rec in stops)}


def table(runs: dict[str, list[dict]], steps=(1, 2, 3), depths=(1.0, 1.5), n_boot: int = 10000) -> str:
    """Markdown: each rule against the runs as they ran, per run and pooled (paired bootstrap over episodes)."""
    from world_model.metrics import bootstrap_ci

    def fmt(a, b):
        d = a - b
        lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=0)
        return f"{d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"

    lines = ["| run | episodes | accepted STOPs | rule | success | SPL | won / lost | success vs as run | SPL vs as run |",
             "|---|---|---|---|---|---|---|---|---|"]
    names = list(runs) + (["pooled"] if len(runs) > 1 else [])
    for name in names:
        group = [s for v in runs.values() for s in v] if name == "pooled" else runs[name]
        base = replay(group, 0, 1.0)
        lines.append(f"| {name} | {len(group)} | {base['accepted']} | as run | {base['success'].mean():.3f} | "
                     f"{base['spl'].mean():.3f} | | | |")
        for k in steps:
            for dm in depths:
                res = replay(group, k, dm)
                won = int((res["success"] > res["base_success"]).sum())
                lost = int((res["success"] < res["base_success"]).sum())
                lines.append(f"| {name} | {len(group)} | {res['stepped']} stepped | {k} step{'s' if k > 1 else ''}, "
                             f"depth > {dm:g} m | {res['success'].mean():.3f} | {res['spl'].mean():.3f} | {won} / {lost} | "
                             f"{fmt(res['success'], res['base_success'])} | {fmt(res['spl'], res['base_spl'])} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="eval dirs of agent=world_model agent.trace=true")
    ap.add_argument("--steps", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--depth", nargs="+", type=float, default=[1.0, 1.5])
    ap.add_argument("--out", default=None, help="write the table here as well")
    a = ap.parse_args(argv)
    runs = {r: accepted_stops(r, max(a.steps)) for r in a.runs}
    md = table(runs, a.steps, a.depth)
    print(md)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(md + "\n")


if __name__ == "__main__":
    main()
