"""Video4Spatial world model: RoPE indices, per-token timesteps, CFG, save/load, training, data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import synthetic_scene
from world_model.boxes import draw_box, target_box
from world_model.collect import CollectConfig
from world_model.data import ContextVideoDataset, sample_context_indices
from world_model.model import IndexedWanRotaryPosEmbed, Video4SpatialModel
from world_model.pipeline import Video4SpatialPipeline, make_scheduler
from world_model.shards import write_index, write_shard
from world_model.train import TrainConfig, condition_dropout, flow_matching_loss, train
from world_model.training import latest_checkpoint

TINY = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
            text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=128)
S = 16  # frame size of the tiny model


def tiny_model(seed=0, **kw) -> Video4SpatialModel:
    torch.manual_seed(seed)
    m = Video4SpatialModel(transformer_config=dict(TINY), text_len=8, frame_size=(S, S), **kw).eval()
    # zero-initialised null text and Wan's zero-init parts would make some checks trivially pass
    with torch.no_grad():
        m.null_text_embedding.normal_()
        for p in m.parameters():
            if p.abs().sum() == 0:
                p.normal_(std=0.05)
    return m


def inputs(b=2, fc=3, ft=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        context_latents=torch.randn(b, 3, fc, S, S, generator=g),
        noisy_latents=torch.randn(b, 3, ft, S, S, generator=g),
        timestep=torch.full((b,), 500.0),
        encoder_hidden_states=torch.randn(b, 8, 384, generator=g),
    )


@pytest.fixture(scope="module")
def text_encoder():
    from world_model.text_encoder import load_text_encoder

    return load_text_encoder("minilm", max_length=8)


# ----------------------------------------------------------------------------- model
def test_indexed_rope_matches_diffusers_for_contiguous_indices():
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    ref = WanRotaryPosEmbed(12, (1, 4, 4), 128)
    ours = IndexedWanRotaryPosEmbed(12, (1, 4, 4), 128)
    x = torch.zeros(1, 3, 5, S, S)
    ours.frame_indices = torch.arange(5)
    for a, b in zip(ref(x), ours(x)):
        torch.testing.assert_close(a.float(), b.float())
    ours.frame_indices = torch.tensor([0, 3, 7, 8, 20])
    assert not torch.allclose(ref(x)[0].float(), ours(x)[0].float())
    ours.frame_indices = torch.tensor([0, 1, 2, 3, 500])
    with pytest.raises(ValueError, match="rope_max_seq_len"):
        ours(x)


def test_rope_uses_original_frame_indices():
    m = tiny_model()
    x = inputs(b=1)
    with torch.no_grad():
        a = m(**x, context_indices=torch.tensor([[0, 10, 30]]))
        same = m(**x, context_indices=torch.tensor([[0, 10, 30]]))
        respaced = m(**x, context_indices=torch.tensor([[0, 1, 2]]))
        moved = m(**x, context_indices=torch.tensor([[0, 20, 30]]))
        shifted = m(**x, context_indices=torch.tensor([[40, 50, 70]]))
    torch.testing.assert_close(a, same)
    assert (a - respaced).abs().max() > 1e-4
    assert (a - moved).abs().max() > 1e-4
    # RoPE attention sees index differences only: a global shift changes nothing
    torch.testing.assert_close(a, shifted, atol=1e-5, rtol=1e-5)
    # explicit target positions further away also change the output
    with torch.no_grad():
        far = m(**x, context_indices=torch.tensor([[0, 10, 30]]), target_indices=torch.tensor([[60, 61]]))
    assert (a - far).abs().max() > 1e-4


def test_context_tokens_get_timestep_zero_and_stay_out_of_the_loss():
    m = tiny_model()
    x = inputs(b=2, fc=3, ft=2)
    seen = {}

    def hook(mod, args, kwargs, out):
        seen["t"] = kwargs["timestep"].clone()
        # poison the context part of the transformer's output: the loss must not see it
        out[0][:, :, :3] += 1e3
        return out

    h = m.transformer.register_forward_hook(hook, with_kwargs=True)
    try:
        target = torch.randn(2, 3, 2, S, S)
        noise = torch.randn(2, 3, 2, S, S)
        t = torch.tensor([0.3, 0.8])
        loss = flow_matching_loss(m, x["context_latents"], target, x["encoder_hidden_states"],
                                  torch.tensor([[0, 4, 9], [2, 3, 5]]), t, noise=noise)
    finally:
        h.remove()
    tpf = (S // 4) ** 2
    assert seen["t"].shape == (2, 5 * tpf)
    assert torch.all(seen["t"][:, : 3 * tpf] == 0)
    torch.testing.assert_close(seen["t"][:, 3 * tpf:], (t * 1000)[:, None].expand(2, 2 * tpf))
    assert float(loss.detach()) < 100  # a poisoned context output would give ~1e6


def test_model_save_load_round_trip(tmp_path):
    m = tiny_model(target_index_offset=3)
    m.save_pretrained(tmp_path / "m")
    m2 = Video4SpatialModel.from_pretrained(tmp_path / "m").eval()
    assert m2.config.target_index_offset == 3
    assert isinstance(m2.transformer.rope, IndexedWanRotaryPosEmbed)
    x = inputs()
    idx = torch.tensor([[0, 5, 9], [1, 2, 8]])
    with torch.no_grad():
        torch.testing.assert_close(m(**x, context_indices=idx), m2(**x, context_indices=idx), atol=0, rtol=0)


def test_wan_pretrained_loading_path(tmp_path):
    """A tiny WanTransformer3DModel saved like a Wan diffusers checkpoint loads and runs."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    wan = WanTransformer3DModel(**TINY).eval()
    wan.save_pretrained(tmp_path / "transformer")
    m = Video4SpatialModel.from_wan_pretrained(str(tmp_path), text_encoder="minilm", text_len=8,
                                               frame_size=(S, S)).eval()
    assert isinstance(m.transformer.rope, IndexedWanRotaryPosEmbed)
    assert not any(p.is_meta for p in m.parameters())
    x = inputs(b=1, fc=2, ft=2)
    with torch.no_grad():
        ours = m(**x, context_indices=torch.tensor([[0, 1]]))
        # contiguous indices 0..3 and the same per-token timesteps: exactly diffusers' Wan
        tpf = (S // 4) ** 2
        ts = torch.cat([torch.zeros(1, 2 * tpf), torch.full((1, 2 * tpf), 500.0)], 1)
        ref = wan(torch.cat([x["context_latents"], x["noisy_latents"]], 2), ts, x["encoder_hidden_states"],
                  return_dict=False)[0][:, :, 2:]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- pipeline
def make_pipe(text_encoder, **kw):
    return Video4SpatialPipeline(tiny_model(), make_scheduler(), text_encoder=text_encoder,
                                 num_target_frames=2, num_bbox_frames=1, **kw)


def test_joint_cfg_batched_equals_sequential(text_encoder):
    pipe = make_pipe(text_encoder)
    m = pipe.model
    g = torch.Generator().manual_seed(1)
    lat = torch.randn(1, 3, 3, S, S, generator=g)
    ctx = torch.randn(1, 3, 4, S, S, generator=g)
    z = torch.randn(1, 3, 4, S, S, generator=g)
    text = text_encoder.encode(["go to the red chair"])
    null = m.null_text(1)
    idx = torch.tensor([[0, 3, 9, 12]])
    t = torch.tensor([700.0])
    with torch.no_grad():
        v_c = m(ctx, lat, t, text, idx)
        v_nc = m(ctx, lat, t, null, idx)
        v_u = m(z, lat, t, null, idx)
        joint = pipe.velocity(lat, t, ctx, z, text, null, idx, "joint", 3.0)
        sep = pipe.velocity(lat, t, ctx, z, text, null, idx, "joint", 3.0, context_scale=2.0, instruction_scale=5.0)
        txt = pipe.velocity(lat, t, ctx, z, text, null, idx, "text", 3.0)
    torch.testing.assert_close(joint, v_u + 3.0 * (v_c - v_u), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sep, v_u + 2.0 * (v_nc - v_u) + 5.0 * (v_c - v_nc), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(txt, v_nc + 3.0 * (v_c - v_nc), atol=1e-5, rtol=1e-4)
    assert (joint - txt).abs().max() > 1e-4


def test_full_attention_processor_matches_wan_and_prefix_cache_is_exact():
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    two = dict(TINY, num_layers=2)  # with one layer the prefix mask changes nothing the output shows
    torch.manual_seed(0)
    full = Video4SpatialModel(transformer_config=two, text_len=8, frame_size=(S, S)).eval()
    kw = inputs(b=2, fc=3, ft=2)
    kw["timestep"] = torch.tensor([500.0, 120.0])
    idx = torch.tensor([[0, 5, 9], [2, 3, 40]])
    with torch.no_grad():
        ours = full(context_indices=idx, **kw)
        for block in full.transformer.blocks:
            block.attn1.set_processor(WanAttnProcessor())
        wan = full(context_indices=idx, **kw)
    torch.testing.assert_close(ours, wan, atol=1e-6, rtol=1e-5)

    prefix = Video4SpatialModel(transformer_config=two, text_len=8, frame_size=(S, S),
                                context_attention="prefix").eval()
    prefix.load_state_dict(full.state_dict())
    with torch.no_grad():
        v = prefix(context_indices=idx, **kw)
        cache = prefix.encode_context(kw["context_latents"], kw["encoder_hidden_states"], idx, num_target=2)
        v_cached = prefix.forward_cached(kw["noisy_latents"], kw["timestep"], kw["encoder_hidden_states"], cache)
        # one cached row serves many samples (best-of-N): rows are repeated
        c1 = prefix.encode_context(kw["context_latents"][:1], kw["encoder_hidden_states"][:1], idx[:1], 2)
        v_rep = prefix.forward_cached(kw["noisy_latents"][:1].repeat(3, 1, 1, 1, 1), torch.tensor(500.0),
                                      kw["encoder_hidden_states"][:1].repeat(3, 1, 1), c1)
    torch.testing.assert_close(v_cached, v, atol=1e-5, rtol=1e-4)
    for i in range(3):
        torch.testing.assert_close(v_rep[i], v[0], atol=1e-5, rtol=1e-4)
    assert (v - ours).abs().max() > 1e-4  # the prefix mask changes the function
    with pytest.raises(ValueError, match="context_attention='prefix'"):
        full.encode_context(kw["context_latents"], kw["encoder_hidden_states"], idx, 2)
    with pytest.raises(ValueError, match="target frames"):
        prefix.forward_cached(kw["noisy_latents"][:, :, :1], kw["timestep"], kw["encoder_hidden_states"], cache)
    with pytest.raises(ValueError, match="context_attention"):
        Video4SpatialModel(transformer_config=dict(TINY), context_attention="causal")


def test_cached_imagine_equals_uncached(text_encoder):
    pipe = Video4SpatialPipeline(tiny_model(context_attention="prefix"), make_scheduler(), text_encoder=text_encoder,
                                 num_target_frames=2, num_bbox_frames=1)
    ctx = np.random.default_rng(0).integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    for mode, extra in (("joint", {}), ("text", {}), ("joint", {"context_scale": 2.0, "instruction_scale": 4.0})):
        kw = dict(num_steps=3, seed=5, cfg_mode=mode, num_samples=2, **extra)
        pipe.use_context_cache = True
        cached = pipe.imagine(ctx, [0, 4, 9], "go to the red chair", **kw)
        pipe.use_context_cache = False
        plain = pipe.imagine(ctx, [0, 4, 9], "go to the red chair", **kw)
        assert np.abs(cached.samples.astype(int) - plain.samples.astype(int)).max() <= 1, mode


def test_imagine_save_load_and_best_of_n(text_encoder, tmp_path):
    pipe = make_pipe(text_encoder)
    ctx = np.random.default_rng(0).integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    r = pipe.imagine(ctx, [0, 4, 9], "go to the red chair", num_steps=3, seed=5)
    assert r.frames.shape == (2, S, S, 3) and r.frames.dtype == np.uint8
    assert r.bbox_frames.shape == (1, S, S, 3)
    assert list(r.target_indices) == [10, 11, 12]
    assert {"encode", "denoise", "decode", "total"} <= set(r.timings)
    pipe.save_pretrained(tmp_path / "pipe")
    pipe2 = Video4SpatialPipeline.from_pretrained(tmp_path / "pipe")
    pipe2._text_encoder = text_encoder
    assert pipe2.config.num_target_frames == 2
    r2 = pipe2.imagine(ctx, [0, 4, 9], "go to the red chair", num_steps=3, seed=5)
    np.testing.assert_array_equal(r.frames, r2.frames)
    rn = pipe.imagine(ctx, [0, 4, 9], "go to the red chair", num_steps=2, seed=5, num_samples=3,
                      score_fn=lambda f, b: float(f.mean()))
    assert rn.samples.shape == (3, 2, S, S, 3)
    assert rn.best_index == int(np.argmax([s.mean() for s in rn.samples]))
    np.testing.assert_array_equal(rn.frames, rn.samples[rn.best_index])
    # The output class is a diffusers BaseOutput; return_dict=False gives every field, in order.
    from diffusers.utils import BaseOutput

    assert isinstance(r, BaseOutput) and r["frames"] is r.frames and r[0] is r.frames
    tup = pipe(ctx, [0, 4, 9], "go to the red chair", num_steps=3, seed=5, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == len(dataclasses.fields(r))
    np.testing.assert_array_equal(tup[0], r.frames)
    np.testing.assert_array_equal(tup[1], r.bbox_frames)
    assert tup[6] is None  # samples (N = 1): positions stay fixed


def test_bad_inputs_give_clear_errors(text_encoder, tmp_path):
    pipe = make_pipe(text_encoder)
    ctx = np.zeros((3, S, S, 3), np.uint8)
    with pytest.raises(ValueError, match="non-empty"):
        pipe.imagine(ctx, [0, 1, 2], "   ")
    with pytest.raises(ValueError, match=f"works at {S}x{S}"):
        pipe.imagine(np.zeros((3, 2 * S, 2 * S, 3), np.uint8), [0, 1, 2], "go")
    with pytest.raises(ValueError, match="strictly increasing"):
        pipe.imagine(ctx, [0, 2, 1], "go")
    with pytest.raises(ValueError, match="3 context frames but 2"):
        pipe.imagine(ctx, [0, 1], "go")
    with pytest.raises(ValueError, match="cfg_mode"):
        pipe.imagine(ctx, [0, 1, 2], "go", cfg_mode="both")
    # check_inputs: the same checks without running anything (diffusers' convention)
    pipe.check_inputs(ctx, [0, 1, 2], "go")
    for kw, msg in ((dict(num_steps=0), "num_steps"), (dict(num_steps=2.5), "num_steps"),
                    (dict(guidance_scale=float("nan")), "guidance_scale"), (dict(context_scale="2"), "context_scale"),
                    (dict(num_samples=0), "num_samples"), (dict(num_target_frames=0), "num_target_frames"),
                    (dict(num_bbox_frames=-1), "num_bbox_frames"), (dict(precision="fp8"), "precision"),
                    (dict(ssg=True), "load_ssg"), (dict(context_poses=np.zeros((2, 3))), "context_poses must be")):
        with pytest.raises(ValueError, match=msg):
            pipe.check_inputs(ctx, [0, 1, 2], "go", **kw)
        with pytest.raises(ValueError, match=msg):
            pipe.imagine(ctx, [0, 1, 2], "go", **kw)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        Video4SpatialPipeline.from_pretrained(tmp_path / "nowhere")
    pipe.save_pretrained(tmp_path / "bad")
    cfg_path = tmp_path / "bad" / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["transformer_config"]["num_layers"] = 3  # weights no longer fit the config
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="incompatible"):
        Video4SpatialPipeline.from_pretrained(tmp_path / "bad")


# ----------------------------------------------------------------------------- training
class FixedData(torch.utils.data.Dataset):
    """Four fixed samples: the target repeats a colour that the instruction names."""

    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "white": (240, 240, 240)}

    def __len__(self):
        return 4

    def __getitem__(self, i):
        name, rgb = list(self.colours.items())[i]
        rng = np.random.default_rng(i)
        return {"context": rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8),
                "context_indices": np.array([0, 3 + i, 9]),
                "target": np.broadcast_to(np.array(rgb, np.uint8), (3, S, S, 3)).copy(),
                "instruction": f"go to the {name} box"}


def tiny_train_cfg(out, **kw):
    base = dict(out_dir=str(out), transformer=dict(TINY), text_len=8, frame_size=S, num_context=3, num_target=2,
                num_bbox=1, batch_size=4, lr=3e-3, warmup_steps=1, ckpt_every_steps=1000, log_every=5,
                p_drop_context=0.0, p_drop_text=0.0, p_drop_both=0.0)
    base.update(kw)
    return TrainConfig(**base)


def fixed_batch_loss(model, text_encoder):
    from accelerate.utils import set_seed

    from world_model.latents import encode_frames

    data = FixedData()
    items = [data[i] for i in range(4)]
    ctx = encode_frames(np.stack([it["context"] for it in items]))
    tgt = encode_frames(np.stack([it["target"] for it in items]))
    text = text_encoder.encode([it["instruction"] for it in items])
    idx = torch.as_tensor(np.stack([it["context_indices"] for it in items]))
    set_seed(123)
    with torch.no_grad():
        return float(flow_matching_loss(model.eval(), ctx, tgt, text, idx, torch.tensor([0.2, 0.4, 0.6, 0.8]),
                                        noise=torch.randn_like(tgt)))


def test_training_reduces_loss_and_resumes(tmp_path, text_encoder):
    from accelerate.utils import set_seed

    from world_model.train import build_model

    cfg = tiny_train_cfg(tmp_path / "run", max_steps=25)
    set_seed(cfg.seed)
    before = fixed_batch_loss(build_model(cfg), text_encoder)
    out = train(cfg, dataset=FixedData(), text_encoder=text_encoder)
    after = fixed_batch_loss(out["model"], text_encoder)
    assert out["step"] == 25
    assert after < 0.7 * before, (before, after)
    assert latest_checkpoint(cfg.out_dir).name == "step_00000025"
    assert (tmp_path / "run" / "pipeline" / "model_index.json").exists()
    # resume: a second invocation continues from step 25, not from 0
    cfg2 = tiny_train_cfg(tmp_path / "run", max_steps=28)
    out2 = train(cfg2, dataset=FixedData(), text_encoder=text_encoder)
    assert out2["step"] == 28
    log = (tmp_path / "run" / "train.log").read_text()
    assert "resumed from" in log and "at step 25" in log
    assert latest_checkpoint(cfg.out_dir).name == "step_00000028"
    p = Video4SpatialPipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert p.config.num_target_frames == 2 and p.config.num_bbox_frames == 1



def test_a_partial_checkpoint_is_never_resumed_from(tmp_path, text_encoder):
    """A save killed mid-write leaves no step_* directory (tmp dir + rename); step_* directories
    without train_state.json or with a truncated one are skipped, and the run resumes from the
    previous complete checkpoint, then prunes them."""
    from world_model.training import checkpoint_step, save_checkpoint

    run = tmp_path / "run"
    train(tiny_train_cfg(run, max_steps=2), dataset=FixedData(), text_encoder=text_encoder)
    ckpt = run / "ckpt"
    good = ckpt / "step_00000002"
    assert latest_checkpoint(run) == good and checkpoint_step(good) == 2

    class KilledMidSave:  # accelerate's save_state dying after its first file
        def save_state(self, path):
            Path(path).mkdir(parents=True)
            (Path(path) / "model.safetensors").write_bytes(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(KilledMidSave(), run, 7, keep=3)
    assert not (ckpt / "step_00000007").exists() and latest_checkpoint(run) == good
    # what an interrupted non-atomic save leaves: no train_state.json, a truncated one, one without a step
    for name, state in (("step_00000008", None), ("step_00000009", '{"step": 9, "ti'), ("step_00000010", "{}")):
        (ckpt / name).mkdir()
        (ckpt / name / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (ckpt / name / "train_state.json").write_text(state)
        assert checkpoint_step(ckpt / name) is None
    assert latest_checkpoint(run) == good
    out = train(tiny_train_cfg(run, max_steps=3), dataset=FixedData(), text_encoder=text_encoder)
    assert out["step"] == 3
    log = (run / "train.log").read_text()
    assert f"resumed from {good} at step 2" in log
    # the new checkpoint appeared whole; the partial ones and the killed save's tmp dir are gone
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_00000002", "step_00000003"]
    assert checkpoint_step(ckpt / "step_00000003") == 3


def test_condition_dropout_modes():
    cfg = TrainConfig(p_drop_context=0.25, p_drop_text=0.25, p_drop_both=0.25)
    ctx = torch.ones(400, 3, 2, 4, 4)
    text = torch.ones(400, 8, 384)
    null = torch.zeros(1, 8, 384)
    c, t, mode = condition_dropout(ctx, text, null, cfg, generator=torch.Generator().manual_seed(0))
    ctx_dropped = ~(c == 1).all(dim=(1, 2, 3, 4))
    text_dropped = (t == 0).all(dim=(1, 2))
    assert torch.equal(ctx_dropped, (mode == 1) | (mode == 3))
    assert torch.equal(text_dropped, (mode == 2) | (mode == 3))
    counts = torch.bincount(mode, minlength=4).float() / 400
    assert torch.all((counts > 0.15) & (counts < 0.35)), counts


# ----------------------------------------------------------------------------- data
def test_loader_samples_context_non_contiguously_with_original_indices(tmp_path):
    scenes = [synthetic_scene(seed=0), synthetic_scene(seed=1)]
    n = write_shard(tmp_path / "shard_00000.npz", scenes)
    write_index(tmp_path, "train", 0, CollectConfig(frame_size=16),
                [{"file": "shard_00000.npz", "num_samples": n, "num_scenes": 2}], done=True)
    ds = ContextVideoDataset(tmp_path, num_context=6, num_target=3, num_bbox=1, frame_size=16)
    assert len(ds) == 4
    seen = set()
    for i in range(len(ds)):
        for _ in range(5):
            it = ds[i]
            idx = it["context_indices"]
            assert len(idx) == 6 and np.all(np.diff(idx) > 0)
            full, full_idx = ds.context_video(i)
            assert idx[-1] == full_idx[-1] == 202  # the current view (last agent frame) always ends it
            # every frame is the stored frame of that original index
            for f, j in zip(it["context"], idx):
                np.testing.assert_array_equal(f, full[list(full_idx).index(j)])
            seen.add(tuple(idx))
            assert it["target"].shape == (4, 16, 16, 3)
            assert (it["target"][-1] == (255, 0, 0)).all(axis=-1).any()  # the red box
    assert len(seen) > 10  # random subsets, not a fixed pattern
    assert any(np.any(np.diff(s) > 1) for s in seen)
    dc = ContextVideoDataset(tmp_path, num_context=6, num_target=3, num_bbox=1, frame_size=16, contiguous=True)
    full, full_idx = dc.context_video(0)
    np.testing.assert_array_equal(dc[0]["context_indices"], full_idx[-6:])
    dp = ContextVideoDataset(tmp_path, num_context=6, num_target=3, num_bbox=0, frame_size=8)
    assert dp[0]["context"].shape == (6, 8, 8, 3) and dp[0]["target"].shape == (3, 8, 8, 3)
    with pytest.raises(ValueError, match="must divide"):
        ContextVideoDataset(tmp_path, frame_size=12)
    with pytest.raises(FileNotFoundError, match="collect data first"):
        ContextVideoDataset(tmp_path / "empty")


def test_sampling_helpers_and_box_drawing():
    rng = np.random.default_rng(0)
    idx = sample_context_indices(50, 8, rng)
    assert len(idx) == 8 and idx[-1] == 49 and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(sample_context_indices(50, 4, rng, contiguous=True), [46, 47, 48, 49])
    mask = np.zeros((20, 20), np.int32)
    mask[5:12, 10:18] = 7
    assert target_box(mask, 7) == (10, 5, 17, 11)
    assert target_box(mask, 3) is None
    img = draw_box(np.full((20, 20, 3), 128, np.uint8), (10, 5, 17, 11), thickness=2)
    red = (img == (255, 0, 0)).all(-1)
    assert red[5, 10:18].all() and red[6, 10:18].all() and red[5:12, 17].all() and red[5:12, 16].all()
    assert not red[7:10, 12:16].any()  # the interior stays untouched
    assert red.sum() == 7 * 8 - 3 * 4  # exactly the 2-px frame, nothing outside the box


def test_collect_scene_on_a_real_procedural_scene():
    """One real scene: the path starts at the start pose and ends centred on the boxed target."""
    import math

    from world_model.collect import collect_scene

    cfg = CollectConfig(frame_size=32, tour_frames=12, agent_frames=2, episodes_per_scene=1, starts_per_episode=1,
                        workers=1)
    res = collect_scene("train", 0, 0, cfg)
    assert res is not None and res["tour_rgb"].shape[1:] == (32, 32, 3)
    assert np.all(np.diff(res["tour_indices"]) > 0) and res["tour_indices"][-1] < res["tour_num_raw"]
    smp = res["samples"][0]
    np.testing.assert_allclose(smp["agent_poses"][-1], smp["path_poses"][0])  # current view = path start
    np.testing.assert_array_equal(smp["agent_rgb"][-1], smp["path_rgb"][0])
    final = smp["path_poses"][-1]
    tc = smp["target_center"]
    bearing = math.atan2(tc[1] - final[1], tc[0] - final[0])
    assert abs((bearing - final[2] + math.pi) % (2 * math.pi) - math.pi) < 1e-6  # exactly centred
    x0, y0, x1, y1 = smp["box"]
    assert x0 <= 16 <= x1  # the target straddles the image centre column
    red = (smp["bbox_rgb"] == (255, 0, 0)).all(-1)
    assert red[y0, x0:x1 + 1].all() and red[y0:y1 + 1, x1].all()
    assert smp["instruction"].strip()


def test_release_counts_the_training_of_the_checkpoint_a_run_started_from(tmp_path):
    import json

    from research.release import _with_prior
    from world_model.training import training_time_from_log

    log = tmp_path / "train.log"
    log.write_text("2026-11-30 10:00:00 start: 2.83M params\n"
                   "2026-11-30 10:30:00 step 600 loss 0.1\n"
                   "2026-11-30 11:00:00 resumed from ckpt at step 600\n"
                   "2026-11-30 11:30:00 checkpoint step_00001200\n")
    info = training_time_from_log(log)
    assert info == {"steps": 1200, "wall_hours": 1.0, "invocations": 2, "started": "2026-11-30 10:00:00"}
    info["samples_seen"] = 1200 * 16
    shipped = tmp_path / "v4s-small"
    shipped.mkdir()
    (shipped / "TRAINING.json").write_text(json.dumps({"steps": 1349, "wall_hours": 1.579, "invocations": 2,
                                                        "samples_seen": 21584, "released": "2026-11-22"}))
    out = _with_prior(info, str(shipped))
    assert out["steps"] == 2549 and out["wall_hours"] == 2.579 and out["samples_seen"] == 21584 + 19200
    assert out["invocations"] == 4 and out["prior"]["steps"] == 1349 and out["this_run"]["steps"] == 1200
    assert _with_prior(info, None) == {} and _with_prior(info, str(tmp_path / "nothing")) == {}
    # The shipped weights were since replaced by an earlier checkpoint of this same run (released
    # after the run started): the totals go back to what the run started from, not count it twice.
    (shipped / "TRAINING.json").write_text(json.dumps(
        {"steps": 1349 + 600, "wall_hours": 2.079, "samples_seen": 21584 + 9600, "released": "2026-11-30 10:40:00",
         "prior": {"steps": 1349, "wall_hours": 1.579, "samples_seen": 21584, "invocations": 2,
                   "released": "2026-11-22"}}))
    again = _with_prior(info, str(shipped), run_started="2026-11-30 10:00:00")
    assert again["steps"] == 2549 and again["samples_seen"] == 21584 + 19200 and again["wall_hours"] == 2.579
    assert again["prior"]["released"] == "2026-11-22" and again["invocations"] == 4
    # without the run's start it cannot tell, and counts the replaced release as before
    assert _with_prior(info, str(shipped))["steps"] == 1349 + 600 + 1200
