"""research.ssg.localisation: cell labels, AUROC and scores by hand; the whole diagnostic on real collected data."""

from __future__ import annotations

import numpy as np
import pytest

from research.ssg.localisation import auroc, cell_labels, sample_scores


def test_cell_labels_split_masks_into_clip_cells():
    inst = np.zeros((2, 8, 8), np.int32)
    inst[0, 0:2, 0:2] = 5          # target in cell (0, 0) of frame 0
    inst[0, 4, 4] = 5              # ... one pixel in cell (1, 1)
    inst[1, 0:4, 4:8] = 7          # distractor fills cell (0, 1) of frame 1
    inst[1, 3, 7] = 5              # ... with one target pixel: a target cell, not a distractor cell
    inst[1, 6, 6] = 9              # another distractor in cell (1, 1)
    tgt, dis = cell_labels(inst, 2, target_id=5, distractor_ids=[7, 9])
    assert tgt.shape == dis.shape == (2, 2, 2)
    assert tgt[0].tolist() == [[True, False], [False, True]]
    assert tgt[1].tolist() == [[False, True], [False, False]]
    assert dis[1].tolist() == [[False, False], [False, True]] and not dis[0].any()
    tgt2, _ = cell_labels(inst, 2, 5, [7], min_cover=2)  # a one-pixel touch no longer counts
    assert not tgt2[0, 1, 1] and tgt2[0, 0, 0]
    with pytest.raises(ValueError, match="do not split"):
        cell_labels(inst, 3, 5, [])


def test_auroc_and_sample_scores():
    assert auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0 and auroc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert auroc([1, 1], [1, 0]) == 0.5 and np.isnan(auroc([1, 2], [0, 0]))
    rel = np.arange(8, dtype=float).reshape(2, 2, 2)  # cell 7 most relevant, then 6, ...
    tgt = np.zeros((2, 2, 2), bool)
    tgt.flat[7] = True
    dis = np.zeros((2, 2, 2), bool)
    dis.flat[0] = True
    s = sample_scores(rel, tgt, dis, top_m=2)
    assert s["top_m_precision"] == 0.5 and s["chance"] == 1 / 8 and s["lift"] == 4.0
    assert s["rank1_hit"] == 1.0 and s["auroc"] == 1.0 and s["target_over_distractor"] == 1.0
    assert s["mean_margin"] > 0
    s = sample_scores(rel[::-1].copy(), tgt, dis, top_m=2)  # relevance pointing at the distractor's side
    assert s["rank1_hit"] == 0.0 and s["target_over_distractor"] == 0.0 and s["mean_margin"] < 0
    assert sample_scores(rel, np.zeros_like(tgt), dis, 2) is None  # target not in view: no score


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    from world_model.collect import collect

    data = tmp_path_factory.mktemp("loc") / "val"
    collect("val", 4, data, shard_size=4, progress=False, frame_size=32, tour_frames=12, agent_frames=2,
            episodes_per_scene=2, starts_per_episode=1, workers=1)
    return data


@pytest.fixture(scope="module")
def prompter():
    from world_model.ssg.checkpoint import build_prompter
    from world_model.ssg.clip import SmallClipSpec, build_small_clip, build_word_tokenizer, grammar_vocabulary

    spec = SmallClipSpec(image_size=32, patch_size=8, vision_layers=2, vision_width=32, vision_heads=2,
                         text_layers=1, text_width=32, text_heads=2, projection_dim=32, max_text_len=24)
    clip = build_small_clip(build_word_tokenizer(grammar_vocabulary()), spec, seed=0)
    return build_prompter(clip, 32, dict(num_tokens=4, layers=[-2, -1], hidden_dim=32, num_heads=2))


def test_localisation_end_to_end_on_collected_data(collected, prompter):
    from research.ssg.localisation import localisation

    res = localisation(prompter, str(collected), n=4, num_context=4, top_m=3, frame_size=16)
    assert res["n"] == 4 and res["grid"] == 4 and res["mask_size"] == 32
    for arm in ("instruction", "control"):
        r = res[arm]["all"]
        assert 1 <= r["n_visible"] <= 4  # the current view of a sample usually shows its target
        assert 0 < r["chance"] <= 1 and 0 <= r["top_m_precision"] <= 1 and 0 <= r["auroc"] <= 1


def test_oracle_relevance_steers_the_topk_prompt_to_the_target(collected, prompter):
    import torch

    from world_model.data import ContextVideoDataset
    from world_model.ssg.oracle import OracleRelevance

    ds = ContextVideoDataset(collected, 4, 2, 0, 16, seed=0)
    items = [ds[i] for i in range(len(ds))]
    oracle = OracleRelevance(grid=4, mask_size=32)
    rel = oracle([it["scene_id"] for it in items], [it["target_id"] for it in items],
                 np.stack([it["context_poses"] for it in items]))
    assert rel.shape == (len(items), 4, 4, 4) and float(rel.min()) >= 0 and float(rel.max()) <= 1
    seen = [i for i in range(len(items)) if rel[i].max() > 0]
    assert seen  # some context shows its target
    frames = np.stack([it["context"] for it in items])
    idx = torch.as_tensor(np.stack([it["context_indices"] for it in items]))
    out = prompter.prompt(frames, [it["instruction"] for it in items], idx, relevance=rel)
    assert torch.equal(out.relevance, rel)  # steps 2-4 read the given relevance, not CLIP's
    plain = prompter.prompt(frames, [it["instruction"] for it in items], idx)
    assert not torch.allclose(out.tokens, plain.tokens)
    with pytest.raises(ValueError, match="relevance must be"):
        prompter.prompt(frames, [it["instruction"] for it in items], idx, relevance=rel[:, :2])
    # adapter training renders masks only for the rows that keep their condition
    from world_model.ssg.train_adapter import oracle_rows

    batch = {"context": frames, "scene_id": [it["scene_id"] for it in items],
             "target_id": torch.tensor([it["target_id"] for it in items]),
             "context_poses": torch.as_tensor(np.stack([it["context_poses"] for it in items]))}
    keep = torch.tensor([i % 2 == 0 for i in range(len(items))])
    part = oracle_rows(oracle, batch, keep)
    assert torch.equal(part[keep], rel[keep]) and not part[~keep].any()
