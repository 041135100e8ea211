"""Goal check: is the agent, here and now, where the instruction asks it to STOP?

The world-model agent drives to a goal it read off its imagination and must then decide whether
to STOP. Until now that decision was the CLIP guide's z-score of the current view (how much more
the view matches the instruction than the views seen so far), a weak test: on 60 traced val
episodes the z-score told an arrival inside the success region from one outside with ROC AUC
about 0.67, and "stopped at a wrong place" / "stopped short" ended 37 of those episodes.

``GoalCheck`` is a binary recogniser trained for exactly that question, on rendered views whose
answer the simulator knows. It reads what the agent reads at that moment:

* the RGB view (area-resized to the vision tower's 64 px) -> the ViT image tower of the
  MiniLM-text CLIP (``world_model.ssg.minilm_clip``, warm-started from ``clip-minilm``);
* the instruction -> the frozen pretrained MiniLM sentence embedding -> the CLIP's text head
  (so free wording lands near template wording);
* the depth view (metres, area-resized to 32 px, clipped at ``max_depth_m``) -> a small CNN: how
  far the thing in view is, which a success radius of about 1 m needs and an image embedding
  does not carry.

Head: an MLP over ``[image * text, image, text, depth features, cosine]`` with two logits,
``success`` (STOP here succeeds: within the env's success distance of a view point of the
target, with the target in view) and ``visible`` (the target covers at least
``VISIBLE_FRACTION`` of the view). Training data and the trainer: ``planners.train_goal_check``.

Loading: ``load_goal_check(path)`` reads a directory written by ``GoalCheck.save_pretrained``
(``goal_check.json``, ``goal_check.safetensors`` for the depth CNN and head, ``clip/`` for the
CLIP towers it fine-tuned). The shipped weights are ``planners/weights/goal-check``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GOAL_CHECK_FILE = "goal_check.json"
HEAD_FILE = "goal_check.safetensors"
CLIP_SUBDIR = "clip"
VISIBLE_FRACTION = 0.005  # target pixels / view pixels for "in view"
DEPTH_SIZE = 32


def default_goal_check_dir() -> Path:
    return Path(__file__).resolve().parent / "weights" / "goal-check"


class DepthEncoder(nn.Module):
    """(N, 1, 32, 32) depth / max_depth -> (N, out_dim)."""

    def __init__(self, out_dim: int = 64, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width // 2, 5, stride=2, padding=2), nn.GELU(),       # 16
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.GELU(),   # 8
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GELU(),        # 4
            nn.Flatten(), nn.Linear(width * 16, out_dim), nn.GELU())

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return self.net(d)


class GoalCheck(nn.Module):
    """Two logits (success here, target visible) from (RGB, depth, instruction): module docstring."""

    def __init__(self, clip, hidden: int = 256, depth_dim: int = 64, max_depth_m: float = 5.0,
                 threshold: float = 0.5, info: dict | None = None):
        super().__init__()
        self.clip = clip
        e = int(clip.embed_dim)
        self.depth = DepthEncoder(depth_dim)
        self.head = nn.Sequential(nn.LayerNorm(3 * e + depth_dim + 1), nn.Linear(3 * e + depth_dim + 1, hidden),
                                  nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2))
        self.hidden, self.depth_dim, self.max_depth_m = int(hidden), int(depth_dim), float(max_depth_m)
        self.threshold = float(threshold)  # p(success) at or above which the agent may STOP
        self.info = dict(info or {})

    # -- inputs ------------------------------------------------------------------------
    def depth_values(self, depth) -> torch.Tensor:
        """Depth (N, H, W[, 1]) metres (0 = no hit) -> (N, 1, 32, 32) in [0, 1]."""
        d = torch.as_tensor(np.asarray(depth, np.float32) if not torch.is_tensor(depth) else depth).float()
        if d.ndim == 4 and d.shape[-1] == 1:
            d = d[..., 0]
        if d.ndim == 2:
            d = d[None]
        if d.ndim != 3:
            raise ValueError(f"depth must be (N, H, W) or (N, H, W, 1) metres, got shape {tuple(d.shape)}")
        far = d <= 0  # a miss reads 0: farther than the sensor's range
        d = torch.where(far, torch.full_like(d, self.max_depth_m), d).clamp(0, self.max_depth_m) / self.max_depth_m
        d = d[:, None]
        return d if d.shape[-2:] == (DEPTH_SIZE, DEPTH_SIZE) else F.interpolate(d, size=(DEPTH_SIZE,) * 2, mode="area")

    def pixel_values(self, rgb) -> torch.Tensor:
        """RGB (N, H, W, 3) uint8 -> the vision tower's normalised (N, 3, S, S) (area resize)."""
        from world_model.frames import area_resize

        x = np.asarray(rgb)
        if x.ndim == 3:
            x = x[None]
        s = int(self.clip.image_size)
        if x.shape[1:3] != (s, s):
            x = np.round(area_resize(x, s)).clip(0, 255).astype(np.uint8)
        return self.clip.preprocess(x)

    # -- model -----------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, depth: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        """(N, 2) logits [success, visible]; ``sentences``: (N, 384) MiniLM sentence embeddings."""
        img = self.clip.image_embeds(pixel_values, normalize=True)
        txt = self.clip.text_embeds_from_sentences(sentences, normalize=True)
        cos = (img * txt).sum(-1, keepdim=True)
        feats = torch.cat([img * txt, img, txt, self.depth(depth), cos], dim=-1)
        return self.head(feats)

    @torch.no_grad()
    def probabilities(self, rgb, depth, instructions: Sequence[str] | str) -> np.ndarray:
        """(N, 2) probabilities [success here, target visible] for N views and their instructions
        (one instruction is broadcast)."""
        pv, dv = self.pixel_values(rgb), self.depth_values(depth)
        texts = [instructions] * len(pv) if isinstance(instructions, str) else list(instructions)
        if len(texts) != len(pv):
            raise ValueError(f"{len(pv)} views but {len(texts)} instructions")
        was = self.training
        self.eval()
        try:
            logits = self(pv, dv, self.clip.sentence_embeddings(texts))
        finally:
            self.train(was)
        return torch.sigmoid(logits).numpy().astype(np.float64)

    def check(self, rgb, depth, instruction: str) -> dict:
        """One view: ``{"p_success", "p_visible", "stop"}`` (stop: p_success >= ``threshold``)."""
        p = self.probabilities(np.asarray(rgb)[None], np.asarray(depth)[None], instruction)[0]
        return {"p_success": float(p[0]), "p_visible": float(p[1]), "stop": bool(p[0] >= self.threshold)}

    # -- persistence ---------------------------------------------------------------------------
    def config(self) -> dict:
        return {"kind": "goal_check", "hidden": self.hidden, "depth_dim": self.depth_dim,
                "max_depth_m": self.max_depth_m, "threshold": self.threshold, "depth_size": DEPTH_SIZE,
                "visible_fraction": VISIBLE_FRACTION, "info": self.info}

    def save_pretrained(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.clip.save_pretrained(path / CLIP_SUBDIR)
        state = {f"depth.{k}": v for k, v in self.depth.state_dict().items()}
        state.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path / HEAD_FILE))
        (path / GOAL_CHECK_FILE).write_text(json.dumps(self.config(), indent=1) + "\n")


def build_goal_check(init_clip: str | os.PathLike | None = None, hidden: int = 256, seed: int = 0,
                     max_depth_m: float = 5.0) -> GoalCheck:
    """A fresh GoalCheck on a MiniLM-text CLIP (None: the shipped ``clip-minilm``)."""
    from world_model.ssg.minilm_clip import load_minilm_clip
    from world_model.ssg.spatial_clip import default_clip_dir

    src = Path(init_clip) if init_clip is not None else default_clip_dir().parent / "clip-minilm"
    clip = load_minilm_clip(src)
    torch.manual_seed(seed)
    return GoalCheck(clip, hidden=hidden, max_depth_m=max_depth_m, info={"init_clip": str(src)})


def load_goal_check(path: str | os.PathLike | None = None) -> GoalCheck:
    """Read a directory written by ``GoalCheck.save_pretrained`` (None: the shipped weights)."""
    from safetensors.torch import load_file

    from world_model.ssg.minilm_clip import load_minilm_clip

    path = Path(path) if path is not None else default_goal_check_dir()
    cfg_file = path / GOAL_CHECK_FILE
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: not a goal-check directory (no {GOAL_CHECK_FILE}); train one with "
                                "`python -m planners.train_goal_check --out DIR` or pass the shipped "
                                f"{default_goal_check_dir()}")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("kind") != "goal_check":
        raise ValueError(f"{cfg_file}: kind {cfg.get('kind')!r}, expected 'goal_check'")
    if int(cfg.get("depth_size", DEPTH_SIZE)) != DEPTH_SIZE:
        raise ValueError(f"{cfg_file}: depth_size {cfg['depth_size']} but this code reads {DEPTH_SIZE}")
    clip = load_minilm_clip(path / CLIP_SUBDIR)
    model = GoalCheck(clip, hidden=int(cfg["hidden"]), depth_dim=int(cfg["depth_dim"]),
                      max_depth_m=float(cfg["max_depth_m"]), threshold=float(cfg.get("threshold", 0.5)),
                      info=cfg.get("info"))
    state = load_file(str(path / HEAD_FILE))
    for name, mod in (("depth", model.depth), ("head", model.head)):
        part = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        missing, unexpected = mod.load_state_dict(part, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{path / HEAD_FILE}: {name} weights do not fit (missing {missing}, "
                               f"unexpected {unexpected})")
    return model.eval()


__all__ = ["VISIBLE_FRACTION", "GoalCheck", "build_goal_check", "default_goal_check_dir", "load_goal_check"]
