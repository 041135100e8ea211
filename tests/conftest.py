"""Shared pytest fixtures: a few real val episodes from three procedural scenes.

Session-scoped (each xdist worker builds them once, ~3 s): tests that need an
episode file share it instead of regenerating scenes.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

# Tests share 2 cores with the rest of the team: keep BLAS/Embree from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def nav_episodes():
    """Three val episodes, one per scene (three different procedural apartments)."""
    from envs.episodes import generate_episodes

    return generate_episodes("val", 3, seed=0, episodes_per_scene=1)


@pytest.fixture(scope="session")
def nav_episode_file(nav_episodes, tmp_path_factory):
    """The same episodes saved as a habitat-layout json.gz."""
    from envs.episodes import save_episodes

    return save_episodes(tmp_path_factory.mktemp("episodes") / "val3.json.gz", nav_episodes)


# ----------------------------------------------------------------------------- world-model data
def synthetic_scene(n_tour=20, n_samples=2, size=16, seed=0, instructions=None):
    """A fake collected scene (``world_model.shards.write_shard`` input) whose frames encode their own index
    in the red channel; ``instructions``: one per sample (default "go to thing k")."""
    rng = np.random.default_rng(seed)

    def frames(vals):
        f = np.zeros((len(vals), size, size, 3), np.uint8)
        f[..., 0] = np.asarray(vals, np.uint8)[:, None, None]
        f[..., 1] = 50
        return f

    tour_idx = np.sort(rng.choice(200, n_tour, replace=False))
    samples = []
    for k in range(n_samples):
        path = frames(np.arange(5) + 100 + 10 * k)
        samples.append({"episode_id": f"e{k}", "instruction": instructions[k] if instructions else f"go to thing {k}", "target_id": 3 + k,
                        "target_center": np.zeros(3), "agent_rgb": frames([201 + k, 202 + k, 203 + k]),
                        "agent_poses": np.zeros((3, 3)), "path_rgb": path, "path_poses": np.zeros((5, 3)),
                        "box": np.array([4, 4, 11, 11], np.int32), "bbox_rgb": path[-1]})
    return {"scene_id": f"procgen/train/{seed}", "tour_rgb": frames(tour_idx), "tour_poses": np.zeros((n_tour, 3)),
            "tour_indices": tour_idx, "tour_num_raw": 200, "samples": samples}


@pytest.fixture
def wm_data_dir(tmp_path):
    """A collected-data directory of two synthetic scenes (4 samples at 16 px, one relation instruction)."""
    from world_model.collect import CollectConfig
    from world_model.shards import write_index, write_shard

    scenes = [synthetic_scene(seed=0, instructions=["go to the red chair left of the bed", "go to thing 1"]),
              synthetic_scene(seed=1)]
    n = write_shard(tmp_path / "shard_00000.npz", scenes)
    write_index(tmp_path, "val", 0, CollectConfig(frame_size=16),
                [{"file": "shard_00000.npz", "num_samples": n, "num_scenes": 2}], done=True)
    return tmp_path


# A tiny, randomly initialised but real world-model pipeline: imagine() runs the transformer.
TINY_WM = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
               text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=256)


@pytest.fixture(scope="module")
def tiny_pipeline():
    import torch

    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler
    from world_model.text_encoder import load_text_encoder

    torch.manual_seed(0)
    model = Video4SpatialModel(transformer_config=dict(TINY_WM), text_len=8, frame_size=(16, 16)).eval()
    return Video4SpatialPipeline(model, make_scheduler(), text_encoder=load_text_encoder("minilm", max_length=8),
                                 num_target_frames=2, num_bbox_frames=1)
