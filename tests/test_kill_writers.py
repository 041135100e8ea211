"""Every writer killed mid-write (a real SIGKILL), then run again: nothing lost, nothing doubled.

Each writer runs in a forked child that SIGKILLs itself at a chosen point inside a write (the
file being written is cut to half its length first, which is what a kill mid-write leaves);
the parent checks what is on disk, runs the writer again and compares with what an
uninterrupted run leaves. A fork, not a fresh interpreter: the child inherits the imports and
the loaded text encoder, so each kill costs seconds. The eval runner's kill test is in
tests/test_reliability.py.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing as mp
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from envs import atomic

# ----------------------------------------------------------------------------- the kill harness


def kill_in(owner, name: str, match: str, nth: int = 1, dest: int = 1, cut: bool = True, only_if=None) -> None:
    """Make ``owner.name`` SIGKILL the process on its ``nth`` call whose destination (positional
    argument ``dest``: a path or an open file) contains ``match`` (and passes ``only_if(path)``);
    with ``cut`` the call first runs and its file is cut to half its length (a kill mid-write),
    else the process dies before the call."""
    real = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        target = args[dest] if len(args) > dest else None
        where = str(target.name if hasattr(target, "fileno") else target)  # an open file or a path
        if match not in where or (only_if is not None and not only_if(where)):
            return real(*args, **kwargs)
        calls[0] += 1
        if calls[0] < nth:
            return real(*args, **kwargs)
        if cut:
            real(*args, **kwargs)
            if hasattr(target, "fileno"):
                target.flush()
                os.ftruncate(target.fileno(), os.fstat(target.fileno()).st_size // 2)
            else:
                os.truncate(where, os.path.getsize(where) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(owner, name, wrapper)


def run_killed(work, timeout: float = 300) -> None:
    """Run ``work()`` (which installs its kill points, then writes) in a forked child; it must die
    by SIGKILL."""
    def child():
        torch.set_num_threads(1)
        work()
        os._exit(3)  # the writer finished: the kill point was never reached

    p = mp.get_context("fork").Process(target=child)
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail(f"the writer ran past {timeout} s without reaching its kill point")
    assert p.exitcode == -signal.SIGKILL, f"the child exited with {p.exitcode}, not by SIGKILL"


# ----------------------------------------------------------------------------- envs.atomic
def test_replace_dir_killed_between_its_renames_is_recovered(tmp_path, monkeypatch):
    """Where the kernel cannot swap two directories in one step, replace_dir renames twice; a kill
    between the two leaves the old directory at <dst>.old, and recover_dir (or the next
    replace_dir) puts it back. With the one-step swap no reader ever finds dst missing."""
    dst = tmp_path / "pipeline"

    def version(v: str) -> Path:
        d = tmp_path / f"pipeline.tmp{v}"
        d.mkdir()
        (d / "weights").write_text(v)
        return d

    atomic.replace_dir(version("1"), dst)
    assert (dst / "weights").read_text() == "1"
    atomic.replace_dir(version("2"), dst)  # renameat2 exchange here (Linux)
    assert (dst / "weights").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["pipeline"]

    def work():
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
        kill_in(os, "rename", "pipeline.tmp3", dest=0, cut=False)  # the second rename: tmp -> dst
        atomic.replace_dir(version("3"), dst)

    run_killed(work)
    assert not dst.exists() and (tmp_path / "pipeline.old" / "weights").read_text() == "2"
    assert atomic.recover_dir(dst) and (dst / "weights").read_text() == "2"
    atomic.replace_dir(tmp_path / "pipeline.tmp3", dst)
    assert (dst / "weights").read_text() == "3" and sorted(p.name for p in tmp_path.iterdir()) == ["pipeline"]


def test_atomic_write_killed_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    atomic.write_text_atomic(path, json.dumps({"v": 1}))

    def work():
        kill_in(json, "dump", "summary.json")
        with atomic.atomic_write(path) as f:
            json.dump({"v": 2, "pad": "x" * 10000}, f)

    run_killed(work)
    assert json.loads(path.read_text()) == {"v": 1}
    atomic.write_text_atomic(path, json.dumps({"v": 2}))
    assert json.loads(path.read_text()) == {"v": 2} and not (tmp_path / "summary.json.tmp").exists()


# ----------------------------------------------------------------------------- world-model training
@pytest.fixture(scope="module")
def text_encoder():
    from world_model.text_encoder import load_text_encoder

    return load_text_encoder("minilm", max_length=8)


def _train(run: Path, text_encoder, max_steps: int, keep: int = 3):
    from test_world_model import FixedData, tiny_train_cfg

    from world_model.train import train

    cfg = tiny_train_cfg(run, max_steps=max_steps, ckpt_every_steps=1, keep_checkpoints=keep, log_every=1,
                         num_threads=1)
    return train(cfg, dataset=FixedData(), text_encoder=text_encoder)


def _pipeline_weights(path: Path) -> dict[str, torch.Tensor]:
    from world_model.pipeline import Video4SpatialPipeline

    return Video4SpatialPipeline.from_pretrained(path).model.state_dict()


def _assert_pipeline_is(run: Path, ckpt: str, tmp_path: Path) -> None:
    """run/pipeline loads and holds the EMA weights of checkpoint directory ``run/ckpt/<ckpt>``."""
    from world_model.train import export_checkpoint

    ref = export_checkpoint(run / "ckpt" / ckpt, tmp_path / f"ref_{ckpt}")
    got, want = _pipeline_weights(run / "pipeline"), _pipeline_weights(ref)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k


def _optimiser_steps(ckpt: Path) -> tuple[int, int]:
    """(AdamW's step count, the EMA's step count) stored in a checkpoint: both equal the training
    step when no step was lost or done twice."""
    opt = torch.load(ckpt / "optimizer.bin", weights_only=False)
    ema = torch.load(ckpt / "custom_checkpoint_0.pkl", weights_only=False)
    return int(next(iter(opt["state"].values()))["step"]), int(ema["optimization_step"])


@pytest.mark.parametrize("where", ["checkpoint", "pipeline", "swap", "prune"])
def test_world_model_training_killed_mid_write_resumes_from_the_last_complete_checkpoint(
        where, tmp_path, text_encoder):
    """A run checkpointing every step is killed at step 2: inside accelerate's save_state
    (optimizer.bin half written), inside the pipeline export (a weights file half written), while
    the previous pipeline is deleted (the export's swap), or while deleting a pruned checkpoint.
    The killed run leaves step_1 (or step_2 when the checkpoint itself was complete) and a whole,
    loadable pipeline of the last step exported; the rerun
    resumes from that step, ends at max_steps with the optimiser and EMA counting each step
    once, and leaves no temporary directory."""
    import shutil

    import safetensors.torch

    from world_model.training import latest_checkpoint

    run = tmp_path / "run"
    keep = 1 if where == "prune" else 3

    def work():
        if where == "checkpoint":
            kill_in(torch, "save", ".tmp_step_00000002")  # accelerate's first torch.save: optimizer.bin
        elif where == "pipeline":
            kill_in(safetensors.torch, "save_file", "pipeline.tmp", nth=2)  # the export after step 2
        elif where == "swap":  # deleting the step-1 pipeline once step 2's is written
            kill_in(shutil, "rmtree", "pipeline", dest=0, cut=False,
                    only_if=lambda p: os.path.exists(os.path.join(p, "model_index.json")))
        else:
            kill_in(shutil, "rmtree", ".tmp_del_step_00000001", dest=0, cut=False)
        _train(run, text_encoder, max_steps=3, keep=keep)

    run_killed(work)
    ckpt = run / "ckpt"
    complete = 1 if where == "checkpoint" else 2
    assert latest_checkpoint(run) == ckpt / f"step_{complete:08d}"
    left = sorted(p.name for p in ckpt.iterdir())
    expected = {"checkpoint": ["step_00000001", ".tmp_step_00000002"],
                "pipeline": ["step_00000001", "step_00000002"],
                "swap": ["step_00000001", "step_00000002"],
                "prune": [".tmp_del_step_00000001", "step_00000002"]}[where]
    assert left == sorted(expected)
    if where == "checkpoint":
        assert (ckpt / ".tmp_step_00000002" / "model.safetensors").exists()  # the kill came mid-save
        assert not (ckpt / ".tmp_step_00000002" / "train_state.json").exists()
    if where == "pipeline":
        assert (run / "pipeline.tmp").is_dir()
    # the exported pipeline is whole: the last one exported before the kill
    exported = {"checkpoint": "step_00000001", "pipeline": "step_00000001", "swap": "step_00000002",
                "prune": ".tmp_del_step_00000001"}[where]
    _assert_pipeline_is(run, exported, tmp_path)

    out = _train(run, text_encoder, max_steps=3, keep=keep)
    assert out["step"] == 3
    log = (run / "train.log").read_text()
    assert f"resumed from {ckpt / f'step_{complete:08d}'} at step {complete}" in log
    steps_after_resume = [int(m) for m in re.findall(r" step (\d+) loss ", log.split("resumed from")[1])]
    assert steps_after_resume == list(range(complete + 1, 4))  # each remaining step once
    assert _optimiser_steps(ckpt / "step_00000003") == (3, 3)
    assert sorted(p.name for p in ckpt.iterdir()) == [f"step_{s:08d}" for s in range(4 - keep, 4)]
    assert not (run / "pipeline.tmp").exists() and not (run / "pipeline.old").exists()
    _assert_pipeline_is(run, "step_00000003", tmp_path)
    # what the run cost: the newest checkpoint's totals, in training.json and beside the exported
    # weights (what research.release reads), two invocations that trained
    meta = json.loads((run / "training.json").read_text())
    assert meta["steps"] == 3 and meta["samples"] == 3 * 4 and meta["invocations"] == 2 and meta["wall_seconds"] > 0
    assert json.loads((run / "pipeline" / "training.json").read_text()) == meta
    assert json.loads((tmp_path / "ref_step_00000003" / "training.json").read_text())["steps"] == 3


# ----------------------------------------------------------------------------- data collection
COLLECT = dict(split="val", n=3, shard_size=1, progress=False, frame_size=16, tour_frames=4, agent_frames=2,
               episodes_per_scene=1, starts_per_episode=1, workers=1)


@pytest.fixture(scope="module")
def collected_whole(tmp_path_factory):
    """An uninterrupted collection: three one-scene shards."""
    from world_model.collect import collect

    out = tmp_path_factory.mktemp("collect") / "whole"
    collect(out_dir=out, **COLLECT)
    return out


def _same_collection(a: Path, b: Path) -> None:
    ia, ib = json.loads((a / "index.json").read_text()), json.loads((b / "index.json").read_text())
    for i in (ia, ib):
        del i["collect_config"]["workers"]  # how many processes collected it: not part of the data
    assert ia == ib and ia["complete"] and ia["num_samples"] == COLLECT["n"]
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for s in ia["shards"]:
        with np.load(a / s["file"]) as za, np.load(b / s["file"]) as zb:
            assert za.files == zb.files
            for k in za.files:
                np.testing.assert_array_equal(za[k], zb[k], err_msg=f"{s['file']}:{k}")


@pytest.mark.parametrize("where", ["shard", "index"])
def test_collect_killed_mid_write_resumes_to_the_uninterrupted_result(where, tmp_path, collected_whole):
    """Collection killed while writing its second shard (half the .npz on disk), or after that
    shard but before the index lists it; the rerun with the same command finishes the collection
    and its shards and index equal an uninterrupted run's: no sample lost or repeated."""
    from world_model import collect, shards

    out = tmp_path / "killed"

    def work():
        if where == "shard":
            kill_in(np, "savez_compressed", "shard_00001.npz", dest=0)
        else:
            kill_in(shards, "write_text_atomic", "index.json", nth=2, dest=0, cut=False)
        collect.collect(out_dir=out, **COLLECT)

    run_killed(work)
    index = json.loads((out / "index.json").read_text())
    assert not index["complete"] and [s["file"] for s in index["shards"]] == ["shard_00000.npz"]
    assert index["num_samples"] == 1 and index["tasks_done"] >= 1
    on_disk = {"shard": ["index.json", "shard_00000.npz", "shard_00001.npz.tmp"],
               "index": ["index.json", "shard_00000.npz", "shard_00001.npz"]}[where]
    assert sorted(p.name for p in out.iterdir()) == on_disk
    with pytest.raises(ValueError, match="n_requested: 3 -> 4"):
        collect.collect(out_dir=out, **{**COLLECT, "n": 4})
    # the index case resumes with two worker processes: the data do not depend on it
    collect.collect(out_dir=out, **{**COLLECT, "workers": 2 if where == "index" else 1})
    _same_collection(out, collected_whole)
    with pytest.raises(FileExistsError, match="collect into a new directory"):
        collect.collect(out_dir=out, **COLLECT)


# ----------------------------------------------------------------------------- the other training loops
# The autoencoder, the CLIP and the SSG adapter train in the same loop as the world model
# (world_model.training): Accelerate's state in ckpt/step_* (saved beside, renamed into place, the
# oldest pruned), training.json with the run's totals. Each is killed inside a checkpoint save, or
# while a pruned checkpoint is deleted, or mid-export, and run again with the same command.
def _assert_resumed_once(run: Path, ckpt_step: int, kept: list[int], samples_per_step: int,
                         invocations: int = 2) -> None:
    """The rerun resumed from ``step_<ckpt_step>``, counted every step once (the optimiser's step count
    in the last checkpoint is its step), left exactly the checkpoints ``kept`` and no temporary
    directory, and ``training.json`` (the newest checkpoint's totals) counts ``invocations``
    invocations that trained."""
    from world_model.training import checkpoint_state, latest_checkpoint, read_training_metadata

    ckpt, last = run / "ckpt", kept[-1]
    assert f"resumed from {ckpt / f'step_{ckpt_step:08d}'} at step {ckpt_step}" in (run / "train.log").read_text()
    assert latest_checkpoint(run) == ckpt / f"step_{last:08d}"
    opt = torch.load(ckpt / f"step_{last:08d}" / "optimizer.bin", weights_only=False)
    assert {int(s["step"]) for s in opt["state"].values()} == {last}
    assert sorted(p.name for p in ckpt.iterdir()) == [f"step_{s:08d}" for s in kept]
    meta = read_training_metadata(run)
    assert meta["steps"] == last and meta["samples"] == last * samples_per_step
    assert meta["invocations"] == invocations
    assert checkpoint_state(ckpt / f"step_{last:08d}")["wall_seconds"] == meta["wall_seconds"] > 0


def _killed_checkpoint_left(run: Path, where: str, killed_at: int, before: int) -> None:
    """What a kill inside checkpoint ``killed_at`` leaves: the previous checkpoint ``before`` whole
    and the new one as a temporary directory (``checkpoint``), or the new one whole and the pruned
    one renamed for deletion (``prune``); training.json names the newest complete one."""
    from world_model.training import latest_checkpoint, read_training_metadata

    ckpt = run / "ckpt"
    if where == "checkpoint":
        assert latest_checkpoint(run) == ckpt / f"step_{before:08d}"
        assert (ckpt / f".tmp_step_{killed_at:08d}").is_dir()
        assert not (ckpt / f".tmp_step_{killed_at:08d}" / "train_state.json").exists()
        assert read_training_metadata(run)["steps"] == before
    else:
        assert latest_checkpoint(run) == ckpt / f"step_{killed_at:08d}"
        assert (ckpt / f".tmp_del_step_{before:08d}").is_dir()


@pytest.mark.parametrize("where", ["checkpoint", "prune", "export"])
def test_autoencoder_training_killed_mid_write_resumes(where, tmp_path):
    """The autoencoder run (a checkpoint every step, the newest two kept) killed inside its step-3
    checkpoint (optimizer.bin half written), while deleting the pruned step-1 checkpoint, or while
    exporting the finished model; the rerun resumes from the last complete checkpoint, counts each
    step once and leaves a loadable autoencoder and no temporary files."""
    import shutil

    import safetensors.torch
    from test_autoencoder import Bank

    from world_model.autoencoder import AutoencoderTrainConfig, FrameAutoencoder, train_autoencoder

    run = tmp_path / "run"
    cfg = AutoencoderTrainConfig.from_dict(dict(
        out_dir=str(run), latent_channels=4, channels=(8, 16), batch_size=8, max_steps=4,
        calib_frames=16, ckpt_every_steps=1, keep_checkpoints=2, num_threads=1))

    def work():
        if where == "checkpoint":
            kill_in(torch, "save", ".tmp_step_00000003")  # accelerate's first torch.save: optimizer.bin
        elif where == "prune":
            kill_in(shutil, "rmtree", ".tmp_del_step_00000001", dest=0, cut=False)
        else:
            kill_in(safetensors.torch, "save_file", "autoencoder.tmp")
        train_autoencoder(cfg, bank=Bank(32))

    run_killed(work)
    if where == "export":
        assert json.loads((run / "training.json").read_text())["steps"] == 4
    else:
        _killed_checkpoint_left(run, where, 3, 2 if where == "checkpoint" else 1)
    assert not (run / "autoencoder").exists()
    out = train_autoencoder(cfg, bank=Bank(32))
    resumed = {"checkpoint": 2, "prune": 3, "export": 4}[where]
    trained = 1 if where == "export" else 2  # the export's rerun trained no step: the totals stay step 4's
    assert out["steps"] == 4 and out["frames_seen"] == 4 * 8 and out["invocations"] == trained
    _assert_resumed_once(run, resumed, [3, 4], samples_per_step=8, invocations=trained)
    assert json.loads((run / "autoencoder" / "TRAINING.json").read_text())["steps"] == 4
    FrameAutoencoder.from_pretrained(run / "autoencoder")
    assert not [p for p in run.rglob("*.tmp")]


CLIP_RUN = dict(train_scenes=1, val_scenes=1, views_per_scene=1, image_size=16, steps=6, batch_size=8, lr=1e-3,
                warmup=1, eval_every=2, max_shift=1, threads=1)


def _clip_cfg(out: Path, **kw):
    from world_model.ssg.clip import SmallClipSpec
    from world_model.ssg.clip_data import save_shard
    from world_model.ssg.train_clip import ClipTrainConfig

    from test_ssg_data import _fake_shard

    rng = np.random.default_rng(0)
    save_shard(out / "data" / "train_1x1_16.npz", _fake_shard(40, rng))  # the cache main() looks for
    save_shard(out / "data" / "val_1x1_16.npz", _fake_shard(12, rng))
    spec = SmallClipSpec(image_size=16, patch_size=8, vision_layers=1, vision_width=16, vision_heads=2, text_layers=1,
                         text_width=16, text_heads=2, projection_dim=16)
    return ClipTrainConfig(out=str(out), spec=spec, **{**CLIP_RUN, **kw})


@pytest.fixture(scope="module")
def clip_whole(tmp_path_factory):
    """An uninterrupted CLIP run: its final weights."""
    from world_model.ssg.clip import load_clip
    from world_model.ssg.train_clip import main

    out = tmp_path_factory.mktemp("clip") / "whole"
    main(_clip_cfg(out))
    return load_clip(out / "clip-small").model.state_dict()


@pytest.mark.parametrize("where", ["checkpoint", "prune"])
def test_clip_training_killed_mid_checkpoint_resumes_to_the_uninterrupted_weights(where, tmp_path, clip_whole):
    """The small-CLIP run (a checkpoint and a val row every 2 steps, the newest one kept) killed inside
    its step-4 checkpoint or while deleting the step-2 one it replaces; the rerun resumes from the
    last complete checkpoint (its weights, optimiser, schedule and both generators), logs each val
    row once, and ends with the weights an uninterrupted run ends with."""
    import shutil

    from world_model.ssg.clip import load_clip
    from world_model.ssg.train_clip import main

    run = tmp_path / "run"
    cfg = _clip_cfg(run, keep_checkpoints=1)

    def work():
        if where == "checkpoint":
            kill_in(torch, "save", ".tmp_step_00000004")
        else:
            kill_in(shutil, "rmtree", ".tmp_del_step_00000002", dest=0, cut=False)
        main(cfg)

    run_killed(work)
    _killed_checkpoint_left(run, where, 4, 2)
    main(cfg)
    _assert_resumed_once(run, 2 if where == "checkpoint" else 4, [6], samples_per_step=8)
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    got = load_clip(run / "clip-small").model.state_dict()
    assert got.keys() == clip_whole.keys()
    for k, v in clip_whole.items():
        torch.testing.assert_close(got[k], v, msg=k)
    assert not list(run.glob("*.tmp"))


@pytest.mark.parametrize("where", ["checkpoint", "export"])
def test_ssg_adapter_training_killed_mid_write_resumes(where, tmp_path):
    """The SSG adapter run (a checkpoint and an export every step) killed inside its step-2 checkpoint,
    or half-way through the export after it (prompter.safetensors of ssg.tmp cut); the killed run
    leaves a whole, loadable ssg/ of the step before, and the rerun resumes from the last complete
    checkpoint, counts the optimiser's and the EMA's steps once and exports the final step."""
    import safetensors.torch
    from test_ssg_pipeline import PROMPTER, TINY_CLIP, ColourData, FakeText, make_pipe

    from world_model.ssg.checkpoint import read_ssg_config
    from world_model.ssg.clip import build_small_clip, build_word_tokenizer, grammar_vocabulary
    from world_model.ssg.train_adapter import AdapterTrainConfig, train
    from world_model.training import latest_checkpoint

    build_small_clip(build_word_tokenizer(grammar_vocabulary()), TINY_CLIP, seed=0).save_pretrained(tmp_path / "clip")
    make_pipe().save_pretrained(tmp_path / "backbone")
    run = tmp_path / "run"
    cfg = AdapterTrainConfig(pipeline=str(tmp_path / "backbone"), clip=str(tmp_path / "clip"), prompter=dict(PROMPTER),
                             out_dir=str(run), num_context=3, batch_size=8, lr=1e-2, warmup_steps=1, ema_decay=0.9,
                             log_every=1, ckpt_every_steps=1, keep_checkpoints=2, max_steps=3, num_threads=1)

    def work():
        if where == "checkpoint":
            kill_in(torch, "save", ".tmp_step_00000002")
        else:  # two files per export: the third call is the step-2 export's prompter.safetensors
            kill_in(safetensors.torch, "save_file", "ssg.tmp", nth=3)
        train(cfg, dataset=ColourData(), text_encoder=FakeText())

    run_killed(work)
    saved = 1 if where == "checkpoint" else 2
    assert latest_checkpoint(run) == run / "ckpt" / f"step_{saved:08d}"
    assert read_ssg_config(run / "ssg")["training"]["steps"] == 1  # the last whole export
    make_pipe().load_ssg(run / "ssg")
    out = train(cfg, dataset=ColourData(), text_encoder=FakeText())
    assert out["step"] == 3
    _assert_resumed_once(run, saved, [2, 3], samples_per_step=8)
    ema = torch.load(run / "ckpt" / "step_00000003" / "custom_checkpoint_0.pkl", weights_only=False)
    assert int(ema["optimization_step"]) == 3
    log = (run / "train.log").read_text().split("resumed from")[1]
    assert [int(m) for m in re.findall(r" step (\d+) loss ", log)] == list(range(saved + 1, 4))
    training = read_ssg_config(run / "ssg")["training"]
    assert training["steps"] == 3 and training["invocations"] == 2 and training["samples_seen"] == 24
    make_pipe().load_ssg(run / "ssg")
    assert not (run / "ssg.tmp").exists()


# ----------------------------------------------------------------------------- episode files
def test_episode_file_killed_mid_write_keeps_the_old_file(tmp_path, nav_episodes):
    """save_episodes killed while writing: the previous file is intact (temporary file + rename),
    and the next write replaces it whole."""
    from envs.episodes import load_episodes, save_episodes

    path = tmp_path / "val.json.gz"
    save_episodes(path, nav_episodes[:1])

    def work():
        kill_in(json, "dump", "val.json.gz")
        save_episodes(path, nav_episodes)

    run_killed(work)
    assert [e.episode_id for e in load_episodes(path)] == [nav_episodes[0].episode_id]
    save_episodes(path, nav_episodes)
    assert [e.episode_id for e in load_episodes(path)] == [e.episode_id for e in nav_episodes]
    with gzip.open(path, "rt") as f:
        assert isinstance(json.load(f)["episodes"], list)


# ----------------------------------------------------------------------------- evaluation logs
def _eval_random(out, episode_file):
    from agent.runner import evaluate

    return evaluate("random", n_episodes=3, out_dir=out, episodes=episode_file, width=16, height=16,
                    max_episode_steps=20, progress=False, print_summary=False, agent_kwargs={"stop_prob": 0.0})


@pytest.mark.parametrize("where", ["episode_row", "summary"])
def test_eval_killed_mid_write_resumes_without_loss_or_duplicates(where, tmp_path, nav_episode_file):
    """An evaluation killed half-way through appending its second episode row (the line is cut),
    or half-way through writing summary.json (its temporary file is cut, before the rename): the
    rerun keeps the finished rows as they were, drops the cut line, runs only what is missing,
    and writes one whole summary that counts each episode once."""
    from agent import runner
    from agent.episode_log import EPISODES_FILE, SUMMARY_FILE, read_episode_log
    from agent.provenance import code_version

    out = tmp_path / "eval"

    def work():
        if where == "episode_row":
            real, calls = runner.append_jsonl, [0]

            def half_row(f, row):
                calls[0] += 1
                if calls[0] < 2:
                    return real(f, row)
                line = json.dumps(row, sort_keys=True) + "\n"
                f.write(line[:len(line) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)

            runner.append_jsonl = half_row
        else:
            real_replace = os.replace

            def cut_then_die(src, dst, *a, **k):
                if str(dst).endswith(SUMMARY_FILE):
                    os.truncate(src, os.path.getsize(src) // 2)
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_replace(src, dst, *a, **k)

            runner.os.replace = cut_then_die
        _eval_random(out, nav_episode_file)

    run_killed(work)
    log = out / EPISODES_FILE
    text = log.read_text()
    if where == "episode_row":
        assert not text.endswith("\n") and text.count("\n") == 1  # one whole row, then a cut one
    else:
        assert text.count("\n") == 3 and not (out / SUMMARY_FILE).exists()  # all rows; no summary yet
    kept = [json.loads(line) for line in text.splitlines()[:1]]

    code_version.cache_clear()  # hash the source now, as the killed child did
    s = _eval_random(out, nav_episode_file)
    rows = read_episode_log(log)
    assert len(rows) == 3 and len({r["episode_id"] for r in rows}) == 3
    assert rows[:1] == kept  # the finished episode was kept as it was
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["n_episodes"] == s["n_episodes"] == 3
    assert not list(out.glob("*.tmp"))  # the cut temporary file was replaced
