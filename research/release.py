"""Turn a training run's exported pipeline into the shipped checkpoint.

    python -m research.release --src runs/wm/pipeline --dst world_model/weights/v4s-small \\
        --log runs/wm/train.log

Weights are stored in float16 (half the bytes; the pipeline loads them back as
float32 for CPU sampling), and ``TRAINING.json`` beside them records what the
checkpoint has had: optimizer steps, samples seen, the wall-clock training time
summed over every resumed invocation, and the command. A run started from a
released checkpoint (``init_from=world_model/weights/v4s-small``) adds that checkpoint's
totals (kept under ``prior``), so the numbers count all the training the weights have had.

The totals come from the run's metadata (``world_model.training``): the ``training.json`` that
the trainer writes beside every exported pipeline (``--src``: ``runs/wm/pipeline``, or a checkpoint
exported with ``python -m world_model.train export=...``), else the run's own ``training.json``
beside ``--log``. A run from before that file falls back on parsing ``--log`` (``train.log``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from envs.atomic import replace_dir
from world_model.training import TRAINING_FILE, read_training_metadata, training_time_from_log


def _with_prior(info: dict, init_from: str | None, run_started: str | None = None) -> dict:
    """A run started from a released checkpoint (``init_from`` with a ``TRAINING.json``) adds that
    checkpoint's history, so the shipped totals count all training the weights have had.

    ``run_started`` ("YYYY-MM-DD HH:MM:SS", the run's first start: ``started`` of its
    ``training.json``, or the log's first line): when the checkpoint at
    ``init_from`` was released after the run started, it is not what the run started from; it is
    an earlier checkpoint of this same run, released on the way (its own ``prior`` block is then
    what the run started from). Counting it would count this run's first steps twice."""
    prior_path = Path(init_from) / "TRAINING.json" if init_from else None
    if prior_path is None or not prior_path.exists():
        return {}
    prior = json.loads(prior_path.read_text())
    if run_started and str(prior.get("released") or "") > run_started and isinstance(prior.get("prior"), dict):
        prior = prior["prior"]  # released from this run after it started: go back to its start
    keys = ("steps", "wall_hours", "samples_seen", "invocations")
    out = {"init_from": str(init_from), "this_run": {k: info.get(k) for k in keys},
           "prior": {k: prior.get(k) for k in (*keys, "released") if prior.get(k) is not None}}
    for k in ("steps", "samples_seen", "invocations"):
        if info.get(k) is not None and prior.get(k) is not None:
            out[k] = int(info[k]) + int(prior[k])
    if info.get("wall_hours") is not None and prior.get("wall_hours") is not None:
        out["wall_hours"] = round(float(info["wall_hours"]) + float(prior["wall_hours"]), 3)
    return out


def training_record(src: str | Path, log: str | Path | None = None) -> dict:
    """What the weights at ``src`` have cost: ``{"steps", "wall_hours", "invocations", "started",
    "samples_seen"?, "time_from"}``, from the first of

    * ``src/training.json``: the totals of the checkpoint these weights were exported from;
    * ``training.json`` beside ``log``: the run's totals at its newest checkpoint (what
      ``runs/wm/pipeline`` holds);
    * ``log`` itself (:func:`training_time_from_log`, read once): runs from before the metadata file.

    ``{}`` when there is none of them."""
    metas = [Path(src) / TRAINING_FILE] + ([Path(log).with_name(TRAINING_FILE)] if log is not None else [])
    for path in metas:
        meta = read_training_metadata(path)
        if meta is not None and meta.get("wall_seconds") is not None:
            out = {"steps": meta["steps"], "wall_hours": round(float(meta["wall_seconds"]) / 3600, 3),
                   "invocations": meta.get("invocations"), "started": meta.get("started"),
                   "time_from": str(path)}
            if meta.get("samples") is not None:
                out["samples_seen"] = int(meta["samples"])
            return out
    if log is not None and Path(log).is_file():
        return {**training_time_from_log(log), "time_from": str(log)}
    return {}


def release(src: str | Path, dst: str | Path, log: str | Path | None = None, dtype: str = "float16",
            command: str | None = None) -> Path:
    from world_model.pipeline import Video4SpatialPipeline

    src, dst = Path(src), Path(dst)
    pipe = Video4SpatialPipeline.from_pretrained(str(src))
    pipe.model.to(getattr(torch, dtype))
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    info = {"source": str(src), "released": time.strftime("%Y-%m-%d %H:%M:%S"), "dtype": dtype,
            "parameters_m": round(pipe.model.num_parameters_m(), 3)}
    record = training_record(src, log)
    if record:
        started = record.pop("started", None)
        info.update(record)
        cfg_path = (Path(log) if log is not None else src).with_name("train_config.json")
        if cfg_path.exists():
            cfg = json.loads(cfg_path.read_text())
            info["batch_size"] = cfg.get("batch_size")
            info.setdefault("samples_seen", info["steps"] * int(cfg.get("batch_size") or 0))
            info.update(_with_prior(info, cfg.get("init_from"), started))
    if command:
        info["command"] = command
    (tmp / "TRAINING.json").write_text(json.dumps(info, indent=1) + "\n")
    replace_dir(tmp, dst)  # atomic: a reader never sees it half-written
    return dst


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="runs/wm/pipeline")
    ap.add_argument("--dst", default="world_model/weights/v4s-small")
    ap.add_argument("--log", default="runs/wm/train.log")
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--command", default="spatialnav train world_model=small  # config=configs/world_model/small.yaml")
    a = ap.parse_args(argv)
    out = release(a.src, a.dst, a.log, a.dtype, a.command)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"released {out} ({size / 1e6:.1f} MB): {(out / 'TRAINING.json').read_text()}")
    return out


if __name__ == "__main__":
    main()
