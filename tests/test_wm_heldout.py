"""research.heldout: the same inputs for every model, paired gains, the no-bbox ablation's path-only comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

TINY = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
            text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=1024)
S = 16


def _save(path, num_bbox=1, seed=0):
    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    torch.manual_seed(seed)
    model = Video4SpatialModel(transformer_config=dict(TINY), text_len=8, frame_size=(S, S),
                               context_attention="prefix").eval()
    Video4SpatialPipeline(model, make_scheduler(), num_target_frames=2, num_bbox_frames=num_bbox).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from world_model.collect import collect

    root = tmp_path_factory.mktemp("heldout")
    collect("val", 4, root / "val", shard_size=4, progress=False, frame_size=32, tour_frames=12, agent_frames=2,
            episodes_per_scene=2, starts_per_episode=1, workers=1)
    return {"data": str(root / "val"), "a": _save(root / "a"), "a2": _save(root / "a2"), "b": _save(root / "b", seed=1),
            "nobbox": _save(root / "nobbox", num_bbox=0, seed=2)}


def test_same_weights_tie_exactly_and_other_weights_differ(setup):
    from research.heldout import compare_pipelines

    res = compare_pipelines([setup["a"], setup["a2"], setup["b"]], setup["data"], n=4, draws=2, batch_size=2)
    same, other = res["vs_first"]
    assert same["path"]["gain"] == 0.0 and same["bbox"]["gain"] == 0.0  # same inputs, same noise: identical errors
    assert other["path"]["gain"] != 0.0 and len(other["path"]["gain_ci95"]) == 2
    assert res["models"][0]["n"] == 4 and res["models"][0]["path"] > 0 and "bbox" in res["models"][0]


def test_no_bbox_arm_is_compared_on_path_frames_and_cli(setup, tmp_path, capsys):
    from research.heldout import main

    out = tmp_path / "h.json"
    main([f"pipelines=[{setup['a']},{setup['nobbox']}]", f"data_dir={setup['data']}", "n=4", "draws=1",
          "threads=1", f"out={out}"])
    res = json.loads(out.read_text())
    assert res["models"][1]["num_bbox"] == 0 and "bbox" not in res["models"][1]
    assert set(res["vs_first"][0]) == {"pipeline", "path"}
    assert "vs first, path" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="pipelines="):
        main([f"data_dir={setup['data']}"])
    with pytest.raises(SystemExit, match="unknown option"):
        main(["pipeline=x"])


def test_velocity_errors_depend_only_on_seed(setup):
    from research.heldout import heldout_items, velocity_errors
    from world_model.pipeline import Video4SpatialPipeline

    pipe = Video4SpatialPipeline.from_pretrained(setup["a"])
    items = heldout_items(setup["data"], 4, 8, 2, 1, S, seed=0)
    again = heldout_items(setup["data"], 4, 8, 2, 1, S, seed=0)
    assert all(np.array_equal(x["context_indices"], y["context_indices"]) for x, y in zip(items, again))
    e1 = velocity_errors(pipe, items, draws=2, batch_size=2, seed=0)
    assert e1.shape == (4, 2, 3) and np.array_equal(e1, velocity_errors(pipe, items, draws=2, batch_size=2, seed=0))
    assert not np.array_equal(e1, velocity_errors(pipe, items, draws=2, batch_size=2, seed=1))


def test_instruction_control_measures_what_the_text_moves(setup, capsys):
    from research.heldout import heldout_items, instruction_control, main, velocity_errors
    from world_model.pipeline import Video4SpatialPipeline

    pipe = Video4SpatialPipeline.from_pretrained(setup["a"])
    items = heldout_items(setup["data"], 4, 8, 2, 1, S, seed=0)
    texts = ["go to the red chair in the kitchen, to the left of the sofa", "find the lamp between the bed and the desk",
             "walk to the white bookshelf in the bedroom", "locate the blue TV that is behind the table"]
    items = [dict(it, instruction=t) for it, t in zip(items, texts)]
    own = velocity_errors(pipe, items, draws=2, batch_size=2, seed=0)
    res = instruction_control(pipe, items, own, draws=2, batch_size=2, seed=0)
    null = velocity_errors(pipe, items, draws=2, batch_size=2, seed=0,
                           states=lambda batch, text: pipe.model.null_text(len(batch)))
    # gain = e_null - e_own, on the same draws, per frame part
    assert res["null"]["all"]["total"]["gain"] == pytest.approx(float((null - own).mean()), rel=1e-6)
    assert res["null"]["all"]["total"]["gain"] != 0.0  # a random model's output depends on its text
    assert res["null"]["all"]["bbox"]["n"] == 4 and set(res["shuffled"]) == {"all", "relation"}
    assert res["same_instruction_after_swap"] == 0 and res["n_relation"] == 3
    # the relation arms cover only the samples they edit, on the same draws
    assert res["no_relation"]["relation"]["total"]["n"] == 3 and res["mirrored"]["directional"]["total"]["n"] == 2
    mirrored = [dict(it, instruction=t) for it, t in zip(items, [
        "go to the red chair in the kitchen, to the right of the sofa", texts[1], texts[2],
        "locate the blue TV that is in front of the table"])]
    e = velocity_errors(pipe, mirrored, draws=2, batch_size=2, seed=0)
    assert np.allclose(e[[1, 2]], own[[1, 2]])  # unedited samples: the same errors
    want = float((e[[0, 3]] - own[[0, 3]]).mean())
    assert res["mirrored"]["directional"]["total"]["gain"] == pytest.approx(want, rel=1e-6)

    # a model whose cross-attention output is zeroed cannot read the text: both controls are exactly 0
    for block in pipe.model.transformer.blocks:
        torch.nn.init.zeros_(block.attn2.to_out[0].weight)
        torch.nn.init.zeros_(block.attn2.to_out[0].bias)
    own = velocity_errors(pipe, items, draws=2, batch_size=2, seed=0)
    blind = instruction_control(pipe, items, own, draws=2, batch_size=2, seed=0)
    assert all(blind[arm]["all"][k]["gain"] == 0.0 for arm in ("shuffled", "null") for k in ("path", "bbox", "total"))
    with pytest.raises(ValueError, match="2 samples per batch"):
        instruction_control(pipe, items, own, batch_size=1)

    res = main([f"pipelines=[{setup['a']}]", f"data_dir={setup['data']}", "n=4", "draws=1", "batch_size=2",
                "threads=1", "text_control=true"])
    assert {"shuffled", "null"} <= set(res["models"][0]["instruction"])
    assert "own instruction vs null" in capsys.readouterr().out


def test_relation_edits():
    from research.heldout import mirror_relation, strip_relation

    assert strip_relation("go to the red chair in the kitchen, on the left side of the sofa") == \
        "go to the red chair in the kitchen"
    assert strip_relation("find the blue TV in the den that is facing the front of the bed") == "find the blue TV in the den"
    assert strip_relation("find the lamp between the bed and the desk") == "find the lamp"
    assert strip_relation("walk to the white bookshelf in the bedroom") is None
    assert mirror_relation("go to the chair on the left side of the sofa") == "go to the chair on the right side of the sofa"
    assert mirror_relation("go to the chair right of the red sofa") == "go to the chair left of the red sofa"
    assert mirror_relation("head to the TV at the back of the bed") == "head to the TV facing the front of the bed"
    assert mirror_relation("head to the TV behind the bed") == "head to the TV in front of the bed"
    assert mirror_relation("find the lamp next to the bed") is None and mirror_relation("find the lamp") is None
