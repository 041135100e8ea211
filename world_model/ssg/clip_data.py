"""Image-caption pairs for the in-project CLIP: rendered views + captions from scene annotations.

For each procedural scene of a split: aim the camera from a navigable point
(1-4 m away, line of sight clear) at a furniture instance, render RGB and
instance ids, and caption one *visible* instance (mask area >= ``min_area``
of the image; the aimed-at one when it qualifies) with its colour, category,
room and, where one holds, a relation to another visible instance of another
category. Relations are the instruction grammar's own predicates
(``envs.instructions``: ``directional_holds`` in the reference's intrinsic
frame, ``next_to`` as a footprint gap <= 1.2 m), so a caption never states a
false relation. Half the captions use the instruction grammar's wording
(``InstructionSpec.to_text``: "go to the blue chair left of the bed"), so the
text tower also sees the sentences SSG prompting feeds it at run time; the
rest read "a blue chair left of the bed in the bedroom".

Shards are ``.npz`` files: ``images`` (N, S, S, 3) uint8, ``captions`` (N,)
str, ``scene_ids``, ``instance_ids``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from envs.instructions import DIRECTIONAL, InstructionSpec, ObjectRef, directional_holds, footprint_gap
from envs.navigation import NavGrid
from envs.renderer import Renderer
from envs.scene import ObjectInstance, Scene
from envs.scenes import SPLITS, load_scene, procgen_scene_id

_REL_WORDS = {"left_of": "left of", "right_of": "right of", "in_front_of": "in front of",
              "behind": "behind", "next_to": "next to"}


@dataclass
class CaptionSpec:
    """What a caption says about one visible instance."""

    instance_id: int
    category: str
    color: str | None
    room: str | None
    relation: str | None = None
    reference: ObjectRef | None = None

    def caption_text(self) -> str:
        """ "a blue chair left of the red bed in the bedroom" """
        s = "a " + (f"{self.color} " if self.color else "") + self.category.replace("_", " ")
        if self.relation is not None and self.reference is not None:
            ref = (f"{self.reference.color} " if self.reference.color else "") + self.reference.category
            s += f" {_REL_WORDS[self.relation]} the {ref}"
        if self.room:
            s += f" in the {self.room.replace('_', ' ')}"
        return s

    def to_dict(self) -> dict:
        return {"instance_id": int(self.instance_id), "category": self.category, "color": self.color,
                "room": self.room, "relation": self.relation,
                "reference": None if self.reference is None else self.reference.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "CaptionSpec":
        ref = d.get("reference")
        return cls(int(d.get("instance_id", -1)), str(d["category"]), d.get("color"), d.get("room"),
                   d.get("relation"), None if ref is None else ObjectRef.from_dict(ref))

    def instruction_spec(self, template: int = 0) -> InstructionSpec:
        """The same description as an ``InstructionSpec`` (what the paraphraser and the grammar render)."""
        refs = (self.reference,) if self.relation is not None and self.reference is not None else ()
        return InstructionSpec(self.category, self.color, self.room, self.relation if refs else None, refs,
                               template=template)

    def instruction_text(self, template: int) -> str:
        """The instruction grammar's sentence for the same description."""
        refs = (self.reference,) if self.relation is not None and self.reference is not None else ()
        spec = InstructionSpec(self.category, self.color, self.room, self.relation if refs else None, refs,
                               template=template)
        return spec.to_text()


def relations_between(target: ObjectInstance, others: list[ObjectInstance]) -> list[tuple[str, ObjectInstance]]:
    """Every (relation, reference) among ``others`` that holds for ``target`` (grammar predicates, strict)."""
    out = []
    for x in others:
        if x.id == target.id or x.category == target.category:
            continue
        for rel in DIRECTIONAL:
            if directional_holds(rel, target, x):
                out.append((rel, x))
        if (not target.room or not x.room or target.room == x.room) and footprint_gap(target, x) <= 1.2:
            out.append(("next_to", x))
    return out


def describe_view(scene: Scene, areas: dict[int, int], num_pixels: int, rng: np.random.Generator,
                  prefer: int | None = None, min_area: float = 0.02, p_relation: float = 0.7,
                  p_room: float = 0.5, p_color: float = 0.9) -> CaptionSpec | None:
    """Caption one visible instance of a view given its {instance id: pixel count}; None if none is big enough."""
    big = [i for i, c in areas.items() if c >= min_area * num_pixels]
    if not big:
        return None
    tid = prefer if prefer in big else big[int(rng.integers(len(big)))]
    target = scene.instance(tid)
    visible = [scene.instance(i) for i in big if i != tid]
    color = (target.color or None) if rng.random() < p_color else None
    room = (target.room or None) if rng.random() < p_room else None
    spec = CaptionSpec(tid, target.category, color, room)
    rels = relations_between(target, visible)
    if rels and rng.random() < p_relation:
        rel, ref = rels[int(rng.integers(len(rels)))]
        spec.relation = rel
        spec.reference = ObjectRef(ref.category, (ref.color or None) if rng.random() < 0.5 else None)
    return spec


def sample_views(scene: Scene, n: int, rng: np.random.Generator, render_size: int = 128,
                 min_dist: float = 1.0, max_dist: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` poses aimed at random instances: returns poses (n, 3), pitch (n,), aimed instance ids (n,)."""
    if not scene.instances:
        raise ValueError(f"scene {scene.scene_id} has no object instances to caption")
    grid = NavGrid.from_scene(scene)
    renderer = Renderer(scene, width=render_size, height=render_size, threads=1)
    cand = grid.sample_navigable(rng, max(8 * n, 64))
    poses, aims = [], []
    for _ in range(20):  # rejection rounds
        if len(poses) >= n:
            break
        ids = rng.integers(len(scene.instances), size=len(cand))
        centers = np.stack([scene.instances[i].center for i in ids])
        d = np.linalg.norm(cand - centers[:, :2], axis=1)
        ok = (d >= min_dist) & (d <= max_dist)
        if ok.any():
            eye = np.c_[cand[ok], np.full(ok.sum(), renderer.camera_z)]
            tgt = np.array([scene.instances[i].id for i in ids[ok]])
            clear = renderer.line_of_sight(eye, centers[ok], target_instance=tgt)
            for p, c, t in zip(cand[ok][clear], centers[ok][clear], tgt[clear]):
                yaw = math.atan2(c[1] - p[1], c[0] - p[0]) + rng.normal(0, math.radians(12))
                poses.append([p[0], p[1], yaw])
                aims.append(int(t))
        cand = grid.sample_navigable(rng, max(8 * n, 64))
    if not poses:
        raise RuntimeError(f"scene {scene.scene_id}: no navigable point sees any instance")
    idx = rng.permutation(len(poses))[:n]
    poses, aims = np.asarray(poses)[idx], np.asarray(aims)[idx]
    pitch = rng.uniform(math.radians(-20), math.radians(5), size=len(poses))
    return poses, pitch, aims


def render_pairs(scene: Scene, n: int, rng: np.random.Generator, image_size: int = 64,
                 render_scale: int = 2, p_instruction: float = 0.5, min_area: float = 0.02) -> dict[str, np.ndarray]:
    """Up to ``n`` captioned views of one scene (views with no big enough instance are dropped).

    Renders at ``render_scale * image_size`` and box-filters down (anti-aliasing).
    """
    size = image_size * render_scale
    poses, pitch, aims = sample_views(scene, n, rng, render_size=size)
    renderer = Renderer(scene, width=size, height=size, threads=1)
    out = renderer.render(poses, pitch, outputs=("rgb", "instance"))
    images, captions, inst, specs = [], [], [], []
    for rgb, ids, aim in zip(out["rgb"], out["instance"], aims):
        u, c = np.unique(ids, return_counts=True)
        areas = {int(i): int(k) for i, k in zip(u, c) if i > 0}
        spec = describe_view(scene, areas, ids.size, rng, prefer=int(aim), min_area=min_area)
        if spec is None:
            continue
        small = rgb.reshape(image_size, render_scale, image_size, render_scale, 3).mean((1, 3))
        images.append(np.round(small).astype(np.uint8))
        text = spec.instruction_text(int(rng.integers(1 << 16))) if rng.random() < p_instruction \
            else spec.caption_text()
        captions.append(text)
        inst.append(spec.instance_id)
        specs.append(json.dumps(spec.to_dict(), sort_keys=True))
    return {"images": np.asarray(images, np.uint8).reshape(-1, image_size, image_size, 3),
            "captions": np.asarray(captions, dtype=object).astype(str),
            "scene_ids": np.asarray([scene.scene_id] * len(images)).astype(str),
            "instance_ids": np.asarray(inst, np.int32),
            "specs": np.asarray(specs, dtype=object).astype(str).reshape(-1)}


def build_split(split: str, num_scenes: int, views_per_scene: int, seed: int = 0, image_size: int = 64,
                offset: int = 0) -> dict[str, np.ndarray]:
    """Pairs from scenes ``procgen/<split>/<start + offset + i>``, i < num_scenes."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    start = SPLITS[split].start + offset
    parts = []
    for i in range(num_scenes):
        scene = load_scene(procgen_scene_id(split, start + i))
        rng = np.random.default_rng([seed, start + i])
        parts.append(render_pairs(scene, views_per_scene, rng, image_size=image_size))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def build_split_chunked(split: str, num_scenes: int, views_per_scene: int, out_dir: str | Path, seed: int = 0,
                        image_size: int = 64, chunk: int = 50, log=print) -> dict[str, np.ndarray]:
    """``build_split`` in chunks of ``chunk`` scenes, each cached as its own shard under ``out_dir``
    (``<split>_s<offset>-<end>_v<views>_<size>_seed<seed>.npz``), so a killed render resumes at the
    first missing chunk. The pairs of scene i are those ``build_split`` makes (same per-scene RNG)."""
    out_dir = Path(out_dir)
    parts = []
    for off in range(0, int(num_scenes), int(chunk)):
        n = min(int(chunk), int(num_scenes) - off)
        path = out_dir / f"{split}_s{off}-{off + n}_v{views_per_scene}_{image_size}_seed{seed}.npz"
        if not path.is_file():
            t0 = time.time()
            save_shard(path, build_split(split, n, views_per_scene, seed=seed, image_size=image_size, offset=off))
            log(f"rendered {split} scenes {off}..{off + n} -> {path} in {time.time() - t0:.0f}s")
        parts.append(load_shard(path))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def save_shard(path: str | Path, data: dict[str, np.ndarray]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:  # atomic: a kill mid-write leaves no truncated shard behind
        np.savez_compressed(f, **data)
    tmp.replace(path)


def load_shard(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP data shard {path} not found; build it with world_model.ssg.clip_data.build_split")
    with np.load(path, allow_pickle=False) as z:
        missing = {"images", "captions"} - set(z.files)
        if missing:
            raise ValueError(f"{path} lacks arrays {sorted(missing)}: not a CLIP data shard")
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------- relation hard negatives
# Each directional phrase of the caption and instruction grammars (``CaptionSpec``,
# ``envs.instructions``) and its opposite. "next to" and "between" have no opposite.
_FLIPS = (
    ("to the left of", "to the right of"),
    ("on the left side of", "on the right side of"),
    ("left of", "right of"),
    ("in front of", "behind"),
    ("facing the front of", "at the back of"),
)
_FLIP_PAIRS = {a: b for a, b in _FLIPS} | {b: a for a, b in _FLIPS}
# longest phrase first, so "to the left of" is not read as "left of"
_FLIP_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(_FLIP_PAIRS, key=len, reverse=True)) + r")\b")


def flip_relation(caption: str) -> str | None:
    """The caption with its directional relation reversed ("left of" <-> "right of", "in front of"
    <-> "behind", ...), or None when it states none. With the grammar's margins a stated relation
    holds clearly, so the flipped caption is false for that view: a hard negative that differs
    from the true caption only in the relation (NegCLIP-style, Yuksekgonul et al. 2023)."""
    out, n = _FLIP_RE.subn(lambda m: _FLIP_PAIRS[m.group(1)], caption)
    return out if n else None
