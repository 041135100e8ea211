"""The MiniLM-text CLIP (world_model/ssg/minilm_clip.py) and its training entry point."""

from __future__ import annotations

import json

import numpy as np
import torch

from world_model.ssg.clip import default_clip_dir, load_clip
from world_model.ssg.minilm_clip import MiniLMClip, build_minilm_clip, is_minilm_clip_dir


def test_warm_start_copies_the_small_clip_vision_tower():
    small = load_clip(None)
    clip = build_minilm_clip()  # the shipped clip-small's ViT + a fresh text head
    img = np.random.default_rng(0).integers(0, 255, (3, 48, 48, 3), dtype=np.uint8)
    with torch.no_grad():
        assert torch.allclose(clip.encode_images(img), small.encode_images(img), atol=1e-5)
    assert clip.embed_dim == small.embed_dim and clip.grid_size == small.grid_size
    assert clip.vision_config.num_hidden_layers == small.vision_config.num_hidden_layers


def test_sentence_embeddings_are_minilm_and_know_synonyms():
    clip = build_minilm_clip(init_from="")
    e = clip.sentence_embeddings(["go to the sofa", "walk over to the couch", "go to the toilet", "go to the sofa"])
    assert e.shape == (4, 384) and torch.allclose(e.norm(dim=-1), torch.ones(4), atol=1e-4)
    assert torch.equal(e[0], e[3])
    # the pretrained encoder puts a synonym paraphrase nearer than another object in the same template
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])
    t = clip.encode_texts(["go to the sofa", "a red chair"])
    assert t.shape == (2, clip.embed_dim) and torch.allclose(t.norm(dim=-1), torch.ones(2), atol=1e-4)


def test_save_load_round_trip_without_copying_minilm(tmp_path):
    clip = build_minilm_clip(hidden=64)
    with torch.no_grad():
        clip.text_head.fc2.bias.add_(0.5)
        clip.logit_scale_param.fill_(3.0)
    clip.save_pretrained(tmp_path / "c")
    assert is_minilm_clip_dir(tmp_path / "c") and not is_minilm_clip_dir(default_clip_dir())
    size = sum(p.stat().st_size for p in (tmp_path / "c").iterdir())
    assert size < 10e6  # the ViT and the head only; MiniLM (90 MB) stays in its pip package
    back = load_clip(tmp_path / "c")
    assert isinstance(back, MiniLMClip)
    texts = ["please go to the grey couch", "find the lamp left of the bed"]
    img = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        assert torch.allclose(back.encode_texts(texts), clip.encode_texts(texts), atol=1e-6)
        assert torch.allclose(back.encode_images(img), clip.encode_images(img), atol=1e-6)
    assert abs(float(back.logit_scale().detach()) - float(np.exp(3.0))) < 1e-4


def test_frontier_agent_and_prompter_read_a_minilm_clip(tmp_path):
    from agent.frontier_clip import FrontierClipAgent

    build_minilm_clip().save_pretrained(tmp_path / "c")
    agent = FrontierClipAgent(clip=str(tmp_path / "c"), threads=1)
    from planners.mapping import ObstacleMap

    agent.value_map.reset("could you go to the blue couch?", ObstacleMap())
    rgb = np.random.default_rng(2).integers(0, 255, (2, 128, 128, 3), dtype=np.uint8)
    s, rel = agent.value_map.score_views(rgb)
    g = agent.value_map.clip.grid_size
    assert s.shape == (2,) and rel.shape == (2, g, g) and np.isfinite(rel).all()
    # relevance is each patch's share of the cosine (docs/ssg.md): it sums to about the score
    assert np.allclose(rel.reshape(2, -1).sum(1), s, atol=0.15 * np.abs(s).max() + 0.05)


def test_training_runs_resumes_and_reports_paraphrase_recall(tmp_path):
    from world_model.ssg.train_minilm_clip import main

    cfg = dict(out=str(tmp_path / "run"), train_scenes=2, views_per_scene=16, val_scenes=1, val_views=16,
               steps=2, batch_size=8, eval_every=2, hidden=32)
    first = main(cfg, log=lambda *a: None)
    assert first["step"] == 2 and 0 <= first["i2t_r1"] <= 1 and 0 <= first["para_i2t_r1"] <= 1
    assert first["para_num_captions"] >= 8  # paraphrased val captions, one per view
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 2
    cache = np.load(tmp_path / "run" / "text_cache.npz")
    assert cache["emb"].dtype == np.float16 and cache["emb"].shape[1] == 384
    msgs = []
    again = main({**cfg, "steps": 4}, log=msgs.append)
    assert again["step"] == 4 and any("resumed" in m and "step 2" in m for m in msgs)
    assert any("text cache:" in m for m in msgs) and not any(m.startswith("encoded") for m in msgs)
    assert isinstance(load_clip(tmp_path / "run" / "clip-minilm"), MiniLMClip)


def test_per_image_hits_match_the_recall_and_pair_up():
    from world_model.ssg.train_clip import evaluate_recall
    from world_model.ssg.train_minilm_clip import compare_recall, image_hits

    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (24, 64, 64, 3), dtype=np.uint8)
    captions = np.asarray([f"go to the {c} chair" for c in ("red", "blue", "green", "white", "black", "grey")] * 4)
    small = load_clip(None)
    hits = image_hits(small, images, captions)
    rec = evaluate_recall(small, images, captions)
    assert abs(hits["i2t_r1"].mean() - rec["i2t_r1"]) < 1e-6 and abs(hits["i2t_r5"].mean() - rec["i2t_r5"]) < 1e-6
    spec = json.dumps({"category": "chair", "color": "red", "room": None, "relation": None, "reference": None,
                       "instance_id": 1})
    res = compare_recall(small, small, {"images": images, "captions": captions, "specs": np.asarray([spec] * 24)},
                         n_boot=200)
    assert res["i2t_r1"]["diff"] == 0 and res["i2t_r1"]["ci95"] == [0.0, 0.0] and "para_i2t_r5" in res


def test_clips_by_name(monkeypatch):
    from pathlib import Path

    import pytest

    from world_model.ssg import clip as clip_mod

    assert clip_mod.resolve_clip("small") == default_clip_dir()
    monkeypatch.setitem(clip_mod.NAMED_CLIPS, "nothing", ("clip-nothing", Path("runs/no/such"), "train it so"))
    with pytest.raises(FileNotFoundError, match="train it so"):
        clip_mod.resolve_clip("nothing")


def test_shipped_minilm_clip_loads_and_stays_small():
    from world_model.ssg.clip import resolve_clip

    path = resolve_clip("minilm")
    assert path == default_clip_dir().parent / "clip-minilm"
    assert sum(p.stat().st_size for p in path.iterdir()) < 40e6  # MiniLM itself is not in the repo
    clip = load_clip(path)
    assert isinstance(clip, MiniLMClip) and clip.embed_dim == 128
    rec = json.loads((path / "TRAINING.json").read_text())["heldout"]
    small = json.loads((default_clip_dir() / "TRAINING.json").read_text())["heldout"]
    assert rec["images"] == small["images"] and rec["i2t_r1"] > small["i2t_r1"]
    with torch.no_grad():
        t = clip.encode_texts(["go to the sofa", "could you walk over to the couch, please?", "find the toilet"])
    assert float(t[0] @ t[1]) > float(t[0] @ t[2])  # a paraphrase lands nearer than another object


def test_text_match_of_the_free_wording_set():
    from world_model.ssg.train_minilm_clip import text_match

    res = text_match(load_clip(None))
    assert res["n"] >= 100
    for k in ("free", "paraphrase"):
        assert 0 <= res[k]["r1"] <= 1 and -1 <= res[k]["cos_others"] < res[k]["cos_own"] <= 1
