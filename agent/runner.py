"""Episode runner and evaluation: resumable per-episode JSONL, summaries, shards.

``evaluate`` runs an agent over a split's episodes (or one shard of them) and
appends one JSON line per finished episode to ``out_dir/episodes.jsonl``,
flushed and fsync'ed before the next episode starts. Rerunning with the same
``out_dir`` reads that file first and skips every episode_id already there, so
a killed run resumes without losing or repeating an episode (a half-written
last line from the kill is cut off). ``summary.json`` holds the mean and 95%
confidence interval of each metric (``envs.metrics.summarize``: Wilson for
success, normal approximation otherwise).

Shards: ``shard="i/n"`` takes episodes i, i+n, i+2n, ... of the first
``n_episodes``; ``merge([dir_0, ..., dir_{n-1}])`` summarises the union and
equals a single run's summary (rows are ordered by episode index before
aggregation, and agents are seeded per episode).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from agent.base import AgentFactory, make_agent, resolve_agent
from envs.logs import append_jsonl, read_jsonl
from envs.metrics import METRIC_KEYS, summarize
from world_model.metrics import bootstrap_mean

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
# The run's fingerprint (agent + settings, task, env, episode set, weights, code): a resume must match it.
RUN_FILE = "run.json"
# Fields that depend on the machine's speed, not on the agent's behaviour.
TIMING_KEYS = ("seconds", "seconds_per_step", "env_seconds", "agent_seconds")


def parse_shard(shard: str | Sequence[int] | None) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        parts = shard.split("/")
        try:
            i, n = int(parts[0]), int(parts[1])
            if len(parts) != 2:
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(f"shard={shard!r}: expected 'i/n', e.g. '0/4' for the first of 4 shards") from None
    else:
        i, n = (int(v) for v in shard)
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard={shard!r}: need n >= 1 and 0 <= i < n")
    return i, n


def shard_indices(n_episodes: int, shard: str | Sequence[int] | None) -> list[int]:
    """Episode indices of one shard: every n-th episode starting at i."""
    i, n = parse_shard(shard)
    return list(range(i, int(n_episodes), n))


# -- the JSONL log ---------------------------------------------------------------

def read_episode_log(path: str | os.PathLike, repair: bool = False) -> list[dict]:
    """Rows of an episodes.jsonl (``envs.logs.read_jsonl``): a final line without its newline (a run
    killed while writing) is ignored, and with ``repair=True`` cut from the file so appends stay valid."""
    return read_jsonl(path, repair=repair)


def check_episode_rows(rows: Sequence[dict], path: str | os.PathLike) -> list[dict]:
    """Every row of an episodes.jsonl must be a finished episode: an object with an episode_id and a
    number for every metric (``envs.metrics.METRIC_KEYS``). A row without them would count as a
    finished episode and skew the summary, so it is an error naming the file and the row."""
    for i, r in enumerate(rows, 1):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: row {i} is {type(r).__name__} {str(r)[:60]}, not an episode object; "
                             "fix or delete that line to resume")
        if r.get("episode_id") in (None, ""):
            raise ValueError(f"{path}: row {i} has no episode_id; fix or delete that line to resume")
        bad = [k for k in METRIC_KEYS if not isinstance(r.get(k), (int, float))]  # (a bool is an int: success)
        if bad:
            raise ValueError(f"{path}: row {i} (episode {r['episode_id']!r}) lacks the metric(s) {bad}: it is not a "
                             "finished episode; fix or delete that line to resume")
    return list(rows)


# -- fingerprint and provenance ------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("agent", "envs", "planners", "world_model")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha1 (12 hex) of the project's Python source (agent, envs, planners, world_model): two runs
    with the same value ran the same code, whatever was committed in between (docs, tests).
    Hashed once per process, when it first asks: the code it runs is the code it loaded."""
    import hashlib

    h = hashlib.sha1()
    for pkg in CODE_PACKAGES:
        for f in sorted((REPO_ROOT / pkg).rglob("*.py")):
            h.update(str(f.relative_to(REPO_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def git_state() -> dict:
    """The checkout's commit and whether tracked files differ from it (None where git is missing)."""
    import subprocess

    def git(*args):
        try:
            r = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if dirty is None else bool(dirty)}


def module_fingerprint(module) -> str:
    """sha1 (12 hex) of a torch module's parameters and buffers (names, shapes, dtypes, bytes)."""
    import hashlib

    import torch

    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()[:12]


def agent_weights(agent) -> dict[str, str]:
    """Hashes of the learned weights an agent acts with: world model (with any SSG adapter installed
    in it), SSG prompter, instruction encoder, CLIP (its own or its guide's) and inverse dynamics."""
    import torch

    found = {}
    pipe = getattr(agent, "pipeline", None)
    guide = getattr(agent, "guide", None)
    candidates = {
        "world_model": getattr(pipe, "model", None),
        "ssg_prompter": getattr(pipe, "ssg_prompter", None),
        "text_encoder": getattr(pipe, "_text_encoder", None),
        "clip": getattr(agent, "clip", None) if guide is None else getattr(guide, "clip", None),
        "inverse_dynamics": getattr(agent, "inverse_dynamics", None),
    }
    for k, m in candidates.items():
        m = getattr(m, "model", m) if m is not None and not isinstance(m, torch.nn.Module) else m
        if isinstance(m, torch.nn.Module):
            found[k] = module_fingerprint(m)
    return found


def _jsonable(v):
    """A JSON-friendly copy of a setting: containers recursively, other objects by their type name."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return f"<{type(v).__name__}>"


def agent_settings(factory, agent_kwargs: dict | None) -> dict:
    """The agent's full settings: its constructor's defaults overridden by ``agent_kwargs``."""
    import inspect

    out: dict[str, Any] = {}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    for name, p in params.items():
        if name in ("env", "seed", "self") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is not p.empty:
            out[name] = p.default
    out.update(agent_kwargs or {})
    return _jsonable(out)


def episode_source(episodes, split: str, episode_seed: int) -> dict:
    """What the episodes come from: a file (with its sha1), a list (sha1 of its content), or the
    procedural generator for ``split`` with ``episode_seed`` (reproducible for one code version)."""
    import hashlib

    if episodes is None:
        return {"generated": str(split), "episode_seed": int(episode_seed)}
    if isinstance(episodes, (str, os.PathLike)):
        p = Path(episodes)
        return {"file": str(p), "sha1": hashlib.sha1(p.read_bytes()).hexdigest()[:12] if p.is_file() else None}
    items = [e.to_habitat() if hasattr(e, "to_habitat") else e for e in episodes]
    return {"list": len(items), "sha1": hashlib.sha1(json.dumps(_jsonable(items), sort_keys=True).encode()).hexdigest()[:12]}


ENV_SETTINGS = ("width", "height", "hfov_deg", "max_depth", "backend", "max_episode_steps", "success_distance",
                "episode_seed", "paraphrase", "paraphrase_seed", "instructions")


def run_fingerprint(agent_name: str, factory, agent_kwargs: dict | None, seed: int, split: str, episodes,
                    env, bot) -> dict:
    """Everything that decides an evaluation's numbers (``RUN_FILE``): a resume must match it."""
    sim = env.unwrapped
    return {
        "agent": agent_name,
        "agent_settings": agent_settings(factory, agent_kwargs),
        "seed": int(seed),
        "split": str(split),
        "env": {"class": type(sim).__name__, **{k: _jsonable(getattr(sim, k)) for k in ENV_SETTINGS if hasattr(sim, k)}},
        "episodes": episode_source(episodes, split, getattr(sim, "episode_seed", 0)),
        "weights": agent_weights(bot),
        "code_version": code_version(),
    }


def fingerprint_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs (nested keys dotted)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += fingerprint_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write JSON to ``path`` through a temporary file, fsync'ed, then renamed: a reader (or a run
    killed mid-write) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


# -- summaries ---------------------------------------------------------------------

def summarize_rows(rows: Iterable[dict], agent: str = "", split: str = "") -> dict:
    """Flat summary of episode rows: mean of each metric plus ``<metric>_ci95`` = [low, high].

    Rows are deduplicated by episode_id and ordered by episode index first, so the
    result does not depend on the order episodes finished in.
    """
    unique: dict[str, dict] = {}
    for r in rows:
        unique.setdefault(str(r["episode_id"]), r)
    ordered = sorted(unique.values(), key=lambda r: (r.get("episode_index", 0), str(r["episode_id"])))
    stats = summarize(ordered, keys=METRIC_KEYS) if ordered else {}
    out: dict[str, Any] = {"agent": agent, "split": split, "n_episodes": len(ordered)}
    for k in METRIC_KEYS:
        s = stats.get(k)
        out[k] = s["mean"] if s else math.nan
        out[f"{k}_ci95"] = [s["ci95_low"], s["ci95_high"]] if s else [math.nan, math.nan]
    total_steps = sum(float(r.get("steps", 0)) for r in ordered)
    total_sec = sum(float(r.get("seconds", 0.0)) for r in ordered)
    out["seconds_per_step"] = total_sec / total_steps if total_steps else math.nan
    out["env_seconds_per_step"] = (
        sum(float(r.get("env_seconds", 0.0)) for r in ordered) / total_steps if total_steps else math.nan
    )
    out["episode_ids"] = [str(r["episode_id"]) for r in ordered]
    return out


def write_summary(out_dir: str | os.PathLike, summary: dict) -> Path:
    return write_json_atomic(Path(out_dir) / SUMMARY_FILE, summary)  # a reader never sees half a summary


def merge(out_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None) -> dict:
    """Summary over the union of several shard directories (optionally written to ``out_dir``)."""
    rows: list[dict] = []
    agents, splits = set(), set()
    for d in out_dirs:
        path = Path(d) / EPISODES_FILE
        if not path.exists():
            raise FileNotFoundError(f"merge: {path} does not exist (is {d} an evaluate() out_dir?)")
        for r in read_episode_log(path):
            rows.append(r)
            agents.add(r.get("agent", ""))
            splits.add(r.get("split", ""))
    rows = check_episode_rows(rows, "merge")
    summary = summarize_rows(rows, agent="+".join(sorted(agents)), split="+".join(sorted(splits)))
    fps = [json.loads((Path(d) / RUN_FILE).read_text()) if (Path(d) / RUN_FILE).exists() else None for d in out_dirs]
    same = fps[0] is not None and all(f == fps[0] for f in fps)  # shards of one configuration
    summary["provenance"] = {**provenance(fps[0] if same else None), "merged_from": [str(d) for d in out_dirs]}
    if out_dir is not None:
        # The merged directory is a complete evaluate() out_dir: the union of the shards' episode
        # logs (one row per episode id) and the summary, so rerunning the unsharded command there
        # finds every episode done.
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        unique = {str(r["episode_id"]): r for r in rows}
        ordered = sorted(unique.values(), key=lambda r: (r.get("episode_index", 0), str(r["episode_id"])))
        tmp = Path(out_dir) / (EPISODES_FILE + ".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered))
        tmp.replace(Path(out_dir) / EPISODES_FILE)
        if same:  # the merged dir resumes like one of its shards
            write_json_atomic(Path(out_dir) / RUN_FILE, fps[0])
        write_summary(out_dir, summary)
    return summary


def paired_comparison(rows_a: Iterable[dict], rows_b: Iterable[dict], keys: Sequence[str] = ("success", "spl"),
                      n_boot: int = 10000, seed: int = 0, id_key: str = "episode_id") -> dict:
    """Run A against run B on the items both ran (matched by ``id_key``: episodes, or eval-wm samples).

    For each metric: the mean difference A - B, its 95% paired-bootstrap interval (items
    resampled with replacement, ``n_boot`` times) and the bootstrap share of differences <= 0.
    An item missing the metric (None, e.g. an eval-wm sample skipped in one run) is left out of
    that metric. For ``success`` and every true/false metric also the items only A got, only B
    got, and both got.
    """
    a = {str(r[id_key]): r for r in rows_a}
    b = {str(r[id_key]): r for r in rows_b}
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError(f"the two runs share no {id_key}: compare runs of the same episodes or samples")
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"n_episodes": len(ids), "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a)),
                           "id_key": id_key}
    for k in keys:
        both = [i for i in ids if a[i].get(k) is not None and b[i].get(k) is not None]
        if not both:
            raise ValueError(f"metric {k!r} is in neither run's shared items (check compare.metrics)")
        va = np.array([float(a[i][k]) for i in both])
        vb = np.array([float(b[i][k]) for i in both])
        d = va - vb
        ci, boot = bootstrap_mean(d, int(n_boot), rng)
        out[k] = {"n": len(both), "a": float(va.mean()), "b": float(vb.mean()), "diff": float(d.mean()),
                  "ci95": ci, "p_diff_le_0": float((boot <= 0).mean())}
        if k == "success" or all(isinstance(a[i][k], bool) and isinstance(b[i][k], bool) for i in both):
            sa, sb = va > 0.5, vb > 0.5
            out[k].update(only_a=int((sa & ~sb).sum()), only_b=int((~sa & sb).sum()), both=int((sa & sb).sum()))
    return out


def format_table(summary: dict, title: str | None = None):
    """A rich Table of the metrics with 95% confidence intervals."""
    from rich.table import Table

    t = Table(title=title or f"{summary.get('agent', '')} on {summary.get('split', '')} "
                              f"({summary.get('n_episodes', 0)} episodes)")
    t.add_column("metric")
    t.add_column("mean", justify="right")
    t.add_column("95% CI", justify="right")
    for k in METRIC_KEYS:
        lo, hi = summary.get(f"{k}_ci95", [math.nan, math.nan])
        ci = "-" if lo is None or not np.isfinite(lo) else f"[{lo:.3f}, {hi:.3f}]"
        t.add_row(k, f"{summary.get(k, math.nan):.3f}", ci)
    sps = summary.get("seconds_per_step", math.nan)
    t.add_row("seconds_per_step", f"{sps * 1e3:.2f} ms" if np.isfinite(sps) else "-", "")
    return t


def results_rows_markdown(summaries: Sequence[dict]) -> str:
    """A markdown table, one row per summary (``label`` or agent): the metrics with 95% CIs and s/step."""
    def ci(sm, k, fmt):
        lo, hi = sm.get(f"{k}_ci95", [math.nan, math.nan])
        m = sm.get(k, math.nan)
        if lo is None or not np.isfinite(lo):
            return fmt.format(m)
        return f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}]"

    lines = ["| agent | episodes | success | SPL | SoftSPL | dist. to goal (m) | steps | s / step |",
             "|---|---|---|---|---|---|---|---|"]
    for sm in summaries:
        lines.append(f"| {sm.get('label', sm.get('agent', ''))} | {sm.get('n_episodes', 0)} | "
                     f"{ci(sm, 'success', '{:.3f}')} | {ci(sm, 'spl', '{:.3f}')} | {ci(sm, 'softspl', '{:.3f}')} | "
                     f"{sm.get('distance_to_goal', math.nan):.2f} | {sm.get('steps', math.nan):.1f} | "
                     f"{sm.get('seconds_per_step', math.nan):.3f} |")
    return "\n".join(lines)


def provenance_markdown(summaries: Sequence[dict]) -> str:
    """One line saying which code and weights made the rows (from each summary's ``provenance``)."""
    provs = [(sm.get("label", sm.get("agent", "")), sm.get("provenance")) for sm in summaries]
    provs = [(label, p) for label, p in provs if p]
    if not provs:
        return ""
    p0 = provs[0][1]
    commit = (p0.get("git_commit") or "unknown")[:10] + (" + uncommitted changes" if p0.get("git_dirty") else "")
    weights = "; ".join(f"{label}: " + ", ".join(f"{k} {v}" for k, v in sorted(p.get("weights", {}).items()))
                        for label, p in provs if p.get("weights"))
    return (f"Provenance: git {commit}, code {p0.get('code_version', '?')}"
            + (f"; weights (sha1 of the loaded tensors) {weights}" if weights else "; no learned weights") + ".")


def update_results_md(path: str | os.PathLike, summaries: Sequence[dict], command: str, key: str,
                      note: str = "") -> Path:
    """Write the agents' rows into ``path`` (e.g. docs/results.md) inside a block marked by ``key``:
    a later run with the same key replaces its block, other blocks and text are kept."""
    path = Path(path)
    begin, end = f"<!-- spatialnav-eval {key} -->", f"<!-- /spatialnav-eval {key} -->"
    prov = provenance_markdown(summaries)
    block = "\n".join([begin, f"### `{key}`", "", results_rows_markdown(summaries), "",
                       "```bash", command, "```"] + ([prov] if prov else []) + ([note] if note else []) + [end])
    text = path.read_text() if path.exists() else "# Results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def print_table(summary: dict, title: str | None = None) -> None:
    from rich.console import Console

    Console().print(format_table(summary, title))


# -- fair play ------------------------------------------------------------------------
# Every agent but a privileged one (class attribute ``privileged = True``, the Oracle)
# sees only the observation, these info keys and the context tour's frames and poses.
# The metrics in ``info`` (distance_to_goal, success, ...) are ground truth and never
# reach them. ``episode_id`` reaches them only as an opaque token (``episode_token``): the
# real id names the scene seed ("val_100003_2"), which would let an agent rebuild the
# scene; the token serves only to seed the agent's randomness per episode.
PUBLIC_INFO_KEYS = ("episode_id",)
PUBLIC_CONTEXT_KEYS = ("rgb", "depth", "poses", "pitch", "indices")
# Sensor and task settings a robot would know about itself.
SENSOR_ATTRIBUTES = ("observation_space", "action_space", "width", "height", "hfov_deg", "max_depth",
                     "max_episode_steps", "success_distance")


class PrivilegedAccessError(AttributeError):
    """A non-privileged agent asked the env for ground truth."""


class SensorView:
    """The env as a non-privileged agent may see it: copies of the sensor settings, nothing else.

    It holds no reference to the env, so scene, grid, episode, pose and the like are out of
    reach; asking for them raises ``PrivilegedAccessError`` naming the rule.
    """

    def __init__(self, env) -> None:
        sim = env.unwrapped
        for k in SENSOR_ATTRIBUTES:
            if hasattr(sim, k):
                object.__setattr__(self, k, getattr(sim, k))

    @property
    def unwrapped(self) -> "SensorView":
        return self

    def __getattr__(self, name: str):
        raise PrivilegedAccessError(
            f"env.{name} is not available to a non-privileged agent: it may read only obs, "
            f"info keys {PUBLIC_INFO_KEYS}, the context tour and the sensor settings {SENSOR_ATTRIBUTES} "
            f"(set `privileged = True` on the agent class to mark it as an oracle)"
        )

    def __setattr__(self, name: str, value) -> None:
        raise PrivilegedAccessError("SensorView is read-only")


@dataclasses.dataclass(frozen=True)
class Access:
    """What the runner hands an agent: ``privileged`` = built with the env itself and given the
    full info (ground truth); ``context`` = given the context tour at reset."""

    privileged: bool = False
    context: bool = False


def agent_access(agent) -> Access:
    """The one place that decides what an agent gets, from its class alone.

    ``agent`` is an agent class, a factory or an instance. Only class attributes count (read
    statically, so a property or an instance attribute cannot widen access), and only the value
    ``True`` grants: ``privileged = True`` (the Oracle) and ``needs_context = True``. A factory
    that is not a class (a function) is granted nothing before it builds; what it builds is then
    judged by its class (``build_agent``).
    """
    cls = agent if isinstance(agent, type) else type(agent)
    return Access(privileged=inspect.getattr_static(cls, "privileged", False) is True,
                  context=inspect.getattr_static(cls, "needs_context", False) is True)


def is_privileged(agent) -> bool:
    """``agent_access(agent).privileged``: decided by the class, never by an instance attribute."""
    return agent_access(agent).privileged


def build_agent(factory, env, seed=None, **kwargs) -> tuple[Any, Access]:
    """Build ``factory`` as fair play allows and return it with its ``Access``.

    A privileged class is built with ``env``; anything else with ``SensorView(env)``. The access
    is then read from the built agent's class; a privileged agent that its factory's class did not
    declare (a function returning an Oracle, a class that made itself privileged while building)
    is refused, so what it was built with and what it is given always agree.
    """
    grant = agent_access(factory)
    bot = make_agent(factory, env=env if grant.privileged else SensorView(env), seed=seed, **kwargs)
    access = agent_access(bot)
    if access.privileged and not grant.privileged:
        raise ValueError(
            f"{type(bot).__name__} is privileged but was built by {getattr(factory, '__name__', factory)!r}, "
            f"whose class does not say privileged = True: pass the agent class itself so the runner can "
            f"give it the env"
        )
    return bot, access


def episode_token(episode_id) -> str:
    """An opaque, stable stand-in for an episode id (a salted hash): the same id always gives the
    same token (so seeding stays reproducible), and the token says nothing about the scene."""
    import hashlib

    return "ep-" + hashlib.sha256(b"spatialnav-episode-token:" + str(episode_id).encode()).hexdigest()[:16]


def public_info(info: dict) -> dict:
    """The part of an env info dict a non-privileged agent may see (``episode_id`` as a token)."""
    out = {k: info[k] for k in PUBLIC_INFO_KEYS if k in info}
    if "episode_id" in out:
        out["episode_id"] = episode_token(out["episode_id"])
    return out


def public_context(context: dict | None) -> dict | None:
    return None if context is None else {k: context[k] for k in PUBLIC_CONTEXT_KEYS if k in context}


# -- evaluation ------------------------------------------------------------------------

def run_episode(env, agent, episode_index: int, seed: int | None = None,
                frame_callback: Callable[[Any], None] | None = None,
                obs_callback: Callable[[dict], None] | None = None) -> dict:
    """Run one episode to STOP or truncation; returns the final info plus timings.

    What the agent gets is ``agent_access(agent)`` (its class): the context tour only with
    ``needs_context = True``; the full info only when privileged, else ``public_info(info)`` and
    ``public_context(tour)``. An agent with ``debug_panels()`` gets a video frame of observation |
    its panels. ``frame_callback`` gets a video frame, ``obs_callback`` the observation, at the start
    and after every step.
    """
    sim = env.unwrapped
    access = agent_access(agent)
    obs, info = env.reset(seed=seed, options={"episode_index": int(episode_index)})
    context = sim.context_tour() if access.context else None
    t_agent = time.perf_counter()
    if access.privileged:
        agent.reset(obs, info, context)
    else:
        agent.reset(obs, public_info(info), public_context(context))
    agent_sec = time.perf_counter() - t_agent
    env_sec = 0.0
    if obs_callback is not None:
        obs_callback(obs)
    if frame_callback is not None:
        frame_callback(_video_frame(env, agent, obs))
    done = False
    while not done:
        t0 = time.perf_counter()
        action = agent.act(obs)
        t1 = time.perf_counter()
        obs, _, terminated, truncated, info = env.step(action)
        t2 = time.perf_counter()
        agent_sec += t1 - t0
        env_sec += t2 - t1
        done = terminated or truncated
        if obs_callback is not None:
            obs_callback(obs)
        if frame_callback is not None:
            frame_callback(_video_frame(env, agent, obs))
    row = {k: (float(info[k]) if k in METRIC_KEYS else info[k]) for k in info}
    if hasattr(agent, "episode_stats"):
        row.update({f"agent_{k}": v for k, v in agent.episode_stats().items()})
    row["episode_index"] = int(episode_index)
    row["called_stop"] = bool(terminated)
    row["agent_seconds"] = agent_sec
    row["env_seconds"] = env_sec
    row["seconds"] = agent_sec + env_sec
    row["seconds_per_step"] = row["seconds"] / max(1.0, row["steps"])
    return row


def is_batchable(agent) -> bool:
    """Whether ``evaluate(num_envs=N)`` may run copies of this agent side by side: its class says
    ``batchable = True`` (read statically, like ``agent_access``). The promise is that an instance's
    actions in an episode depend only on its settings, seed and that episode, never on the episodes
    it ran before or on another instance, so N copies over N envs give a serial run's rows."""
    cls = agent if isinstance(agent, type) else type(agent)
    return inspect.getattr_static(cls, "batchable", False) is True


def batchable_agents() -> list[str]:
    """The registered agents that declare ``batchable = True`` (importing each agent's module)."""
    from agent.base import available_agents

    out = []
    for name in available_agents():
        try:
            if is_batchable(resolve_agent(name)):
                out.append(name)
        except (ValueError, ImportError):
            continue
    return out


def run_parallel(pairs: Sequence[tuple[Any, Any]], indices: Sequence[int], seed: int | None = None,
                 video: Iterable[int] = ()):
    """Run the episodes ``indices`` over the (env, agent) ``pairs``; yields (row, frames) per episode
    as it finishes (frames: the video frames for an index in ``video``, else None).

    One pair runs them in order in this thread. Several pairs run in one worker thread each, every
    worker taking the next index when its episode ends: the ray casts, numpy and torch release the
    GIL, so the envs step side by side. Each episode is ``run_episode`` on one pair, as in a serial
    run, so its row is the same (timings aside). An exception in a worker is raised here and the
    other workers stop after their current episode.
    """
    import queue
    import threading

    video = set(video)

    def one(env, agent, idx):
        frames: list[np.ndarray] | None = [] if idx in video else None
        row = run_episode(env, agent, idx, seed=seed, frame_callback=None if frames is None else frames.append)
        return row, frames

    if len(pairs) == 1:
        env, agent = pairs[0]
        for idx in indices:
            yield one(env, agent, idx)
        return
    todo: queue.Queue = queue.Queue()
    for idx in indices:
        todo.put(idx)
    done: queue.Queue = queue.Queue()
    stop = threading.Event()

    def worker(env, agent):
        try:
            while not stop.is_set():
                try:
                    idx = todo.get_nowait()
                except queue.Empty:
                    break
                done.put(("row", one(env, agent, idx)))
        except BaseException as e:  # handed to the caller, which raises it
            stop.set()
            done.put(("error", e))
        finally:
            done.put(("exit", None))

    threads = [threading.Thread(target=worker, args=p, daemon=True, name=f"spatialnav-env-{i}")
               for i, p in enumerate(pairs)]
    for t in threads:
        t.start()
    running = len(threads)
    try:
        while running:
            kind, item = done.get()
            if kind == "exit":
                running -= 1
            elif kind == "error":
                raise item
            else:
                yield item
    finally:
        # A consumer that stops early (an error, ^C) does not wait: the workers (daemon threads) end
        # after their current episode, whose rows are dropped and rerun by a resume.
        stop.set()


def check_eval_args(n_episodes, video, seed, out_dir, shard=None, num_envs=1) -> None:
    """evaluate()'s own arguments, checked before anything is created (names the value and the fix)."""
    parse_shard(shard)
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be an integer >= 1, got {n_episodes!r}")
    if not isinstance(video, (bool, int, np.integer)) or (not isinstance(video, bool) and video < 0):
        raise ValueError(f"video must be true/false or a number of episodes >= 0, got {video!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    p = Path(out_dir)
    for q in (p, *p.parents):
        if q.exists() and not q.is_dir():
            raise ValueError(f"out_dir={str(out_dir)!r}: {str(q)!r} is a file, not a folder; choose another out_dir")


def check_resume(out: Path, fingerprint: dict, n_done: int) -> None:
    """Refuse to add episodes to an out_dir whose finished episodes came from another configuration
    (``fingerprint_diff`` names each difference); record the fingerprint in a fresh out_dir."""
    path = out / RUN_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); delete it together with {EPISODES_FILE} "
                             "or use another out_dir") from None
        diff = fingerprint_diff(old if isinstance(old, dict) else {}, fingerprint)
        if diff and n_done:
            raise ValueError(f"{out} holds {n_done} episode(s) of another configuration: " + "; ".join(diff)
                             + ". Use another out_dir (or delete that one) to evaluate this configuration")
        if not diff:
            return
    elif n_done:
        raise ValueError(f"{out} holds {n_done} episode(s) but no {RUN_FILE} saying which configuration made them "
                         "(written before runs were fingerprinted); use another out_dir or delete that one")
    write_json_atomic(path, fingerprint)


def provenance(fingerprint: dict | None = None) -> dict:
    """Where a summary's numbers come from: git commit (and uncommitted changes), the code version,
    the weights' hashes and the command that ran."""
    import sys

    out = git_state()
    out["code_version"] = code_version()
    out["command"] = " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else ""
    if fingerprint is not None:
        out["weights"] = fingerprint.get("weights", {})
    return out


def evaluate(
    agent: str | AgentFactory = "random",
    split: str = "val",
    n_episodes: int = 50,
    out_dir: str | os.PathLike = "runs/eval",
    shard: str | Sequence[int] | None = "0/1",
    video: bool | int = False,
    seed: int = 0,
    episodes=None,
    agent_kwargs: dict | None = None,
    progress: bool = True,
    print_summary: bool = True,
    video_fps: int = 8,
    num_envs: int = 1,
    **env_kwargs: Any,
) -> dict:
    """Evaluate ``agent`` on the first ``n_episodes`` of ``split`` (one shard of them).

    Args:
        agent: a registered agent name (``agent.base.available_agents()``) or a factory
            ``f(env=, seed=, **agent_kwargs)``.
        split, episodes, env_kwargs: passed to ``ObjectNavEnv`` (``episodes`` may be a
            json.gz path or a list; None generates ``n_episodes`` for ``split``). ``env_kwargs`` may hold
            ``env_factory``: another env instead (``_make_env``; configs/env/miniworld/*.yaml).
        out_dir: where episodes.jsonl, summary.json and videos/ go; rerunning resumes.
        shard: "i/n": evaluate episodes i, i+n, ...; merge the shards with ``merge``.
        video: False/0 = none, True = every episode, k = the first k of this shard (mp4).
        seed: agent seed (per episode it is combined with the episode id).
        num_envs: run this many envs side by side, each with its own agent, in threads
            (``run_parallel``); only agents whose class says ``batchable = True`` (``is_batchable``).
            The episodes' rows are those of a serial run (they are appended as episodes finish, so
            in another order); num_envs is not part of the run's fingerprint, so either may resume the other.
    Returns the summary dict (also written to out_dir/summary.json).
    """
    agent_name = agent if isinstance(agent, str) else getattr(agent, "__name__", type(agent).__name__)
    check_eval_args(n_episodes=n_episodes, video=video, seed=seed, out_dir=out_dir, shard=shard, num_envs=num_envs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / EPISODES_FILE
    done_rows = check_episode_rows(read_episode_log(log_path, repair=True), log_path)
    for r in done_rows:
        if r.get("agent") != agent_name or r.get("split") != split:
            raise ValueError(
                f"{log_path} holds episodes of agent={r.get('agent')!r} split={r.get('split')!r}, not "
                f"agent={agent_name!r} split={split!r}; use another out_dir or delete that file"
            )
    done_ids = {str(r["episode_id"]) for r in done_rows}

    env_factory = env_kwargs.pop("env_factory", None)
    env = _make_env(env_factory, split=split, episodes=episodes, n_episodes=n_episodes, **env_kwargs)
    envs = [env]
    try:
        n_avail = len(env.episodes)
        if n_episodes > n_avail:
            raise ValueError(f"n_episodes={n_episodes} but only {n_avail} episodes are available for {split!r}")
        indices = shard_indices(n_episodes, shard)
        wanted_ids = {str(env.episodes[i].episode_id) for i in indices}
        todo = [i for i in indices if str(env.episodes[i].episode_id) not in done_ids]
        n_video = len(indices) if video is True else int(video or 0)
        video_set = set(indices[:n_video])
        factory = resolve_agent(agent)
        if num_envs > 1 and not is_batchable(factory):
            raise ValueError(f"agent {agent_name!r} cannot run with num_envs={num_envs}: its class does not say "
                             f"batchable = True (agents that can: {', '.join(batchable_agents())}); use num_envs=1")
        # Only a privileged agent class (the Oracle) gets the env itself; the rest get its sensor settings.
        bot, _ = build_agent(factory, env, seed=seed, **(agent_kwargs or {}))
        fingerprint = run_fingerprint(agent_name, factory, agent_kwargs, seed, split, episodes, env, bot)
        check_resume(out, fingerprint, n_done=len(done_rows))
        pairs = [(env, bot)]
        for _ in range(min(num_envs, len(todo)) - 1):
            envs.append(_make_env(env_factory, split=split, episodes=episodes, n_episodes=n_episodes, **env_kwargs))
            pairs.append((envs[-1], build_agent(factory, envs[-1], seed=seed, **(agent_kwargs or {}))[0]))

        bar = _progress(todo, total=len(indices), initial=len(indices) - len(todo),
                        desc=f"{agent_name}/{split} {parse_shard(shard)[0]}/{parse_shard(shard)[1]}",
                        enable=progress)
        n_success = sum(float(r.get("success", 0)) for r in done_rows)
        with open(log_path, "a") as f:
            for k, (row, frames) in enumerate(run_parallel(pairs, todo, seed=seed, video=video_set)):
                row["agent"] = agent_name
                row["split"] = split
                if frames is not None:
                    from world_model.video_io import write_video

                    vpath = out / "videos" / f"{_safe(row['episode_id'])}.mp4"
                    row["video"] = str(write_video(frames, vpath, fps=video_fps))
                append_jsonl(f, row)
                n_success += row["success"]
                bar.update(1)
                bar.set_postfix(success=f"{n_success / (len(done_rows) + k + 1):.2f}")
        bar.close()
    finally:
        for e in envs:
            e.close()

    # Only the requested episodes count: rows of other episodes (an earlier run with a larger
    # n_episodes, another shard merged here) stay in the log but not in this summary.
    rows = [r for r in read_episode_log(log_path) if str(r["episode_id"]) in wanted_ids]
    summary = summarize_rows(rows, agent=agent_name, split=split)
    summary["shard"] = "/".join(map(str, parse_shard(shard)))
    summary["provenance"] = provenance(fingerprint)
    write_summary(out, summary)
    if print_summary:
        print_table(summary)
    return summary


def _make_env(factory, **kwargs):
    """``ObjectNavEnv(**kwargs)``, or ``factory(**kwargs)`` for another env: a callable or a
    ``"module:function"`` string (e.g. ``envs.miniworld:miniworld_env``, an ``envs.adapters.GymAdapter``
    that provides ``episodes``, ``reset(options={"episode_index": i})`` and the metric keys in ``info``)."""
    if factory is None:
        from envs.gym_env import ObjectNavEnv

        return ObjectNavEnv(**kwargs)
    if isinstance(factory, str):
        import importlib

        module, _, attr = factory.partition(":")
        if not module or not attr:
            raise ValueError(f"env_factory={factory!r}: expected 'package.module:function'")
        factory = getattr(importlib.import_module(module), attr, None)
        if factory is None:
            raise ValueError(f"env_factory={module}:{attr}: {module} has no {attr}")
    return factory(**kwargs)


def _video_frame(env, agent, obs) -> np.ndarray:
    """observation | the agent's own panels (imagined rollout, its map) when it has them, under the
    agent's ``debug_caption()`` when it has one; else ``env.render()`` (observation | the
    simulator's top-down map)."""
    if hasattr(agent, "debug_panels"):
        from agent.video import panel_frame
        from world_model.frames import caption

        frame = panel_frame(obs["rgb"], agent.debug_panels())
        if hasattr(agent, "debug_caption"):
            frame = caption(frame, agent.debug_caption(), band=22, font_size=14)
        return frame
    return env.render()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _progress(items, total: int, initial: int, desc: str, enable: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enable, unit="ep", dynamic_ncols=True)
