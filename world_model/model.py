"""Video4Spatial: diffusers' Wan video transformer conditioned on a context video.

Three changes to ``WanTransformer3DModel`` (Xiao et al. 2025, "Video4Spatial",
arXiv 2512.03040), none of which re-implements the transformer:

1. Context latents are concatenated with the noisy target latents on the
   frame axis and get timestep 0 through Wan2.2's per-token timesteps
   (``timestep`` of shape ``(B, seq_len)``), so they act as clean evidence.
   Only target tokens are returned (and so enter the loss).
2. Rotary frame positions are the frames' *original* indices
   (:class:`IndexedWanRotaryPosEmbed` replaces ``transformer.rope``), so a
   sparse, non-contiguous context keeps its true temporal layout. Target frames
   sit after the last context index (``target_index_offset``); the auxiliary
   bbox frames are simply the last target frames.
3. The instruction enters through Wan's text cross-attention; ``text_dim`` is
   the offline text encoder's width and a learned null embedding stands in for
   "no instruction" (classifier-free guidance).

Optional (``context_attention="prefix"``, the CPU config's choice): context
tokens attend only to context tokens, target tokens attend to everything.
Context tokens then never see the noisy target, so their keys and values in
every layer are fixed for a whole sampling run: :meth:`Video4SpatialModel.encode_context`
computes them once and :meth:`Video4SpatialModel.forward_cached` runs the
denoising steps on the target tokens only (a prefix-LM / KV-cache layout, as in
causal video diffusion). With ``"full"`` (the paper's layout, default) every
token attends to every token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import torch.nn.functional as F

from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, WanTransformer3DModel

# A CPU-sized backbone (docs/world_model.md): 4 layers, 4 heads x 48,
# 32x32 RGB frames in pixel space with (1, 4, 4) patches = 64 tokens per frame.
SMALL_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": [1, 4, 4],
    "num_attention_heads": 4,
    "attention_head_dim": 48,
    "in_channels": 3,
    "out_channels": 3,
    "text_dim": 384,
    "freq_dim": 256,
    "ffn_dim": 768,
    "num_layers": 4,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}


class IndexedWanRotaryPosEmbed(WanRotaryPosEmbed):
    """Wan's 3-axis RoPE with arbitrary per-frame positions.

    Wan splits each head's channels into (t, h, w) parts and rotates them by
    ``pos * theta^(-2i/d)`` (RoFormer, Su et al. 2021). diffusers' module uses
    frame positions ``0..F-1``; here the frame positions are read from
    ``self.frame_indices`` ((F,) or (B, F) integer tensor, set by the caller
    right before the transformer's forward), so frame ``f`` is rotated as if it
    sat at position ``frame_indices[..., f]``. With ``frame_indices=None`` it is
    exactly diffusers' contiguous embedding. Positions must lie in
    ``[0, max_seq_len)`` because the frequencies come from the same table.
    """

    frame_indices: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.frame_indices
        if idx is None:
            return super().forward(hidden_states)
        batch_size, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w
        idx = torch.as_tensor(idx, device=self.freqs_cos.device).long()
        if idx.ndim == 1:
            idx = idx[None]
        if idx.shape[-1] != ppf or idx.shape[0] not in (1, batch_size):
            raise ValueError(
                f"frame_indices has shape {tuple(idx.shape)} but the latent video has "
                f"{ppf} frames and batch size {batch_size}; pass (F,) or (B, F) indices"
            )
        if int(idx.min()) < 0 or int(idx.max()) >= self.max_seq_len:
            raise ValueError(
                f"frame indices must lie in [0, {self.max_seq_len}) (rope_max_seq_len); got "
                f"[{int(idx.min())}, {int(idx.max())}]. Raise rope_max_seq_len or use fewer frames."
            )
        split = [self.t_dim, self.h_dim, self.w_dim]
        out = []
        for table in (self.freqs_cos, self.freqs_sin):
            f_t, f_h, f_w = table.split(split, dim=1)
            nb = idx.shape[0]
            ft = f_t[idx.reshape(-1)].view(nb, ppf, 1, 1, -1).expand(nb, ppf, pph, ppw, -1)
            fh = f_h[:pph].view(1, 1, pph, 1, -1).expand(nb, ppf, pph, ppw, -1)
            fw = f_w[:ppw].view(1, 1, 1, ppw, -1).expand(nb, ppf, pph, ppw, -1)
            # (nb, seq, 1, head_dim): broadcasts over heads in Wan's apply_rotary_emb
            out.append(torch.cat([ft, fh, fw], dim=-1).reshape(nb, ppf * pph * ppw, 1, -1))
        return out[0], out[1]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on interleaved channel pairs: (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos).

    ``x`` is (B, S, H, D); ``cos``/``sin`` are (B or 1, S, 1, D) with each
    frequency repeated for both members of its pair (Wan's table layout).
    """
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s_ = cos[..., 0::2], sin[..., 0::2]
    return torch.stack([x0 * c - x1 * s_, x0 * s_ + x1 * c], dim=-1).flatten(-2).type_as(x)


class ContextCache:
    """Per-layer context keys/values (after RoPE) for :meth:`Video4SpatialModel.forward_cached`.

    Attributes:
        keys, values: one (B, S_ctx, H, D) tensor per transformer block.
        target_indices: (B, F_t) re-based RoPE positions of the target frames.
        num_target: target frames (target + bbox) the cache was built for.
    """

    def __init__(self, target_indices: torch.Tensor, num_target: int) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.target_indices = target_indices
        self.num_target = int(num_target)

    @property
    def batch_size(self) -> int:
        return int(self.target_indices.shape[0])


class _PrefixState:
    """Shared switch read by every block's :class:`PrefixAttnProcessor`."""

    def __init__(self) -> None:
        self.mode = "full"            # full | prefix | write | read
        self.num_context_tokens = 0   # prefix mode: leading tokens that are context
        self.cache: ContextCache | None = None


class PrefixAttnProcessor:
    """Wan self-attention (``attn1``) with an optional context prefix and K/V cache.

    Modes (``state.mode``):

    * ``full``: plain self-attention over all tokens (Wan's behaviour).
    * ``prefix``: the first ``num_context_tokens`` tokens (context) attend to
      themselves only; the rest (target) attend to all tokens. Used in training.
    * ``write``: the input is context tokens only; plain self-attention, and
      the post-RoPE keys/values are appended to ``state.cache``.
    * ``read``: the input is target tokens only; keys/values are the cached
      context ones followed by the target's own. Equal to ``prefix`` mode's
      target rows.
    """

    def __init__(self, state: _PrefixState, layer: int) -> None:
        self.state = state
        self.layer = layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if encoder_hidden_states is not None:
            raise ValueError("PrefixAttnProcessor is for self-attention (attn1) only")
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            q, k = _rotate(q, *rotary_emb), _rotate(k, *rotary_emb)
        st = self.state

        def sdpa(q_, k_, v_):
            o = F.scaled_dot_product_attention(q_.transpose(1, 2), k_.transpose(1, 2), v_.transpose(1, 2))
            return o.transpose(1, 2)

        if st.mode == "prefix":
            n = st.num_context_tokens
            out = torch.cat([sdpa(q[:, :n], k[:, :n], v[:, :n]), sdpa(q[:, n:], k, v)], dim=1)
        elif st.mode == "write":
            st.cache.keys.append(k)
            st.cache.values.append(v)
            out = sdpa(q, k, v)
        elif st.mode == "read":
            ck, cv = st.cache.keys[self.layer], st.cache.values[self.layer]
            if ck.shape[0] != k.shape[0]:
                ck = ck.repeat_interleave(k.shape[0] // ck.shape[0], dim=0)
                cv = cv.repeat_interleave(k.shape[0] // cv.shape[0], dim=0)
            out = sdpa(q, torch.cat([ck, k], dim=1), torch.cat([cv, v], dim=1))
        else:
            out = sdpa(q, k, v)
        out = out.flatten(2, 3).type_as(hidden_states)
        return attn.to_out[1](attn.to_out[0](out))


class Video4SpatialModel(ModelMixin, ConfigMixin):
    """Context-conditioned video velocity model around a ``WanTransformer3DModel``.

    Args:
        transformer_config: keyword arguments of ``WanTransformer3DModel``
            (``text_dim`` must equal the text encoder's hidden size).
        text_len: number of instruction tokens the text encoder pads/cuts to.
        text_encoder: name understood by ``world_model.text_encoder.load_text_encoder``
            ("minilm", or "umt5:<path>" for Wan weights).
        target_index_offset: target frame ``j`` gets RoPE position
            ``last_context_index + target_index_offset + j``.
        frame_size: (height, width) of the frames the pipeline feeds (pixels).
        latent_space: "pixel" (frames normalised to [-1, 1] are the latents) or
            "autoencoder" (an autoencoder in the pipeline maps frames to latents).
        context_attention: "full" (every token sees every token, as in the paper)
            or "prefix" (context tokens see only context; enables the K/V cache
            of :meth:`encode_context` / :meth:`forward_cached`).
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        transformer_config: dict[str, Any] | None = None,
        text_len: int = 32,
        text_encoder: str = "minilm",
        target_index_offset: int = 1,
        frame_size: tuple[int, int] = (32, 32),
        latent_space: str = "pixel",
        context_attention: str = "full",
    ) -> None:
        super().__init__()
        if context_attention not in ("full", "prefix"):
            raise ValueError(f"context_attention must be 'full' or 'prefix', got {context_attention!r}")
        cfg = dict(SMALL_TRANSFORMER_CONFIG if transformer_config is None else transformer_config)
        self.transformer = WanTransformer3DModel(**cfg)
        self._install_indexed_rope()
        self._install_prefix_attention()
        text_dim = self.transformer.config.text_dim
        # Learned "no instruction" sequence; zero-initialised like Wan's padded prompts.
        self.null_text_embedding = nn.Parameter(torch.zeros(text_len, text_dim))

    def _install_indexed_rope(self) -> None:
        cfg = self.transformer.config
        old = self.transformer.rope
        rope = IndexedWanRotaryPosEmbed(cfg.attention_head_dim, tuple(cfg.patch_size), cfg.rope_max_seq_len)
        self.transformer.rope = rope.to(old.freqs_cos.device)

    def _install_prefix_attention(self) -> None:
        self._prefix = _PrefixState()
        for i, block in enumerate(self.transformer.blocks):
            block.attn1.set_processor(PrefixAttnProcessor(self._prefix, i))

    @property
    def uses_context_cache(self) -> bool:
        return self.config.context_attention == "prefix"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_wan_pretrained(
        cls,
        path: str,
        subfolder: str = "transformer",
        torch_dtype: torch.dtype | None = None,
        text_encoder: str | None = None,
        text_len: int = 512,
        frame_size: tuple[int, int] = (256, 416),
        target_index_offset: int = 1,
    ) -> "Video4SpatialModel":
        """Wrap pretrained Wan weights (e.g. Wan2.2-TI2V-5B-Diffusers) without a second copy.

        Loads ``WanTransformer3DModel.from_pretrained(path, subfolder=...)``,
        builds the wrapper with empty weights and swaps the loaded transformer in.
        The text encoder defaults to the UMT5 encoder next to the weights.
        """
        from accelerate import init_empty_weights

        transformer = WanTransformer3DModel.from_pretrained(path, subfolder=subfolder, torch_dtype=torch_dtype)
        tcfg = {k: v for k, v in dict(transformer.config).items() if not k.startswith("_")}
        with init_empty_weights():
            model = cls(
                transformer_config=tcfg,
                text_len=text_len,
                text_encoder=text_encoder or f"umt5:{path}",
                target_index_offset=target_index_offset,
                frame_size=tuple(frame_size),
                latent_space="autoencoder",
            )
        model.transformer = transformer
        model._install_indexed_rope()
        model._install_prefix_attention()
        dtype = torch_dtype or torch.float32
        model.null_text_embedding = nn.Parameter(torch.zeros(text_len, transformer.config.text_dim, dtype=dtype))
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """diffusers' loader, but strict: a checkpoint whose weights do not fit its config is an error."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            summary = "; ".join(f"{k}: {len(v)} (e.g. {sorted(map(str, v))[:3]})" for k, v in bad.items())
            raise ValueError(
                f"checkpoint {pretrained_model_name_or_path} does not match its Video4SpatialModel config "
                f"({summary}); it was saved by a different model version or its config.json was edited"
            )
        return (model, info) if want_info else model

    # ------------------------------------------------------------------ helpers
    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.transformer.config.patch_size)

    @property
    def latent_channels(self) -> int:
        return int(self.transformer.config.in_channels)

    def target_indices_for(self, context_indices: torch.Tensor, num_target: int) -> torch.Tensor:
        """RoPE positions of the target frames: after the last context index (per sample)."""
        last = context_indices.max(dim=-1, keepdim=True).values
        steps = torch.arange(num_target, device=context_indices.device)
        return last + self.config.target_index_offset + steps

    def null_text(self, batch_size: int) -> torch.Tensor:
        return self.null_text_embedding[None].expand(batch_size, -1, -1)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        context_latents: torch.Tensor,
        noisy_latents: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        context_indices: torch.Tensor,
        target_indices: torch.Tensor | None = None,
        context_grad: bool = True,
    ) -> torch.Tensor:
        """Predict the flow-matching velocity of the target frames.

        Args:
            context_latents: (B, C, Fc, h, w) clean context latents.
            noisy_latents: (B, C, Ft, h, w) noisy target latents (target + bbox frames).
            timestep: (B,) noise level in Wan's units, ``1000 * sigma``.
            encoder_hidden_states: (B, L, text_dim) instruction tokens (or the null embedding).
            context_indices: (B, Fc) or (Fc,) original frame indices of the context.
            target_indices: optional (B, Ft) positions of the target frames; by
                default ``last context index + target_index_offset + j``.
            context_grad: with ``False`` (``context_attention="prefix"`` only) the context
                tokens run once without autograd (:meth:`encode_context` under ``no_grad``)
                and only the target tokens are differentiated (:meth:`forward_cached`).
                The output is the same; the gradient then reaches the weights through the
                target tokens only, and a training step skips the context's backward pass
                and stored activations (the training speed-up of ``TrainConfig.context_grad_every``).

        Returns:
            (B, C, Ft, h, w) velocity ``eps - x0`` of the target frames only.
        """
        b, c, fc, h, w = context_latents.shape
        ft = noisy_latents.shape[2]
        if noisy_latents.shape[0] != b or noisy_latents.shape[1] != c or noisy_latents.shape[3:] != (h, w):
            raise ValueError(
                f"context latents {tuple(context_latents.shape)} and target latents "
                f"{tuple(noisy_latents.shape)} must share batch, channels and spatial size"
            )
        p_t, p_h, p_w = self.patch_size
        if p_t != 1:
            raise ValueError("Video4SpatialModel needs a temporal patch size of 1 (one RoPE index per frame)")
        ctx_idx = torch.as_tensor(context_indices, device=context_latents.device).long()
        if ctx_idx.ndim == 1:
            ctx_idx = ctx_idx[None].expand(b, -1)
        if ctx_idx.shape != (b, fc):
            raise ValueError(f"context_indices must have shape ({b}, {fc}); got {tuple(ctx_idx.shape)}")
        if target_indices is None:
            tgt_idx = self.target_indices_for(ctx_idx, ft)
        else:
            tgt_idx = torch.as_tensor(target_indices, device=ctx_idx.device).long()
            tgt_idx = tgt_idx[None].expand(b, -1) if tgt_idx.ndim == 1 else tgt_idx
        if not context_grad:
            if not self.uses_context_cache:
                raise ValueError("context_grad=False needs context_attention='prefix' (context tokens that "
                                 "never see the target); this model attends over the full sequence")
            if target_indices is not None:
                raise ValueError("context_grad=False places the targets after the context "
                                 "(target_index_offset); it does not take explicit target_indices")
            with torch.no_grad():
                cache = self.encode_context(context_latents.to(noisy_latents.dtype), encoder_hidden_states,
                                            ctx_idx, ft)
            return self.forward_cached(noisy_latents, timestep, encoder_hidden_states, cache)
        frame_indices = torch.cat([ctx_idx, tgt_idx], dim=1)
        # RoPE attention depends only on index differences, so re-basing each
        # sample to start at 0 changes nothing but keeps long agent histories
        # inside the rope table (rope_max_seq_len).
        frame_indices = frame_indices - frame_indices.min(dim=1, keepdim=True).values

        tokens_per_frame = (h // p_h) * (w // p_w)
        t = torch.as_tensor(timestep, device=noisy_latents.device, dtype=torch.float32).reshape(-1)
        t = t.expand(b) if t.numel() == 1 else t
        # Per-token timesteps (Wan2.2 TI2V convention): clean context at 0.
        per_token = torch.cat(
            [torch.zeros(b, fc * tokens_per_frame, device=t.device), t[:, None].expand(b, ft * tokens_per_frame)],
            dim=1,
        )
        x = torch.cat([context_latents.to(noisy_latents.dtype), noisy_latents], dim=2)
        out = self._run(x, per_token, encoder_hidden_states.to(x.dtype), frame_indices,
                        mode="prefix" if self.uses_context_cache else "full", num_context_tokens=fc * tokens_per_frame)
        return out[:, :, fc:]

    def _run(self, x, per_token, text, frame_indices, mode, num_context_tokens=0, cache=None) -> torch.Tensor:
        rope, st = self.transformer.rope, self._prefix
        rope.frame_indices = frame_indices
        st.mode, st.num_context_tokens, st.cache = mode, num_context_tokens, cache
        try:
            return self.transformer(hidden_states=x, timestep=per_token, encoder_hidden_states=text,
                                    return_dict=False)[0]
        finally:
            rope.frame_indices = None
            st.mode, st.num_context_tokens, st.cache = "full", 0, None

    def _tokens_per_frame(self, h: int, w: int) -> int:
        _, p_h, p_w = self.patch_size
        return (h // p_h) * (w // p_w)

    def encode_context(
        self,
        context_latents: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        context_indices: torch.Tensor,
        num_target: int,
    ) -> ContextCache:
        """Run the context tokens once and keep their per-layer keys/values.

        Needs ``context_attention="prefix"``. The cache holds one row per row
        of ``context_latents``; :meth:`forward_cached` accepts any multiple of
        that batch (rows are repeated, e.g. for best-of-N samples).
        """
        if not self.uses_context_cache:
            raise ValueError("encode_context needs a model built with context_attention='prefix'; "
                             "this one attends over the full sequence, so call forward() instead")
        b, _, fc, h, w = context_latents.shape
        ctx_idx = torch.as_tensor(context_indices, device=context_latents.device).long()
        ctx_idx = ctx_idx[None].expand(b, -1) if ctx_idx.ndim == 1 else ctx_idx
        if ctx_idx.shape != (b, fc):
            raise ValueError(f"context_indices must have shape ({b}, {fc}); got {tuple(ctx_idx.shape)}")
        base = ctx_idx.min(dim=1, keepdim=True).values
        tgt_idx = self.target_indices_for(ctx_idx, num_target) - base
        cache = ContextCache(tgt_idx, num_target)
        per_token = torch.zeros(b, fc * self._tokens_per_frame(h, w), device=context_latents.device)
        self._run(context_latents, per_token, encoder_hidden_states.to(context_latents.dtype), ctx_idx - base,
                  mode="write", cache=cache)
        return cache

    def forward_cached(
        self,
        noisy_latents: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        cache: ContextCache,
    ) -> torch.Tensor:
        """:meth:`forward` for a model with ``context_attention="prefix"``, reusing ``cache``.

        ``encoder_hidden_states`` must be the ones the cache was built with
        (repeated the same way as the latents). Returns the target velocity.
        """
        b, _, ft, h, w = noisy_latents.shape
        if ft != cache.num_target:
            raise ValueError(f"cache was built for {cache.num_target} target frames, latents have {ft}")
        if b % cache.batch_size:
            raise ValueError(f"latent batch {b} is not a multiple of the cache batch {cache.batch_size}")
        rep = b // cache.batch_size
        t = torch.as_tensor(timestep, device=noisy_latents.device, dtype=torch.float32).reshape(-1)
        t = t.expand(b) if t.numel() == 1 else t
        per_token = t[:, None].expand(b, ft * self._tokens_per_frame(h, w))
        tgt_idx = cache.target_indices.repeat_interleave(rep, dim=0)
        return self._run(noisy_latents, per_token, encoder_hidden_states.to(noisy_latents.dtype), tgt_idx,
                         mode="read", cache=cache)

    def num_parameters_m(self) -> float:
        return sum(p.numel() for p in self.parameters()) / 1e6
