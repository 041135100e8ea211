"""SSG-DiT for the world model: a CLIP spatial-signal prompt and a dual-branch cross-attention adapter.

* ``spatial_clip``: ``SpatialClip``, the interface every CLIP here has (transformers ``CLIPModel`` + preprocessing).
* ``clip``: ``load_clip`` (any CLIP directory) / ``build_small_clip``, word-level tokenizer; ``minilm_clip``: the
  MiniLM-text CLIP.
* ``clip_data``, ``train_clip``: rendered views + generated captions; training and recall@k evaluation.
* ``prompting``: ``SpatialSignalPrompter`` (context frames + instruction -> (B, M, text_dim) tokens).
* ``adapter``: ``SSGAttnProcessor``, ``install_ssg_adapter``, ``freeze_backbone``, ``append_ssg_tokens``.
* ``checkpoint``: the SSG checkpoint directory (``Video4SpatialPipeline.load_ssg`` / ``save_ssg``).
* ``train_adapter``: adapter + prompter training on a frozen backbone (``spatialnav train-ssg``).
* ``oracle``: ``OracleRelevance``, the target's true coverage of the CLIP cells (``oracle_relevance=true``).

Its diagnostics (held-out loss, prompt localisation, eval-wm controls) are in ``research.ssg``, beside the library.

See docs/ssg.md for the exact construction.
"""

from world_model.ssg.adapter import (SSGAttnProcessor, append_ssg_tokens, freeze_backbone, install_ssg_adapter,
                                     load_ssg_state_dict, remove_ssg_adapter, set_ssg_enabled, set_ssg_scale,
                                     ssg_detached, ssg_disabled, ssg_processors, ssg_state_dict)
from world_model.ssg.checkpoint import default_ssg_dir, load_ssg_checkpoint, save_ssg_checkpoint
from world_model.ssg.clip import SmallClipSpec, build_small_clip, clip_loss, load_clip, recall_at_k
from world_model.ssg.prompting import PromptProjector, SpatialSignalPrompter, SSGPrompt, context_positions
from world_model.ssg.spatial_clip import SpatialClip

__all__ = [
    "SSGAttnProcessor", "append_ssg_tokens", "freeze_backbone", "install_ssg_adapter", "load_ssg_state_dict",
    "remove_ssg_adapter", "set_ssg_enabled", "set_ssg_scale", "ssg_detached", "ssg_disabled", "ssg_processors",
    "ssg_state_dict", "default_ssg_dir", "load_ssg_checkpoint", "save_ssg_checkpoint",
    "SmallClipSpec", "SpatialClip", "build_small_clip", "clip_loss", "load_clip", "recall_at_k",
    "PromptProjector", "SpatialSignalPrompter", "SSGPrompt", "context_positions",
]
