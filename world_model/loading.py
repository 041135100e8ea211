"""Find and load the saved ``Video4SpatialPipeline`` (the one loader of eval-wm, imagine, the agent
and the benchmarks).

Kept free of torch / diffusers imports at module level, so resolving a path (or failing to)
is cheap: ``spatialnav demo`` asks ``resolve_pipeline_path`` whether a checkpoint exists
before it imports anything heavy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
SHIPPED_PIPELINE = PACKAGE_DIR / "weights" / "v4s-small"
TRAINED_PIPELINE = Path("runs") / "wm" / "pipeline"
TRAIN_HINT = ("collect data and train one: `spatialnav collect world_model=small split=train n=8000` then "
              "`spatialnav train world_model=small` (it exports runs/wm/pipeline), or point "
              "agent.pipeline=<dir> at a saved Video4SpatialPipeline")
RETRY_SECONDS = 2.0
_UNSET = (None, "", "null", "none", "None")


def _candidates(path: str | os.PathLike | None) -> list[Path]:
    if path not in _UNSET:
        return [Path(str(path))]
    return [SHIPPED_PIPELINE, TRAINED_PIPELINE, REPO_DIR / TRAINED_PIPELINE]


def resolve_pipeline_path(path: str | os.PathLike | None = None) -> Path:
    """The pipeline directory to load: ``path`` when given, else the shipped weights
    (``world_model/weights/v4s-small``), else the training run's export (``runs/wm/pipeline``, in
    the working directory, then in the repo), else a ``FileNotFoundError`` that says how to make one."""
    for p in _candidates(path):
        if (p / "model_index.json").exists():
            return p
    if path not in _UNSET:
        raise FileNotFoundError(f"world-model checkpoint {str(path)!r} not found (no model_index.json); {TRAIN_HINT}")
    raise FileNotFoundError(f"no world-model checkpoint: neither the shipped weights ({SHIPPED_PIPELINE}) nor a "
                            f"training export ({TRAINED_PIPELINE}) exists; {TRAIN_HINT}")


def _export_in_progress(path: str | os.PathLike | None) -> bool:
    """A training export is mid-swap: it writes ``<dir>.tmp`` and then replaces ``<dir>`` by it."""
    return any(p.with_name(p.name + ".tmp").is_dir() for p in _candidates(path))


def load_pipeline(path: str | os.PathLike | None = None, device: str = "cpu", retries: int = 3):
    """The saved ``Video4SpatialPipeline`` at ``resolve_pipeline_path(path)``, in eval mode on ``device``;
    ``pipe.source_path`` says which directory it came from.

    A training run re-exports runs/wm/pipeline every few minutes (``<dir>.tmp`` written, ``<dir>``
    removed, the tmp renamed), so a load that races the swap (directory briefly missing, or files
    vanishing while read) is retried up to ``retries`` times, ``RETRY_SECONDS`` apart. A checkpoint
    that is simply missing fails at once, before diffusers is imported.
    """
    if not _export_in_progress(path):
        resolve_pipeline_path(path)  # nothing to wait for: a missing checkpoint fails here
    from .pipeline import Video4SpatialPipeline

    n = max(1, int(retries))
    for attempt in range(n):
        try:
            p = resolve_pipeline_path(path)
            pipe = Video4SpatialPipeline.from_pretrained(str(p))
            break
        except (OSError, ValueError, KeyError):
            if attempt == n - 1:
                raise
            time.sleep(RETRY_SECONDS)
    pipe.model.to(device).eval()
    pipe.source_path = str(p)
    return pipe


__all__ = ["SHIPPED_PIPELINE", "TRAINED_PIPELINE", "TRAIN_HINT", "load_pipeline", "resolve_pipeline_path"]
