"""SSG: small CLIP (tokenizer, model, loading, loss, recall) and Spatial Signal Prompting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from world_model.ssg.clip import (EOS, UNK, SmallClipSpec, build_small_clip, build_word_tokenizer, clip_loss,
                                  grammar_vocabulary, load_clip, recall_at_k, words)
from world_model.ssg.prompting import SpatialSignalPrompter

TINY = SmallClipSpec(image_size=32, patch_size=8, vision_layers=2, vision_width=32, vision_heads=2,
                     text_layers=1, text_width=32, text_heads=2, projection_dim=32, max_text_len=24)
COLORS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (230, 210, 30)}


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(grammar_vocabulary())


def _squares(n, rng, k=1):
    """Grey 32x32 images with k distinct coloured 8x8 squares on distinct patches: images, (n, k) colours, cells."""
    names = list(COLORS)
    imgs = np.full((n, 32, 32, 3), 128, np.uint8)
    cols = np.zeros((n, k), int)
    cells = np.zeros((n, k), int)
    for i in range(n):
        cells[i] = rng.choice(16, k, replace=False)
        cols[i] = rng.choice(4, k, replace=False)
        for c, p in zip(cols[i], cells[i]):
            imgs[i, (p // 4) * 8:(p // 4 + 1) * 8, (p % 4) * 8:(p % 4 + 1) * 8] = COLORS[names[c]]
    return imgs, cols, cells


@pytest.fixture(scope="module")
def square_clip(tokenizer):
    """A tiny CLIP trained for 100 steps to match 'a <colour> chair' with a coloured square."""
    torch.manual_seed(0)
    clip = build_small_clip(tokenizer, TINY, seed=0)
    opt = torch.optim.AdamW(clip.model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    names = list(COLORS)
    losses = []
    for _ in range(100):
        imgs, cols, _ = _squares(32, rng)
        caps = np.array([f"a {names[c]} chair" for c in cols[:, 0]])
        same = torch.as_tensor(caps[:, None] == caps[None], dtype=torch.float32)
        loss = clip_loss(clip.encode_images(imgs), clip.encode_texts(list(caps)), clip.logit_scale(),
                         same / same.sum(1, keepdim=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    clip.model.zero_grad(set_to_none=True)
    clip.eval()
    return clip, losses


# -- tokenizer ---------------------------------------------------------------------

def test_tokenizer_round_trip_and_special_ids(tokenizer, tmp_path):
    text = "Go to the blue chair, left of the bed in the living room!"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id != 2  # CLIPTextModel's legacy pooling path triggers on eos id 2
    assert tokenizer.unk_token_id not in ids  # every grammar word is in the vocabulary
    assert tokenizer.decode(ids, skip_special_tokens=True) == " ".join(words(text))
    unk = tokenizer("a xylophone chair")["input_ids"]
    assert unk[2] == tokenizer.convert_tokens_to_ids(UNK)
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text)["input_ids"] == ids and again.convert_ids_to_tokens(ids[-1]) == EOS


def test_vocabulary_covers_instruction_grammar(tokenizer):
    from envs.instructions import InstructionSpec, ObjectRef

    spec = InstructionSpec("tv", "purple", "living_room", "between", (ObjectRef("sofa"), ObjectRef("lamp", "red")))
    for k in range(48):
        assert tokenizer.unk_token_id not in tokenizer(spec.to_text(template=k))["input_ids"]
    with pytest.raises(ValueError, match="single lower-case words"):
        build_word_tokenizer(["living room"])


# -- model, loss, loading -----------------------------------------------------------

def test_tiny_clip_forward_and_loss_decreases(square_clip):
    clip, losses = square_clip
    img = clip.encode_images(np.zeros((3, 48, 64, 3), np.uint8))  # non-square input is resized + cropped
    txt = clip.encode_texts(["a red chair", "go to the bed"])
    assert img.shape == (3, 32) and txt.shape == (2, 32)
    assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_clip_loss_matches_definition():
    torch.manual_seed(0)
    i, t = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1), torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    s = torch.tensor(10.0)
    logits = s * i @ t.t()
    manual = -0.5 * (logits.log_softmax(1).diag().mean() + logits.t().log_softmax(1).diag().mean())
    assert torch.allclose(clip_loss(i, t, s), manual)
    assert torch.allclose(clip_loss(i, t, s, torch.eye(4)), manual)  # soft targets reduce to hard ones
    # hard negatives join only the image -> text softmax, with target 0
    n = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    i2t = torch.cat([logits, s * i @ n.t()], dim=1)
    manual_neg = -0.5 * (i2t.log_softmax(1)[:, :4].diag().mean() + logits.t().log_softmax(1).diag().mean())
    assert torch.allclose(clip_loss(i, t, s, negative_text_embeds=n), manual_neg)
    assert clip_loss(i, t, s, negative_text_embeds=n) > clip_loss(i, t, s)  # more competitors, higher loss
    assert torch.allclose(clip_loss(i, t, s, negative_text_embeds=n[:0]), manual)


def test_recall_at_k_on_hand_made_matrix():
    sim = torch.tensor([[0.9, 0.1, 0.0],   # image 0: own text ranked 1st
                        [0.8, 0.5, 0.1],   # image 1: own text ranked 2nd
                        [0.7, 0.6, 0.2]])  # image 2: own text ranked 3rd
    r = recall_at_k(sim, ks=(1, 2))
    assert r["i2t_r1"] == pytest.approx(1 / 3) and r["i2t_r2"] == pytest.approx(2 / 3)
    # columns: text 0 -> image 0 first (hit); text 1 -> image 2 first, image 1 second; text 2 -> image 2 first
    assert r["t2i_r1"] == pytest.approx(2 / 3) and r["t2i_r2"] == pytest.approx(1.0)
    pos = torch.tensor([[True, False], [True, False], [False, True]])  # images 0, 1 share caption 0
    r2 = recall_at_k(torch.tensor([[0.2, 0.9], [0.8, 0.1], [0.3, 0.4]]), ks=(1,), positives=pos)
    assert r2["i2t_r1"] == pytest.approx(2 / 3) and r2["t2i_r1"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="positives"):
        recall_at_k(torch.zeros(2, 3))


def test_load_clip_from_pretrained_dir(tokenizer, tmp_path):
    cfg = CLIPConfig(text_config=dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=24,
                                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id),
                     vision_config=dict(image_size=16, patch_size=8, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2),
                     projection_dim=8)
    torch.manual_seed(0)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(tmp_path)  # a plain HF checkpoint: no preprocessor config
    tokenizer.save_pretrained(tmp_path)
    clip = load_clip(tmp_path)
    assert clip.image_size == 16 and clip.model.config._attn_implementation == "eager"
    with torch.no_grad():
        ids = tokenizer(["a red chair"], return_tensors="pt")
        ref = model.text_projection(model.text_model(**ids).pooler_output)
        assert torch.allclose(clip.encode_texts("a red chair", normalize=False), ref, atol=1e-6)
        out = clip.model.vision_model(pixel_values=torch.zeros(1, 3, 16, 16), output_attentions=True)
        assert len(out.attentions) == 1 and out.attentions[0].shape == (1, 2, 5, 5)
    clip.save_pretrained(tmp_path / "ours")
    assert load_clip(tmp_path / "ours").image_size == 16


def test_load_clip_missing_path_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_clip(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_clip(tmp_path / "empty")


# -- Spatial Signal Prompting ----------------------------------------------------------

def _prompter(clip, **kw):
    torch.manual_seed(0)
    kw.setdefault("layers", (1, 2))
    return SpatialSignalPrompter(clip, out_dim=24, num_tokens=5, hidden_dim=32, num_heads=2, **kw)


def test_prompt_tokens_shape_and_gradients(square_clip):
    clip, _ = square_clip
    pr = _prompter(clip)
    frames = torch.randint(0, 255, (2, 3, 40, 40, 3), dtype=torch.uint8)
    out = pr.prompt(frames, ["go to the red chair", "find the blue chair"], frame_indices=torch.tensor([0, 7, 30]))
    assert out.tokens.shape == (2, 5, 24)
    assert out.relevance.shape == (2, 3, 4, 4) and out.mask.shape == (2, 3, 4, 4)
    assert (out.mask.sum((-1, -2)) == 4).all()  # keep_ratio 0.25 of 16 patches
    out.tokens.square().mean().backward()
    assert all(p.grad is None for p in clip.parameters())
    assert pr.queries.grad is not None and pr.projector.net[-1].weight.grad.abs().sum() > 0
    assert set(pr.trainable_state_dict()) and not any(k.startswith("clip.") for k in pr.trainable_state_dict())


def test_masks_change_the_prompt(square_clip):
    clip, _ = square_clip
    frames = _squares(2, np.random.default_rng(1), k=2)[0][:, None]
    texts = ["a red chair", "a blue chair"]
    full = _prompter(clip)
    outs = {}
    for att, mlp in ((True, True), (False, True), (True, False), (False, False)):
        pr = _prompter(clip, use_attention_mask=att, use_mlp_mask=mlp)
        pr.load_trainable_state_dict(full.trainable_state_dict())  # same pooler weights
        with torch.no_grad():
            outs[att, mlp] = pr(frames, texts)
    keys = list(outs)
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            assert not torch.allclose(outs[keys[i]], outs[keys[j]], atol=1e-5), (keys[i], keys[j])


def test_relevance_peaks_on_the_named_square(square_clip):
    clip, _ = square_clip
    pr = _prompter(clip)
    names = list(COLORS)
    imgs, cols, cells = _squares(20, np.random.default_rng(7), k=2)
    hits = 0
    with torch.no_grad():
        for which in (0, 1):
            rel = pr.prompt(imgs, [f"a {names[c]} chair" for c in cols[:, which]]).relevance
            hits += int((rel.flatten(1).argmax(1).numpy() == cells[:, which]).sum())
    assert hits >= 0.75 * 40, hits  # chance is 1/16


def test_prompter_rejects_bad_inputs(square_clip):
    clip, _ = square_clip
    with pytest.raises(ValueError, match="out of range"):
        _prompter(clip, layers=(3,))
    pr = _prompter(clip)
    with pytest.raises(ValueError, match="instructions"):
        pr(torch.zeros(2, 1, 32, 32, 3, dtype=torch.uint8), ["one"])
    with pytest.raises(ValueError, match="frames"):
        pr(torch.zeros(2, 32, 32, dtype=torch.uint8), "a")


def test_topk_pooling_tokens_follow_the_relevant_patches(square_clip):
    clip, _ = square_clip
    names = list(COLORS)
    imgs, cols, cells = _squares(20, np.random.default_rng(3), k=2)
    for pooling in ("topk", "perceiver"):
        with torch.no_grad():
            tok = _prompter(clip, pooling=pooling)(imgs[:, None], [f"a {names[c]} chair" for c in cols[:, 0]])
        assert tok.shape == (20, 5, 24)
    pr = _prompter(clip)  # topk, the default
    moved = 0
    with torch.no_grad():
        for i in range(20):  # the same image, the other square named: token 0 is another cell's
            p0 = pr.prompt(imgs[i:i + 1, None], [f"a {names[cols[i, 0]]} chair"])
            p1 = pr.prompt(imgs[i:i + 1, None], [f"a {names[cols[i, 1]]} chair"])
            top0, top1 = p0.relevance.flatten().argmax(), p1.relevance.flatten().argmax()
            changed = bool((p0.tokens[0, 0] - p1.tokens[0, 0]).norm() > 1e-4)
            assert changed or top0 == top1  # another most relevant cell is another token 0
            moved += int(changed)
    assert moved >= 15, moved  # the relevance (>= 75% on the named square) moves with the instruction
    with pytest.raises(ValueError, match="pooling"):
        _prompter(clip, pooling="mean")


# -- pose-aware prompts ----------------------------------------------------------------

def _bearing(code, harmonics=16):
    """The bearing phi read back from the first harmonic (sin phi, cos phi) of a pose code."""
    return torch.atan2(code[..., 0], code[..., harmonics])


def test_pose_code_bearings_and_offsets_are_relative_to_the_last_frame():
    from world_model.ssg.prompting import POSE_OFFSET_DIM, POSE_OFFSET_UNIT_M, pose_code, sincos_1d

    g, hfov = 4, 90.0
    # frame 0: 1 m ahead of the start view, turned 90 deg left; frame 1: the start view itself
    ref = np.array([2.0, -1.0, 0.3])
    turned = np.array([ref[0] + np.cos(ref[2]), ref[1] + np.sin(ref[2]), ref[2] + np.pi / 2])
    code = pose_code(torch.tensor(np.stack([turned, ref])[None]), g, hfov, 128)
    assert code.shape == (1, 2, g * g, 128) and torch.all(code[..., 96:] == 0)
    cols = (np.arange(g) + 0.5) / g
    want_cols = np.arctan((1 - 2 * cols) * np.tan(np.radians(hfov) / 2))  # column 0 looks left (> 0)
    phi = _bearing(code).view(1, 2, g, g)
    for r in range(g):  # every row of a column shares its bearing
        assert np.allclose(phi[0, 1, r].numpy(), want_cols, atol=1e-5)
        assert np.allclose(phi[0, 0, r].numpy(), want_cols + np.pi / 2, atol=1e-5)
    off = code[0, :, 0, 32:96]
    fwd = sincos_1d(torch.tensor([1.0 / POSE_OFFSET_UNIT_M, 0.0]), POSE_OFFSET_DIM, 1000.0)
    zero = sincos_1d(torch.tensor([0.0, 0.0]), POSE_OFFSET_DIM, 1000.0)
    assert torch.allclose(off[:, :POSE_OFFSET_DIM], fwd, atol=1e-5)  # 1 m forward, then 0
    assert torch.allclose(off[:, POSE_OFFSET_DIM:], zero, atol=1e-5)  # 0 m left for both


def test_pose_code_ignores_the_world_frame():
    from world_model.ssg.prompting import pose_code

    rng = np.random.default_rng(0)
    poses = np.stack([rng.uniform(-3, 3, 5), rng.uniform(-3, 3, 5), rng.uniform(-np.pi, np.pi, 5)], -1)
    a, t = 1.1, np.array([4.0, -2.5])  # a rigid motion of the world frame
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = np.concatenate([poses[:, :2] @ rot.T + t, poses[:, 2:] + a], -1)
    c0, c1 = (pose_code(torch.tensor(p[None]), 4, 79.0, 96) for p in (poses, moved))
    assert torch.allclose(c0, c1, atol=1e-4)
    with pytest.raises(ValueError, match="hidden_dim >= 96"):
        pose_code(torch.tensor(poses[None]), 4, 79.0, 64)
    with pytest.raises(ValueError, match=r"\(B, K, 3\)"):
        pose_code(torch.tensor(poses), 4, 79.0, 96)


def test_pose_aware_prompter_needs_poses_and_reads_them(square_clip):
    clip, _ = square_clip
    torch.manual_seed(0)
    pr = SpatialSignalPrompter(clip, out_dim=24, num_tokens=5, hidden_dim=96, num_heads=2, layers=(1, 2),
                               pose_encoding=True)
    frames = torch.randint(0, 255, (1, 3, 40, 40, 3), dtype=torch.uint8)
    poses = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.5], [1.5, 0.5, 1.0]]])
    with pytest.raises(ValueError, match="pose-aware"):
        pr(frames, "go to the red chair")
    with pytest.raises(ValueError, match=r"\(1, 3, 3\)"):
        pr(frames, "go to the red chair", poses=poses[:, :2])
    with torch.no_grad():
        a = pr(frames, "go to the red chair", poses=poses)
        turned = poses.clone()
        turned[0, :2, 2] += 1.0  # the earlier frames looked elsewhere
        b = pr(frames, "go to the red chair", poses=turned)
        top = pr.prompt(frames, "go to the red chair", poses=poses).relevance.flatten().topk(5).indices
        moved = poses.clone()
        moved[..., :2] += torch.tensor([3.0, -2.0])  # the same views from another world origin
        c = pr(frames, "go to the red chair", poses=moved)
    assert (top < 2 * 16).any()  # some token comes from an earlier frame (16 cells per frame)
    assert not torch.allclose(a, b, atol=1e-4) and torch.allclose(a, c, atol=1e-5)
    with pytest.raises(ValueError, match="hidden_dim >= 96"):
        SpatialSignalPrompter(clip, out_dim=24, hidden_dim=32, num_heads=2, layers=(1, 2), pose_encoding=True)
    plain = _prompter(clip)  # a prompter without the pose code ignores poses
    with torch.no_grad():
        assert torch.equal(plain(frames, "a", poses=poses), plain(frames, "a"))
