"""SSG-Adapter on a tiny plain diffusers WanTransformer3DModel."""

from __future__ import annotations

import pytest
import torch

from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from world_model.ssg.adapter import (SSGAttnProcessor, append_ssg_tokens, freeze_backbone, install_ssg_adapter,
                                     load_ssg_state_dict, remove_ssg_adapter, set_ssg_scale, ssg_disabled,
                                     ssg_processors, ssg_state_dict)

TINY_WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
                text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2, cross_attn_norm=True, rope_max_seq_len=64)
M = 4  # SSG tokens


def _model(seed=0):
    torch.manual_seed(seed)
    return WanTransformer3DModel(**TINY_WAN).eval()


def _inputs(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 3, 2, 8, 8, generator=g), torch.tensor([500, 300, 100, 900][:b]),
            torch.randn(b, 5, 16, generator=g), torch.randn(b, M, 16, generator=g))


def test_zero_init_reproduces_backbone():
    tr = _model()
    x, t, txt, ssg = _inputs()
    with torch.no_grad():
        base = tr(x, t, txt).sample
        params = install_ssg_adapter(tr, M, lam=1.0)
        assert len(ssg_processors(tr)) == 2 and len(params) == 2 * 5  # k (w, b), v (w, b), norm (w) per block
        with_ssg = tr(x, t, append_ssg_tokens(txt, ssg)).sample
        with ssg_disabled(tr):
            disabled = tr(x, t, txt).sample
    # Appending tokens changes only the GEMM shapes of the token-wise text embedder (last-bit rounding).
    torch.testing.assert_close(with_ssg, base, atol=1e-5, rtol=0)
    assert torch.equal(disabled, base)


def test_adapter_training_leaves_backbone_bit_identical():
    tr = _model()
    install_ssg_adapter(tr, M, lam=1.0)
    adapter = freeze_backbone(tr)
    backbone_before = {k: v.clone() for k, v in tr.state_dict().items() if ".processor." not in k}
    adapter_before = [p.detach().clone() for p in adapter]
    assert all(p.requires_grad for p in adapter)
    assert not any(p.requires_grad for n, p in tr.named_parameters() if ".processor." not in n)
    opt = torch.optim.AdamW([p for p in tr.parameters() if p.requires_grad], lr=1e-2)
    x, t, txt, ssg = _inputs()
    target = torch.randn_like(x)
    tr.train()
    losses = []
    for _ in range(4):
        loss = (tr(x, t, append_ssg_tokens(txt, ssg)).sample - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = tr.state_dict()
    for k, v in backbone_before.items():
        assert torch.equal(after[k], v), k
    assert all(not torch.equal(p.detach(), b) for p, b in zip(adapter, adapter_before))
    assert losses[-1] < losses[0]
    tr.eval()
    with torch.no_grad():  # the trained branch now changes the output, and lambda=0 turns it off exactly
        on = tr(x, t, append_ssg_tokens(txt, ssg)).sample
        set_ssg_scale(tr, 0.0)
        off = tr(x, t, append_ssg_tokens(txt, ssg)).sample
        with ssg_disabled(tr):
            base = tr(x, t, txt).sample
    assert (on - off).abs().max() > 1e-3
    torch.testing.assert_close(off, base, atol=1e-5, rtol=0)


def test_batched_cfg_rows_match_single_rows():
    tr = _model()
    install_ssg_adapter(tr, M, lam=0.7)
    with torch.no_grad():  # a trained-looking adapter: non-zero values
        for proc in ssg_processors(tr):
            proc.to_v_ssg.weight.normal_(0, 0.3)
    x, t, txt, ssg = _inputs(b=1)
    null_txt, null_ssg = torch.zeros_like(txt), torch.zeros_like(ssg)
    # CFG batch: [conditional, unconditional] in one forward, equal encoder lengths
    ehs = torch.cat([append_ssg_tokens(txt, ssg), append_ssg_tokens(null_txt, null_ssg)])
    with torch.no_grad():
        both = tr(x.expand(2, -1, -1, -1, -1), t.expand(2), ehs).sample
        cond = tr(x, t, append_ssg_tokens(txt, ssg)).sample
        uncond = tr(x, t, append_ssg_tokens(null_txt, null_ssg)).sample
    torch.testing.assert_close(both[:1], cond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1:], uncond, atol=1e-5, rtol=1e-5)
    assert (cond - uncond).abs().max() > 1e-3
    # one SSG prompt broadcast over the CFG rows
    assert append_ssg_tokens(torch.cat([txt, null_txt]), ssg).shape == (2, 5 + M, 16)


def test_adapter_state_round_trip_and_removal():
    tr = _model()
    install_ssg_adapter(tr, M)
    with torch.no_grad():
        for proc in ssg_processors(tr):
            proc.to_v_ssg.weight.normal_()
    state = ssg_state_dict(tr)
    assert set(state) == {f"{i}.{k}" for i in range(2) for k in ("to_k_ssg.weight", "to_k_ssg.bias", "to_v_ssg.weight",
                                                                  "to_v_ssg.bias", "norm_k_ssg.weight")}
    other = _model()
    install_ssg_adapter(other, M)
    load_ssg_state_dict(other, state)
    x, t, txt, ssg = _inputs()
    with torch.no_grad():
        assert torch.equal(tr(x, t, append_ssg_tokens(txt, ssg)).sample,
                           other(x, t, append_ssg_tokens(txt, ssg)).sample)
    remove_ssg_adapter(other)
    assert all(isinstance(b.attn2.processor, WanAttnProcessor) for b in other.blocks)
    with pytest.raises(ValueError, match="install_ssg_adapter"):
        load_ssg_state_dict(other, state)


def test_clear_errors():
    tr = _model()
    with pytest.raises(ValueError, match="no SSG adapter"):
        freeze_backbone(tr)
    with pytest.raises(ValueError, match="WanTransformerBlock"):
        install_ssg_adapter(torch.nn.Linear(2, 2), M)
    with pytest.raises(ValueError, match="cross-attention"):
        SSGAttnProcessor(tr.blocks[0].attn1, M)
    install_ssg_adapter(tr, M)
    x, t, txt, ssg = _inputs()
    with pytest.raises(ValueError, match="append_ssg_tokens"):
        tr(x, t, txt[:, :3])
    with pytest.raises(ValueError, match="text_dim"):
        append_ssg_tokens(txt, torch.zeros(2, M, 8))


def test_prompter_to_transformer_end_to_end():
    """CLIP prompt tokens -> adapter: gradients reach the prompt projector and the adapter only."""
    from world_model.ssg.clip import SmallClipSpec, build_small_clip, build_word_tokenizer, grammar_vocabulary
    from world_model.ssg.prompting import SpatialSignalPrompter

    clip = build_small_clip(build_word_tokenizer(grammar_vocabulary()),
                            SmallClipSpec(image_size=16, patch_size=8, vision_layers=2, vision_width=16, vision_heads=2,
                                          text_layers=1, text_width=16, text_heads=2, projection_dim=16))
    prompter = SpatialSignalPrompter(clip, out_dim=TINY_WAN["text_dim"], num_tokens=M, layers=(1, 2),
                                     hidden_dim=16, num_heads=2)
    tr = _model()
    install_ssg_adapter(tr, M)
    freeze_backbone(tr)
    x, t, txt, _ = _inputs()
    tokens = prompter(torch.randint(0, 255, (2, 2, 16, 16, 3), dtype=torch.uint8), ["go to the red chair", "find the bed"])
    out = tr(x, t, append_ssg_tokens(txt, tokens)).sample
    out.square().mean().backward()
    # v is zero at the start, so only the value projection (and nothing upstream of it yet) gets a gradient
    assert all(p.grad is not None for p in (proc.to_v_ssg.weight for proc in ssg_processors(tr)))
    assert all(p.grad is None for n, p in tr.named_parameters() if ".processor." not in n)
    assert all(p.grad is None for p in clip.parameters())
