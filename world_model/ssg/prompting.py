"""Spatial Signal Prompting: CLIP's inner patch tokens -> M text-aware visual prompt tokens.

SSG-DiT (Hu et al. 2025, arXiv 2508.17062) reads a pre-trained CLIP's internal
representations with the text, masks attention and MLP inside the vision tower,
and turns the result into a visual prompt for the SSG-Adapter. The paper gives
no formulas we could obtain, so this is our construction; docs/ssg.md has it in
full. Notation: frames f = 1..K of a context clip, patches p = 1..P (a g x g
grid), selected vision layers l in L (default: the last three), h_l[f, p] the
residual-stream token after layer l, t the unit text embedding of the
instruction, s = exp(CLIP logit_scale).

1. Relevance (pass 1, plain CLIP forward): the *direct effect* of each patch on
   the image-text cosine through the selected layers' attention (the residual
   decomposition of Gandelsman et al. 2024, "Interpreting CLIP's image
   representation via text-based decomposition"). Patch j writes
       c_l[f, j] = W_O^l ( a^l_{CLS,j} (.) v^l_j )       (per head h: a^{l,h} v^{l,h}_j)
   into the CLS stream in layer l, with a^l the CLS query's attention weights.
   LN_post is linearised at the final CLS x (mean mu, std sigma, gain gamma), so
       r_l[f, j] = < W_vis (gamma * (c_l[f, j] - mean(c_l[f, j])) / sigma), t > / |e|,
       r = sum_{l in L} r_l,
   where e = W_vis LN_post(x) is the image embedding: r is each patch's share of
   cos(e, t) (up to the terms no patch owns). Reading patch tokens directly
   through CLIP's head was tried first and does not localise in a small CLIP
   (only CLS is trained into the joint space); the direct effect does (test:
   coloured squares, argmax on the named square in >= 75% of cases).
   rho = softmax over all (f, p) of s * r: CLIP's own image-text distribution,
   spread over the context's patches.
2. Mask: m[f, p] = 1 for the top ceil(keep_ratio * P) patches of r[f, :] in each
   frame (CLS always kept).
3. Masked re-encoding (pass 2, from the first selected layer on), SSG-DiT's
   attention and MLP masks:
     * attention mask: every query may attend only to keys j with m[j] = 1 (and
       CLS): additive bias 0 / -inf on the keys, so features aggregate context
       from the text-relevant region (target and reference object) only;
     * MLP mask: h <- h + g * MLP(LN_2(h)) with g[p] = m[p] (1 for CLS), so only
       relevant tokens receive the MLP's semantic refinement; the others keep
       their pre-MLP state.
   Either can be turned off (the paper's ablations); with both off pass 2 is
   skipped and pass 1's tokens are used.
4. Pooling: the tokens of all selected layers and frames,
       x[l, f, p] = W_in LN(h_l[f, p]) + pos2d(p) + pos1d(frame index f) + e_l,
   are read by M learned queries with one relevance-biased cross-attention block
   (a Perceiver-style resampler):
       a_m = softmax_{l,f,p}( q_m . k[l,f,p] / sqrt(d) + beta * log rho[f, p] ),
   z = q + Attn(...), z <- z + MLP(LN(z)); beta is learned (init 1), so pooling
   starts as CLIP-relevance-weighted and may sharpen or flatten.
   With ``pose_encoding=True`` each cell also gets a fixed code of where it looks *from the
   view the rollout starts at* (the last context frame, pose (x0, y0, psi0)): its ray's
   bearing phi[f, p] = wrap(psi_f - psi0 + atan((1 - 2 (col + 1/2) / g) tan(hfov / 2)))
   (left positive, as yaw), coded by the harmonics sin(k phi), cos(k phi), k = 1..16, and
   the camera's offset from the start view in the start view's axes (forward, left,
   metres), coded by 1-D sinusoids; x[l, f, p] += pose_code[f, p]. The frame index alone
   cannot say that: a tour frame's patch position means a different direction in every
   frame (docs/experiments/2026-12-04-ssg-why-the-prompt-is-not-read.md).
   ``pooling="topk"`` (the default) instead keeps the M most relevant patches of the
   whole context, ranked by r over all (f, p): token m is the layer mean of
   x[l, f_m, p_m] plus a learned rank embedding, then z <- z + MLP(LN(z)). The
   top-k tokens are the relevant patches themselves, each with its frame and 2D
   position: they say *where*. The Perceiver's soft average over K x P x |L| tokens
   drifted during adapter training towards one prompt for every sample (measured:
   32 held-out samples' prompts differ by 2.2% of their norm after 400 steps, 33% at
   initialisation). Top-k prompts keep their spread longer (54% after 128 steps) but
   collapse too (0.8% after 1,123 steps); ``train_prompter=False`` in adapter training
   keeps the initial spread. See docs/experiments/2026-12-04-ssg-why-the-prompt-is-not-read.md.
5. Prompt projector (``PromptProjector``): LN -> Linear -> GELU -> Linear to the
   DiT's text width (``transformer.config.text_dim``), the width the adapter's
   tokens are appended in.

CLIP stays frozen (pass 1 and 2 run without gradients); the pooler and the
projector are the trainable prompt parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from world_model.ssg.clip import SpatialClip


POOLINGS = ("topk", "perceiver")
# Pooler tensors that only the Perceiver pooling reads (a released top-k checkpoint may leave them out).
PERCEIVER_ONLY = ("q_norm.", "kv_norm.", "to_q.", "to_k.", "to_v.", "attn_out.", "relevance_beta")


def sincos_1d(pos: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoidal encoding of (any-shape) positions -> (*, dim) (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=pos.device) / half)
    ang = pos.float()[..., None] * freqs
    enc = torch.cat([ang.sin(), ang.cos()], dim=-1)
    return F.pad(enc, (0, dim - 2 * half))


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) 2-D sinusoidal encoding: half the channels for rows, half for columns."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    d = dim // 2
    return torch.cat([sincos_1d(rows.flatten(), d, 100.0), sincos_1d(cols.flatten(), dim - d, 100.0)], dim=-1)


def context_positions(indices) -> torch.Tensor:
    """Frame positions the prompter sees: original indices re-based to start at 0 per sample.

    The DiT re-bases its RoPE frame positions the same way (``Video4SpatialModel.forward``),
    so the prompt's frame layout matches the backbone's; training and ``imagine`` both use this.
    """
    idx = torch.as_tensor(np.asarray(indices) if not torch.is_tensor(indices) else indices).long()
    return idx - idx.min(dim=-1, keepdim=True).values


POSE_HARMONICS = 16  # bearing harmonics k = 1..16 (the shortest period, 22.5 deg, ~2 cells of a 79 deg view)
POSE_OFFSET_DIM = 32  # channels per offset axis (forward, left)
POSE_OFFSET_UNIT_M = 0.25  # the offsets' sinusoids count quarter metres


def pose_code(poses: torch.Tensor, grid: int, hfov_deg: float, dim: int) -> torch.Tensor:
    """(B, K, g*g, dim) fixed code of each context cell's view from the last context frame.

    ``poses``: (B, K, 3) world x, y, yaw (radians, counter-clockwise) of the context frames; the
    last frame is the view the rollout starts at. Channels: [sin k phi, cos k phi]_{k=1..16}
    of the cell ray's bearing phi relative to that view (left positive), then 1-D sinusoids of
    the frame camera's forward and left offset from it, zero-padded to ``dim``. Only relative
    poses enter, so any world frame (the simulator's, an agent's odometry) gives the same code.
    """
    poses = torch.as_tensor(poses, dtype=torch.float32)
    if poses.ndim != 3 or poses.shape[-1] != 3:
        raise ValueError(f"context poses must be (B, K, 3) world x, y, yaw, got {tuple(poses.shape)}")
    need = 2 * POSE_HARMONICS + 2 * POSE_OFFSET_DIM
    if dim < need:
        raise ValueError(f"pose_encoding needs hidden_dim >= {need}, got {dim}")
    ref = poses[:, -1:]
    d = poses[..., :2] - ref[..., :2]
    c, s = torch.cos(ref[..., 2]), torch.sin(ref[..., 2])
    fwd, left = c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]  # (B, K)
    cols = (torch.arange(grid, dtype=torch.float32, device=poses.device) + 0.5) / grid
    col_bearing = torch.atan((1.0 - 2.0 * cols) * math.tan(math.radians(hfov_deg) / 2.0))  # (g,), left > 0
    phi = (poses[..., 2] - ref[..., 2])[..., None] + col_bearing  # (B, K, g)
    k = torch.arange(1, POSE_HARMONICS + 1, dtype=torch.float32, device=poses.device)
    bearing = torch.cat([torch.sin(phi[..., None] * k), torch.cos(phi[..., None] * k)], dim=-1)  # (B, K, g, 2H)
    offset = torch.cat([sincos_1d(fwd / POSE_OFFSET_UNIT_M, POSE_OFFSET_DIM, 1000.0),
                        sincos_1d(left / POSE_OFFSET_UNIT_M, POSE_OFFSET_DIM, 1000.0)], dim=-1)  # (B, K, 2O)
    b, kk = poses.shape[:2]
    per_cell = bearing[:, :, None].expand(b, kk, grid, grid, -1).reshape(b, kk, grid * grid, -1)  # row-major cells
    code = torch.cat([per_cell, offset[:, :, None].expand(-1, -1, grid * grid, -1)], dim=-1)
    return F.pad(code, (0, dim - need))


class PromptProjector(nn.Module):
    """Pooled prompt tokens -> the DiT's cross-attention input width: LN, Linear, GELU, Linear."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim), nn.GELU(),
                                 nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class SSGPrompt:
    """Output of :meth:`SpatialSignalPrompter.prompt`."""

    tokens: torch.Tensor  # (B, M, out_dim) prompt tokens for the SSG-Adapter
    relevance: torch.Tensor  # (B, K, g, g) mean cosine r[f, p] (step 1)
    mask: torch.Tensor  # (B, K, g, g) bool, the patch mask m (step 2)


class SpatialSignalPrompter(nn.Module):
    """Context frames + instruction -> (B, M, out_dim) SSG prompt tokens (see module docstring).

    Args:
        clip: a :class:`SpatialClip` (kept frozen, eval mode).
        out_dim: width of the tokens, = the DiT's ``text_dim``.
        num_tokens: M, the number of prompt tokens.
        layers: vision layers whose outputs are read, 1-based (``hidden_states[l]``);
            negative counts from the end (-1 = last layer). Default: last three.
        keep_ratio: fraction of patches per frame kept by the mask.
        use_attention_mask / use_mlp_mask: the two masks of step 3 (ablations).
        hidden_dim, num_heads: the pooler's width and heads.
        pooling: "topk" (the M most relevant patches of the context, each a token) or
            "perceiver" (M learned queries over every patch; step 4 of the module docstring).
        pose_encoding: add each cell's bearing and camera offset from the last context frame
            (step 4); the prompt then needs the context frames' poses.
        hfov_deg: the context camera's horizontal field of view (for the cell bearings).
    """

    def __init__(self, clip: SpatialClip, out_dim: int, num_tokens: int = 8,
                 layers: Sequence[int] = (-3, -2, -1), keep_ratio: float = 0.25,
                 use_attention_mask: bool = True, use_mlp_mask: bool = True,
                 hidden_dim: int = 256, num_heads: int = 4, pooling: str = "topk",
                 pose_encoding: bool = False, hfov_deg: float = 79.0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        n_layers = clip.vision_config.num_hidden_layers
        resolved = []
        for l in layers:
            li = n_layers + 1 + l if l < 0 else l
            if not 1 <= li <= n_layers:
                raise ValueError(f"vision layer {l} out of range for a {n_layers}-layer CLIP (use 1..{n_layers} or -1..-{n_layers})")
            resolved.append(li)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f"vision layers {list(layers)} resolve to duplicates {resolved}")
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} must be divisible by num_heads {num_heads}")
        self.clip = clip
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.clip.eval()
        self.layers = tuple(sorted(resolved))
        self.keep_ratio = float(keep_ratio)
        self.use_attention_mask = bool(use_attention_mask)
        self.use_mlp_mask = bool(use_mlp_mask)
        self.num_tokens = int(num_tokens)
        self.num_heads = int(num_heads)
        self.out_dim = int(out_dim)
        self.pose_encoding = bool(pose_encoding)
        if not 0.0 < float(hfov_deg) < 180.0:
            raise ValueError(f"hfov_deg must be in (0, 180), got {hfov_deg}")
        self.hfov_deg = float(hfov_deg)
        if self.pose_encoding:
            pose_code(torch.zeros(1, 1, 3), 1, self.hfov_deg, hidden_dim)  # checks hidden_dim is wide enough
        width = clip.vision_config.hidden_size

        # Pooler (step 4).
        self.in_norm = nn.LayerNorm(width)
        self.in_proj = nn.Linear(width, hidden_dim)
        self.layer_embed = nn.Parameter(torch.zeros(len(self.layers), hidden_dim))
        self.register_buffer("pos2d", sincos_2d(clip.grid_size, hidden_dim), persistent=False)
        self.queries = nn.Parameter(torch.randn(num_tokens, hidden_dim) * hidden_dim ** -0.5)
        self.q_norm = nn.LayerNorm(hidden_dim)
        self.kv_norm = nn.LayerNorm(hidden_dim)
        self.to_q = nn.Linear(hidden_dim, hidden_dim)
        self.to_k = nn.Linear(hidden_dim, hidden_dim)
        self.to_v = nn.Linear(hidden_dim, hidden_dim)
        self.attn_out = nn.Linear(hidden_dim, hidden_dim)
        self.relevance_beta = nn.Parameter(torch.ones(()))
        self.mlp = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, 4 * hidden_dim), nn.GELU(),
                                 nn.Linear(4 * hidden_dim, hidden_dim))
        self.projector = PromptProjector(hidden_dim, out_dim)
        # The prompt of a branch that lacks the context or the instruction (CFG's null branches,
        # condition dropout in training): learned, zero-initialised like the DiT's null text.
        self.null_tokens = nn.Parameter(torch.zeros(num_tokens, out_dim))

    def null_prompt(self, batch_size: int = 1) -> torch.Tensor:
        """(B, M, out_dim) learned null prompt: what a branch without context or instruction gets."""
        return self.null_tokens[None].expand(batch_size, -1, -1)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # CLIP is frozen: never dropout / train-mode statistics
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The prompt parameters only (CLIP excluded: it is loaded separately)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("clip.")}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("clip.")
                   and not (self.pooling == "topk" and k.startswith(PERCEIVER_ONLY))]
        if missing or unexpected:
            raise KeyError(f"prompt weights do not match this prompter: missing {missing}, unexpected {unexpected}")

    # -- CLIP vision tower, run layer by layer so the masks can enter ------------------
    def _layer(self, layer: nn.Module, h: torch.Tensor, attn_bias: torch.Tensor | None,
               mlp_gate: torch.Tensor | None) -> torch.Tensor:
        # CLIPEncoderLayer's own sub-modules, composed as it does, plus the two masks.
        a, _ = layer.self_attn(hidden_states=layer.layer_norm1(h), attention_mask=attn_bias)
        h = h + a
        u = layer.mlp(layer.layer_norm2(h))
        return h + (u if mlp_gate is None else mlp_gate * u)

    def _vision(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        vm = self.clip.model.vision_model
        h = vm.pre_layrnorm(vm.embeddings(pixel_values))
        states = [h]
        for layer in vm.encoder.layers:
            h = self._layer(layer, h, None, None)
            states.append(h)
        return states  # states[l] = output of layer l, states[0] = embeddings

    def _relevance(self, states: list[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        """Direct effect of each patch on the image-text cosine, summed over the selected layers (step 1)."""
        vm, proj = self.clip.model.vision_model, self.clip.model.visual_projection
        ln = vm.post_layernorm
        cls = states[-1][:, 0]  # final CLS before LN_post
        sigma = cls.var(-1, unbiased=False, keepdim=True).add(ln.eps).sqrt()
        norm_e = proj(ln(cls)).norm(dim=-1, keepdim=True)  # |e|
        rel = 0
        for l in self.layers:
            c = self._cls_contributions(vm.encoder.layers[l - 1], states[l - 1])  # (N, P, W)
            # LN_post linearised at the final CLS: (c - mean c) * gamma / sigma; then W_vis, then <., t>/|e|.
            c = (c - c.mean(-1, keepdim=True)) * ln.weight / sigma[:, None]
            rel = rel + (proj(c) * text[:, None]).sum(-1) / norm_e
        return rel

    @staticmethod
    def _cls_contributions(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """c[j] = W_O (a_{CLS,j} v_j): what patch j writes into the CLS token through layer's attention.

        Computed from the layer's own projections (any attention implementation):
        a^h = softmax(q^h_CLS . k^h / sqrt(d_h)), v = v_proj(LN_1(h)), per head h.
        """
        att = layer.self_attn
        x = layer.layer_norm1(h)
        n, t, w = x.shape
        nh, hd = att.num_heads, att.head_dim
        q = att.q_proj(x[:, :1]).view(n, 1, nh, hd).transpose(1, 2)  # (N, H, 1, hd)
        k = att.k_proj(x).view(n, t, nh, hd).transpose(1, 2)  # (N, H, T, hd)
        v = att.v_proj(x).view(n, t, nh, hd).transpose(1, 2)
        a = ((q @ k.transpose(-1, -2)) * att.scale).softmax(-1)  # (N, H, 1, T)
        weighted = (a.transpose(-1, -2) * v).transpose(1, 2).reshape(n, t, w)  # (N, T, W): a^h_j v^h_j
        return F.linear(weighted, att.out_proj.weight)[:, 1:]  # bias is not any patch's: dropped

    def _masked_vision(self, states: list[torch.Tensor], mask: torch.Tensor) -> dict[int, torch.Tensor]:
        """Re-run layers first(L)..last(L) from pass 1's input with the masks (step 3)."""
        vm = self.clip.model.vision_model
        n = mask.shape[0]
        keep = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=mask.device), mask], dim=1)  # CLS kept
        attn_bias = None
        if self.use_attention_mask:
            bias = torch.zeros(keep.shape, dtype=states[0].dtype, device=mask.device)
            bias = bias.masked_fill(~keep, float("-inf"))
            attn_bias = bias[:, None, None, :]  # (N, 1, 1, 1+P): same key mask for every head and query
        gate = keep[..., None].to(states[0].dtype) if self.use_mlp_mask else None
        h = states[self.layers[0] - 1]
        out = {}
        for li in range(self.layers[0], self.layers[-1] + 1):
            h = self._layer(vm.encoder.layers[li - 1], h, attn_bias, gate)
            if li in self.layers:
                out[li] = h
        return out

    # -- the construction ---------------------------------------------------------------
    def _check_frames(self, frames) -> tuple[torch.Tensor, int, int]:
        x = frames if torch.is_tensor(frames) else torch.as_tensor(frames)
        if x.dtype == torch.uint8:
            if x.ndim == 4:
                x = x[:, None]
            if x.ndim != 5 or x.shape[-1] != 3:
                raise ValueError(f"uint8 frames must be (B, K, H, W, 3) (or (B, H, W, 3)), got {tuple(x.shape)}")
        else:
            if x.ndim == 4:
                x = x[:, None]
            if x.ndim != 5 or x.shape[2] != 3:
                raise ValueError(f"float frames must be (B, K, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        return x.flatten(0, 1), x.shape[0], x.shape[1]

    def prompt(self, frames, instruction: Sequence[str] | str | torch.Tensor,
               frame_indices: torch.Tensor | None = None, relevance: torch.Tensor | None = None,
               poses: torch.Tensor | np.ndarray | None = None) -> SSGPrompt:
        """Build the prompt. ``frames``: (B, K, H, W, 3) uint8 or (B, K, 3, H, W) float in [0, 1];
        ``instruction``: B strings (or one for all) or precomputed unit text embeddings (B, E);
        ``frame_indices``: (B, K) or (K,) original frame indices (default 0..K-1).
        ``relevance``: (B, K, g, g) to use in place of CLIP's ``r`` (steps 2-4 read it): the
        oracle diagnostic (``world_model.ssg.oracle.OracleRelevance``) feeds the true
        target masks here to ask what a perfect "where" signal would buy.
        ``poses``: (B, K, 3) world x, y, yaw of the context frames, required by a pose-aware
        prompter (``pose_encoding=True``) and ignored by others."""
        flat, b, k = self._check_frames(frames)
        if self.pose_encoding:
            if poses is None:
                raise ValueError("this SSG prompter is pose-aware (pose_encoding=True): pass the context frames' "
                                 "poses (B, K, 3) world x, y, yaw (imagine(..., context_poses=...))")
            if tuple(np.shape(poses)) != (b, k, 3):
                raise ValueError(f"context poses must be ({b}, {k}, 3) world x, y, yaw, got {tuple(np.shape(poses))}")
        device = self.queries.device
        g = self.clip.grid_size
        with torch.no_grad():
            pixels = self.clip.preprocess(flat.to(device))
            if torch.is_tensor(instruction):
                text = F.normalize(instruction.to(device).float(), dim=-1)
            else:
                texts = [instruction] * b if isinstance(instruction, str) else list(instruction)
                if len(texts) != b:
                    raise ValueError(f"{len(texts)} instructions for a batch of {b} frame sets")
                text = self.clip.encode_texts(texts)
            if text.shape != (b, self.clip.embed_dim):
                raise ValueError(f"text embeddings must be ({b}, {self.clip.embed_dim}), got {tuple(text.shape)}")
            text_f = text.repeat_interleave(k, dim=0)  # (B*K, E)

            states = self._vision(pixels)
            if relevance is None:
                rel = self._relevance(states, text_f)  # (B*K, P)
            elif tuple(relevance.shape) != (b, k, g, g):
                raise ValueError(f"relevance must be ({b}, {k}, {g}, {g}), got {tuple(relevance.shape)}")
            else:
                rel = relevance.to(device, states[0].dtype).reshape(b * k, g * g)
            n_keep = max(1, math.ceil(self.keep_ratio * rel.shape[1]))
            mask = torch.zeros_like(rel, dtype=torch.bool)
            mask.scatter_(1, rel.topk(n_keep, dim=1).indices, True)
            if self.use_attention_mask or self.use_mlp_mask:
                feats = self._masked_vision(states, mask)
            else:
                feats = {l: states[l] for l in self.layers}
            patch = torch.stack([feats[l][:, 1:] for l in self.layers], dim=1)  # (B*K, nL, P, W)
            s = self.clip.logit_scale()
            log_rho = (s * rel).view(b, k * rel.shape[1]).log_softmax(-1).view(b, k, 1, -1)

        # Pooler (trainable from here on).
        n_l, p = len(self.layers), rel.shape[1]
        x = self.in_proj(self.in_norm(patch)).view(b, k, n_l, p, -1)
        if frame_indices is None:
            frame_indices = torch.arange(k, device=device)
        fi = torch.as_tensor(frame_indices, device=device).expand(b, k)
        x = x + self.pos2d[None, None, None] + self.layer_embed[None, None, :, None] \
            + sincos_1d(fi, x.shape[-1])[:, :, None, None]
        if self.pose_encoding:
            x = x + pose_code(torch.as_tensor(poses).to(device), g, self.hfov_deg, x.shape[-1])[:, :, None]
        if self.pooling == "topk":
            # the M most relevant (frame, patch) cells of the whole context, most relevant first
            m = min(self.num_tokens, k * p)
            top = rel.view(b, k * p).topk(m, dim=1).indices  # (B, M)
            cells = x.permute(0, 1, 3, 2, 4).reshape(b, k * p, n_l, -1).mean(dim=2)  # (B, K*P, D)
            z = cells.gather(1, top[..., None].expand(-1, -1, cells.shape[-1])) + self.queries[None, :m]
            if m < self.num_tokens:  # fewer cells than tokens: repeat the ranking
                z = z.repeat(1, -(-self.num_tokens // m), 1)[:, :self.num_tokens]
            z = z + self.mlp(z)
            return SSGPrompt(tokens=self.projector(z), relevance=rel.view(b, k, g, g), mask=mask.view(b, k, g, g))
        x = x.reshape(b, k * n_l * p, -1)
        bias = log_rho.view(b, k, 1, p).expand(b, k, n_l, p).reshape(b, 1, 1, -1)

        hd = self.queries.shape[-1] // self.num_heads
        q = self.queries[None].expand(b, -1, -1)
        kv = self.kv_norm(x)
        qh = self.to_q(self.q_norm(q)).view(b, -1, self.num_heads, hd).transpose(1, 2)
        kh = self.to_k(kv).view(b, -1, self.num_heads, hd).transpose(1, 2)
        vh = self.to_v(kv).view(b, -1, self.num_heads, hd).transpose(1, 2)
        a = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=self.relevance_beta * bias)
        z = q + self.attn_out(a.transpose(1, 2).reshape(b, self.num_tokens, -1))
        z = z + self.mlp(z)
        tokens = self.projector(z)
        return SSGPrompt(tokens=tokens, relevance=rel.view(b, k, g, g), mask=mask.view(b, k, g, g))

    def forward(self, frames, instruction, frame_indices: torch.Tensor | None = None,
                relevance: torch.Tensor | None = None, poses: torch.Tensor | None = None) -> torch.Tensor:
        """(B, M, out_dim) prompt tokens; see :meth:`prompt`."""
        return self.prompt(frames, instruction, frame_indices, relevance, poses).tokens
