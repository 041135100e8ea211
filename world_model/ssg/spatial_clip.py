"""`SpatialClip`: a CLIP with its tokenizer and pixel preprocessing, the one interface SSG prompting,
the agents' CLIP guide and the evaluations use, and the on-disk pieces every CLIP directory shares
(``preprocessor_config.json``, the shipped weights' place).

Two kinds build on it: the small word-level CLIP (``world_model.ssg.clip``, which also loads any
CLIP directory) and the MiniLM-text CLIP (``world_model.ssg.minilm_clip``). Both import this
module and it imports neither.
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
from transformers import CLIPModel

# OpenAI CLIP's pixel statistics; our small CLIP uses them too so both kinds of
# checkpoint share one preprocessing path.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class SpatialClip(nn.Module):
    """A ``CLIPModel`` with its tokenizer and pixel preprocessing, in torch.

    ``encode_images`` takes uint8 ``(N, H, W, 3)`` arrays/tensors or float
    ``(N, 3, H, W)`` in [0, 1]; it resizes the short side to ``image_size``
    (bicubic, antialiased), centre-crops, and normalises with ``mean``/``std``,
    as ``CLIPImageProcessor`` does, but batched and without PIL.
    """

    def __init__(self, model: CLIPModel, tokenizer, image_size: int,
                 mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    # -- sizes ---------------------------------------------------------------
    @property
    def vision_config(self):
        return self.model.config.vision_config

    @property
    def grid_size(self) -> int:
        """Patches per side of the vision tower's input."""
        return self.image_size // self.vision_config.patch_size

    @property
    def embed_dim(self) -> int:
        return self.model.config.projection_dim

    # -- inputs --------------------------------------------------------------
    def preprocess(self, images) -> torch.Tensor:
        """Images -> normalised pixel values ``(N, 3, S, S)``, S = ``image_size``."""
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        if x.dtype == torch.uint8:
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"uint8 images must be (N, H, W, 3), got shape {tuple(x.shape)}")
            x = x.permute(0, 3, 1, 2).float() / 255.0
        else:
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"float images must be (N, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
            x = x.float()
        x = x.to(self.mean.device)
        h, w = x.shape[-2:]
        s = self.image_size
        if (h, w) != (s, s):
            scale = s / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            top, left = (nh - s) // 2, (nw - s) // 2
            x = x[..., top:top + s, left:left + s]
        return (x.clamp(0, 1) - self.mean) / self.std

    def tokenize(self, texts: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Texts -> ``input_ids``/``attention_mask``, padded to the longest, truncated to the model's length."""
        if isinstance(texts, str):
            texts = [texts]
        max_len = self.model.config.text_config.max_position_embeddings
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.mean.device),
                "attention_mask": enc["attention_mask"].to(self.mean.device)}

    # -- embeddings ----------------------------------------------------------
    def image_embeds(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Projected CLS embedding ``(N, projection_dim)`` of preprocessed pixels."""
        out = self.model.vision_model(pixel_values=pixel_values)
        z = self.model.visual_projection(out.pooler_output)
        return F.normalize(z, dim=-1) if normalize else z

    def text_embeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    normalize: bool = True) -> torch.Tensor:
        """Projected EOS embedding ``(N, projection_dim)`` of tokenised texts."""
        out = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        z = self.model.text_projection(out.pooler_output)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_images(self, images, normalize: bool = True) -> torch.Tensor:
        return self.image_embeds(self.preprocess(images), normalize)

    def encode_texts(self, texts: Sequence[str] | str, normalize: bool = True) -> torch.Tensor:
        return self.text_embeds(**self.tokenize(texts), normalize=normalize)

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    # -- persistence ---------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> None:
        """A standard HF CLIP directory: model, tokenizer, preprocessor config."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        write_preprocessor_config(path, self.image_size, self.mean, self.std)


def write_preprocessor_config(path: Path, image_size: int, mean: torch.Tensor, std: torch.Tensor) -> None:
    """``preprocessor_config.json`` in the standard CLIPImageProcessor format, written by hand:
    CLIPImageProcessor's own writer wants torchvision, which the CPU torch build cannot have."""
    s = int(image_size)
    pre = {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": s},
        "resample": 3, "do_center_crop": True, "crop_size": {"height": s, "width": s},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": mean.flatten().tolist(), "image_std": std.flatten().tolist(),
        "do_convert_rgb": True,
    }
    (Path(path) / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))


def read_preprocessor_config(path: str | os.PathLike, image_size: int) -> tuple[int, tuple, tuple]:
    """(image size, mean, std) of a CLIP directory: from its ``preprocessor_config.json`` (crop size,
    image_mean, image_std) when present, else ``image_size`` and OpenAI's statistics."""
    mean, std = CLIP_MEAN, CLIP_STD
    pre = Path(path) / "preprocessor_config.json"
    if pre.is_file():
        cfg = json.loads(pre.read_text())
        crop = cfg.get("crop_size")
        if isinstance(crop, dict):
            image_size = int(crop.get("height", image_size))
        elif isinstance(crop, int):
            image_size = crop
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
    return int(image_size), mean, std


def default_clip_dir() -> Path:
    """Where the shipped small CLIP lives inside the package."""
    return Path(__file__).resolve().parent / "weights" / "clip-small"


__all__ = ["CLIP_MEAN", "CLIP_STD", "SpatialClip", "default_clip_dir", "read_preprocessor_config",
           "write_preprocessor_config"]
