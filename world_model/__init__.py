"""Video4Spatial world model: data, model, training, joint-CFG sampling; ``ssg/`` for SSG prompting.

Imports are lazy so that ``import world_model`` stays cheap (torch/diffusers load on first use).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Video4SpatialModel": "world_model.model",
    "IndexedWanRotaryPosEmbed": "world_model.model",
    "Video4SpatialPipeline": "world_model.pipeline",
    "Rollout": "world_model.rollout",
    "ContextVideoDataset": "world_model.data",
    "TrainConfig": "world_model.train",
    "load_text_encoder": "world_model.text_encoder",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'world_model' has no attribute {name!r}")
