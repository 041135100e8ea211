"""world_model.training: what every training loop shares (checkpoint totals, the metadata file, the
schedules), and research.release reading the totals from the metadata before the log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from world_model.training import (TRAIN_STATE, TRAINING_FILE, RunClock, drop_rows_after, make_schedule,
                                  read_training_metadata, seek_schedule)


def _checkpoint(run: Path, step: int, **state) -> Path:
    d = run / "ckpt" / f"step_{step:08d}"
    d.mkdir(parents=True)
    (d / TRAIN_STATE).write_text(json.dumps({"step": step, "time": 0.0, **state}))
    return d


def test_run_clock_sums_the_invocations_that_led_to_a_checkpoint(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    fresh = RunClock(None, samples_per_step=16)
    now[0] += 30.0
    first = fresh.totals(10)
    assert (first["steps"], first["samples"], first["wall_seconds"], first["invocations"]) == (10, 160, 30.0, 1)
    _checkpoint(tmp_path, 10, **first)

    # resumed with a bigger batch: the totals go on from the checkpoint's, samples at the new rate
    resumed = RunClock.resume(tmp_path, 10, samples_per_step=32)
    assert resumed.totals(10) == {**first, "updated": resumed.totals(10)["updated"]}  # nothing trained yet
    now[0] += 12.5
    t = resumed.totals(15)
    assert (t["steps"], t["samples"], t["wall_seconds"], t["invocations"]) == (15, 160 + 5 * 32, 42.5, 2)
    assert t["started"] == first["started"] and t["wall_hours"] == round(42.5 / 3600, 4)
    resumed.write(tmp_path, 15, t)
    assert read_training_metadata(tmp_path) == t == read_training_metadata(tmp_path / TRAINING_FILE)


def test_run_clock_of_a_checkpoint_without_totals_falls_back_on_the_metadata_then_the_log(tmp_path):
    run = tmp_path / "run"
    _checkpoint(run, 600)  # the checkpoint format from before the totals
    log = run / "train.log"
    log.write_text("2026-11-30 10:00:00 start: 2.83M params\n"
                   "2026-11-30 10:30:00 checkpoint step_00000600\n"
                   "2026-11-30 10:40:00 step 610 loss 0.1\n"  # after the checkpoint: redone
                   "2026-11-30 11:00:00 resumed from ckpt/step_00000600 at step 600\n")  # this invocation
    clock = RunClock.resume(run, 600, samples_per_step=16, log_path=log)
    t = clock.totals(601)
    assert t["wall_seconds_from"] == "train.log" and t["invocations"] == 2 and t["started"] == "2026-11-30 10:00:00"
    assert 2400.0 <= t["wall_seconds"] < 2410.0 and t["samples"] == 601 * 16
    # a training.json of the same step wins over the log; one of another step does not
    (run / TRAINING_FILE).write_text(json.dumps({"steps": 600, "samples": 9000, "wall_seconds": 100.0,
                                                  "invocations": 3, "started": "2026-11-29 09:00:00"}))
    t = RunClock.resume(run, 600, samples_per_step=16, log_path=log).totals(601)
    assert (t["samples"], t["invocations"], t["started"]) == (9016, 4, "2026-11-29 09:00:00") and t["wall_seconds"] >= 100
    (run / TRAINING_FILE).write_text(json.dumps({"steps": 500, "wall_seconds": 1.0}))
    assert RunClock.resume(run, 600, log_path=log).totals(601)["wall_seconds_from"] == "train.log"
    assert "unknown" in RunClock.resume(run, 600).totals(601)["wall_seconds_from"]
    assert RunClock.resume(run, None).totals(1)["invocations"] == 1


def test_drop_rows_after_keeps_the_rows_up_to_the_resumed_step(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 2, "loss": 1}\n{"step": 4, "loss": 0.5}\n[1, 2]\n{"step": 6, "lo')
    assert drop_rows_after(log, 4) == 2
    assert log.read_text() == '{"step": 2, "loss": 1}\n{"step": 4, "loss": 0.5}\n'
    assert drop_rows_after(log, 4) == 0 and drop_rows_after(tmp_path / "none.jsonl", 4) == 0


def test_schedules_are_diffusers_and_a_resume_can_seek_one():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    with pytest.raises(ValueError, match="not one of diffusers' schedules.*cosine"):
        make_schedule("cosin", opt, 0, 10)
    sched = make_schedule("cosine", opt, 2, 10)
    seek_schedule(sched, 6)  # warm-up 2, then half-way through the cosine
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5) and sched.get_last_lr() == [pytest.approx(0.5)]
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi * 5 / 8)).item()))


# ----------------------------------------------------------------------------- research.release
@pytest.fixture
def tiny_pipeline(tmp_path):
    from test_ssg_pipeline import make_pipe

    src = tmp_path / "run" / "pipeline"
    make_pipe().save_pretrained(src)
    (src.parent / "train_config.json").write_text(json.dumps({"batch_size": 4, "init_from": None}))
    return src


def _count_reads(monkeypatch, path: Path) -> list[int]:
    reads, real = [0], Path.read_text

    def read_text(self, *a, **k):
        if self == path:
            reads[0] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    return reads


def test_release_takes_the_training_time_from_the_metadata_and_the_log_only_for_old_runs(
        tiny_pipeline, tmp_path, monkeypatch):
    from research.release import release

    src = tiny_pipeline
    log = src.parent / "train.log"
    log.write_text("2026-11-30 10:00:00 start: 2.83M params\n"
                   "2026-11-30 11:00:00 checkpoint step_00000010\n")
    reads = _count_reads(monkeypatch, log)
    # a run from before training.json: the log, read once
    info = json.loads((release(src, tmp_path / "old", log) / "TRAINING.json").read_text())
    assert reads[0] == 1
    assert (info["steps"], info["wall_hours"], info["invocations"], info["samples_seen"]) == (10, 1.0, 1, 40)
    assert info["time_from"] == str(log)

    # the run's training.json beside the log, then the exported pipeline's own, win over the log
    (src.parent / TRAINING_FILE).write_text(json.dumps({"steps": 12, "samples": 60, "wall_seconds": 5400.0,
                                                        "invocations": 3, "started": "2026-11-30 09:00:00"}))
    info = json.loads((release(src, tmp_path / "run_meta", log) / "TRAINING.json").read_text())
    assert (info["steps"], info["wall_hours"], info["invocations"], info["samples_seen"]) == (12, 1.5, 3, 60)
    (src / TRAINING_FILE).write_text(json.dumps({"steps": 11, "samples": 50, "wall_seconds": 3600.0,
                                                 "invocations": 2, "started": "2026-11-30 09:00:00"}))
    info = json.loads((release(src, tmp_path / "own_meta", log) / "TRAINING.json").read_text())
    assert (info["steps"], info["wall_hours"], info["samples_seen"]) == (11, 1.0, 50)
    assert info["time_from"] == str(src / TRAINING_FILE) and reads[0] == 1  # the log was not read again
    assert not (tmp_path / "own_meta" / TRAINING_FILE).exists()  # the release has TRAINING.json only


def test_release_adds_the_prior_release_using_the_metadata_start(tiny_pipeline, tmp_path):
    """A run from a released checkpoint adds its totals; one released after the run started (from this
    same run, on the way) is not counted twice: the run's start comes from training.json."""
    from research.release import release

    src = tiny_pipeline
    prior = tmp_path / "shipped"
    prior.mkdir()
    (prior / "TRAINING.json").write_text(json.dumps(
        {"steps": 150, "wall_hours": 1.5, "samples_seen": 600, "released": "2026-11-30 12:00:00",
         "prior": {"steps": 100, "wall_hours": 1.0, "samples_seen": 400, "released": "2026-11-01 00:00:00"}}))
    (src.parent / "train_config.json").write_text(json.dumps({"batch_size": 4, "init_from": str(prior)}))
    (src / TRAINING_FILE).write_text(json.dumps({"steps": 80, "samples": 320, "wall_seconds": 7200.0,
                                                 "invocations": 2, "started": "2026-11-30 10:00:00"}))
    info = json.loads((release(src, tmp_path / "rel", None) / "TRAINING.json").read_text())
    assert info["steps"] == 180 and info["wall_hours"] == 3.0 and info["samples_seen"] == 720
    assert info["prior"]["steps"] == 100 and info["this_run"]["steps"] == 80
