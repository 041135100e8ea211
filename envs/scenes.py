"""Scene ids, split seed ranges and a small scene cache.

A scene id is either ``procgen/<split>/<seed>`` (a procedural apartment; the
seed must lie in its split's range, so train, val and test never share a
scene) or a path to a user mesh (.glb/.gltf/.obj/.ply, with an optional
sidecar JSON, see ``envs.mesh_io``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from envs.mesh_io import MESH_SUFFIXES, load_mesh_scene
from envs.procgen import generate_scene
from envs.scene import Scene

# Disjoint seed ranges: a seed identifies one apartment, so disjoint ranges mean disjoint scenes.
SPLITS: dict[str, range] = {
    "train": range(0, 100_000),
    "val": range(100_000, 101_000),
    "test": range(200_000, 201_000),
}

CACHE_SIZE = 8
_cache: OrderedDict[tuple, Scene] = OrderedDict()


def check_split_seed(split: str, seed: int) -> None:
    """Raise ValueError unless ``seed`` lies in ``split``'s range."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    r = SPLITS[split]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) not in r:
        raise ValueError(
            f"seed {seed!r} is outside the {split} split's range [{r.start}, {r.stop - 1}]"
        )


def procgen_scene_id(split: str, seed: int) -> str:
    """``procgen/<split>/<seed>`` after checking the seed belongs to the split."""
    check_split_seed(split, seed)
    return f"procgen/{split}/{int(seed)}"


def parse_procgen_id(scene_id: str) -> tuple[str, int]:
    """(split, seed) of a ``procgen/<split>/<seed>`` id, validated."""
    parts = scene_id.split("/")
    if len(parts) != 3 or parts[0] != "procgen":
        raise ValueError(f"not a procedural scene id: {scene_id!r} (expected procgen/<split>/<seed>)")
    _, split, seed_s = parts
    try:
        seed = int(seed_s)
    except ValueError:
        raise ValueError(f"scene id {scene_id!r}: seed {seed_s!r} is not an integer") from None
    check_split_seed(split, seed)
    return split, seed


def load_scene(scene_id: str) -> Scene:
    """Load a scene by id; the last ``CACHE_SIZE`` scenes are kept in memory.

    The cached Scene is shared between callers: treat it as read-only.
    """
    if not isinstance(scene_id, (str, os.PathLike)):
        raise TypeError(f"scene_id must be a str or path, got {type(scene_id).__name__}")
    sid = os.fspath(scene_id)
    if sid.startswith("procgen/"):
        split, seed = parse_procgen_id(sid)
        key: tuple = ("procgen", split, seed)
        loader = lambda: generate_scene(seed, split=split)  # noqa: E731
    else:
        path = Path(sid)
        if path.suffix.lower() not in MESH_SUFFIXES:
            raise ValueError(
                f"unknown scene id {sid!r}: expected procgen/<split>/<seed> with split in "
                f"{', '.join(SPLITS)}, or a mesh file ({', '.join(MESH_SUFFIXES)})"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{sid}: mesh file not found")
        # the file's mtime is part of the key so an edited mesh is reloaded
        sidecar = path.with_suffix(".json")
        mt = (path.stat().st_mtime_ns, sidecar.stat().st_mtime_ns if sidecar.is_file() else 0)
        key = ("mesh", str(path.resolve()), mt)
        loader = lambda: load_mesh_scene(path)  # noqa: E731
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    scene = loader()
    _cache[key] = scene
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return scene
