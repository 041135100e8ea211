"""Append-only JSON-lines logs that survive a kill mid-write (episode and sample logs).

Evaluations (``agent.runner``, ``world_model.evaluate``) write one JSON object per line and
fsync after each, so an interrupted run resumes by reading what is there: a final line
without its newline (the kill came mid-write) is ignored, and with ``repair=True`` cut from
the file so later appends stay valid JSON lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO


def read_jsonl(path: str | os.PathLike, repair: bool = False) -> list[dict]:
    """Rows of a JSON-lines log; [] when it does not exist. A corrupt line other than an
    unterminated last one, or a line that is JSON but not an object, is an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: list[dict] = []
    complete_len = data.rfind(b"\n") + 1  # bytes up to and including the last newline
    for lineno, line in enumerate(data[:complete_len].splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e}); fix or delete that line to resume") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: a {type(row).__name__} ({line[:60].decode(errors='replace')}), not a "
                             "JSON object with one row's fields; fix or delete that line to resume")
        rows.append(row)
    if repair and complete_len < len(data):
        with open(path, "r+b") as f:
            f.truncate(complete_len)
            f.flush()
            os.fsync(f.fileno())
    return rows


def append_jsonl(f: IO[str], row: dict) -> None:
    """Write one row to an open log and make it durable before returning."""
    f.write(json.dumps(row, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())
