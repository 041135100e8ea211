"""The training speed-ups (context without backward, compiled blocks, precision auto), the start/resume
rule of `spatialnav train`, and the `bench train` benchmark, on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from test_world_model import TINY, FixedData, S, inputs, tiny_model, tiny_train_cfg
from world_model.train import (TrainConfig, compile_blocks, context_grad_at, export_pipeline, flow_matching_loss,
                               resolve_init_from, resolve_mixed_precision, train)


@pytest.fixture(scope="module")
def text_encoder():
    from world_model.text_encoder import load_text_encoder

    return load_text_encoder("minilm", max_length=8)


def _param_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_context_without_backward_gives_the_same_velocity_and_skips_the_context_gradient():
    m = tiny_model(context_attention="prefix").train()
    x = inputs(b=2, fc=3, ft=2)
    idx = torch.tensor([[0, 4, 9], [1, 2, 7]])
    ctx = x["context_latents"].clone().requires_grad_(True)
    kw = dict(noisy_latents=x["noisy_latents"], timestep=x["timestep"],
              encoder_hidden_states=x["encoder_hidden_states"], context_indices=idx)
    full = m(context_latents=ctx, **kw)
    fast = m(context_latents=ctx, context_grad=False, **kw)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)

    full.square().mean().backward()
    g_full, ctx_grad_full = _param_grads(m), ctx.grad.clone()
    m.zero_grad()
    ctx.grad = None
    fast.square().mean().backward()
    g_fast = _param_grads(m)
    assert ctx_grad_full.abs().sum() > 0 and ctx.grad is None  # nothing flows back into the context
    # every weight still learns (through the target tokens), but not as through the full graph
    assert set(g_fast) == set(g_full)
    qkv = "transformer.blocks.0.attn1.to_k.weight"
    assert g_fast[qkv].abs().sum() > 0
    assert not torch.allclose(g_fast[qkv], g_full[qkv])


def test_context_without_backward_needs_prefix_attention():
    m = tiny_model(context_attention="full")
    x = inputs(b=1, fc=3, ft=2)
    with pytest.raises(ValueError, match="context_attention='prefix'"):
        m(context_indices=torch.tensor([0, 1, 2]), context_grad=False, **x)


def test_context_grad_schedule_and_config_checks(tmp_path):
    cfg = TrainConfig(context_grad_every=4)
    assert [context_grad_at(cfg, s) for s in range(8)] == [True, False, False, False] * 2
    assert not any(context_grad_at(TrainConfig(context_grad_every=0), s) for s in range(5))
    assert all(context_grad_at(TrainConfig(context_grad_every=1), s) for s in range(5))
    with pytest.raises(ValueError, match="context_grad_every must be >= 0"):
        train(tiny_train_cfg(tmp_path / "a", context_grad_every=-1), dataset=FixedData())
    with pytest.raises(ValueError, match="needs context_attention=prefix"):
        train(tiny_train_cfg(tmp_path / "b", context_grad_every=2, context_attention="full"), dataset=FixedData())


def test_mixed_precision_auto_follows_the_bf16_units():
    from world_model.pipeline import native_bf16

    assert resolve_mixed_precision("auto", "cpu") == ("bf16" if native_bf16("cpu") else "no")
    assert resolve_mixed_precision("no") == "no" and resolve_mixed_precision("bf16") == "bf16"
    assert resolve_mixed_precision(False) == "no"  # `mixed_precision=no` on a command line parses as a boolean
    with pytest.raises(ValueError, match="mixed_precision must be"):
        resolve_mixed_precision("half")


def test_training_without_context_backward_learns(tmp_path, text_encoder):
    from accelerate.utils import set_seed

    from test_world_model import fixed_batch_loss
    from world_model.train import build_model

    cfg = tiny_train_cfg(tmp_path / "run", max_steps=25, context_attention="prefix", context_grad_every=4)
    set_seed(cfg.seed)
    before = fixed_batch_loss(build_model(cfg), text_encoder)
    out = train(cfg, dataset=FixedData(), text_encoder=text_encoder)
    after = fixed_batch_loss(out["model"], text_encoder)
    assert out["step"] == 25 and after < 0.7 * before, (before, after)


def test_init_from_shipped_and_the_start_message(tmp_path, text_encoder, capsys):
    from world_model.loading import SHIPPED_PIPELINE

    assert resolve_init_from("shipped") == str(SHIPPED_PIPELINE)
    assert resolve_init_from(None) is None and resolve_init_from("null") is None
    with pytest.raises(FileNotFoundError, match="init_from=.*no saved pipeline there"):
        resolve_init_from(str(tmp_path / "nowhere"))

    # a released tiny pipeline to continue from (as `init_from=shipped` continues the shipped one)
    src = tiny_train_cfg(tmp_path / "src", max_steps=2)
    train(src, dataset=FixedData(), text_encoder=text_encoder)
    released = tmp_path / "src" / "pipeline"
    cfg = tiny_train_cfg(tmp_path / "run", max_steps=3, init_from=str(released))
    train(cfg, dataset=FixedData(), text_encoder=text_encoder)
    err = capsys.readouterr().err
    assert f"training starts from {released} with a fresh optimiser" in err
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"from {released} with a fresh optimiser" in log
    # the same command again: resumes its own checkpoint, not the init weights
    train(tiny_train_cfg(tmp_path / "run", max_steps=4, init_from=str(released)), dataset=FixedData(),
          text_encoder=text_encoder)
    err = capsys.readouterr().err
    assert "resuming" in err and "at step 3" in err and "init_from is not used" in err


def test_compiled_blocks_keep_their_weights_and_export(tmp_path):
    m = tiny_model(context_attention="prefix")
    keys = list(m.state_dict())
    x = inputs(b=1, fc=3, ft=2)
    idx = torch.tensor([0, 2, 5])
    with torch.no_grad():
        ref = m(context_indices=idx, **x)
        compile_blocks(m)
        got = m(context_indices=idx, **x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert list(m.state_dict()) == keys
    cfg = TrainConfig(out_dir=str(tmp_path), transformer=dict(TINY), text_len=8, frame_size=S, num_target=1, num_bbox=1)
    export_pipeline(m, None, cfg, None, tmp_path / "pipeline")
    from world_model.pipeline import Video4SpatialPipeline

    p = Video4SpatialPipeline.from_pretrained(tmp_path / "pipeline")
    torch.testing.assert_close(p.model.state_dict()["transformer.proj_out.weight"], m.state_dict()["transformer.proj_out.weight"])


def test_bench_train_measures_both_paths(tmp_path):
    import importlib.util
    from pathlib import Path

    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bench_train", root / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    conf = {"model": {"transformer": dict(TINY), "text_len": 8, "frame_size": S, "context_attention": "prefix"},
            "train": {"num_context": 3, "num_target": 2, "num_bbox": 1, "batch_size": 2, "context_grad_every": 2,
                      "mixed_precision": "no", "compile": False}}
    path = tmp_path / "tiny.yaml"
    OmegaConf.save(OmegaConf.create(conf), path)
    out = tmp_path / "bench.json"
    r = bench.run(steps=2, warmup=1, config=str(path), out=str(out))
    saved = json.loads(out.read_text())
    for k in ("baseline_samples_per_s", "samples_per_s", "speedup", "gflops_per_s", "threads", "device"):
        assert k in saved and saved[k] == r[k]
    assert saved["speedup"] == pytest.approx(saved["samples_per_s"] / saved["baseline_samples_per_s"])
    # every other step skips the context's backward: fewer counted FLOPs per step than the baseline
    assert 0 < saved["default"]["gflop_per_step"] < saved["baseline"]["gflop_per_step"]
    assert saved["peak_gflops_per_s"]["fp32"] > 0 and saved["default"]["context_grad_every"] == 2


def test_export_checkpoint_reproduces_the_runs_own_export(tmp_path, text_encoder):
    from world_model.pipeline import Video4SpatialPipeline
    from world_model.train import export_checkpoint
    from world_model.training import latest_checkpoint

    cfg = tiny_train_cfg(tmp_path / "run", max_steps=3)
    train(cfg, dataset=FixedData(), text_encoder=text_encoder)
    out = export_checkpoint(latest_checkpoint(cfg.out_dir), tmp_path / "exported")
    a = Video4SpatialPipeline.from_pretrained(tmp_path / "run" / "pipeline").model.state_dict()
    b = Video4SpatialPipeline.from_pretrained(out).model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        export_checkpoint(tmp_path / "run", tmp_path / "x")
