"""SSG CLIP data (rendered views + generated captions) and the CLIP training entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from envs.scene import ObjectInstance
from world_model.ssg.clip import SmallClipSpec, build_word_tokenizer, grammar_vocabulary, load_clip
from world_model.ssg.clip_data import CaptionSpec, load_shard, relations_between, render_pairs, save_shard
from world_model.ssg.train_clip import ClipTrainConfig, main


def test_relations_use_the_grammar_predicates():
    bed = ObjectInstance(1, "bed", "red", "bedroom", center=[0, 0, 0.5], size=[2.0, 1.5, 1.0], yaw=0.0)
    # bed's own left is +y (front +x rotated +90 deg)
    chair = ObjectInstance(2, "chair", "blue", "bedroom", center=[0, 1.5, 0.45], size=[0.5, 0.5, 0.9])
    far = ObjectInstance(3, "lamp", "white", "bedroom", center=[6, 6, 0.8], size=[0.4, 0.4, 1.6])
    other_chair = ObjectInstance(4, "chair", "red", "bedroom", center=[0, -1.5, 0.45], size=[0.5, 0.5, 0.9])
    rels = {(r, x.id) for r, x in relations_between(chair, [bed, far, other_chair])}
    assert ("left_of", 1) in rels and ("next_to", 1) in rels
    assert not any(x == 3 for _, x in rels) and not any(x == 4 for _, x in rels)  # too far / same category
    spec = CaptionSpec(2, "chair", "blue", "bedroom", "left_of", __import__("envs.instructions").instructions.ObjectRef("bed"))
    assert spec.caption_text() == "a blue chair left of the bed in the bedroom"
    assert "blue chair" in spec.instruction_text(0) and "left" in spec.instruction_text(0)


def test_render_pairs_on_a_procedural_scene():
    from envs.scenes import load_scene, procgen_scene_id

    scene = load_scene(procgen_scene_id("val", 100_001))
    data = render_pairs(scene, 12, np.random.default_rng(0), image_size=32)
    n = len(data["images"])
    assert n >= 6 and data["images"].shape == (n, 32, 32, 3) and data["images"].dtype == np.uint8
    assert data["images"].std() > 10  # real renders, not blank frames
    tok = build_word_tokenizer(grammar_vocabulary())
    for cap, iid in zip(data["captions"], data["instance_ids"]):
        inst = scene.instance(int(iid))
        assert inst.category.replace("_", " ") in cap.lower()
        assert tok.unk_token_id not in tok(cap)["input_ids"], cap


def _fake_shard(n, rng, size=16):
    """Coloured full-frame views with colour captions: enough signal for a few training steps."""
    colors = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 40)}
    names = list(colors)
    c = rng.integers(3, size=n)
    imgs = np.stack([np.full((size, size, 3), colors[names[k]], np.uint8) for k in c])
    imgs = np.clip(imgs.astype(int) + rng.integers(-20, 20, imgs.shape), 0, 255).astype(np.uint8)
    return {"images": imgs, "captions": np.array([f"a {names[k]} chair" for k in c]),
            "scene_ids": np.array(["x"] * n), "instance_ids": np.zeros(n, np.int32)}


def test_train_clip_main_checkpoints_and_resumes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    cfg = ClipTrainConfig(out=str(tmp_path / "run"), train_scenes=1, val_scenes=1, views_per_scene=1,
                          image_size=16, steps=4, batch_size=8, lr=1e-3, warmup=1, eval_every=2, max_shift=1,
                          spec=SmallClipSpec(image_size=16, patch_size=8, vision_layers=1, vision_width=16,
                                             vision_heads=2, text_layers=1, text_width=16, text_heads=2,
                                             projection_dim=16))
    data = tmp_path / "run" / "data"
    save_shard(data / "train_1x1_16.npz", _fake_shard(40, rng))  # the cache main() looks for
    save_shard(data / "val_1x1_16.npz", _fake_shard(12, rng))
    metrics = main(cfg)
    assert {"i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5"} <= set(metrics)
    assert metrics["num_captions"] == 3 and metrics["i2t_r5"] == 1.0  # only 3 captions: all in every top-5
    cfg.steps = 6
    main(cfg)
    assert "resumed from" in capsys.readouterr().out
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6]
    clip = load_clip(tmp_path / "run" / "clip-small")
    assert clip.encode_images(load_shard(data / "val_1x1_16.npz")["images"][:2]).shape == (2, 16)
    with pytest.raises(ValueError, match="unknown CLIP training options"):
        ClipTrainConfig.from_dict({"stepz": 3})


def test_flip_relation_reverses_every_directional_phrase():
    from world_model.ssg.clip_data import flip_relation

    assert flip_relation("a blue chair left of the bed in the bedroom") == "a blue chair right of the bed in the bedroom"
    assert flip_relation("go to the lamp to the right of the sofa") == "go to the lamp to the left of the sofa"
    assert flip_relation("walk to the plant on the left side of the TV") == "walk to the plant on the right side of the TV"
    assert flip_relation("a red tv in front of the chair") == "a red tv behind the chair"
    assert flip_relation("find the cabinet behind the table") == "find the cabinet in front of the table"
    assert flip_relation("go to the bed, facing the front of the desk") == "go to the bed, at the back of the desk"
    assert flip_relation("a blue chair next to the bed") is None and flip_relation("a red chair") is None


def _side_shard(n, rng, size=16):
    """A red block left or right of a blue block; the caption says which."""
    side = rng.integers(2, size=n)
    imgs = np.full((n, size, size, 3), 128, np.uint8)
    h = size // 2
    for k, s_ in enumerate(side):
        red, blue = (slice(0, h), slice(h, size)) if s_ == 0 else (slice(h, size), slice(0, h))
        imgs[k, 4:12, red] = (220, 30, 30)
        imgs[k, 4:12, blue] = (30, 60, 220)
    caps = np.array([f"a red chair {'left' if s_ == 0 else 'right'} of the blue bed" for s_ in side])
    return {"images": imgs, "captions": caps, "scene_ids": np.array(["x"] * n), "instance_ids": np.zeros(n, np.int32)}


def test_hard_negatives_train_and_relation_accuracy_is_reported(tmp_path):
    rng = np.random.default_rng(0)
    cfg = ClipTrainConfig(out=str(tmp_path / "run"), train_scenes=1, val_scenes=1, views_per_scene=1,
                          image_size=16, steps=40, batch_size=16, lr=2e-3, warmup=2, eval_every=40, max_shift=0,
                          hard_negatives=True, lr_schedule="constant_with_warmup",  # 40 steps: no decay
                          spec=SmallClipSpec(image_size=16, patch_size=8, vision_layers=1, vision_width=16,
                                             vision_heads=2, text_layers=1, text_width=16, text_heads=2,
                                             projection_dim=16))
    data = tmp_path / "run" / "data"
    save_shard(data / "train_1x1_16.npz", _side_shard(64, rng))
    save_shard(data / "val_1x1_16.npz", _side_shard(32, rng))
    metrics = main(cfg)
    assert metrics["relation_n"] == 32
    # the captions differ only in "left"/"right", so reading the layout is the only way to beat 0.5
    assert metrics["relation_acc"] >= 0.9, metrics
