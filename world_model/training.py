"""What the project's training loops share: an Accelerator, atomic rotated checkpoints, diffusers'
learning-rate schedules, and the run's totals (``training.json``).

The loops: ``world_model.train`` (the world model), ``world_model.ssg.train_adapter`` (the SSG
adapter), ``world_model.autoencoder``, ``world_model.ssg.train_clip`` and ``train_minilm_clip``
(the CLIPs) and ``planners.inverse_dynamics``. Each one

* runs under Accelerate (:func:`make_accelerator`; a CPU, or ``accelerate launch`` on GPUs);
* checkpoints with ``Accelerator.save_state`` into ``out_dir/ckpt/step_XXXXXXXX``
  (:func:`save_checkpoint`: model, optimiser, schedule, RNG states and whatever the loop registered
  with ``register_for_checkpointing``, plus ``train_state.json``), keeps the newest
  ``keep_checkpoints`` of them, and on a restart resumes from the newest complete one
  (:func:`resume_checkpoint`);
* takes its learning rate from ``diffusers.optimization.get_scheduler`` (the world model and the
  adapter keep their linear warm-up to a constant rate: ``world_model.train.make_optimizer``);
* records what the training cost in ``train_state.json`` of every checkpoint and in
  ``out_dir/training.json`` (:class:`RunClock`): optimiser steps, samples, and the wall-clock seconds
  summed over every invocation that led to the checkpoint. "How long did this model train" is read
  from there (``research.release``, the exported models' metadata), not parsed out of ``train.log``
  (:func:`training_time_from_log` stays for runs from before the file).

Why not Accelerate's ``ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=N)``: it
writes straight into ``checkpoints/checkpoint_<i>`` and ``load_state()`` picks the highest ``i``,
complete or not, so a run killed mid-save would resume from half a checkpoint (issue 23); and ``i``
counts saves, not optimiser steps. :func:`save_checkpoint` writes beside, fsyncs, marks the
checkpoint complete with ``train_state.json`` last and renames it into place. The project
configuration names the run directory (``Accelerator.project_dir``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from envs.atomic import fsync_tree, recover_dir, replace_dir, write_text_atomic

TRAIN_STATE = "train_state.json"  # written last: a step_* dir without a readable one is not a checkpoint
TRAINING_FILE = "training.json"  # the run's totals at its newest checkpoint (RunClock)
STAMP = "%Y-%m-%d %H:%M:%S"  # the log's and the metadata's local time format


# ----------------------------------------------------------------------------- config and accelerator
def check_keys(cls, d, what: str) -> None:
    """Raise a ValueError listing the valid keys when ``d`` has keys that are not fields of dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; valid keys: {sorted(names)}")


def make_accelerator(out_dir: str | os.PathLike, mixed_precision: str = "no", cpu: bool | None = None, **kwargs):
    """An ``Accelerator`` whose project directory is the run's ``out_dir`` (``cpu``: None = use a
    GPU where there is one)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    cpu = not torch.cuda.is_available() if cpu is None else bool(cpu)
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu,
                       project_config=ProjectConfiguration(project_dir=str(out_dir)), **kwargs)


def make_schedule(name: str, optimizer, warmup_steps: int, total_steps: int):
    """``diffusers.optimization.get_scheduler(name, ...)`` with an error that lists the names."""
    from diffusers.optimization import SchedulerType, get_scheduler

    names = [s.value for s in SchedulerType]
    if name not in names:
        raise ValueError(f"lr schedule {name!r} is not one of diffusers' schedules {names}")
    if warmup_steps < 0 or total_steps < 1:
        raise ValueError(f"need warmup_steps >= 0 and total steps >= 1, got {warmup_steps} and {total_steps}")
    return get_scheduler(name, optimizer, num_warmup_steps=int(warmup_steps), num_training_steps=int(total_steps))


def seek_schedule(scheduler, step: int) -> None:
    """Put a ``LambdaLR`` (or Accelerate's wrapper of one) at ``step`` and set the optimiser's rates to
    it: for a run resumed from a checkpoint that holds no schedule state (the trainers' old format)."""
    s = getattr(scheduler, "scheduler", scheduler)
    s.last_epoch = int(step)
    s._step_count = int(step) + 1
    rates = [base * fn(int(step)) for base, fn in zip(s.base_lrs, s.lr_lambdas)]
    for group, lr in zip(s.optimizer.param_groups, rates):
        group["lr"] = lr
    s._last_lr = rates


class GeneratorState:
    """A numpy ``Generator`` or a ``torch.Generator`` as an object Accelerate checkpoints
    (``acc.register_for_checkpointing(GeneratorState(rng))``): a resumed run draws what the
    uninterrupted one would have drawn next."""

    def __init__(self, generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        g = self.generator
        return {"torch": g.get_state()} if isinstance(g, torch.Generator) else {"numpy": g.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if isinstance(self.generator, torch.Generator):
            self.generator.set_state(state["torch"])
        else:
            self.generator.bit_generator.state = state["numpy"]


# ----------------------------------------------------------------------------- log
def train_logger(acc, log_path: Path, echo=None):
    """``log(msg)``: a time-stamped line appended to ``log_path`` by the main process; ``echo``
    (a callable, e.g. ``print``) also gets the message."""
    def log(msg: str) -> None:
        if acc.is_main_process:
            with open(log_path, "a") as f:
                f.write(time.strftime(STAMP + " ") + msg + "\n")
            if echo is not None:
                echo(msg)
    return log


def to_stderr(prefix: str):
    """An ``echo`` for :func:`train_logger`: ``[prefix] msg`` on stderr."""
    return lambda msg: print(f"[{prefix}] {msg}", file=sys.stderr, flush=True)


def training_time_from_log(log_path: str | Path) -> dict:
    """Steps and wall time of a run from the ``train.log`` that :func:`train_logger` writes (one segment
    per start/resume, from its first line to its last): ``{"steps", "wall_hours", "invocations",
    "started"}`` (``started``: the first time stamp). For runs from before ``training.json``; reads the
    file once."""
    import re
    from datetime import datetime

    segments, cur = [], None
    last_step, started = 0, None
    for line in Path(log_path).read_text().splitlines():
        m = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$", line)
        if not m:
            continue
        started = started or m.group(1)
        t = datetime.strptime(m.group(1), STAMP).timestamp()
        msg = m.group(2)
        if msg.startswith("start:") or msg.startswith("resumed from"):
            cur = [t, t]
            segments.append(cur)
        elif cur is not None:
            cur[1] = t
        s = re.match(r"(?:step|checkpoint step_)0*(\d+)", msg)
        if s:
            last_step = max(last_step, int(s.group(1)))
    seconds = sum(b - a for a, b in segments)
    return {"steps": last_step, "wall_hours": round(seconds / 3600, 3), "invocations": len(segments),
            "started": started}


def drop_rows_after(path: str | os.PathLike, step: int) -> int:
    """Keep the rows of a JSON-lines log (``{"step": ...}`` per line) up to ``step``, the step a run
    resumed from: the rows after it describe work the resumed run does again, and a line cut by a
    kill is not a row. Rewritten atomically; returns how many lines went."""
    p = Path(path)
    if not p.is_file():
        return 0
    lines = p.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            keep.append(line)
    if len(keep) < len(lines):
        write_text_atomic(p, "".join(k + "\n" for k in keep))
    return len(lines) - len(keep)


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_state(ckpt: str | os.PathLike) -> dict[str, Any] | None:
    """The ``train_state.json`` of a checkpoint directory (its ``step`` an int), or None when it is not
    a complete checkpoint (none, or one that is truncated or holds no integer ``step``)."""
    try:
        state = json.loads((Path(ckpt) / TRAIN_STATE).read_text())
        step = state["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if isinstance(step, int) and not isinstance(step, bool) else None


def checkpoint_step(ckpt: str | os.PathLike) -> int | None:
    """The step a checkpoint directory holds, or None when it is not a complete checkpoint."""
    state = checkpoint_state(ckpt)
    return None if state is None else state["step"]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete ``out_dir/ckpt/step_*`` (``checkpoint_step``); partial ones are skipped."""
    d = Path(out_dir) / "ckpt"
    if not d.is_dir():
        return None
    cands = sorted(p for p in d.glob("step_*") if p.is_dir() and checkpoint_step(p) is not None)
    return cands[-1] if cands else None


def resume_checkpoint(acc, out: Path, seed: int, log) -> int | None:
    """Load the newest ``out/ckpt/step_*`` into ``acc`` (and re-seed for a fresh data order instead
    of replaying the first batches); returns its step, or None when there is none."""
    from accelerate.utils import set_seed

    for old in sorted((Path(out) / "ckpt").glob(".tmp_old_step_*")):  # a same-step save killed mid-swap
        recover_dir(old.parent / old.name.removeprefix(".tmp_old_"), old)
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        return None
    acc.load_state(str(ckpt))
    step = checkpoint_step(ckpt)
    log(f"resumed from {ckpt} at step {step}")
    set_seed(seed + 1000 * step + acc.process_index)
    return step


def save_checkpoint(acc, out: Path, step: int, keep: int, state: dict[str, Any] | None = None) -> Path:
    """``acc.save_state`` to ``out/ckpt/step_<step>`` with its ``train_state.json`` (``{"step", "time"}``
    and the keys of ``state``, e.g. :meth:`RunClock.totals`); keeps the newest ``keep`` checkpoints.
    Call on the main process only.

    Atomic: the state is written into ``ckpt/.tmp_step_<step>``, its files fsynced, then
    ``train_state.json`` (fsynced), and the directory is renamed into place, so a run killed
    mid-save leaves no ``step_*`` directory and resumes from the previous checkpoint. Old
    checkpoints are renamed to ``.tmp_del_*`` before they are deleted, so a kill mid-prune never
    leaves a half-deleted ``step_*``. Leftovers of a killed save are removed by the next one."""
    ckpt = Path(out) / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    d = ckpt / f"step_{step:08d}"
    for p in ckpt.glob(".tmp_*"):  # an earlier save that was killed
        shutil.rmtree(p, ignore_errors=True)
    tmp = ckpt / f".tmp_step_{step:08d}"
    acc.save_state(str(tmp))
    fsync_tree(tmp)  # the state is on disk before train_state.json marks it complete
    with open(tmp / TRAIN_STATE, "w") as f:
        json.dump({**(state or {}), "step": step, "time": time.time()}, f)
        f.flush()
        os.fsync(f.fileno())
    # the same step saved again swaps with the old copy; a kill mid-swap is undone on resume
    replace_dir(tmp, d, old=ckpt / f".tmp_old_step_{step:08d}")
    complete = sorted(p for p in ckpt.glob("step_*") if checkpoint_step(p) is not None)
    for p in complete[: -max(1, keep)] + [p for p in ckpt.glob("step_*") if p not in complete]:
        gone = ckpt / f".tmp_del_{p.name}"
        p.rename(gone)
        shutil.rmtree(gone, ignore_errors=True)
    return d


# ----------------------------------------------------------------------------- what the training cost
def read_training_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The totals in ``path`` (a ``training.json``, or a directory holding one), or None when there is
    no readable one."""
    p = Path(path)
    p = p / TRAINING_FILE if p.is_dir() else p
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("steps"), int) else None


class RunClock:
    """Optimiser steps, samples and wall-clock seconds of a run, summed over every invocation that led
    to the step at hand (a resumed run starts from the totals of the checkpoint it resumed from; the
    work of a killed invocation after its last checkpoint is not in them: it made no weights).

    ``totals(step)`` is what :func:`save_checkpoint` stores in ``train_state.json`` and
    :meth:`write` in ``out_dir/training.json``::

        {"steps", "samples", "wall_seconds", "wall_hours", "invocations", "started", "updated"}

    ``samples_per_step``: samples per optimiser step over all processes (``batch_size * num_processes``).
    ``invocations`` counts the invocations that trained at least one step. The clock runs from
    construction: make it just before the training loop.
    """

    def __init__(self, base: dict[str, Any] | None = None, samples_per_step: int = 1) -> None:
        base = dict(base or {})
        self.base_step = int(base.get("steps") or 0)
        self.base_samples = int(base.get("samples") if base.get("samples") is not None
                                else self.base_step * samples_per_step)
        self.base_seconds = float(base.get("wall_seconds") or 0.0)
        self.invocations = int(base.get("invocations") or 0) + 1
        self.started = base.get("started") or time.strftime(STAMP)
        self.source = base.get("wall_seconds_from")  # "train.log" for a run migrated from its log
        self.samples_per_step = int(samples_per_step)
        self.t0 = time.monotonic()

    @classmethod
    def resume(cls, out_dir: str | os.PathLike, step: int | None, samples_per_step: int = 1,
               log_path: str | os.PathLike | None = None) -> "RunClock":
        """The clock of a run that resumed at ``step`` (None: a fresh run) from ``out_dir/ckpt``.

        The totals come from the checkpoint's ``train_state.json``; a checkpoint written before the
        totals were kept falls back on ``out_dir/training.json`` when it is at the same step, then on
        ``log_path`` (:func:`training_time_from_log`, which counts the time after the last checkpoint
        too; call this after :func:`resume_checkpoint` has logged this invocation's start, which is
        not counted)."""
        if step is None:
            return cls(None, samples_per_step)
        ckpt = Path(out_dir) / "ckpt" / f"step_{int(step):08d}"
        state = checkpoint_state(ckpt) or {}
        if state.get("wall_seconds") is not None:
            return cls({**state, "steps": step}, samples_per_step)
        meta = read_training_metadata(out_dir)
        if meta is not None and meta.get("steps") == step and meta.get("wall_seconds") is not None:
            return cls(meta, samples_per_step)
        if log_path is not None and Path(log_path).is_file():
            info = training_time_from_log(log_path)
            return cls({"steps": step, "wall_seconds": info["wall_hours"] * 3600,
                        "invocations": max(0, info["invocations"] - 1), "started": info["started"],
                        "wall_seconds_from": "train.log"}, samples_per_step)
        return cls({"steps": step, "wall_seconds_from": "unknown (a checkpoint without totals)"}, samples_per_step)

    def wall_seconds(self) -> float:
        """Seconds of training up to now, over all invocations."""
        return self.base_seconds + (time.monotonic() - self.t0)

    def totals(self, step: int) -> dict[str, Any]:
        """The totals at optimiser step ``step``; at the step the run resumed from (this invocation
        trained nothing yet) they are the checkpoint's own."""
        trained = int(step) != self.base_step
        secs = self.wall_seconds() if trained else self.base_seconds
        out = {"steps": int(step), "samples": self.base_samples + (int(step) - self.base_step) * self.samples_per_step,
               "wall_seconds": round(secs, 3), "wall_hours": round(secs / 3600, 4),
               "invocations": self.invocations if trained else self.invocations - 1, "started": self.started,
               "updated": time.strftime(STAMP)}
        if self.source:
            out["wall_seconds_from"] = self.source
        return out

    def write(self, out_dir: str | os.PathLike, step: int, totals: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``out_dir/training.json`` atomically (``totals``, or this clock's at ``step``); returns them."""
        totals = totals if totals is not None else self.totals(step)
        write_text_atomic(Path(out_dir) / TRAINING_FILE, json.dumps(totals, indent=1) + "\n")
        return totals

