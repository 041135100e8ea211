"""SSG checkpoints: prompt weights + adapter weights + a config naming the CLIP.

A directory written by :func:`save_ssg_checkpoint` (``Video4SpatialPipeline.save_ssg``)
and read by :func:`load_ssg_checkpoint` (``Video4SpatialPipeline.load_ssg``)::

    ssg_config.json       format_version; clip (null = the shipped small CLIP, else a
                          directory, relative to this one or absolute); prompter
                          (SpatialSignalPrompter kwargs); num_ssg_tokens, lam, out_dim;
                          fingerprints of the CLIP and of the backbone it was trained on;
                          frame_size (the context frames the prompter was trained on);
                          "training" (what the trainer adds: steps, command, wall time)
    prompter.safetensors  SpatialSignalPrompter.trainable_state_dict() (pooler, projector, null prompt)
    adapter.safetensors   ssg_state_dict(transformer): "<block index>.<tensor name>"
    clip/                 a copy of the CLIP when it is not the shipped one

The backbone is *not* in it: an SSG checkpoint goes on top of a Video4Spatial
pipeline (the frozen backbone it was trained with; a different one gives a warning).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from envs.atomic import replace_dir
from world_model.ssg.adapter import install_ssg_adapter, load_ssg_state_dict, remove_ssg_adapter, ssg_state_dict
from world_model.ssg.clip import SpatialClip, default_clip_dir, load_clip
from world_model.ssg.prompting import PERCEIVER_ONLY, SpatialSignalPrompter

SSG_CONFIG_FILE = "ssg_config.json"
PROMPTER_FILE = "prompter.safetensors"
ADAPTER_FILE = "adapter.safetensors"
FORMAT_VERSION = 1

# SpatialSignalPrompter defaults as configs/ssg/default.yaml spells them.
DEFAULT_PROMPTER: dict[str, Any] = dict(num_tokens=8, layers=[-3, -2, -1], keep_ratio=0.25,
                                        use_attention_mask=True, use_mlp_mask=True, hidden_dim=256, num_heads=4,
                                        pooling="topk", pose_encoding=False, hfov_deg=79.0)


def default_ssg_dir() -> Path:
    """The shipped SSG checkpoint: trained on the shipped ``world_model/weights/v4s-small`` backbone
    (its ``ssg_config.json`` records the training); what ``ssg=true`` loads when no adapter is named."""
    return Path(__file__).resolve().parents[1] / "weights" / "v4s-small-ssg"


def is_ssg_checkpoint(path) -> bool:
    return (Path(path) / SSG_CONFIG_FILE).is_file()


def fingerprint(module: nn.Module, exclude: str = ".processor.") -> str:
    """A cheap identity of a module's weights: names, shapes and 4-digit |sums| (one reduction per tensor).

    Keys containing ``exclude`` are skipped (the SSG processors, so a backbone with
    or without an adapter installed has the same fingerprint).
    """
    h = hashlib.sha1()
    for k, v in sorted(module.state_dict().items()):
        if exclude and exclude in k:
            continue
        h.update(f"{k}{tuple(v.shape)}{float(v.detach().double().abs().sum()):.4g};".encode())
    return h.hexdigest()[:16]


def clip_source(clip: str | Path | None) -> str | None:
    """``None`` for the shipped CLIP (also when its directory is named explicitly), else the path as a string."""
    if clip is None:
        return None
    p = Path(clip)
    if p.is_dir() and p.resolve() == default_clip_dir().resolve():
        return None
    return str(clip)


def build_prompter(clip: SpatialClip, out_dim: int, prompter: dict | None = None) -> SpatialSignalPrompter:
    kw = dict(DEFAULT_PROMPTER)
    kw.update(prompter or {})
    kw["layers"] = tuple(kw["layers"])
    return SpatialSignalPrompter(clip, out_dim=out_dim, **kw)


def save_ssg_checkpoint(path, prompter: SpatialSignalPrompter, transformer: nn.Module,
                        config: dict[str, Any]) -> Path:
    """Write the SSG checkpoint directory (atomically: a temporary directory renamed into place).

    ``config`` holds at least ``clip`` (as given to :func:`clip_source`: None = shipped;
    anything else makes a copy of ``prompter.clip`` under ``clip/``), ``prompter``
    (kwargs) and ``lam``; other keys are stored as they are.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().float().contiguous().cpu() for k, v in prompter.trainable_state_dict().items()},
              str(tmp / PROMPTER_FILE))
    adapter = ssg_state_dict(transformer)
    save_file({k: v.contiguous().cpu() for k, v in adapter.items()}, str(tmp / ADAPTER_FILE))
    cfg = dict(config)
    if cfg.get("clip") is not None:
        prompter.clip.save_pretrained(tmp / "clip")
        cfg["clip_source"] = str(cfg["clip"])
        cfg["clip"] = "clip"
    prompt_kw = dict(DEFAULT_PROMPTER)
    prompt_kw.update(cfg.get("prompter") or {})
    prompt_kw["layers"] = list(prompt_kw["layers"])
    cfg.update(format_version=FORMAT_VERSION, prompter=prompt_kw, num_ssg_tokens=prompter.num_tokens,
               out_dim=prompter.out_dim, lam=float(cfg.get("lam", 1.0)),
               clip_fingerprint=fingerprint(prompter.clip.model))
    (tmp / SSG_CONFIG_FILE).write_text(json.dumps(cfg, indent=1) + "\n")
    replace_dir(tmp, path)  # atomic: a reader never sees it half-written
    return path


def read_ssg_config(path) -> dict[str, Any]:
    path = Path(path)
    f = path / SSG_CONFIG_FILE
    if not f.is_file():
        raise FileNotFoundError(
            f"no SSG checkpoint at {path} ({SSG_CONFIG_FILE} missing). Train one with `spatialnav train-ssg` "
            f"(python -m world_model.ssg.train_adapter) or save one with Video4SpatialPipeline.save_ssg"
        )
    cfg = json.loads(f.read_text())
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{f}: format_version {cfg.get('format_version')} != {FORMAT_VERSION}")
    return cfg


def load_ssg_checkpoint(path, transformer: nn.Module, device: str | torch.device = "cpu",
                        backbone: nn.Module | None = None) -> tuple[SpatialSignalPrompter, dict[str, Any]]:
    """Load an SSG checkpoint: build the prompter (with its CLIP) and install + load the adapter.

    ``transformer``: the ``WanTransformer3DModel`` (or a module containing its blocks)
    to put the adapter on. ``backbone``: the module whose :func:`fingerprint` is
    compared with the one recorded at training time (a warning when they differ).
    Returns ``(prompter, config)``; on any error the adapter is not left installed.
    """
    from safetensors.torch import load_file

    path = Path(path)
    cfg = read_ssg_config(path)
    text_dim = int(getattr(getattr(transformer, "config", None), "text_dim", cfg["out_dim"]))
    if int(cfg["out_dim"]) != text_dim:
        raise ValueError(f"SSG checkpoint {path} makes {cfg['out_dim']}-wide tokens but this backbone's text width "
                         f"is {text_dim}: it was trained for another backbone")
    ref = cfg.get("clip")
    clip_dir = None if ref is None else (Path(ref) if Path(ref).is_absolute() else path / ref)
    clip = load_clip(clip_dir, device=device)
    if cfg.get("clip_fingerprint") and fingerprint(clip.model) != cfg["clip_fingerprint"]:
        warnings.warn(f"SSG checkpoint {path} was trained with a different CLIP than {clip_dir or default_clip_dir()} "
                      f"(weights fingerprint differs); its prompts will not mean what the adapter learned",
                      stacklevel=2)
    prompt_kw = dict(cfg.get("prompter") or {})
    prompt_kw.setdefault("pooling", "perceiver")  # checkpoints from before the pooling option
    prompter = build_prompter(clip, text_dim, prompt_kw)
    prompter.load_trainable_state_dict(load_file(str(path / PROMPTER_FILE)))
    prompter.to(device).eval()
    try:
        install_ssg_adapter(transformer, int(cfg["num_ssg_tokens"]), float(cfg.get("lam", 1.0)))
        load_ssg_state_dict(transformer, load_file(str(path / ADAPTER_FILE)))
    except (KeyError, RuntimeError, ValueError) as e:
        remove_ssg_adapter(transformer)
        raise ValueError(f"SSG adapter weights in {path} do not fit this backbone: {e}") from e
    want = (cfg.get("backbone") or {}).get("fingerprint")
    if backbone is not None and want and fingerprint(backbone) != want:
        warnings.warn(f"SSG checkpoint {path} was trained on backbone {cfg['backbone'].get('path')!r} "
                      f"(fingerprint {want}); this pipeline's backbone differs (another or a further-trained "
                      f"checkpoint, or a dtype conversion): the adapter may not fit it", stacklevel=2)
    cfg["clip"] = None if clip_dir is None else str(clip_dir)  # resolved: a re-save copies it again
    return prompter, cfg


def release_ssg_checkpoint(src, dst, half: bool = True, unused: bool = False) -> Path:
    """Copy an SSG checkpoint directory for shipping: tensors in fp16 (``half``; they load into
    fp32 or fp16 modules alike), and without the prompter's tensors that its pooling never reads
    (the Perceiver's query/key/value/output projections under ``pooling: topk``) unless ``unused``.
    ``clip/`` and ``ssg_config.json`` are copied as they are; the copy is written atomically."""
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    cfg = read_ssg_config(src)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    drop = () if unused or (cfg.get("prompter") or {}).get("pooling", "perceiver") != "topk" else PERCEIVER_ONLY
    for name in (PROMPTER_FILE, ADAPTER_FILE):
        state = load_file(str(src / name))
        state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()
                 if not (drop and name == PROMPTER_FILE and k.startswith(drop))}
        save_file(state, str(tmp / name))
    replace_dir(tmp, dst)  # atomic: a reader never sees it half-written
    return dst
