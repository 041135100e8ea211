"""An evaluation's out_dir: its files, the episode log and the summary of its rows.

``episodes.jsonl`` gets one JSON line per finished episode, flushed and fsync'ed before the next
starts (``envs.logs.append_jsonl``); a half-written last line from a kill is cut off when the log
is read again, so a killed run resumes without losing or repeating an episode. ``summary.json``
holds the mean and 95% confidence interval of each metric (``envs.metrics.summarize``: Wilson for
success, normal approximation otherwise), ``run.json`` what decided the numbers
(``agent.provenance``); both are written whole or not at all (``write_json_atomic``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from envs.logs import read_jsonl
from envs.metrics import METRIC_KEYS, summarize

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
# The run's fingerprint (agent + settings, task, env, episode set, weights, code): a resume must match it.
RUN_FILE = "run.json"
# Fields that depend on the machine's speed, not on the agent's behaviour.
TIMING_KEYS = ("seconds", "seconds_per_step", "env_seconds", "agent_seconds")


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
    """``out_dir/summary.json``, written atomically: a reader never sees half a summary."""
    return write_json_atomic(Path(out_dir) / SUMMARY_FILE, summary)
