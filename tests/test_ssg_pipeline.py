"""SSG in the world-model pipeline: load/save, imagine(ssg=...), null-branch prompts, adapter training."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

from world_model.model import Video4SpatialModel
from world_model.pipeline import Video4SpatialPipeline, make_scheduler
from world_model.ssg.adapter import ssg_processors
from world_model.ssg.clip import SmallClipSpec, build_small_clip, build_word_tokenizer, grammar_vocabulary

TINY_WAN = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
                text_dim=32, freq_dim=32, ffn_dim=48, num_layers=2, rope_max_seq_len=128)
TINY_CLIP = SmallClipSpec(image_size=32, patch_size=8, vision_layers=2, vision_width=32, vision_heads=2,
                          text_layers=1, text_width=32, text_heads=2, projection_dim=32, max_text_len=24)
PROMPTER = dict(num_tokens=4, layers=[-2, -1], hidden_dim=32, num_heads=2)
S, L = 16, 6  # frame size, text tokens
INSTR = "go to the red chair left of the bed"
# fp32: these tests check exact structural equalities (zero start, bypass, fp16 release); bf16 autocast
# rounding is covered in tests/test_wm_precision.py.
KW = dict(num_steps=3, seed=0, precision="fp32")


class FakeText:
    """Deterministic stand-in for MiniLM: (B, L, 32) states seeded by the text."""

    def encode(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        return torch.stack([torch.randn(L, 32, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                            for t in texts])


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    clip = build_small_clip(build_word_tokenizer(grammar_vocabulary()), TINY_CLIP, seed=0)
    path = tmp_path_factory.mktemp("clip") / "tiny-clip"
    clip.save_pretrained(path)
    return path


def make_pipe(seed=0, **wan) -> Video4SpatialPipeline:
    torch.manual_seed(seed)
    m = Video4SpatialModel(transformer_config={**TINY_WAN, **wan}, text_len=L, frame_size=(S, S),
                           context_attention="prefix").eval()
    with torch.no_grad():
        m.null_text_embedding.normal_()
    return Video4SpatialPipeline(m, make_scheduler(), text_encoder=FakeText(), num_target_frames=2, num_bbox_frames=1)


def context(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8), [0, 4, 9]


def _train_adapter_a_little(pipe):
    """Make the adapter and the null prompt non-trivial, as training would."""
    with torch.no_grad():
        for proc in ssg_processors(pipe.model.transformer):
            proc.to_v_ssg.weight.normal_(0, 0.5)
        pipe.ssg_prompter.null_tokens.normal_()


def test_zero_init_ssg_equals_backbone_and_ssg_flag(clip_dir):
    pipe = make_pipe()
    fr, idx = context()
    with pytest.raises(ValueError, match="load_ssg"):
        pipe.imagine(fr, idx, INSTR, ssg=True, **KW)
    off = pipe.imagine(fr, idx, INSTR, **KW)  # nothing loaded: None = backbone
    assert off.timings["ssg"] == 0.0 or off.timings["ssg"] < 1e-3
    pipe.init_ssg(clip_dir, **PROMPTER)
    on = pipe.imagine(fr, idx, INSTR, **KW)  # None = use SSG when loaded
    assert on.timings["ssg"] > 0
    # Zero-initialised W_v_ssg: the SSG branch adds exactly 0 (last-bit rounding of a longer text GEMM at most).
    assert np.abs(on.frames.astype(int) - off.frames).max() <= 1
    assert np.abs(on.bbox_frames.astype(int) - off.bbox_frames).max() <= 1
    _train_adapter_a_little(pipe)
    trained = pipe.imagine(fr, idx, INSTR, ssg=True, **KW)
    assert np.abs(trained.frames.astype(int) - off.frames).max() > 10
    bypass = pipe.imagine(fr, idx, INSTR, ssg=False, **KW)  # backbone only, exactly
    assert np.array_equal(bypass.frames, off.frames) and np.array_equal(bypass.bbox_frames, off.bbox_frames)
    hires = np.repeat(np.repeat(fr, 2, axis=1), 2, axis=2)  # ssg_frames: the prompter's own copy of the context
    assert pipe.imagine(fr, idx, INSTR, ssg_frames=hires, **KW).frames.shape == trained.frames.shape
    with pytest.raises(ValueError, match="ssg_frames"):
        pipe.imagine(fr, idx, INSTR, ssg_frames=hires[:2], **KW)


def test_imagine_ssg_prompt_fn_replaces_the_prompt_an_oracle_relevance_steers_it(clip_dir):
    """The one hook for prompt experiments (research.ssg.controls): ``ssg_prompt_fn`` gets what
    ``ssg_prompts`` would and its (tokens, null) replace the prompt, e.g. built from a given relevance."""
    pipe = make_pipe()
    pipe.init_ssg(clip_dir, **PROMPTER)
    _train_adapter_a_little(pipe)
    fr, idx = context()
    g = pipe.ssg_prompter.clip.grid_size
    clip_rel = pipe.imagine(fr, idx, INSTR, ssg=True, **KW)
    corner, centre = np.zeros((3, g, g), np.float32), np.zeros((3, g, g), np.float32)
    corner[:, 0, 0], centre[:, g // 2, g // 2] = 1.0, 1.0
    seen = []

    def with_relevance(rel):
        def fn(frames, indices, instruction, poses):
            seen.append((frames.shape, list(indices), instruction, poses))
            return pipe.ssg_prompts(frames, indices, instruction, relevance=torch.as_tensor(rel), poses=poses)
        return fn

    a = pipe.imagine(fr, idx, INSTR, ssg=True, ssg_prompt_fn=with_relevance(corner), **KW)
    b = pipe.imagine(fr, idx, INSTR, ssg=True, ssg_prompt_fn=with_relevance(centre), **KW)
    assert seen[0] == (fr.shape, list(idx), INSTR, None)
    # The top-k tokens sit on other cells, so the rollout changes; the same relevance repeats exactly.
    assert np.abs(a.frames.astype(int) - b.frames).max() > 0
    assert np.abs(a.frames.astype(int) - clip_rel.frames).max() > 0
    assert np.array_equal(pipe.imagine(fr, idx, INSTR, ssg=True, ssg_prompt_fn=with_relevance(corner), **KW).frames,
                          a.frames)
    with pytest.raises(ValueError, match="relevance must be"):
        pipe.imagine(fr, idx, INSTR, ssg=True, ssg_prompt_fn=with_relevance(corner[:2]), **KW)
    with pytest.raises(ValueError, match="SSG is off"):
        pipe.imagine(fr, idx, INSTR, ssg=False, ssg_prompt_fn=with_relevance(corner), **KW)


def test_imagine_ssg_prompt_fn_with_precomputed_tokens(clip_dir):
    pipe = make_pipe()
    pipe.init_ssg(clip_dir, **PROMPTER)
    _train_adapter_a_little(pipe)
    fr, idx = context()
    own = pipe.ssg_prompts(fr, idx, INSTR)[0]
    other = pipe.ssg_prompts(fr, idx, "go to the blue sofa")[0]
    null = pipe.ssg_prompter.null_prompt(1)
    base = pipe.imagine(fr, idx, INSTR, ssg=True, **KW)
    # Its own tokens passed in reproduce the normal call exactly; another prompt's tokens change it.
    assert np.array_equal(pipe.imagine(fr, idx, INSTR, ssg=True, ssg_prompt_fn=lambda *a: (own, null), **KW).frames,
                          base.frames)
    assert np.abs(pipe.imagine(fr, idx, INSTR, ssg=True, ssg_prompt_fn=lambda *a: (other, null), **KW).frames
                  .astype(int) - base.frames).max() > 0
    with pytest.raises(ValueError, match="tokens must be"):
        pipe.imagine(fr, idx, INSTR, ssg=True, ssg_prompt_fn=lambda *a: (own[:, :2], null), **KW)
    with pytest.raises(ValueError, match="null tokens must be"):
        pipe.imagine(fr, idx, INSTR, ssg=True, ssg_prompt_fn=lambda *a: (own, null[:, :2]), **KW)
    with pytest.raises(ValueError, match="SSG is off"):
        pipe.imagine(fr, idx, INSTR, ssg=False, ssg_prompt_fn=lambda *a: (own, null), **KW)


def test_null_branches_get_the_null_prompt_and_cache_sees_the_same_states(clip_dir):
    pipe = make_pipe()
    pipe.init_ssg(clip_dir, **PROMPTER)
    _train_adapter_a_little(pipe)
    fr, idx = context()
    seen = {}
    enc, fwd = pipe.model.encode_context, pipe.model.forward_cached

    def encode_context(ctx, states, *a, **k):
        seen["encode"] = states.clone()
        return enc(ctx, states, *a, **k)

    def forward_cached(lat, t, states, cache):
        seen.setdefault("steps", []).append(states.clone())
        return fwd(lat, t, states, cache)

    pipe.model.encode_context, pipe.model.forward_cached = encode_context, forward_cached
    cached = pipe.imagine(fr, idx, INSTR, cfg_mode="joint", **KW)
    m = PROMPTER["num_tokens"]
    tok, null_tok = pipe.ssg_prompts(fr, idx, INSTR)
    states = seen["encode"]  # rows in branch order: (instr, ctx), (null, noise)
    assert states.shape == (2, L + m, 32)
    torch.testing.assert_close(states[0, -m:], tok[0])
    torch.testing.assert_close(states[1, -m:], null_tok[0])
    torch.testing.assert_close(states[1, :L], pipe.model.null_text_embedding)
    assert len(seen["steps"]) == KW["num_steps"] and all(torch.equal(s, states) for s in seen["steps"])
    del pipe.model.encode_context, pipe.model.forward_cached
    pipe.use_context_cache = False
    assert np.abs(pipe.imagine(fr, idx, INSTR, cfg_mode="joint", **KW).frames.astype(int) - cached.frames).max() <= 1


def _saved_ssg(clip_dir, path):
    """A pipeline with a non-trivial SSG saved to ``path``: (pipe, frames, indices, its rollout)."""
    pipe = make_pipe()
    pipe.init_ssg(clip_dir, **PROMPTER)
    _train_adapter_a_little(pipe)
    fr, idx = context()
    ref = pipe.imagine(fr, idx, INSTR, **KW)
    pipe.save_ssg(path)
    return pipe, fr, idx, ref


def test_save_load_ssg_round_trip(clip_dir, tmp_path):
    pipe, fr, idx, ref = _saved_ssg(clip_dir, tmp_path / "ssg")
    assert (tmp_path / "ssg" / "clip" / "config.json").exists()  # not the shipped CLIP: copied along
    other = make_pipe()
    assert other.ssg_prompter is None
    other.load_ssg(tmp_path / "ssg")
    assert other.ssg_config["prompter"]["num_tokens"] == PROMPTER["num_tokens"]
    assert np.array_equal(other.imagine(fr, idx, INSTR, **KW).frames, ref.frames)
    # a pipeline saved with SSG loaded: adapter-free backbone weights + ssg/, reloaded together
    pipe.save_pretrained(tmp_path / "pipe")
    again = Video4SpatialPipeline.from_pretrained(tmp_path / "pipe")
    again._text_encoder = FakeText()
    assert again.ssg_prompter is not None
    assert np.array_equal(again.imagine(fr, idx, INSTR, **KW).frames, ref.frames)
    plain = Video4SpatialPipeline.from_pretrained(tmp_path / "pipe", with_ssg=False)
    assert plain.ssg_prompter is None and not ssg_processors(plain.model.transformer)
    plain.unload_ssg()
    with pytest.raises(FileNotFoundError, match="train-ssg"):
        plain.load_ssg(tmp_path / "nothing")
    with pytest.warns(UserWarning, match="backbone"):  # trained on another backbone: a warning
        make_pipe(seed=1).load_ssg(tmp_path / "ssg")


def test_ssg_true_falls_back_to_the_shipped_adapter(clip_dir, tmp_path, monkeypatch):
    from world_model import evaluate
    from world_model.ssg import checkpoint

    _, fr, idx, ref = _saved_ssg(clip_dir, tmp_path / "shipped")
    monkeypatch.setattr(checkpoint, "default_ssg_dir", lambda: tmp_path / "missing")
    fresh = make_pipe()
    with pytest.raises(ValueError, match="ssg_path"):  # nothing loaded, nothing shipped: say how to fix it
        evaluate.ssg_kwargs(fresh, True)
    assert evaluate.ssg_kwargs(fresh, False) == {"ssg": False} and fresh.ssg_prompter is None
    monkeypatch.setattr(checkpoint, "default_ssg_dir", lambda: tmp_path / "shipped")
    assert evaluate.ssg_kwargs(fresh, True) == {"ssg": True}
    assert fresh.ssg_prompter is not None
    assert np.array_equal(fresh.imagine(fr, idx, INSTR, **KW).frames, ref.frames)


# ----------------------------------------------------------------------------- adapter training
class ColourData(torch.utils.data.Dataset):
    """Eight fixed samples: random context, a target filled with the instruction's colour."""

    colours = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "white": (240, 240, 240)}

    def __len__(self):
        return 8

    def __getitem__(self, i):
        name, rgb = list(self.colours.items())[i % 4]
        rng = np.random.default_rng(i)
        return {"context": rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8),
                "context_indices": np.array([0, 3 + i, 20]),
                "target": np.broadcast_to(np.array(rgb, np.uint8), (3, S, S, 3)).copy(),
                "instruction": f"go to the {name} chair"}


def _backbone_state(model):
    # on the CPU: train() runs on a GPU where Accelerate finds one (checked on an H200 2026-12-04)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if ".processor." not in k}


def test_adapter_training_freezes_backbone_trains_adapter_and_resumes(clip_dir, tmp_path):
    from safetensors.torch import load_file

    from world_model.ssg.train_adapter import AdapterTrainConfig, train

    backbone = make_pipe()
    backbone.save_pretrained(tmp_path / "backbone")
    before = _backbone_state(backbone.model)
    cfg = dict(pipeline=str(tmp_path / "backbone"), clip=str(clip_dir), prompter=dict(PROMPTER),
               out_dir=str(tmp_path / "run"), num_context=3, batch_size=8, lr=1e-2, warmup_steps=1, ema_decay=0.0,
               p_drop_context=0.15, p_drop_text=0.15, p_drop_both=0.15, log_every=1, ckpt_every_steps=1000,
               max_steps=2)
    out = train(AdapterTrainConfig(**cfg), dataset=ColourData(), text_encoder=FakeText())
    assert out["step"] == 2
    model = out["pipeline"].model
    after = _backbone_state(model)
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)  # bit-identical
    assert all(p.to_v_ssg.weight.abs().sum() > 0 for p in ssg_processors(model.transformer))  # moved off zero
    first = load_file(str(tmp_path / "run" / "ssg" / "prompter.safetensors"))
    assert first["null_tokens"].abs().sum() > 0  # dropped rows trained the null prompt
    log = (tmp_path / "run" / "train.log").read_text()
    assert "backbone" in log and "gain" in log and "own-gap" not in log

    # the resumed run adds the prompt-contrast term and logs the own-prompt gap
    out2 = train(AdapterTrainConfig(**dict(cfg, max_steps=4, prompt_contrast=1.0)), dataset=ColourData(),
                 text_encoder=FakeText())
    log = (tmp_path / "run" / "train.log").read_text()
    assert out2["step"] == 4 and "at step 2" in log and "own-gap" in log.split("at step 2")[1]
    second = load_file(str(tmp_path / "run" / "ssg" / "prompter.safetensors"))
    assert not torch.equal(first["projector.net.3.weight"], second["projector.net.3.weight"])  # kept rows trained it
    assert not torch.equal(first["queries"], second["queries"])
    assert all(torch.equal(v, before[k]) for k, v in _backbone_state(out2["pipeline"].model).items())

    # the exported checkpoint goes on the original backbone and imagines with SSG
    backbone.load_ssg(tmp_path / "run" / "ssg")
    assert backbone.ssg_config["training"]["steps"] == 4
    fr, idx = context()
    r = backbone.imagine(fr, idx, INSTR, ssg=True, **KW)
    assert r.frames.shape == (2, S, S, 3)


def test_frozen_prompter_keeps_its_initialisation_while_the_adapter_trains(clip_dir, tmp_path):
    from accelerate.utils import set_seed
    from safetensors.torch import load_file

    from world_model.ssg.train_adapter import AdapterTrainConfig, train

    make_pipe().save_pretrained(tmp_path / "backbone")
    cfg = AdapterTrainConfig(pipeline=str(tmp_path / "backbone"), clip=str(clip_dir), prompter=dict(PROMPTER),
                             out_dir=str(tmp_path / "run"), num_context=3, batch_size=8, lr=1e-2, warmup_steps=1,
                             ema_decay=0.0, log_every=1, ckpt_every_steps=1000, max_steps=2, train_prompter=False)
    out = train(cfg, dataset=ColourData(), text_encoder=FakeText())
    assert all(p.to_v_ssg.weight.abs().sum() > 0 for p in ssg_processors(out["pipeline"].model.transformer))
    # the same seeded initialisation train() makes, on a fresh copy of the backbone
    fresh = make_pipe()
    set_seed(cfg.seed)
    fresh.init_ssg(str(clip_dir), **PROMPTER)
    init = {k: v.detach() for k, v in fresh.ssg_prompter.state_dict().items()}
    saved = load_file(str(tmp_path / "run" / "ssg" / "prompter.safetensors"))
    assert set(saved) <= set(init) and "null_tokens" in saved and "projector.net.3.weight" in saved
    for k, v in saved.items():
        if k == "null_tokens":
            assert v.abs().sum() > 0  # the null prompt trains (dropped rows)
        else:
            assert torch.equal(v, init[k].to(v.dtype)), k


class PosedColourData(ColourData):
    """ColourData with the context frames' poses (x, y, yaw), as the collected data has them."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        item["context_poses"] = np.array([[0.0, 0.0, 0.2 * i], [0.5, 0.1 * i, 1.0], [1.0, 0.0, -0.3]], np.float32)
        return item


def test_pose_aware_adapter_trains_on_posed_data_and_imagine_needs_the_poses(clip_dir, tmp_path):
    from world_model.ssg.train_adapter import AdapterTrainConfig, train

    make_pipe().save_pretrained(tmp_path / "backbone")
    posed = dict(PROMPTER, hidden_dim=96, pose_encoding=True)
    cfg = AdapterTrainConfig(pipeline=str(tmp_path / "backbone"), clip=str(clip_dir), prompter=posed,
                             out_dir=str(tmp_path / "run"), num_context=3, batch_size=8, lr=1e-2, warmup_steps=1,
                             ema_decay=0.0, log_every=1, ckpt_every_steps=1000, max_steps=2, train_prompter=False)
    train(cfg, dataset=PosedColourData(), text_encoder=FakeText())
    pipe = make_pipe()
    pipe.load_ssg(tmp_path / "run" / "ssg")
    assert pipe.ssg_prompter.pose_encoding and pipe.ssg_config["prompter"]["pose_encoding"] is True
    _train_adapter_a_little(pipe)
    fr, idx = context()
    poses = PosedColourData()[0]["context_poses"]
    with pytest.raises(ValueError, match="pose-aware"):
        pipe.imagine(fr, idx, INSTR, ssg=True, **KW)
    with pytest.raises(ValueError, match="context_poses must be"):
        pipe.imagine(fr, idx, INSTR, ssg=True, context_poses=poses[:2], **KW)
    a = pipe.imagine(fr, idx, INSTR, ssg=True, context_poses=poses, **KW)
    turned = poses.copy()
    turned[:2, 2] += 1.5
    b = pipe.imagine(fr, idx, INSTR, ssg=True, context_poses=turned, **KW)
    assert np.abs(a.frames.astype(int) - b.frames).max() > 0  # the poses reach the rollout
    assert np.array_equal(pipe.imagine(fr, idx, INSTR, ssg=False, **KW).frames,
                          pipe.imagine(fr, idx, INSTR, ssg=False, context_poses=turned, **KW).frames)
    with pytest.raises(ValueError, match="pose-aware"):  # training data without poses says so
        cfg2 = AdapterTrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "run2")})
        train(cfg2, dataset=ColourData(), text_encoder=FakeText())


def test_prompt_contrast_term_is_the_hinge_on_own_vs_a_rolled_prompt(clip_dir):
    from world_model.ssg.adapter import append_ssg_tokens
    from world_model.ssg.train_adapter import SSGTrainModule
    from world_model.train import flow_matching_loss

    pipe = make_pipe()
    pipe.init_ssg(str(clip_dir), **PROMPTER)
    _train_adapter_a_little(pipe)
    module = SSGTrainModule(pipe.model.float(), pipe.ssg_prompter)
    data = [ColourData()[i] for i in range(4)]
    frames = torch.as_tensor(np.stack([d["context"] for d in data]))
    ctx = frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # pixel latents (B, C, K, H, W)
    tgt = torch.as_tensor(np.stack([d["target"] for d in data])).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    text = FakeText().encode([d["instruction"] for d in data])
    ctx_idx = torch.as_tensor(np.stack([d["context_indices"] for d in data]))
    t, noise = torch.rand(4), torch.randn_like(tgt)
    instr = [d["instruction"] for d in data]
    keep = torch.tensor([True, False, True, True])
    args = (ctx, tgt, text, ctx_idx, t, noise, frames, instr, keep)

    plain, parts = module(*args)
    assert set(parts) == {"fm"} and torch.isclose(plain, torch.tensor(parts["fm"]))
    margin = 0.05
    loss, parts = module(*args, contrast=2.0, margin=margin)
    # by hand: the kept rows 0, 2, 3 with the prompts of rows 3, 0, 2
    tokens = module.ssg_tokens(frames, instr, ctx_idx, keep)
    rows = torch.tensor([0, 2, 3])

    def err(tok):
        return flow_matching_loss(module.model, ctx[rows], tgt[rows], append_ssg_tokens(text[rows], tok),
                                  ctx_idx[rows], t[rows], noise=noise[rows], reduction="none").flatten(1).mean(1)

    e_own, e_shuf = err(tokens[rows]), err(tokens[torch.tensor([3, 0, 2])])
    assert not torch.allclose(e_own, e_shuf)  # the trained-a-little adapter reads the prompt
    hinge = torch.relu(e_own - e_shuf + margin).mean()
    assert torch.isclose(loss, plain + 2.0 * hinge, rtol=1e-5)
    assert np.isclose(parts["shuffled"] - parts["own"], float((e_shuf - e_own).mean().detach()), rtol=1e-4)
    loss.backward()  # the term reaches the adapter's value projections
    assert all(p.to_v_ssg.weight.grad is not None and p.to_v_ssg.weight.grad.abs().sum() > 0
               for p in ssg_processors(module.model.transformer))
    # fewer than two kept rows: nothing to contrast with
    one = module(*args[:-1], torch.tensor([False, False, True, False]), contrast=2.0)[1]
    assert set(one) == {"fm"}


    # bbox_weight: the bbox frame (the last of pipe's 2 + 1) weighs 3x a path frame, normalised to mean 1;
    # the logged fm stays the plain mean
    weighted = SSGTrainModule(module.model, module.prompter, num_bbox=1, bbox_weight=3.0)
    sq = flow_matching_loss(module.model, ctx, tgt, append_ssg_tokens(text, tokens), ctx_idx, t, noise=noise,
                            reduction="none")
    w = torch.tensor([1.0, 1.0, 3.0]) / (5.0 / 3.0)
    loss_w, parts_w = weighted(*args)
    assert torch.isclose(loss_w, (sq * w.view(1, 1, 3, 1, 1)).mean(), rtol=1e-5)
    assert not torch.isclose(loss_w, plain) and np.isclose(parts_w["fm"], float(plain.detach()), rtol=1e-6)
    with pytest.raises(ValueError, match="bbox_weight"):
        SSGTrainModule(module.model, module.prompter, num_bbox=1, bbox_weight=0.0)


def test_presets_and_cli_config():
    from agent.cli import COMMANDS, compose_config
    from world_model.ssg.train_adapter import config_from_any, resolve_config

    d = resolve_config("default")
    assert d.out_dir == "runs/ssg/default" and d.clip is None and d.prompter["use_mlp_mask"]
    m = resolve_config("no_mlp_mask", {"max_steps": 7})
    assert not m.prompter["use_mlp_mask"] and m.prompter["use_attention_mask"] and m.max_steps == 7
    assert m.out_dir == "runs/ssg/no_mlp_mask"
    assert not resolve_config("no_attention_mask").prompter["use_attention_mask"]
    w = resolve_config("weak_clip")
    assert w.clip == "runs/clip/weak/clip-small" and w.prompter["layers"] == [-2, -1]
    with pytest.raises(ValueError, match="unknown"):
        resolve_config("default", {"max_stepz": 1})
    with pytest.raises(FileNotFoundError, match="preset"):
        resolve_config("nope")
    assert COMMANDS["train-ssg"][0] == "world_model.ssg.train_adapter:main"
    c = config_from_any(compose_config(["train_ssg.preset=weak_clip", "train_ssg.max_steps=5", "out_dir=runs/x"]))
    assert c.preset == "weak_clip" and c.max_steps == 5 and c.out_dir == "runs/x" and c.clip.endswith("weak/clip-small")


def test_heldout_loss_pairs_backbone_and_ssg_on_the_same_draws(clip_dir, wm_data_dir, tmp_path):
    from research.ssg.heldout import heldout_loss, prompt_dependence, relation_pattern
    from research.ssg.heldout import main as heldout_main

    assert relation_pattern().search("go to the plant on the left side of the sofa")
    assert relation_pattern().search("find the lamp between the bed and the desk")
    assert not relation_pattern().search("walk to the white bookshelf in the bedroom")
    pipe = make_pipe(rope_max_seq_len=512)  # the synthetic tour spans 200 original frame indices
    pipe.init_ssg(clip_dir, **PROMPTER)
    with pytest.raises(ValueError, match="load_ssg"):
        heldout_loss(make_pipe(), wm_data_dir)
    zero = heldout_loss(pipe, wm_data_dir, n=4, draws=2, batch_size=3, num_context=3)
    assert zero["n"] == 4 and zero["n_relation"] == 1 and zero["per_sample"]["relation"] == [True, False, False, False]
    assert np.array(zero["per_sample"]["backbone"]).shape == (4, 3)  # 2 path frames + 1 bbox frame
    for part in ("path", "bbox", "total"):
        r = zero["all"][part]
        assert r["backbone"] > 0 and abs(r["gain"]) < 1e-5  # zero-initialised adapter = the backbone
    _train_adapter_a_little(pipe)
    moved = heldout_loss(pipe, wm_data_dir, n=4, draws=2, batch_size=3, num_context=3)
    assert moved["all"]["total"]["backbone"] == pytest.approx(zero["all"]["total"]["backbone"], rel=1e-6)
    assert abs(moved["all"]["total"]["gain"]) > 1e-4  # same draws, a changed SSG branch
    lo, hi = moved["all"]["total"]["gain_ci95"]
    assert lo <= moved["all"]["total"]["gain"] <= hi
    torch.manual_seed(123)  # another process state: still the same contexts, noise and t
    again = heldout_loss(pipe, wm_data_dir, n=4, draws=2, batch_size=3, num_context=3)
    assert again["per_sample"] == moved["per_sample"]
    shuffled = heldout_loss(pipe, wm_data_dir, n=4, draws=2, batch_size=3, num_context=3, shuffle_prompts=True)
    assert shuffled["shuffle_prompts"] and shuffled["per_sample"]["backbone"] == moved["per_sample"]["backbone"]
    assert shuffled["per_sample"]["ssg"] != moved["per_sample"]["ssg"]  # another sample's prompt, another output
    # own vs shuffled, paired sample by sample
    dep = prompt_dependence(moved, shuffled)
    own, shuf = np.array(moved["per_sample"]["ssg"]), np.array(shuffled["per_sample"]["ssg"])
    assert dep["all"]["total"]["own_vs_shuffled"] == pytest.approx(float((shuf - own).mean(axis=1).mean()))
    assert dep["all"]["total"]["dependence"] > 0 and dep["relation"]["total"]["n"] == 1
    with pytest.raises(ValueError, match="shuffle_prompts=true result second"):
        prompt_dependence(shuffled, moved)
    files = [tmp_path / "own.json", tmp_path / "shuf.json"]
    for f, r in zip(files, (moved, shuffled)):
        f.write_text(json.dumps(r))
    assert heldout_main([f"dependence=[{files[0]},{files[1]}]"])["all"] == dep["all"]
    with pytest.raises(SystemExit, match="two existing"):
        heldout_main([f"dependence=[{files[0]}]"])
    # an adapter blind to the prompt's content (W_v_ssg = 0, a bias only): swapping prompts changes nothing
    with torch.no_grad():
        for proc in ssg_processors(pipe.model.transformer):
            proc.to_v_ssg.weight.zero_()
            proc.to_v_ssg.bias.normal_(0, 0.5)
    blind = [heldout_loss(pipe, wm_data_dir, n=4, draws=2, batch_size=3, num_context=3, shuffle_prompts=sh)
             for sh in (False, True)]
    assert abs(blind[0]["all"]["total"]["gain"]) > 1e-4  # it does change the output ...
    d = prompt_dependence(*blind)["all"]["total"]
    assert d["dependence"] < 1e-3 and abs(d["own_vs_shuffled"]) < 1e-6  # ... but not with the prompt


def test_released_ssg_checkpoint_is_half_and_lean_and_loads(clip_dir, tmp_path):
    from safetensors.torch import load_file

    from world_model.ssg.checkpoint import release_ssg_checkpoint
    from world_model.ssg.prompting import PERCEIVER_ONLY

    _, fr, idx, ref = _saved_ssg(clip_dir, tmp_path / "ssg")  # top-k pooling, the default
    out = release_ssg_checkpoint(tmp_path / "ssg", tmp_path / "released")
    state = load_file(str(out / "prompter.safetensors"))
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert not any(k.startswith(PERCEIVER_ONLY) for k in state) and "queries" in state
    assert (out / "clip" / "config.json").exists()
    again = make_pipe()
    again.load_ssg(out)
    assert np.abs(again.imagine(fr, idx, INSTR, **KW).frames.astype(int) - ref.frames).max() <= 2
    with pytest.raises(KeyError, match="missing"):  # a perceiver prompter needs the tensors left out
        make_pipe().init_ssg(clip_dir, **{**PROMPTER, "pooling": "perceiver"}).ssg_prompter \
            .load_trainable_state_dict(state)
