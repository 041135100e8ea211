"""Feed spatialnav bad input of every kind and write what each gets to docs/reliability.md.

    .venv/bin/python scripts/reliability_sweep.py [--out docs/reliability.md]

Every row is a real run (about a minute on 2 cores): a CLI command through ``agent.cli.main``
(exit code and the stderr it printed) or a Python call (the exception type and message). Nothing
is hand-written: the messages in the document are the ones observed. A row whose outcome is a
traceback of an unexpected type, or exit code 1, is marked "BUG" so a regression shows.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Exceptions that are the documented way to refuse an input (anything else is reported as a bug).
EXPECTED = (ValueError, FileNotFoundError, RuntimeError, KeyError)


def run_cli(args: list[str]) -> tuple[str, str]:
    from agent import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rc = cli.main(list(args))
        except Exception as e:  # noqa: BLE001 - reported as a bug row
            return "BUG: traceback", f"{type(e).__name__}: {e}"
    text = err.getvalue().strip()
    outcome = f"exit {rc}" + ("" if rc == 2 else " (BUG)" if rc == 1 else "")
    return outcome, text


def run_py(fn) -> tuple[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = fn()
        except EXPECTED as e:
            return type(e).__name__, str(e)
        except Exception as e:  # noqa: BLE001
            return f"BUG: {type(e).__name__}", str(e)
    return "accepted (BUG)", repr(result)[:120]


# The writers and their kill tests (tests/test_kill_writers.py); kept here so a rerun keeps the section.
NOTHING_LOST = """\
## Nothing lost: every writer survives a kill

Every file the project writes is append-only with an fsync per record, or written whole to a
temporary name and renamed into place (`envs/atomic.py`: the temporary file or directory is
fsynced first; a directory is swapped in with one `renameat2(RENAME_EXCHANGE)`, so a reader never
finds it missing or half written). Each writer below is killed by a real SIGKILL in the middle of
a write (the file being written cut to half first), and the test then runs it again:

| file | writer | how | killed in |
|---|---|---|---|
| eval `episodes.jsonl` (and eval-wm's) | `agent.runner.evaluate`, `world_model.evaluate` | append-only, fsync per line; an unterminated last line is cut on resume | `tests/test_reliability.py::test_eval_killed_by_sigkill_resumes_without_loss_or_duplicates` (killed between episodes), `tests/test_kill_writers.py::test_eval_killed_mid_write_resumes_without_loss_or_duplicates[episode_row]` (killed half-way through a row) |
| eval `summary.json`, `run.json` | `agent.episode_log.write_json_atomic` | temp file, fsync, rename; written only when the run is finished | `tests/test_kill_writers.py::test_eval_killed_mid_write_resumes_without_loss_or_duplicates[summary]` (its temporary file cut, killed before the rename; the rerun writes it whole) |
| training checkpoints `ckpt/step_*` and `training.json` (world model, SSG adapter, autoencoder, CLIPs, inverse dynamics) | `world_model.training.save_checkpoint`, `RunClock.write` | temp dir, files fsynced, `train_state.json` last, rename; a pruned one is renamed before it is deleted; `training.json` temp file + rename | `tests/test_kill_writers.py::test_world_model_training_killed_mid_write_resumes_from_the_last_complete_checkpoint[checkpoint]`, `[prune]` |
| exported pipeline `out_dir/pipeline` | `world_model.train.export_pipeline` | temp dir, swapped in | same test, `[pipeline]` (mid-export), `[swap]` (while the old one is deleted) |
| collected data: shards + `index.json` | `world_model.collect.collect` | each shard temp + rename, then the index; the same command resumes after the last listed shard | `test_collect_killed_mid_write_resumes_to_the_uninterrupted_result[shard]`, `[index]` (equal to an uninterrupted run, shard by shard) |
| autoencoder `ckpt/step_*`, `autoencoder/` | `world_model.autoencoder.train_autoencoder` | the training checkpoints above; temp dir, swapped in | `test_autoencoder_training_killed_mid_write_resumes[checkpoint]`, `[prune]`, `[export]` |
| small CLIP `ckpt/step_*`, `log.jsonl`, `clip-small/` | `world_model.ssg.train_clip` | the training checkpoints above; val rows after the resumed step dropped; `write_dir` | `test_clip_training_killed_mid_checkpoint_resumes_to_the_uninterrupted_weights[checkpoint]`, `[prune]` (the rerun ends with the uninterrupted run's weights) |
| SSG adapter `ckpt/step_*`, `ssg/` | `world_model.ssg.train_adapter`, `checkpoint.save_ssg` | the training checkpoints above; temp dir, swapped in | `test_ssg_adapter_training_killed_mid_write_resumes[checkpoint]`, `[export]` |
| episode files `*.json.gz` | `envs.episodes.save_episodes` | temp file + rename | `test_episode_file_killed_mid_write_keeps_the_old_file` |
| MiniLM CLIP `ckpt/step_*`, `clip-minilm/`; SSG backbone snapshot; released weights | `world_model.ssg.train_minilm_clip`, `train_adapter`, `research.release` | the training checkpoints above; `envs.atomic.write_dir` / `replace_dir` | the helpers: `test_atomic_write_killed_mid_write_keeps_the_old_file`, `test_replace_dir_killed_between_its_renames_is_recovered` (no run of their own is killed) |

A resumed training run continues from the newest complete checkpoint: the test checks that the
optimiser's and the EMA's step counts equal the final step (no step lost or done twice) and
that the pipeline always loads, holding the weights of the last checkpoint exported. An
interrupted `spatialnav collect` is finished by the same command; other settings (`n`, the
seed, the collection config) are refused, naming the difference. Training logs (`train.log`)
are append-only text and may repeat the steps after the last checkpoint.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "reliability.md"))
    args = ap.parse_args()

    import torch
    import trimesh

    from agent.baselines import OracleAgent, RandomAgent
    from agent.base import make_agent
    from agent.fair_play import SensorView, public_context, public_info
    from agent.runner import evaluate
    from agent.world_model_agent import WorldModelAgent
    from envs.episodes import generate_episodes, load_episodes, save_episodes
    from envs.gym_env import ObjectNavEnv
    from envs.logs import read_jsonl
    from envs.mesh_io import load_mesh_scene
    from planners.mapping import ObstacleMap
    from planners.path import Navigator
    from world_model.loading import load_pipeline
    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    tmp = Path(tempfile.mkdtemp(prefix="spatialnav-sweep-"))
    t_start = time.perf_counter()
    eps = generate_episodes("val", 2, seed=0, episodes_per_scene=1)
    ep_file = save_episodes(tmp / "val2.json.gz", eps)
    common = ["agent=random", "n=1", "env=tiny", f"episodes={ep_file}", "progress=false"]

    # files: a mesh, its cut copy, a mesh without annotations, bad sidecars, bad logs
    v = np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0], [1, 1, .5], [1.4, 1, .5], [1, 1.4, .5]], float)
    f = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    trimesh.Trimesh(v, f, process=False).export(str(tmp / "room.ply"), encoding="ascii")
    lines = (tmp / "room.ply").read_text().splitlines(keepends=True)
    (tmp / "cut.ply").write_text("".join(lines[:-2]))
    trimesh.Trimesh(v[:4], f[:2], process=False).export(str(tmp / "bare.ply"))
    (tmp / "junk.ply").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)))
    inst = {"id": 1, "category": "chair", "center": [1.2, 1.2, 0.5], "size": [0.6, 0.6, 0.4]}

    def mesh_with(sidecar_text: str, name: str) -> Path:
        d = tmp / name
        d.mkdir()
        trimesh.Trimesh(v, f, process=False).export(str(d / "m.ply"))
        (d / "m.json").write_text(sidecar_text)
        return d / "m.ply"

    cat42 = mesh_with(json.dumps({"instances": [{**inst, "category": 42}]}), "cat42")
    far = mesh_with(json.dumps({"instances": [{**inst, "center": [500, 0, 0.5]}]}), "far")
    badjson = mesh_with('{"instances": [ {"id": 1,, ]}', "badjson")
    nosize = mesh_with(json.dumps({"instances": [{k: x for k, x in inst.items() if k != "size"}]}), "nosize")
    (tmp / "a_file").write_text("x")
    (tmp / "corrupt.json.gz").write_bytes(b"\x1f\x8b not really gzip")
    with gzip.open(tmp / "noeps.json.gz", "wt") as fh:
        json.dump({"episodes": "none"}, fh)

    # a finished 1-episode run, then copies with a bad log line
    run = tmp / "run"
    evaluate("random", n_episodes=1, out_dir=run, episodes=ep_file, width=16, height=16, max_episode_steps=20,
             progress=False, print_summary=False)
    for name, line in (("list_row", "[1, 2]"), ("no_metrics", '{"episode_id": "x", "agent": "random", "split": "val"}'),
                       ("bad_json", "{not json")):
        d = tmp / name
        d.mkdir()
        for fn in ("episodes.jsonl", "run.json"):
            (d / fn).write_bytes((run / fn).read_bytes())
        with open(d / "episodes.jsonl", "a") as fh:
            fh.write(line + "\n{\"episode_id\": \"y\"}\n" if name == "bad_json" else line + "\n")

    # env, agent, pipeline
    env = ObjectNavEnv(episodes=eps[:1], width=16, height=16)
    fresh = ObjectNavEnv(episodes=eps[:1], width=16, height=16)
    obs, info = env.reset(options={"episode_index": 0})
    torch.manual_seed(0)
    tiny = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
                text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=256)
    pipe = Video4SpatialPipeline(Video4SpatialModel(transformer_config=tiny, text_len=8, frame_size=(16, 16)).eval(),
                                 make_scheduler(), num_target_frames=2, num_bbox_frames=1)
    agent = WorldModelAgent(env=SensorView(env), seed=0, pipeline=pipe, ablation="noise", clip_guidance=False,
                            context_mode="noncontiguous", num_context=2)
    agent.reset(obs, public_info(info), public_context(env.unwrapped.context_tour(n_frames=4)))
    agent.act(obs)
    nav_map = ObstacleMap()
    nav = Navigator(nav_map)
    nav.observe({"depth": np.zeros((16, 16, 1), np.float32), "gps": np.zeros(2), "compass": np.zeros(1)})
    frames = np.zeros((2, 16, 16, 3), np.uint8)

    rows: list[tuple[str, str, str, str]] = []

    def cli_row(area: str, argv: list[str], shown: str | None = None) -> None:
        outcome, msg = run_cli(argv)
        rows.append((area, shown or "spatialnav " + " ".join(argv), outcome, msg))

    def py_row(area: str, call: str, fn) -> None:
        outcome, msg = run_py(fn)
        rows.append((area, call, outcome, msg))

    eval_ = ["eval"]
    short = " ".join(common).replace(str(ep_file), "<episodes>")
    for o in ("experiment=debgu", "world_model=smal", "agent=oracel", "env=tny",
              "n_episodes=ten", "n_episodes=2.5", "n=0", "seed=-1", "seed=abc", "video=-1", "video=lots",
              "progress=maybe", "foo=1", "env.widht=64", "+foo=1", "task.success_distance=nan",
              "task.max_episode_steps=0", "env.hfov_deg=wide", "n=null"):
        cli_row("CLI: config", eval_ + [o, "--cfg"])
    cli_row("CLI: config", ["compare", "compare.dirs=runs/a"])
    cli_row("CLI: eval", eval_ + common + ["shard=5/4", f"out={tmp / 'x1'}"], f"spatialnav eval {short} shard=5/4")
    cli_row("CLI: eval", eval_ + ["split=trian", "n=1", "progress=false", f"out={tmp / 'x2'}"])
    cli_row("CLI: eval", eval_ + common + [f"out_dir={tmp / 'a_file'}"], f"spatialnav eval {short} out_dir=<a file>")
    cli_row("CLI: eval", eval_ + common + [f"out_dir={tmp / 'a_file'}/sub"],
            f"spatialnav eval {short} out_dir=<a file>/sub")
    cli_row("CLI: eval", eval_ + common + ["out_dir=/proc/spatialnav/out"],
            f"spatialnav eval {short} out_dir=/proc/spatialnav/out")
    cli_row("CLI: eval", eval_ + ["agent=random", "n=1", "episodes=/nonexistent/val.json.gz", "progress=false",
                                  f"out={tmp / 'x3'}"])
    cli_row("CLI: eval", eval_ + ["agent=random", "n=1", f"episodes={tmp / 'corrupt.json.gz'}", "progress=false",
                                  f"out={tmp / 'x4'}"], "spatialnav eval agent=random n=1 episodes=<corrupt .json.gz>")
    cli_row("CLI: eval", eval_ + ["agent=random", "n=1", f"episodes={tmp / 'noeps.json.gz'}", "progress=false",
                                  f"out={tmp / 'x5'}"],
            'spatialnav eval agent=random n=1 episodes=<.json.gz holding {"episodes": "none"}>')
    cli_row("CLI: eval", eval_ + common + ["n=5", f"out={tmp / 'x6'}"], f"spatialnav eval {short} n=5 (2 in the file)")
    cli_row("CLI: eval", eval_ + ["agent=world_model", "agent.pipeline=/nonexistent/pipeline", "n=1", "env=tiny",
                                  f"episodes={ep_file}", "progress=false", f"out={tmp / 'x7'}"],
            "spatialnav eval agent=world_model agent.pipeline=/nonexistent/pipeline n=1 ...")
    cli_row("CLI: eval", eval_ + common + ["env.width=100000", f"out={tmp / 'x8'}"],
            f"spatialnav eval {short} env.width=100000")
    cli_row("CLI: eval resume", eval_ + common + ["task.max_episode_steps=5", "agent.stop_prob=0.5", f"out={run}"],
            f"spatialnav eval {short} task.max_episode_steps=5 agent.stop_prob=0.5 out=<a finished run's dir>")
    cli_row("CLI: eval resume", eval_ + common + [f"out={tmp / 'list_row'}"],
            f"spatialnav eval {short} out=<dir whose episodes.jsonl has a line [1, 2]>")
    cli_row("CLI: eval resume", eval_ + common + [f"out={tmp / 'no_metrics'}"],
            f"spatialnav eval {short} out=<dir whose episodes.jsonl has a row without metrics>")
    cli_row("CLI: eval resume", eval_ + common + [f"out={tmp / 'bad_json'}"],
            f"spatialnav eval {short} out=<dir whose episodes.jsonl has a line that is not JSON>")
    cli_row("CLI: episodes", ["episodes", f"scenes=[{tmp / 'bare.ply'}]", "n=1", f"out={tmp / 'e.json.gz'}",
                              "progress=false"], "spatialnav episodes scenes=[<mesh without annotations>] n=1")
    cli_row("CLI: episodes", ["episodes", "split=nope", "n=1", f"out={tmp / 'e2.json.gz'}"])
    cli_row("CLI: imagine", ["imagine", 'imagine.instruction=""'], 'spatialnav imagine imagine.instruction=""')
    cli_row("CLI: imagine", ["imagine", "imagine.episode_index=-1"])
    cli_row("CLI: other", ["bench", "nope"])
    cli_row("CLI: other", ["merge"])
    cli_row("CLI: other", ["merge", f"merge.dirs=[{tmp / 'nothing_here'}]"], "spatialnav merge merge.dirs=[<empty dir>]")
    cli_row("CLI: other", ["compare", "compare.dirs=[a]"])
    cli_row("CLI: other", ["eval", "oracle"])
    cli_row("CLI: other", ["eval", "--verbose"])
    cli_row("CLI: other", ["evaluate"])

    py_row("env", 'env.step("1")', lambda: env.step("1"))
    py_row("env", "env.step(np.float32(1.5))", lambda: env.step(np.float32(1.5)))
    py_row("env", "env.step(1.0)", lambda: env.step(1.0))
    py_row("env", "env.step(7)", lambda: env.step(7))
    py_row("env", "env.step(True)", lambda: env.step(True))
    py_row("env", "ObjectNavEnv(...).step(1) before reset()", lambda: fresh.step(1))
    py_row("env", 'env.reset(options={"episode_index": 99})', lambda: env.reset(options={"episode_index": 99}))
    py_row("env", 'env.reset(options={"episode_index": 1.5})', lambda: env.reset(options={"episode_index": 1.5}))
    py_row("env", 'env.reset(options={"episode": 0})', lambda: env.reset(options={"episode": 0}))
    py_row("env", "ObjectNavEnv(width=10**6)", lambda: ObjectNavEnv(episodes=eps[:1], width=10 ** 6))
    py_row("env", "ObjectNavEnv(max_episode_steps=10**9)", lambda: ObjectNavEnv(episodes=eps[:1], max_episode_steps=10 ** 9))
    py_row("env", 'ObjectNavEnv(hfov_deg=float("nan"))', lambda: ObjectNavEnv(episodes=eps[:1], hfov_deg=float("nan")))
    py_row("env", 'ObjectNavEnv(success_distance="far")', lambda: ObjectNavEnv(episodes=eps[:1], success_distance="far"))
    py_row("env", 'ObjectNavEnv(split="trian").reset()', lambda: ObjectNavEnv(split="trian", n_episodes=1).reset())

    def bad(**kw):
        return {**obs, **kw}

    py_row("agent", "WorldModelAgent.act(obs with gps [nan, 0])", lambda: agent.act(bad(gps=np.array([np.nan, 0.0]))))
    py_row("agent", "WorldModelAgent.act(obs with gps [1e6, 0])", lambda: agent.act(bad(gps=np.array([1e6, 0.0]))))
    py_row("agent", "WorldModelAgent.act(obs with rgb (H, W, 2))", lambda: agent.act(bad(rgb=obs["rgb"][..., :2])))
    py_row("agent", "WorldModelAgent.act(obs with float rgb)", lambda: agent.act(bad(rgb=obs["rgb"].astype(float))))
    py_row("agent", "WorldModelAgent.act(obs with depth of another size)", lambda: agent.act(bad(depth=obs["depth"][:4])))
    py_row("agent", 'WorldModelAgent.act(obs with gps "")', lambda: agent.act(bad(gps="")))
    py_row("agent", "WorldModelAgent.act(obs without compass)",
           lambda: agent.act({k: x for k, x in obs.items() if k != "compass"}))
    py_row("agent", 'WorldModelAgent(ablation="blindfold")', lambda: WorldModelAgent(pipeline=pipe, ablation="blindfold"))
    py_row("agent", 'WorldModelAgent(pipeline="/nonexistent")', lambda: WorldModelAgent(pipeline="/nonexistent"))
    py_row("agent", "RandomAgent(stop_prob=2)", lambda: RandomAgent(stop_prob=2))
    py_row("agent", "OracleAgent(env=None)", lambda: OracleAgent(env=None))
    py_row("agent", 'make_agent("nope")', lambda: make_agent("nope"))
    py_row("planner", "ObstacleMap().update(depth, pose=(1e6, 0, 0))",
           lambda: ObstacleMap().update(np.zeros((16, 16, 1), np.float32), np.array([1e6, 0.0, 0.0])))
    py_row("planner", "Navigator.act(goal_xy=(1e5, 0))", lambda: nav.act((1e5, 0.0)))
    py_row("planner", "Navigator.act(goal_xy=(nan, 0))", lambda: nav.act((np.nan, 0.0)))
    py_row("pipeline", "pipe.imagine(0 context frames, ...)",
           lambda: pipe.imagine(frames[:0], np.zeros(0, np.int64), "go to the chair", num_steps=1))
    py_row("pipeline", "pipe.imagine(frames 32x32 for a 16x16 model, ...)",
           lambda: pipe.imagine(np.zeros((2, 32, 32, 3), np.uint8), [0, 1], "go to the chair", num_steps=1))
    py_row("pipeline", 'pipe.imagine(..., instruction="")', lambda: pipe.imagine(frames, [0, 1], "", num_steps=1))
    py_row("pipeline", "pipe.imagine(..., context_indices=[3, 1])",
           lambda: pipe.imagine(frames, [3, 1], "go to the chair", num_steps=1))
    py_row("pipeline", 'load_pipeline("/nonexistent")', lambda: load_pipeline("/nonexistent"))
    py_row("files", "load_mesh_scene(<ASCII .ply cut before its last 2 faces>)", lambda: load_mesh_scene(tmp / "cut.ply"))
    py_row("files", "load_mesh_scene(<3000 random bytes as .ply>)", lambda: load_mesh_scene(tmp / "junk.ply"))
    py_row("files", 'load_mesh_scene(<sidecar "category": 42>)', lambda: load_mesh_scene(cat42))
    py_row("files", "load_mesh_scene(<sidecar box 500 m outside the mesh>)", lambda: load_mesh_scene(far))
    py_row("files", "load_mesh_scene(<sidecar that is not JSON>)", lambda: load_mesh_scene(badjson))
    py_row("files", "load_mesh_scene(<sidecar instance without size>)", lambda: load_mesh_scene(nosize))
    py_row("files", "load_episodes(<corrupt .json.gz>)", lambda: load_episodes(str(tmp / "corrupt.json.gz")))
    py_row("files", "read_jsonl(<episodes.jsonl with a line [1, 2]>)", lambda: read_jsonl(tmp / "list_row" / "episodes.jsonl"))

    env.close()
    fresh.close()
    seconds = time.perf_counter() - t_start

    def cell(text: str, plain: bool = False) -> str:
        text = text.replace(str(tmp), "<tmp>").replace(str(REPO) + "/", "")
        if plain:  # a message is plain text, not markdown: <tmp> is no HTML tag, [--cfg] no link
            text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            text = text.replace("[", "\\[").replace("]", "\\]")
        text = text.replace("|", "\\|").replace("\n", "<br>")
        return text[:600]

    bugs = [r for r in rows if "BUG" in r[2]]
    out = [
        "# Reliability: what bad input gets",
        "",
        f"{len(rows)} bad inputs across the CLI, the env, the agents, the planners, the world-model pipeline and",
        "the file readers, each run for real by `scripts/reliability_sweep.py` (this file is its output;",
        f"{seconds:.0f} s on this machine). The messages are the ones observed. Rules the project keeps (issue 23):",
        "",
        "* the CLI turns every expected error into one line on stderr and exit code 2; a real bug keeps its",
        "  traceback (`SPATIALNAV_DEBUG=1` shows it for expected errors too);",
        "* a value is checked where it enters: config composition (group options, types of `key=value`),",
        "  `evaluate()`, the env's constructor, `step` and `reset`, an agent's `reset`/`act` (before any",
        "  state changes: a refused observation leaves the agent as it was), the pipeline's `imagine`, the",
        "  mesh, sidecar, episode and log readers;",
        "* bounds: camera 8..4096 px a side, episodes of 1..100000 actions, an agent's map at most 200 m",
        "  a side (poses within about 89 m of the start), so no input can allocate gigabytes;",
        "* an eval out_dir is fingerprinted (`run.json`: agent and its full settings, seed, env, episode",
        "  source, weights hashes, code version): a resume with anything else is refused, naming it.",
        "",
        f"Rows marked BUG: {len(bugs)}.",
        "",
        "| # | where | input | outcome | message |",
        "|---|---|---|---|---|",
    ]
    for i, (area, call, outcome, msg) in enumerate(rows, 1):
        out.append(f"| {i} | {area} | `{cell(call)}` | {outcome} | {cell(msg, plain=True)} |")
    out += ["", NOTHING_LOST.rstrip("\n")]
    Path(args.out).write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}: {len(rows)} inputs, {len(bugs)} marked BUG, {seconds:.0f} s")
    for r in bugs:
        print("BUG:", r)
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
