"""SSG-Adapter: a dual-branch cross-attention processor for diffusers' Wan blocks.

SSG-DiT (Hu et al. 2025, arXiv 2508.17062) injects a text-aware visual prompt
into a *frozen* video DiT through a second cross-attention branch in every block:

    out = to_out( Attn(Q, K_text, V_text) + lambda * Attn(Q, K_ssg, V_ssg) )

    Q     = norm_q(W_q x)                        (the backbone's query, frozen)
    K_text, V_text = norm_k(W_k c), W_v c        (the backbone's text branch, frozen)
    K_ssg = norm_k_ssg(W_k_ssg s), V_ssg = W_v_ssg s   (new, trainable)

where x are the video tokens, c the embedded text tokens and s the embedded SSG
prompt tokens. This is the shape of Wan's own image branch (``add_k_proj``/
``add_v_proj`` summed before ``to_out``); the differences are that the SSG
tokens are taken from the *end* of ``encoder_hidden_states`` with an explicit
count (Wan's processor cuts an image context off the front assuming exactly 512
text tokens), that the projections are new modules owned by the processor (so a
Wan I2V backbone keeps its image branch), and that ``lambda`` is a fixed,
user-settable scale as in IP-Adapter (Ye et al. 2023).

Zero start: ``W_v_ssg`` and its bias are zero-initialised, so Attn(Q, K_ssg,
V_ssg) = 0 and the transformer's output equals the backbone's exactly at step
0; ``dL/dW_v_ssg`` is not zero (it is ``A^T dL/dout``), so training moves it.
``W_k_ssg`` and ``norm_k_ssg`` start as copies of the backbone's ``to_k`` and
``norm_k``, as IP-Adapter initialises its image key/value from the text ones.

How SSG tokens reach the processor: append them to the transformer's
``encoder_hidden_states`` (``append_ssg_tokens``), in the text encoder's width
(``transformer.config.text_dim``). Wan's ``condition_embedder.text_embedder``
(a token-wise MLP, frozen) maps them with the text tokens to the model width;
each block's ``attn2`` processor then splits the last ``num_ssg_tokens`` off.
A token-wise embedder keeps the text tokens' embedding identical with or
without the appended tokens, which the zero-start guarantee needs.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor, WanTransformerBlock

WAN_TEXT_LEN = 512  # Wan's hard-coded text length, used only to find an I2V image context


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    return t.unflatten(2, (heads, -1))


class SSGAttnProcessor(nn.Module):
    """Wan cross-attention (``attn2``) with an added SSG branch.

    ``encoder_hidden_states`` = ``[image context (Wan I2V only)] [text] [SSG x num_ssg_tokens]``.
    With ``scale == 0`` or ``enabled == False`` the SSG branch is skipped and the
    output is the backbone's (with ``enabled == False`` no tokens are split off,
    so callers may then pass plain text states).
    """

    def __init__(self, attn: WanAttention, num_ssg_tokens: int, scale: float = 1.0):
        super().__init__()
        if not getattr(attn, "is_cross_attention", False):
            raise ValueError("SSGAttnProcessor goes on a cross-attention (attn2) module, got a self-attention")
        if num_ssg_tokens < 1:
            raise ValueError(f"num_ssg_tokens must be >= 1, got {num_ssg_tokens}")
        self.num_ssg_tokens = int(num_ssg_tokens)
        self.scale = float(scale)
        self.enabled = True
        dim_in, dim_out = attn.to_k.in_features, attn.to_k.out_features
        self.to_k_ssg = nn.Linear(dim_in, dim_out, bias=True)
        self.to_v_ssg = nn.Linear(dim_in, attn.to_v.out_features, bias=True)
        self.norm_k_ssg = nn.RMSNorm(dim_out, eps=attn.norm_k.eps, elementwise_affine=True)
        with torch.no_grad():
            p = attn.to_k.weight
            self.to_k_ssg.to(device=p.device, dtype=p.dtype)
            self.to_v_ssg.to(device=p.device, dtype=p.dtype)
            self.norm_k_ssg.to(device=p.device, dtype=p.dtype)
            self.to_k_ssg.weight.copy_(attn.to_k.weight)
            self.to_k_ssg.bias.copy_(attn.to_k.bias)
            if attn.norm_k.weight is not None:
                self.norm_k_ssg.weight.copy_(attn.norm_k.weight)
            nn.init.zeros_(self.to_v_ssg.weight)
            nn.init.zeros_(self.to_v_ssg.bias)
        self._attention_backend = None

    def forward(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb=None,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise ValueError("SSGAttnProcessor is for cross-attention: encoder_hidden_states is required")
        ssg = None
        if self.enabled:
            n = self.num_ssg_tokens
            if encoder_hidden_states.shape[1] <= n:
                raise ValueError(
                    f"encoder_hidden_states has {encoder_hidden_states.shape[1]} tokens but the SSG adapter "
                    f"expects text tokens followed by {n} SSG tokens; append them with append_ssg_tokens, "
                    f"or disable the adapter (set_ssg_enabled(transformer, False))"
                )
            ssg = encoder_hidden_states[:, -n:]
            encoder_hidden_states = encoder_hidden_states[:, :-n]

        img = None
        if attn.add_k_proj is not None:  # Wan I2V: its image context sits in front of 512 text tokens
            n_img = encoder_hidden_states.shape[1] - WAN_TEXT_LEN
            img, encoder_hidden_states = encoder_hidden_states[:, :n_img], encoder_hidden_states[:, n_img:]

        query = attn.to_q(hidden_states)
        if getattr(attn, "fused_projections", False):
            key, value = attn.to_kv(encoder_hidden_states).chunk(2, dim=-1)
        else:
            key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = _heads(query, attn.heads), _heads(key, attn.heads), _heads(value, attn.heads)

        out = dispatch_attention_fn(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                    is_causal=False, backend=self._attention_backend)
        out = out.flatten(2, 3).type_as(query)

        if img is not None:
            if getattr(attn, "fused_projections", False):
                k_img, v_img = attn.to_added_kv(img).chunk(2, dim=-1)
            else:
                k_img, v_img = attn.add_k_proj(img), attn.add_v_proj(img)
            k_img = _heads(attn.norm_added_k(k_img), attn.heads)
            out_img = dispatch_attention_fn(query, k_img, _heads(v_img, attn.heads), attn_mask=None,
                                            dropout_p=0.0, is_causal=False, backend=self._attention_backend)
            out = out + out_img.flatten(2, 3).type_as(query)

        if ssg is not None and self.scale != 0.0:
            k_ssg = _heads(self.norm_k_ssg(self.to_k_ssg(ssg)), attn.heads)
            v_ssg = _heads(self.to_v_ssg(ssg), attn.heads)
            out_ssg = dispatch_attention_fn(query, k_ssg, v_ssg, attn_mask=None, dropout_p=0.0,
                                            is_causal=False, backend=self._attention_backend)
            out = out + self.scale * out_ssg.flatten(2, 3).type_as(query)

        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _blocks(transformer: nn.Module) -> list[WanTransformerBlock]:
    blocks = [m for m in transformer.modules() if isinstance(m, WanTransformerBlock)]
    if not blocks:
        raise ValueError(
            f"{type(transformer).__name__} contains no diffusers WanTransformerBlock; the SSG adapter plugs "
            f"into a WanTransformer3DModel (or a module wrapping one)"
        )
    return blocks


def ssg_processors(transformer: nn.Module) -> list[SSGAttnProcessor]:
    """The installed SSG processors, in block order (empty if none)."""
    return [b.attn2.processor for b in _blocks(transformer) if isinstance(b.attn2.processor, SSGAttnProcessor)]


def install_ssg_adapter(transformer: nn.Module, num_ssg_tokens: int, lam: float = 1.0) -> list[nn.Parameter]:
    """Put an :class:`SSGAttnProcessor` on every block's ``attn2``; return the adapter parameters.

    ``transformer``: a ``WanTransformer3DModel`` or any module containing its
    blocks (e.g. a model that wraps one). The parameters live in the processors,
    so they appear in ``transformer.state_dict()`` under ``...attn2.processor.``
    and move with ``transformer.to(...)``. Re-installing replaces the adapter.
    """
    params: list[nn.Parameter] = []
    for block in _blocks(transformer):
        proc = SSGAttnProcessor(block.attn2, num_ssg_tokens, lam)
        block.attn2.set_processor(proc)
        params += list(proc.parameters())
    return params


def remove_ssg_adapter(transformer: nn.Module) -> None:
    """Restore Wan's default cross-attention processor (drops the adapter weights)."""
    for block in _blocks(transformer):
        block.attn2.set_processor(WanAttnProcessor())


def freeze_backbone(transformer: nn.Module) -> list[nn.Parameter]:
    """``requires_grad=False`` on everything but the SSG adapter; returns the adapter parameters."""
    procs = ssg_processors(transformer)
    if not procs:
        raise ValueError("no SSG adapter installed: call install_ssg_adapter(transformer, ...) first")
    adapter = {id(p) for proc in procs for p in proc.parameters()}
    for p in transformer.parameters():
        p.requires_grad_(id(p) in adapter)
    return [p for proc in procs for p in proc.parameters()]


def ssg_state_dict(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter's tensors, keyed ``"<block index>.<param name>"`` (portable across wrappers)."""
    out: dict[str, torch.Tensor] = {}
    for i, block in enumerate(_blocks(transformer)):
        proc = block.attn2.processor
        if isinstance(proc, SSGAttnProcessor):
            for k, v in proc.state_dict().items():
                out[f"{i}.{k}"] = v.detach().clone()
    if not out:
        raise ValueError("no SSG adapter installed: nothing to save")
    return out


def load_ssg_state_dict(transformer: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load :func:`ssg_state_dict` output into an installed adapter (strict)."""
    blocks = _blocks(transformer)
    procs = [b.attn2.processor for b in blocks]
    if not all(isinstance(p, SSGAttnProcessor) for p in procs):
        raise ValueError("install_ssg_adapter(transformer, ...) before loading adapter weights")
    for i, proc in enumerate(procs):
        sub = {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == str(i)}
        if not sub:
            raise KeyError(f"adapter state has no weights for block {i} (the backbone has {len(blocks)} blocks)")
        proc.load_state_dict(sub, strict=True)


def set_ssg_scale(transformer: nn.Module, lam: float) -> None:
    """Set lambda on every SSG processor (0 turns the branch off, output = backbone's)."""
    for proc in ssg_processors(transformer):
        proc.scale = float(lam)


def set_ssg_enabled(transformer: nn.Module, enabled: bool) -> None:
    """Enable/disable the SSG branch; disabled, the processors take plain text states."""
    for proc in ssg_processors(transformer):
        proc.enabled = bool(enabled)


@contextlib.contextmanager
def ssg_disabled(transformer: nn.Module) -> Iterator[None]:
    """Run the backbone without the SSG branch (no SSG tokens expected) inside the block."""
    procs = ssg_processors(transformer)
    before = [p.enabled for p in procs]
    for p in procs:
        p.enabled = False
    try:
        yield
    finally:
        for p, e in zip(procs, before):
            p.enabled = e


@contextlib.contextmanager
def ssg_detached(transformer: nn.Module) -> Iterator[None]:
    """Take the SSG processors out (Wan's default back in) inside the block, e.g. to save the backbone alone.

    Inside, ``transformer.state_dict()`` holds no adapter tensors; on exit the same
    processor objects (with their weights) are put back.
    """
    saved = [(b, b.attn2.processor) for b in _blocks(transformer) if isinstance(b.attn2.processor, SSGAttnProcessor)]
    for b, _ in saved:
        b.attn2.set_processor(WanAttnProcessor())
    try:
        yield
    finally:
        for b, proc in saved:
            b.attn2.set_processor(proc)


def append_ssg_tokens(encoder_hidden_states: torch.Tensor, ssg_tokens: torch.Tensor) -> torch.Tensor:
    """``[text tokens, SSG tokens]`` on the sequence axis: (B, L, D) + (B, M, D) -> (B, L + M, D).

    ``ssg_tokens`` with batch 1 is broadcast over the batch (one context, many CFG rows).
    """
    if encoder_hidden_states.ndim != 3 or ssg_tokens.ndim != 3:
        raise ValueError(f"expected (B, L, D) text states and (B, M, D) SSG tokens, got "
                         f"{tuple(encoder_hidden_states.shape)} and {tuple(ssg_tokens.shape)}")
    b, _, d = encoder_hidden_states.shape
    if ssg_tokens.shape[-1] != d:
        raise ValueError(f"SSG tokens have width {ssg_tokens.shape[-1]} but the text states have {d}: "
                         f"build the prompt projector with out_dim = transformer.config.text_dim")
    if ssg_tokens.shape[0] == 1 and b > 1:
        ssg_tokens = ssg_tokens.expand(b, -1, -1)
    if ssg_tokens.shape[0] != b:
        raise ValueError(f"batch mismatch: text states {b}, SSG tokens {ssg_tokens.shape[0]}")
    return torch.cat([encoder_hidden_states, ssg_tokens.to(encoder_hidden_states.dtype)], dim=1)
