"""Issue 19 sections 4 and 5: the lent-GPU recipe (scripts/device/*.sh, configs/world_model/gpu.yaml) run
end to end on this CPU with a tiny override, and world_model.train under ``accelerate launch`` with two
CPU processes (gloo): the ranks train the same weights, one checkpoint is written, a relaunch resumes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_scene

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def minilm():
    from world_model.text_encoder import load_text_encoder

    return load_text_encoder("minilm", max_length=32)


def collected_dir(path: Path, size: int) -> Path:
    """A collected split of two synthetic scenes (4 samples, 20 tour frames each) at ``size`` px."""
    from world_model.collect import CollectConfig
    from world_model.shards import write_index, write_shard

    path.mkdir(parents=True)
    scenes = [synthetic_scene(seed=0, size=size, instructions=["go to the red chair left of the bed", "go to thing 1"]),
              synthetic_scene(seed=1, size=size)]
    n = write_shard(path / "shard_00000.npz", scenes)
    write_index(path, "train", 0, CollectConfig(frame_size=size),
                [{"file": "shard_00000.npz", "num_samples": n, "num_scenes": 2}], done=True)
    return path


def load_slim_data():
    """scripts/device/slim_data.py as a module (scripts/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("slim_data", ROOT / "scripts" / "device" / "slim_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def script_env(**kw) -> dict[str, str]:
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    env.update({k: str(v) for k, v in kw.items()})
    return env


# ----------------------------------------------------------------------------- text states
def test_text_state_table_equals_the_encoder(tmp_path, minilm):
    from world_model.text_encoder import TextStateTable, load_text_states, save_text_states

    texts = ["go to the red chair left of the bed", "find the TV", "go to the red chair left of the bed"]
    assert save_text_states(tmp_path / "t.pt", texts, minilm) == 2
    table = TextStateTable(tmp_path / "t.pt", max_length=32)
    want = minilm.encode(["find the TV", texts[0]])
    got = table.encode(["find the TV", texts[0]])
    assert got.shape == want.shape == (2, 32, 384)
    assert torch.allclose(got, want, atol=2e-2, rtol=1e-2)          # fp16 storage
    assert torch.equal(got.abs().sum(-1) == 0, want.abs().sum(-1) == 0)  # same padded tokens
    with pytest.raises(KeyError, match="not among the 2"):
        table.encode("go to the sofa")
    with pytest.raises(ValueError, match="tokens > max_length 4"):
        TextStateTable(tmp_path / "t.pt", max_length=4).encode("find the TV")
    with pytest.raises(ValueError, match="holds 'minilm' states"):
        load_text_states(tmp_path / "t.pt", "umt5:/x", 32)


def test_slim_copy_items_equal_the_original(tmp_path, minilm):
    from world_model.data import ContextVideoDataset

    slim_split, write_text_states = load_slim_data().slim_split, load_slim_data().write_text_states

    src = collected_dir(tmp_path / "src", 64)
    names = slim_split(src, tmp_path / "slim", size=32, num_target=4)
    assert write_text_states(tmp_path / "slim", names, encoder=minilm) == 3
    full = ContextVideoDataset(src, 8, 4, 1, frame_size=32, seed=0)
    slim = ContextVideoDataset(tmp_path / "slim", 8, 4, 1, frame_size=32, seed=0)
    assert len(full) == len(slim) == 4 and slim.factor == 1
    for i in range(4):
        a, b = full[i], slim[i]
        for k in ("context", "context_indices", "target", "box", "target_poses"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"item {i} {k}")
        assert a["instruction"] == b["instruction"]


# ----------------------------------------------------------------------------- section 4
def test_gpu_config_composes_and_keeps_the_shipped_architecture():
    """`spatialnav train world_model=gpu` composes to a TrainConfig whose model is the shipped one's
    (so init_from: shipped loads it), with the GPU batch."""
    from agent import cli
    from world_model.train import TrainConfig, flatten_config

    tc = TrainConfig.from_dict(flatten_config(cli.compose_config(["world_model=gpu",
                                                                   "world_model.train.text_states=null"])))
    assert tc.batch_size == 256 and tc.init_from == "shipped" and tc.text_states is None and not tc.compile
    shipped = json.loads((ROOT / "world_model" / "weights" / "v4s-small" / "model" / "config.json").read_text())
    assert tc.transformer == shipped["transformer_config"]
    assert (tc.text_len, [tc.frame_size] * 2, tc.context_attention, tc.text_encoder) == (
        shipped["text_len"], shipped["frame_size"], shipped["context_attention"], shipped["text_encoder"])


def test_gpu_recipe_runs_end_to_end_on_cpu(tmp_path, minilm):
    """train_wm_gpu.sh with DEVICE_DRY_RUN=1 on a carried copy (what prepare_gpu_run.sh makes, via its
    slim_data.py): the shipped weights train 2 steps of configs/world_model/gpu.yaml, the export in $OUT loads."""
    from world_model.pipeline import Video4SpatialPipeline

    slim_data = load_slim_data()
    gpu_data, out, run = tmp_path / "gpu_data", tmp_path / "OUT", tmp_path / "run"
    names = slim_data.slim_split(collected_dir(tmp_path / "collected", 64), gpu_data, size=32, num_target=4)
    slim_data.write_text_states(gpu_data, names, encoder=minilm)
    p = subprocess.run(["bash", "scripts/device/train_wm_gpu.sh"], cwd=ROOT, capture_output=True, text=True,
                       env=script_env(OUT=out, DEVICE_DRY_RUN=1, MAX_STEPS=2, DATA_SOURCE="carried", GPU_DATA=gpu_data,
                                      RUN_DIR=run, PY=sys.executable, SAVE_EVERY=1), timeout=300)
    report = p.stdout + p.stderr + (out / "run.out").read_text()
    assert p.returncode == 0, report
    # (this CPU has open3d and MiniLM, so auto would render: carried is what the GPU machine will use)
    assert f"data: carried (data_dir={gpu_data} text_states={gpu_data}/text_states.pt)" in report, report
    log = (out / "train.log").read_text()
    assert "world_model/weights/v4s-small with a fresh optimiser" in log, log
    assert "step 1 loss" in log and "step 2 loss" in log and "checkpoint step_00000002" in log, log
    cfg = json.loads((run / "train_config.json").read_text())
    assert cfg["batch_size"] == 2 and cfg["lr"] == 8e-4 and cfg["num_context"] == 8, cfg
    import tarfile

    with tarfile.open(out / "wm_gpu.tar") as tar:
        names = tar.getnames()
        assert {"train.log", "train_config.json", "pipeline/model_index.json"} <= set(names), names
        tar.extractall(tmp_path / "unpacked", filter="data")
    pipe = Video4SpatialPipeline.from_pretrained(tmp_path / "unpacked" / "pipeline")
    shipped = Video4SpatialPipeline.from_pretrained(ROOT / "world_model" / "weights" / "v4s-small")
    assert pipe.model.config.transformer_config == shipped.model.config.transformer_config
    # trained from the shipped weights: close to them (2 steps, EMA) but not equal
    a, b = pipe.model.state_dict(), shipped.model.state_dict()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert 0 < diff < 0.05, diff


# ----------------------------------------------------------------------------- section 5
TINY_YAML = """
model:
  transformer: {patch_size: [1, 4, 4], num_attention_heads: 2, attention_head_dim: 12, in_channels: 3,
                out_channels: 3, text_dim: 384, freq_dim: 32, ffn_dim: 48, num_layers: 1, rope_max_seq_len: 512}
  text_len: 32
  context_attention: prefix
  frame_size: 16
train:
  num_context: 3
  num_target: 2
  num_bbox: 1
  batch_size: 2
  lr: 3.0e-3
  warmup_steps: 1
  ckpt_every_steps: 1000
  ckpt_every_minutes: 1000.0
  log_every: 1
  context_grad_every: 2
  compile: false
  mixed_precision: "no"
  num_threads: 1
"""


def test_accelerate_two_processes_train_one_model_and_resume(tmp_path, minilm):
    from safetensors.torch import load_file

    from world_model.text_encoder import save_text_states

    data = collected_dir(tmp_path / "data", 16)
    save_text_states(data / "text_states.pt", ["go to the red chair left of the bed", "go to thing 0",
                                               "go to thing 1"], minilm)
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    out = tmp_path / "run"

    def launch(max_steps: int) -> str:
        cmd = [str(VENV_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
               str(ROOT / "tests" / "ddp_train_rank_dump.py"), f"config={tmp_path / 'tiny.yaml'}",
               f"data_dir={data}", f"text_states={data / 'text_states.pt'}", f"out_dir={out}",
               f"max_steps={max_steps}"]
        p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                           env=script_env(ACCELERATE_USE_CPU=1))
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
        return p.stderr

    launch(2)
    log = (out / "train.log").read_text()
    assert "step 2 loss" in log and log.count("checkpoint step_") == 1, log
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["step_00000002"]
    r0, r1 = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    ck = {k.removeprefix("module."): v for k, v in load_file(out / "ckpt" / "step_00000002" / "model.safetensors").items()}
    assert r0.keys() == r1.keys() and len(r0) > 10
    for k in r0:  # each rank built its own random init and drew its own batches: DDP made them one model
        assert torch.equal(r0[k], r1[k]), k
        assert torch.equal(r0[k], ck[k]), k
    err = launch(4)
    log = (out / "train.log").read_text()
    assert f"resumed from {out / 'ckpt' / 'step_00000002'} at step 2" in log, log
    assert "resuming" in err and "step 4 loss" in log and "step 1 loss" not in log.split("resumed from")[1]
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["step_00000002", "step_00000004"]  # keep 2
    s0, s1 = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert all(torch.equal(s0[k], s1[k]) for k in s0)
    assert any(not torch.equal(s0[k], r0[k]) for k in s0)  # steps 3-4 trained on from step 2
