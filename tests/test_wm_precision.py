"""imagine's compute precision: "auto" resolves by the hardware, bf16 autocast really runs and stays close to fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from world_model.model import Video4SpatialModel
from world_model.pipeline import PRECISIONS, Video4SpatialPipeline, make_scheduler, native_bf16, resolve_precision

TINY_WAN = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
                text_dim=32, freq_dim=32, ffn_dim=48, num_layers=2, rope_max_seq_len=128)
S, L = 16, 6


class FakeText:
    def encode(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        return torch.stack([torch.randn(L, 32, generator=torch.Generator().manual_seed(len(t))) for t in texts])


def make_pipe() -> Video4SpatialPipeline:
    torch.manual_seed(0)
    m = Video4SpatialModel(transformer_config=TINY_WAN, text_len=L, frame_size=(S, S),
                           context_attention="prefix").eval()
    return Video4SpatialPipeline(m, make_scheduler(), text_encoder=FakeText(), num_target_frames=2, num_bbox_frames=1)


def test_resolve_precision():
    assert PRECISIONS == ("auto", "fp32", "bf16")
    assert resolve_precision("auto") == ("bf16" if native_bf16("cpu") else "fp32")
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto", "cpu", torch.float16) == "fp32"  # half weights: no autocast on top
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")


def test_bf16_autocast_runs_in_bf16_and_stays_close_to_fp32():
    pipe = make_pipe()
    rng = np.random.default_rng(0)
    frames, idx = rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8), [0, 4, 9]
    seen = []
    hook = pipe.model.transformer.blocks[0].ffn.register_forward_hook(lambda mod, i, o: seen.append(o.dtype))
    kw = dict(num_steps=4, seed=0)
    r32 = pipe.imagine(frames, idx, "go to the chair", precision="fp32", **kw)
    assert r32.precision == "fp32" and set(seen) == {torch.float32}
    seen.clear()
    r16 = pipe.imagine(frames, idx, "go to the chair", precision="bf16", **kw)
    assert r16.precision == "bf16" and set(seen) == {torch.bfloat16}  # the transformer really ran in bf16
    assert r16.frames.dtype == np.uint8 and r16.frames.shape == r32.frames.shape
    d = np.abs(r16.frames.astype(int) - r32.frames)
    assert 0 < d.max() and d.mean() < 3.0, (d.mean(), d.max())  # rounding, not another model
    hook.remove()
    assert pipe.imagine(frames, idx, "go to the chair", **kw).precision == resolve_precision("auto")
    pipe.precision = "fp32"  # the pipeline default for precision=None
    assert np.array_equal(pipe.imagine(frames, idx, "go to the chair", **kw).frames, r32.frames)
    with pytest.raises(ValueError, match="precision"):
        pipe.imagine(frames, idx, "go to the chair", precision="half", **kw)
