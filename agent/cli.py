"""``spatialnav``: one console script, subcommands, Hydra overrides.

    spatialnav eval agent=oracle split=val n_episodes=50 out_dir=runs/oracle
    spatialnav episodes split=val n=100 out=data/episodes/val.json.gz
    spatialnav demo
    spatialnav bench sim
    spatialnav eval experiment=debug --cfg      # print the composed config, run nothing

Each subcommand is one row of ``COMMANDS``: a name, the ``"module:function"``
that implements it (imported only when that subcommand runs) and a one-line
help. The function takes the composed ``DictConfig`` and returns an exit code
(or None for 0). ``bench <name>`` runs ``benchmarks/bench_<name>.py:run``.
Config: ``configs/config.yaml`` plus the groups env/ task/ agent/ world_model/
experiment/ (Hydra's compose API; unknown keys are an error that lists
the valid ones).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any

# Before torch or open3d load OpenMP: idle OpenMP threads sleep instead of spinning. On a
# small shared CPU, spinning threads of one library starve the other's (measured: imagine
# 1.0 s -> 8.2 s inside an eval process that also ray-casts). A user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# subcommand -> ("module:function", help). Adding a subcommand is one line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("agent.cli:cmd_eval", "evaluate an agent on episodes (resumable; shard=i/n)"),
    "merge": ("agent.cli:cmd_merge", "summarise several shard out_dirs: merge.dirs=[a,b] out_dir=c"),
    "compare": ("agent.cli:cmd_compare", "paired bootstrap of two eval or eval-wm out_dirs: compare.dirs=[a,b]"),
    "failures": ("agent.failure_modes:cmd_failures",
                 "how the failed episodes of eval out_dirs ended: failures.dirs=[a,b] [failures.placement=true]"),
    "episodes": ("agent.cli:cmd_episodes", "generate an episode file: split=val n=100 out=path.json.gz"),
    "demo": ("agent.cli:cmd_demo", "run the demo agents on a few val episodes, write videos and a table"),
    "picture": ("agent.cli:cmd_picture", "save an episode strip + map PNG (README picture)"),
    "bench": ("agent.cli:cmd_bench", "benchmarks: bench sim | bench wm | bench agent [bench.kwargs.k=v]"),
    "collect": ("world_model.collect:main", "collect world-model training data from the simulator"),
    "train": ("world_model.train:main", "train / fine-tune a world model"),
    "imagine": ("world_model.imagine:main", "imagine a rollout for one episode and save it"),
    "eval-wm": ("world_model.evaluate:main", "grounding metrics (SD, IF) of a world model"),
    "train-ssg": ("world_model.ssg.train_adapter:main",
                  "train the SSG adapter on a frozen world model: train_ssg.preset=default|no_mlp_mask|..."),
}
# Short spellings accepted on the command line.
ALIASES = {"n": "n_episodes", "out": "out_dir"}
# The overrides of the running command (set by main): `eval agents=[...]` writes them into results_md.
COMMAND_OVERRIDES: list[str] = []
# Where `bench <name>` looks: benchmarks/bench_<name>.py, function run().
BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def config_dir() -> Path:
    """The repo's configs/ (next to the agent package)."""
    env = os.environ.get("SPATIALNAV_CONFIG_DIR")
    d = Path(env) if env else Path(__file__).resolve().parents[1] / "configs"
    if not (d / "config.yaml").exists():
        raise CLIError(f"no config.yaml in {d}; set SPATIALNAV_CONFIG_DIR to the spatialnav configs/ folder")
    return d


class CLIError(Exception):
    """A user error: printed as one readable message, exit code 2."""


# -- config ------------------------------------------------------------------------------

# Free-form sections: their keys are whatever the called function takes, so
# setting one that is not in the yaml adds it (Hydra's "++") instead of failing.
FREE_FORM = ("bench.kwargs.", "train_ssg.")
# Top-level keys of `eval` with several agents (not in config.yaml): agents=[a,b@noise], results_md=path
# (the docs page to write the table into as well as out_dir/results.md; unset = out_dir only).
EXTRA_KEYS = ("agents", "results_md")
RESULTS_FILE = "results.md"  # `eval agents=[...]`: the table, in its out_dir


def _apply_aliases(overrides: list[str]) -> list[str]:
    out = []
    for o in overrides:
        key, sep, val = o.partition("=")
        if sep and key in ALIASES:
            o = f"{ALIASES[key]}={val}"
        elif sep and (key.startswith(FREE_FORM) or key in EXTRA_KEYS):
            o = f"++{o}"
        out.append(o)
    return out


def compose_config(overrides: list[str]):
    """Compose configs/config.yaml with Hydra overrides; readable errors for bad keys."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    overrides = _apply_aliases(list(overrides))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise CLIError(f"overrides must look like key=value, got {bad}; e.g. agent=oracle n_episodes=5")
    _check_group_options(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        base = compose("config", overrides=[])
        try:
            cfg = compose("config", overrides=overrides)
        except HydraException as e:
            raise CLIError(_explain_hydra_error(e, overrides, base)) from None
        groups = [o for o in overrides if _group_of(o) is not None]
        ref = compose("config", overrides=groups) if groups else base
    _check_value_types(overrides, cfg, ref)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _group_of(override: str) -> str | None:
    """The config group an override selects (``experiment=debug`` -> "experiment"), else None."""
    key = override.partition("=")[0].lstrip("+~")
    if not key or "." in key or "/" in key:
        return None
    return key if (config_dir() / key).is_dir() else None


def _check_group_options(overrides: list[str]) -> None:
    """Every group option must exist. Groups declared ``optional`` in config.yaml (world_model,
    experiment) would otherwise drop a misspelt option without a word and run the defaults."""
    for o in overrides:
        group = _group_of(o)
        if group is None:
            continue
        value = o.partition("=")[2]
        gdir = config_dir() / group  # nested options too: env=miniworld/oneroom
        options = sorted(p.relative_to(gdir).with_suffix("").as_posix() for p in gdir.rglob("*.yaml"))
        if value not in options and not (value == "null" and o.startswith(("world_model", "experiment"))):
            raise CLIError(f"unknown {group} option '{value}' (from '{o}'): there is no configs/{group}/{value}.yaml; "
                           f"options: {', '.join(options) or 'none'}")


def _needs_value(key: str) -> bool:
    """Keys the commands convert with int()/float()/bool() directly: null is an error there."""
    return (key in ("n_episodes", "seed", "video", "progress", "shard", "split", "num_envs")
            or key.startswith(("env.", "task.")))


# Top-level keys with a bound beyond their type (checked when given on the command line).
_MINIMUM = {"n_episodes": 1, "seed": 0, "video": 0, "num_envs": 1, "task.max_episode_steps": 1, "env.width": 8,
            "env.height": 8}


def _kind(value) -> str:
    from omegaconf import DictConfig, ListConfig

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean (true/false)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, (list, tuple, ListConfig)):
        return "a list, e.g. [a,b]"
    if isinstance(value, (dict, DictConfig)):
        return "a section"
    return "a string"


def _check_value_types(overrides: list[str], cfg, ref) -> None:
    """Each ``key=value`` must have the type of the value it replaces (the default after the
    selected groups): ``n_episodes=ten`` or ``n_episodes=2.5`` is an error naming the key, not an
    int() traceback or a silent 2. Keys whose default is null take anything."""
    import math

    from omegaconf import OmegaConf

    for o in overrides:
        raw_key, _, raw_value = o.partition("=")
        key = raw_key.lstrip("+~")
        if raw_key.startswith("~") or _group_of(o) is not None or key.startswith(FREE_FORM) or key in EXTRA_KEYS:
            continue
        if raw_key.startswith("+") and OmegaConf.select(ref, key, default="__missing__") == "__missing__":
            raise CLIError(f"'{o}' adds a key that no command reads; valid top-level keys: "
                           f"{', '.join(sorted(str(k) for k in ref.keys()))}")
        old = OmegaConf.select(ref, key, default=None)
        new = OmegaConf.select(cfg, key, default=None)
        if old is None or (new is None and not _needs_value(key)):
            continue  # null: "unset / the function's default" (agent.threads=null), except where a value is needed
        want = _kind(old)
        ok = _kind(new) == want
        if want == "a number" and _kind(new) == "an integer":
            ok = True
        if key == "video" and _kind(new) == "a boolean (true/false)":
            ok = True  # video=true: every episode
        if old == "auto" and _kind(new) in ("an integer", "a number"):
            ok = True  # "auto or a number" settings: agent.threads=1 where frontier_clip's default is "auto"
        if not ok:
            raise CLIError(f"{key} must be {want} (default {key}={OmegaConf.to_yaml(old).strip() if OmegaConf.is_config(old) else old}), "
                           f"got '{raw_value}' ({_kind(new)})")
        if isinstance(new, float) and not math.isfinite(new):
            raise CLIError(f"{key} must be a finite number, got '{raw_value}'")
        low = _MINIMUM.get(key)
        if low is not None and not isinstance(new, bool) and new < low:
            raise CLIError(f"{key} must be >= {low}, got {new}")


def _explain_hydra_error(err: Exception, overrides: list[str], base) -> str:
    from omegaconf import OmegaConf

    msg = str(err).strip()
    for o in overrides:
        key = o.partition("=")[0].lstrip("+~")
        if f"override '{key}'" in msg or f"'{key}'" in msg.splitlines()[0]:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(base, parent) if parent else base
            if node is not None and OmegaConf.is_dict(node) and leaf not in node:
                valid = ", ".join(sorted(str(k) for k in node.keys()))
                where = f"under '{parent}'" if parent else "at the top level"
                return (f"unknown config key '{key}' (from '{o}').\n"
                        f"Valid keys {where}: {valid}.\n"
                        f"Groups: {_groups_help()}")
            if node is not None and not OmegaConf.is_dict(node):
                return f"'{parent}' is a value, not a section: '{o}' cannot set a key inside it"
    first = msg.splitlines()[0] if msg else type(err).__name__
    rest = [ln for ln in msg.splitlines()[1:] if ln.strip() and "search path" not in ln.lower()
            and "provider=" not in ln]
    return "\n".join([first] + rest[:8])


def _groups_help() -> str:
    d = config_dir()
    parts = []
    for g in sorted(p for p in d.iterdir() if p.is_dir()):
        opts = sorted(p.relative_to(g).with_suffix("").as_posix() for p in g.rglob("*.yaml"))
        if opts:
            parts.append(f"{g.name}={'|'.join(opts)}")
    return "; ".join(parts)


# -- helpers ------------------------------------------------------------------------------

def env_kwargs(cfg) -> dict[str, Any]:
    """ObjectNavEnv arguments from cfg.env + cfg.task; for an env group with a ``factory``
    (configs/env/miniworld/*.yaml) that factory and its keys instead (``adapter_env_kwargs``)."""
    if cfg.env.get("factory"):
        return adapter_env_kwargs(cfg)
    return {
        "width": int(cfg.env.width), "height": int(cfg.env.height), "hfov_deg": float(cfg.env.hfov_deg),
        "max_depth": float(cfg.env.max_depth), "backend": str(cfg.env.backend),
        "threads": None if cfg.env.threads is None else int(cfg.env.threads),
        "max_episode_steps": int(cfg.task.max_episode_steps),
        "success_distance": float(cfg.task.success_distance),
        "episode_seed": int(cfg.task.episode_seed),
        **instruction_kwargs(cfg),
    }


def adapter_env_kwargs(cfg) -> dict[str, Any]:
    """A third-party env through envs.adapters: ``env_factory`` (``"module:function"``, called by the
    runner with split, episodes, n_episodes and these keys), the env group's other keys, and the task's
    step cap and episode seed (the env decides success itself)."""
    from omegaconf import OmegaConf

    kw = OmegaConf.to_container(cfg.env, resolve=True)
    kw["env_factory"] = kw.pop("factory")
    kw["max_episode_steps"] = int(cfg.task.max_episode_steps)
    kw["episode_seed"] = int(cfg.task.episode_seed)
    return kw


def instruction_kwargs(cfg) -> dict[str, Any]:
    """The task's instruction wording (``task.paraphrase``, ``task.instructions``; configs/task/objectnav.yaml):
    ``instructions=free`` is the split's shipped hand-written set (envs/free_wording_val.json: 110 val
    episodes; envs/free_wording_test.json: 60 test episodes)."""
    task = cfg.task
    out: dict[str, Any] = {}
    if bool(task.get("paraphrase", False)):
        out.update(paraphrase=True, paraphrase_seed=int(task.get("paraphrase_seed", 0)))
    inst = task.get("instructions")
    if inst not in (None, "", "template", "null", "none"):
        if str(inst) == "free":
            from envs.paraphrase import FREE_WORDING

            split = str(cfg.get("split", "val"))
            if split not in FREE_WORDING:
                raise ValueError(f"task.instructions=free: no hand-written set for split {split!r} (there are "
                                 f"{', '.join(FREE_WORDING)}); give a file keyed by episode id instead")
            inst = FREE_WORDING[split]
        out["instructions"] = str(inst)
    return out


def wording_label(cfg) -> str:
    """"template", "paraphrase(seed=k)" or "free(<file>)": how the run's instructions were worded."""
    kw = instruction_kwargs(cfg)
    if "instructions" in kw:
        return f"free({Path(kw['instructions']).name})"
    return f"paraphrase(seed={kw['paraphrase_seed']})" if kw.get("paraphrase") else "template"


def agent_kwargs(cfg) -> dict[str, Any]:
    """Constructor arguments of the agent: every key of cfg.agent except ``name``."""
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(cfg.agent, resolve=True)
    d.pop("name", None)
    return d


def _out_dir(cfg, command: str, agent: str | None = None) -> str:
    if cfg.out_dir:
        return str(cfg.out_dir)
    return f"runs/{command}/{agent or cfg.agent.name}_{cfg.split}"


# -- subcommands ---------------------------------------------------------------------------

def cmd_eval(cfg, args: list[str] | None = None) -> int:
    from agent.runner import evaluate

    if "agents" in cfg and cfg.agents:
        return eval_agents(cfg)
    summary = evaluate(
        agent=str(cfg.agent.name), split=str(cfg.split), n_episodes=int(cfg.n_episodes),
        out_dir=_out_dir(cfg, "eval"), shard=str(cfg.shard), video=cfg.video, seed=int(cfg.seed),
        episodes=cfg.episodes, agent_kwargs=agent_kwargs(cfg), progress=bool(cfg.progress),
        num_envs=int(cfg.num_envs), **env_kwargs(cfg),
    )
    print(f"wrote {_out_dir(cfg, 'eval')}/summary.json ({summary['n_episodes']} episodes)")
    return 0


def _agent_spec_kwargs(cfg, spec: str) -> tuple[str, str, dict[str, Any]]:
    """``name`` or ``name@ablation`` -> (name, label, constructor kwargs from configs/agent/<name>.yaml;
    the selected ``agent=`` group, with its overrides, when it is the same agent)."""
    from omegaconf import OmegaConf

    name, _, ablation = str(spec).partition("@")
    if name == cfg.agent.name:
        kw = agent_kwargs(cfg)
    else:
        path = config_dir() / "agent" / f"{name}.yaml"
        kw = {}
        if path.exists():
            kw = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
            kw.pop("name", None)
    if ablation:
        kw["ablation"] = ablation
    return name, f"{name} (ablation={ablation})" if ablation else name, kw


def eval_agents(cfg) -> int:
    """``eval agents=[world_model,world_model@noise,frontier_clip,random,oracle]``: every agent on the
    same episodes (out_dir/<agent>), one table, written to ``out_dir/results.md`` under a block keyed by
    split, episodes and camera size. ``results_md=<path>`` (e.g. docs/results.md) also writes the block
    there; nothing outside out_dir is written unless asked."""
    from agent.base import resolve_agent
    from agent.runner import evaluate, is_batchable
    from agent.tables import results_rows_markdown, update_results_md

    specs = [str(a) for a in cfg.agents]
    base = Path(str(cfg.out_dir)) if cfg.out_dir else Path(f"runs/eval/agents_{cfg.split}")
    summaries = []
    for spec in specs:
        name, label, kw = _agent_spec_kwargs(cfg, spec)
        out = base / spec.replace("@", "_")
        num_envs = int(cfg.num_envs)
        if num_envs > 1 and not is_batchable(resolve_agent(name)):
            print(f"note: {spec} cannot run side by side (not batchable): num_envs=1 for it")
            num_envs = 1
        summary = evaluate(agent=name, split=str(cfg.split), n_episodes=int(cfg.n_episodes), out_dir=out,
                           shard=str(cfg.shard), video=cfg.video, seed=int(cfg.seed), episodes=cfg.episodes,
                           agent_kwargs=kw, progress=bool(cfg.progress), print_summary=False, num_envs=num_envs,
                           **env_kwargs(cfg))
        summary["label"] = label + (" (privileged)" if name == "oracle" else "")
        summaries.append(summary)
    table = results_rows_markdown(summaries)
    print(table)
    ek = env_kwargs(cfg)
    key = f"split={cfg.split} n_episodes={cfg.n_episodes} camera={ek['width']}x{ek['height']}"
    if wording_label(cfg) != "template":  # free / paraphrased wording of the same episodes: its own block
        key += f" wording={wording_label(cfg)}"
    command = (f"spatialnav eval agents=[{','.join(specs)}] split={cfg.split} n_episodes={cfg.n_episodes} "
               f"env.width={ek['width']} env.height={ek['height']} out_dir={base}")
    extra = [o for o in COMMAND_OVERRIDES if o.partition("=")[0].lstrip("+~") not in (
        "agents", "split", "n_episodes", "n", "env.width", "env.height", "out_dir", "out", "results_md", "progress")]
    if extra:  # the run's other overrides (agent settings, task, ...), so the command reproduces the rows
        command += " " + " ".join(extra)
    written = [update_results_md(base / RESULTS_FILE, summaries, command, key)]
    if "results_md" in cfg and cfg.results_md:  # asked for: e.g. results_md=docs/results.md
        written.append(update_results_md(str(cfg.results_md), summaries, command, key))
    print(f"wrote {' and '.join(map(str, written))} ({key}) and {base}/<agent>/summary.json")
    return 0


def cmd_merge(cfg, args: list[str] | None = None) -> int:
    from agent.sharding import merge
    from agent.tables import print_table

    dirs = list(cfg.merge.dirs)
    if not dirs:
        raise CLIError("merge needs shard directories: spatialnav merge merge.dirs=[runs/s0,runs/s1] out_dir=runs/all")
    summary = merge(dirs, out_dir=cfg.out_dir)
    print_table(summary)
    return 0


EVAL_WM_COMPARE_METRICS = ["if", "if_sd02", "if_final", "sd", "clip_score", "psnr", "ssim"]


def cmd_compare(cfg, args: list[str] | None = None) -> int:
    """Paired bootstrap of two runs over the items both ran: agent evaluations (``episodes.jsonl``,
    by episode) or world-model evaluations (``spatialnav eval-wm``'s ``samples.jsonl``, by sample;
    metrics default to the grounding ones)."""
    import json

    from agent.comparison import paired_comparison
    from agent.episode_log import EPISODES_FILE, read_episode_log
    from world_model.evaluate import SAMPLES_FILE

    dirs = list(cfg.compare.dirs)
    if len(dirs) != 2:
        raise CLIError("compare needs two eval directories: spatialnav compare compare.dirs=[runs/a,runs/b]")
    rows, kinds = [], []
    for d in dirs:
        for kind, name in (("episodes", EPISODES_FILE), ("samples", SAMPLES_FILE)):
            if (Path(d) / name).exists():
                rows.append(read_episode_log(Path(d) / name))  # any JSON-lines log; a cut last line is skipped
                kinds.append(kind)
                break
        else:
            raise CLIError(f"no {EPISODES_FILE} (spatialnav eval) or {SAMPLES_FILE} (spatialnav eval-wm) in {d}: "
                           f"run one of them with out_dir={d} first")
    if kinds[0] != kinds[1]:
        raise CLIError(f"compare needs two runs of the same kind, got {kinds[0]} ({dirs[0]}) and {kinds[1]} ({dirs[1]})")
    metrics = list(cfg.compare.metrics)
    if kinds[0] == "samples" and metrics == ["success", "spl"]:  # the config's default is the agents'
        metrics = list(EVAL_WM_COMPARE_METRICS)
    try:
        res = paired_comparison(rows[0], rows[1], keys=metrics, n_boot=int(cfg.compare.n_boot), seed=int(cfg.seed),
                                id_key="episode_id" if kinds[0] == "episodes" else "sample_id")
    except (KeyError, ValueError) as e:
        raise CLIError(f"compare: {e}") from e
    print(f"A = {dirs[0]}\nB = {dirs[1]}\n{res['n_episodes']} shared {kinds[0]}")
    for k in metrics:
        r = res[k]
        extra = f"; only A {r['only_a']}, only B {r['only_b']}, both {r['both']}" if "only_a" in r else ""
        print(f"{k}: A {r['a']:.3f}, B {r['b']:.3f}, A - B {r['diff']:+.3f} "
              f"[{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] (95% paired bootstrap, n={r['n']}){extra}")
    if cfg.out_dir:
        Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
        from agent.episode_log import write_json_atomic

        write_json_atomic(Path(cfg.out_dir) / "compare.json", {"dirs": dirs, "metrics": metrics, **res})
    return 0


def cmd_episodes(cfg, args: list[str] | None = None) -> int:
    from envs.episodes import write_split

    out = cfg.out_dir or f"data/episodes/{cfg.split}_{cfg.n_episodes}.json.gz"
    scenes = list(cfg.get("scenes") or []) or None
    path = write_split(str(cfg.split), int(cfg.n_episodes), out, seed=int(cfg.task.episode_seed),
                       progress=bool(cfg.progress), scene_ids=scenes)
    print(f"wrote {cfg.n_episodes} {cfg.split} episodes to {path}")
    return 0


def _demo_agents(cfg) -> tuple[list[str], str | None]:
    """The demo's agent specs, without the world-model ones when no checkpoint exists (with a note)."""
    specs = [str(a) for a in cfg.demo.agents]
    wm = [a for a in specs if a.partition("@")[0] == "world_model"]
    if not wm:
        return specs, None
    from world_model import loading

    try:
        path = loading.resolve_pipeline_path(_agent_spec_kwargs(cfg, wm[0])[2].get("pipeline"))
    except FileNotFoundError as e:
        rest = [a for a in specs if a not in wm]
        rest += [a for a in ("oracle", "random") if a not in rest]  # references stand in for the missing model
        return rest, f"note: no world-model checkpoint, so the demo runs {', '.join(rest)} only ({e})"
    which = ("shipped weights" if path.resolve() == loading.SHIPPED_PIPELINE.resolve()
             else "the training run's latest export (shipped weights not found)"
             if "runs/wm/pipeline" in str(path) else "agent.pipeline")
    return specs, f"world model: {path} ({which})"


def _demo_ablation_line(full: str, ablated: str, out_full: Path, out_ablated: Path) -> str:
    """What the ablated part adds on the demo's episodes: paired success and SPL differences."""
    from agent.comparison import paired_comparison
    from agent.episode_log import EPISODES_FILE, read_episode_log

    res = paired_comparison(read_episode_log(out_full / EPISODES_FILE), read_episode_log(out_ablated / EPISODES_FILE),
                            keys=("success", "spl"), n_boot=2000, seed=0)
    n = res["n_episodes"]
    s, p = res["success"], res["spl"]
    return (f"{full} - {ablated} on the same {n} episodes: success {s['diff']:+.2f}, SPL {p['diff']:+.3f} "
            f"(too few episodes to conclude; the paired table on test is in docs/results.md)")


def cmd_demo(cfg, args: list[str] | None = None) -> int:
    """The world-model agent beside its noise ablation (the same agent acting on random frames
    instead of imagined ones) and the oracle for reference, on the first few val episodes (not
    picked for success): one table, what imagination adds on those episodes (paired), and a
    video per agent (observation | imagined rollout with its box | map). Settings: the ``demo:``
    block of configs/config.yaml; agents take configs/agent/<name>.yaml (``name@ablation`` works).
    Each run starts fresh in ``<out_dir>/<agent>_<split>`` (no resume)."""
    from rich.console import Console
    from rich.table import Table

    from agent.runner import evaluate

    console = Console()
    specs, note = _demo_agents(cfg)
    if note:
        console.print(note)
    ek = env_kwargs(cfg)
    if cfg.demo.get("max_episode_steps"):
        ek["max_episode_steps"] = int(cfg.demo.max_episode_steps)
    split = str(cfg.demo.get("split") or cfg.split)
    base = Path(str(cfg.out_dir or cfg.demo.out_dir))
    table = Table(title=f"demo: {cfg.demo.n_episodes} {split} episodes, {ek['width']}x{ek['height']}, "
                        f"<= {ek['max_episode_steps']} steps")
    for col in ("agent", "success", "SPL", "SoftSPL", "dist. to goal (m)", "steps", "s / step"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    videos, outs = [], {}
    for spec in specs:
        name, label, kw = _agent_spec_kwargs(cfg, spec)
        out = base / f"{spec.replace('@', '_')}_{split}"
        if (out / "episodes.jsonl").exists():  # a demo starts fresh (eval would resume old episodes)
            import shutil

            shutil.rmtree(out)
        console.print(f"[bold]{label}[/bold] ...")
        sm = evaluate(agent=name, split=split, n_episodes=int(cfg.demo.n_episodes), out_dir=out,
                      video=cfg.demo.video, seed=int(cfg.seed), episodes=cfg.episodes, agent_kwargs=kw,
                      progress=bool(cfg.progress), print_summary=False, **ek)
        table.add_row(label + (" (privileged)" if name == "oracle" else ""), f"{sm['success']:.2f}",
                      f"{sm['spl']:.2f}", f"{sm['softspl']:.2f}", f"{sm['distance_to_goal']:.2f}",
                      f"{sm['steps']:.0f}", f"{sm['seconds_per_step']:.3f}")
        if (out / "videos").exists():
            videos += [(label, v) for v in sorted((out / "videos").glob("*.mp4"))]
        outs[spec] = out
    console.print(table)
    for spec in specs:
        if "@" in spec and spec.split("@")[0] in outs:
            console.print(_demo_ablation_line(spec.split("@")[0], spec, outs[spec.split("@")[0]], outs[spec]))
    for label, v in videos:
        console.print(f"video ({label}): {v}")
    return 0


def cmd_picture(cfg, args: list[str] | None = None) -> int:
    from agent.picture import save_episode_picture

    kw = env_kwargs(cfg)
    kw.pop("width"), kw.pop("height")
    path = save_episode_picture(str(cfg.picture.out), agent=str(cfg.picture.agent), split=str(cfg.split),
                                episode_index=int(cfg.picture.episode_index), width=int(cfg.picture.size),
                                height=int(cfg.picture.size), n_frames=int(cfg.picture.n_frames),
                                seed=int(cfg.seed), **kw)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


def cmd_bench(cfg, args: list[str] | None = None) -> int:
    """``bench <name>`` -> benchmarks/bench_<name>.py:run(**kwargs it accepts)."""
    from omegaconf import OmegaConf

    if not args:
        have = sorted(p.stem[len("bench_"):] for p in BENCH_DIR.glob("bench_*.py"))
        raise CLIError(f"bench needs a name: spatialnav bench <name>; available: {', '.join(have) or 'none yet'}")
    name = args[0]
    path = BENCH_DIR / f"bench_{name}.py"
    if not path.exists():
        have = sorted(p.stem[len("bench_"):] for p in BENCH_DIR.glob("bench_*.py"))
        raise CLIError(f"no benchmark '{name}': {path} does not exist (available: {', '.join(have) or 'none yet'})")
    spec = importlib.util.spec_from_file_location(f"spatialnav_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "run"):
        raise CLIError(f"{path} has no run() function")
    kwargs = OmegaConf.to_container(cfg.bench.kwargs, resolve=True)
    params = inspect.signature(module.run).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown:
        raise CLIError(f"bench {name}: run() takes no {unknown}; it takes {list(params)}")
    if "cfg" in params:
        kwargs["cfg"] = cfg
    result = module.run(**kwargs)
    if isinstance(result, dict):
        from rich.pretty import pprint

        pprint(result)
    return 0


# -- dispatch -----------------------------------------------------------------------------

def _usage() -> str:
    lines = ["usage: spatialnav <command> [key=value ...] [--cfg]", "", "commands:"]
    for name, (target, helptext) in COMMANDS.items():
        lines.append(f"  {name:<10} {helptext}")
    lines += ["", "overrides (Hydra): agent=oracle split=val n_episodes=50 out_dir=runs/x env=tiny",
              "  experiment=debug, env.width=64, task.max_episode_steps=200; n= and out= are short",
              "  for n_episodes= and out_dir=. --cfg prints the composed config and exits."]
    return "\n".join(lines)


def _load_command(name: str):
    target = COMMANDS[name][0]
    module_name, _, func = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise CLIError(f"'spatialnav {name}' is provided by {module_name}, which is not installed "
                           f"or not written yet ({e.name} is missing)") from None
        raise
    fn = getattr(module, func, None)
    if fn is None:
        raise CLIError(f"'spatialnav {name}': {module_name} has no function {func}()")
    return fn


def _one_line(e: BaseException) -> str:
    """A user-facing message for an expected error; OSErrors name the path and what to do."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        hint = {FileExistsError: "a file is in the way of a folder the command writes: choose another path",
                NotADirectoryError: "a file is in the way of a folder the command writes: choose another path",
                PermissionError: "choose a path you can write (out_dir=...) or fix its permissions",
                IsADirectoryError: "a folder is in the way of a file the command writes: choose another path",
                }.get(type(e), "")
        return f"{e.strerror}: {e.filename}" + (f" ({hint})" if hint else "")
    return str(e)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"spatialnav: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    show_cfg = "--cfg" in rest
    positional = [a for a in rest if "=" not in a and not a.startswith("-")]
    overrides = [a for a in rest if "=" in a]
    flags = [a for a in rest if a.startswith("-") and a != "--cfg"]
    try:
        if flags:
            raise CLIError(f"unknown option(s) {flags}; settings are key=value overrides (see spatialnav --help)")
        if positional and name != "bench":
            raise CLIError(f"unexpected argument(s) {positional}; settings are key=value, e.g. n_episodes=5")
        cfg = compose_config(overrides)
        COMMAND_OVERRIDES[:] = overrides
        if show_cfg:
            from omegaconf import OmegaConf

            print(OmegaConf.to_yaml(cfg))
            return 0
        fn = _load_command(name)
        params = inspect.signature(fn).parameters
        rc = fn(cfg, positional) if len(params) >= 2 else fn(cfg)
        # commands return an exit code, or a result object (a summary dict, a path) meaning success
        return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0
    except CLIError as e:
        print(f"spatialnav {name}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        # Bad input (unknown agent or split, missing episode file, an out_dir that is a file or
        # cannot be written, a full disk): the message names it; SPATIALNAV_DEBUG=1 shows the
        # traceback instead. Other exceptions are bugs and keep their traceback.
        if os.environ.get("SPATIALNAV_DEBUG"):
            raise
        print(f"spatialnav {name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nspatialnav {name}: interrupted (eval resumes from its episodes.jsonl)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
