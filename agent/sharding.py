"""Shards of an evaluation: ``shard="i/n"`` runs episodes i, i+n, i+2n, ... of the first ``n_episodes``.

``merge([dir_0, ..., dir_{n-1}])`` summarises the union of the shards' out_dirs and equals a
single run's summary (rows are ordered by episode index before aggregation, and agents are seeded
per episode); given an ``out_dir`` it writes a complete out_dir there, which the unsharded command
then finds finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from agent.episode_log import (EPISODES_FILE, RUN_FILE, check_episode_rows, read_episode_log, summarize_rows,
                               write_json_atomic, write_summary)
from agent.provenance import provenance


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
