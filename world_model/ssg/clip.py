"""CLIP for SSG spatial prompting: a small in-project CLIP or a standard checkpoint.

No pretrained CLIP can be downloaded on the project's machines, so the default is
a small ``transformers.CLIPModel`` (ViT 64x64 / patch 8 / 4 layers / width 128, a
4-layer width-128 text transformer) trained on rendered views with captions
generated from scene annotations (``world_model.ssg.clip_data``,
``world_model.ssg.train_clip``). Its text side uses a *word-level* tokenizer over
the caption and instruction grammar's vocabulary: the grammar is closed, so BPE
would only waste capacity.

Either kind is stored as a standard Hugging Face CLIP directory
(``config.json`` + ``model.safetensors`` + tokenizer files +
``preprocessor_config.json``), so :func:`load_clip` reads both the same way, and
``openai/clip-vit-base-patch32`` works where a user has a local copy.

Facts this relies on (transformers 5.x):
* ``CLIPModel`` returns attention maps only with ``attn_implementation="eager"``;
  :func:`load_clip` and :func:`build_small_clip` always ask for it.
* ``CLIPTextModel`` pools the hidden state at the first ``eos_token_id``, except
  when ``eos_token_id == 2`` (a legacy path that pools at the *largest* token id).
  Our vocabulary therefore puts [EOS] at id 3 and keeps every special id inside it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from transformers import AutoTokenizer, CLIPConfig, CLIPModel, PreTrainedTokenizerFast

from world_model.ssg.minilm_clip import is_minilm_clip_dir, load_minilm_clip
from world_model.ssg.spatial_clip import (CLIP_MEAN, CLIP_STD, SpatialClip, default_clip_dir,
                                          read_preprocessor_config)

# Special tokens and their ids. id 2 must not be [EOS] (see module docstring).
PAD, BOS, UNK, EOS = "[PAD]", "[BOS]", "[UNK]", "[EOS]"
SPECIAL_TOKENS = (PAD, BOS, UNK, EOS)

_WORD_RE = re.compile(r"[a-z]+")

# Room names a scene may annotate, in case the generator's list is not importable
# (user meshes bring their own); the vocabulary is the union with what envs knows.
_FALLBACK_ROOMS = (
    "bedroom", "kitchen", "living_room", "bathroom", "dining_room", "office",
    "hallway", "study", "corridor", "entrance", "laundry", "closet", "room",
)
# Words of our generated captions (world_model.ssg.clip_data) beyond the grammar.
_CAPTION_WORDS = ("a", "an", "the", "of", "in", "and", "to", "left", "right", "front",
                  "behind", "next", "near", "between", "view", "with")


def words(text: str) -> list[str]:
    """Lower-case word split used by the word-level tokenizer (punctuation dropped)."""
    return _WORD_RE.findall(text.lower())


def grammar_vocabulary(extra_texts: Iterable[str] = ()) -> list[str]:
    """Every word of the instruction grammar and of our captions, sorted.

    Enumerates ``envs.instructions.InstructionSpec.to_text`` over all templates and
    relations (so verbs and relation phrasings come from the grammar itself, not a
    copy), plus categories, colour names, room names and ``extra_texts``.
    """
    from envs.furniture import COLORS
    from envs.instructions import NUM_TEMPLATES, RELATIONS, InstructionSpec, ObjectRef
    from envs.scene import FURNITURE_CATEGORIES

    rooms = set(_FALLBACK_ROOMS)
    try:  # the generator's own room names, when that module exists
        from envs import procgen  # noqa: PLC0415

        for name in ("ROOM_TYPES", "ROOM_NAMES", "ROOMS"):
            value = getattr(procgen, name, None)
            if value:
                rooms.update(str(r) for r in (value.keys() if isinstance(value, dict) else value))
    except Exception:  # noqa: BLE001 - optional source of names only
        pass

    texts: list[str] = list(extra_texts)
    texts += list(FURNITURE_CATEGORIES) + list(COLORS) + [r.replace("_", " ") for r in rooms]
    texts += list(_CAPTION_WORDS)
    for rel in (None,) + RELATIONS:
        refs = () if rel is None else tuple(ObjectRef("bed", "red") for _ in range(2 if rel == "between" else 1))
        spec = InstructionSpec("chair", "blue", "bedroom", rel, refs)
        for k in range(NUM_TEMPLATES * 6):  # every verb x phrase x separator combination
            texts.append(spec.to_text(template=k))
    vocab = sorted({w for t in texts for w in words(t)})
    return vocab


def build_word_tokenizer(vocab: Sequence[str], max_length: int = 32) -> PreTrainedTokenizerFast:
    """A word-level ``PreTrainedTokenizerFast``: ``[BOS] w1 ... wn [EOS]``, lower-cased.

    ids: [PAD]=0, [BOS]=1, [UNK]=2, [EOS]=3, then ``vocab`` in order. Saved with
    ``save_pretrained`` it reloads through ``AutoTokenizer.from_pretrained``.
    """
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = [w for w in dict.fromkeys(vocab) if w not in SPECIAL_TOKENS]
    bad = [w for w in vocab if words(w) != [w]]
    if bad:
        raise ValueError(f"vocabulary entries must be single lower-case words, got {bad[:5]}")
    ids = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(vocab))}
    tok = Tokenizer(WordLevel(ids, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    # Letters only, matching ``words``: digits and punctuation are dropped.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r"[^a-z]+"), behavior="removed"), pre_tokenizers.Whitespace()]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, ids[BOS]), (EOS, ids[EOS])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        model_max_length=max_length,
    )
    return fast


@dataclass
class SmallClipSpec:
    """Size of the in-project CLIP (``transformers.CLIPConfig`` fields)."""

    image_size: int = 64  # input resolution (rendered views are resized to it)
    patch_size: int = 8  # 8x8 = 64 patch tokens at 64 px
    vision_layers: int = 4
    vision_width: int = 128
    vision_heads: int = 4
    text_layers: int = 4
    text_width: int = 128
    text_heads: int = 4
    max_text_len: int = 32  # the longest grammar sentence is ~20 words
    projection_dim: int = 128


def build_small_clip(tokenizer: PreTrainedTokenizerFast, spec: SmallClipSpec | None = None,
                     seed: int = 0) -> "SpatialClip":
    """A randomly initialised small CLIP whose text vocabulary is ``tokenizer``'s."""
    spec = spec or SmallClipSpec()
    if spec.image_size % spec.patch_size:
        raise ValueError(f"image_size {spec.image_size} must be a multiple of patch_size {spec.patch_size}")
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=spec.text_width, intermediate_size=4 * spec.text_width,
            num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
            max_position_embeddings=spec.max_text_len, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            image_size=spec.image_size, patch_size=spec.patch_size, hidden_size=spec.vision_width,
            intermediate_size=4 * spec.vision_width, num_hidden_layers=spec.vision_layers,
            num_attention_heads=spec.vision_heads,
        ),
        projection_dim=spec.projection_dim,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = CLIPModel(config)
    model.config._attn_implementation = "eager"
    return SpatialClip(model, tokenizer, image_size=spec.image_size, mean=CLIP_MEAN, std=CLIP_STD)


TRAINED_CLIP = Path("runs") / "clip" / "small" / "clip-small"
CLIP_HINT = ("train the small CLIP with `python -m world_model.ssg.train_clip --out runs/clip/small` (it writes "
             "runs/clip/small/clip-small) or point agent.clip=<dir> / eval_wm.clip=<dir> at a saved CLIP directory")


# CLIPs by name (agent.clip=minilm): package weights dir, training output, the command that makes it.
NAMED_CLIPS = {
    "small": ("clip-small", TRAINED_CLIP, "python -m world_model.ssg.train_clip --out runs/clip/small"),
    "minilm": ("clip-minilm", Path("runs") / "clip" / "minilm" / "clip-minilm",
               "python -m world_model.ssg.train_minilm_clip --out runs/clip/minilm"),
}


def resolve_clip(path: str | os.PathLike | None = None) -> Path:
    """The CLIP directory to load: a name of ``NAMED_CLIPS`` ("small", "minilm": the package's weights, else
    the training run's output), ``path`` when given, else the shipped small CLIP (``default_clip_dir()``,
    world_model/ssg/weights/clip-small), else the training run's ``runs/clip/small/clip-small`` (in the
    working directory, then in the repo), else a ``FileNotFoundError`` saying how to make one."""
    if str(path) in NAMED_CLIPS:  # "small" / "minilm": the shipped weights, else the training run's output
        shipped, trained, how = NAMED_CLIPS[str(path)]
        repo = Path(__file__).resolve().parents[2]
        for p in (default_clip_dir().parent / shipped, trained, repo / trained):
            if (p / "config.json").is_file():
                return p
        raise FileNotFoundError(f"no {path!r} CLIP: neither {default_clip_dir().parent / shipped} nor {trained} "
                                f"exists; make one with `{how}`")
    if path not in (None, "", "null", "none", "None"):
        p = Path(str(path))
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"CLIP checkpoint {str(p)!r} not found (no config.json); {CLIP_HINT}")
        return p
    repo = Path(__file__).resolve().parents[2]
    for p in (default_clip_dir(), TRAINED_CLIP, repo / TRAINED_CLIP):
        if (p / "config.json").is_file():
            return p
    raise FileNotFoundError(f"no CLIP checkpoint: neither the shipped one ({default_clip_dir()}) nor "
                            f"{TRAINED_CLIP} exists; {CLIP_HINT}")


def load_clip(path_or_name: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> SpatialClip:
    """Load a CLIP directory with ``CLIPModel.from_pretrained`` (eager attention).

    ``path_or_name``: a local directory holding a Hugging Face CLIP checkpoint (ours
    or e.g. a downloaded ``openai/clip-vit-base-patch32``), a hub name that is
    already in the local cache, or None for the shipped small CLIP. The tokenizer
    comes from ``AutoTokenizer`` (word-level for ours, ``CLIPTokenizer`` for
    OpenAI's); pixel size and statistics from ``preprocessor_config.json`` when
    present, else the vision config's ``image_size`` and OpenAI's statistics.
    """
    path = default_clip_dir() if path_or_name is None else path_or_name
    p = Path(path)
    if not p.is_dir():
        # Not a directory: only a name already in the local hub cache can work offline.
        looks_like_name = isinstance(path, str) and path.count("/") == 1 and not p.suffix and not p.is_absolute()
        if not looks_like_name:
            raise FileNotFoundError(
                f"CLIP checkpoint {str(path)!r} not found. Pass a directory written by "
                f"SpatialClip.save_pretrained / CLIPModel.save_pretrained (it needs config.json, model weights "
                f"and tokenizer files), or train one: python -m world_model.ssg.train_clip"
            )
    elif not (p / "config.json").is_file():
        raise FileNotFoundError(f"{p} has no config.json: not a saved CLIP checkpoint")
    elif is_minilm_clip_dir(p):  # ViT + frozen MiniLM text tower (world_model/ssg/minilm_clip.py)
            return load_minilm_clip(p, device=device)
    try:
        model = CLIPModel.from_pretrained(str(path), attn_implementation="eager")
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except OSError as e:
        raise FileNotFoundError(
            f"could not load CLIP {str(path)!r} (no network here: hub names work only if cached; "
            f"otherwise pass a local directory): {e}"
        ) from e
    image_size, mean, std = read_preprocessor_config(path, int(model.config.vision_config.image_size))
    model.eval()
    return SpatialClip(model, tokenizer, image_size=image_size, mean=mean, std=std).to(device)


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
              targets: torch.Tensor | None = None, negative_text_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021, eq. in Fig. 3).

    ``L = (CE(s * I T^T, y) + CE(s * T I^T, y)) / 2`` with unit-norm embeddings I, T
    and temperature ``s = exp(logit_scale)``. ``targets`` (N, N) optionally gives a
    soft target distribution per row (rows sum to 1) so that identical captions in
    a batch are not counted as negatives of each other; default: the identity.
    ``negative_text_embeds`` (M, E): extra captions that match no image (hard negatives, e.g.
    a caption with its relation reversed); they join every image's softmax over texts (the
    image -> text term) with target 0, as in NegCLIP.
    """
    logits = logit_scale * image_embeds @ text_embeds.t()
    if targets is None:
        targets = torch.eye(len(logits), device=logits.device, dtype=logits.dtype)
    i2t, t_i2t = logits, targets
    if negative_text_embeds is not None and len(negative_text_embeds):
        i2t = torch.cat([logits, logit_scale * image_embeds @ negative_text_embeds.t()], dim=1)
        t_i2t = torch.cat([targets, targets.new_zeros(len(targets), len(negative_text_embeds))], dim=1)
    return 0.5 * (-(t_i2t * i2t.log_softmax(-1)).sum(-1).mean()
                  - (targets.t() * logits.t().log_softmax(-1)).sum(-1).mean())


def recall_at_k(similarity: torch.Tensor, ks: Sequence[int] = (1, 5),
                positives: torch.Tensor | None = None) -> dict[str, float]:
    """Retrieval recall@k in both directions from an (N_img, N_txt) similarity matrix.

    Image i -> text: a hit if any positive text of i is among its k most similar
    texts; text -> image likewise over columns. ``positives`` (N_img, N_txt) bool
    marks correct pairs (default: the diagonal, which requires a square matrix);
    with generated captions several views may share a caption, so the caller
    passes caption equality as positives. Returns ``{"i2t_r1": ..., "t2i_r1": ...}``.
    """
    s = torch.as_tensor(similarity, dtype=torch.float32)
    if s.ndim != 2:
        raise ValueError(f"similarity must be 2-D (N_img, N_txt), got shape {tuple(s.shape)}")
    if positives is None:
        if s.shape[0] != s.shape[1]:
            raise ValueError(f"a non-square similarity {tuple(s.shape)} needs an explicit positives matrix")
        positives = torch.eye(s.shape[0], dtype=torch.bool)
    positives = torch.as_tensor(positives, dtype=torch.bool)
    if positives.shape != s.shape:
        raise ValueError(f"positives shape {tuple(positives.shape)} != similarity shape {tuple(s.shape)}")
    out: dict[str, float] = {}
    for k in ks:
        k_t, k_i = min(k, s.shape[1]), min(k, s.shape[0])
        top_t = s.topk(k_t, dim=1).indices  # (N_img, k)
        i2t = positives.gather(1, top_t).any(1)
        top_i = s.t().topk(k_i, dim=1).indices  # (N_txt, k)
        t2i = positives.t().gather(1, top_i).any(1)
        out[f"i2t_r{k}"] = float(i2t.float().mean())
        out[f"t2i_r{k}"] = float(t2i.float().mean())
    return out
