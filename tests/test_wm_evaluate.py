"""World-model evaluation (`eval-wm`), `imagine` and their metrics, on real procedural scenes and a tiny model."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch

from world_model.eval_config import EvalConfig
from world_model.eval_metrics import centre_in_box, grounding_metrics, spatial_distance
from world_model.eval_samples import SceneState, build_sample, select_episodes
from world_model.loading import resolve_pipeline_path
from world_model.metrics import bootstrap_ci, bootstrap_mean, psnr, ssim
from world_model.pipeline import resolve_precision

TINY = dict(patch_size=[1, 4, 4], num_attention_heads=2, attention_head_dim=12, in_channels=3, out_channels=3,
            text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=1024)
S = 16  # frame size of the tiny model


# ----------------------------------------------------------------------------- image metrics
def test_ssim_and_psnr_on_hand_made_images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, a) == pytest.approx(100.0)  # identical: capped
    b = np.zeros((32, 32, 3), np.uint8)
    # constant error 10: MSE 100 -> 10 log10(255^2 / 100) = 28.1308 dB
    assert psnr(b, b + 10) == pytest.approx(10 * math.log10(255 ** 2 / 100), abs=1e-9)
    noisy = np.clip(a.astype(int) + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    s_noisy, s_other = ssim(a, noisy), ssim(a, rng.integers(0, 256, a.shape, dtype=np.uint8))
    assert 0.2 < s_noisy < 0.95 and s_other < 0.1 < s_noisy
    # a constant offset keeps the structure term but loses luminance: close to, not equal to, 1
    g = np.tile(np.linspace(60, 200, 32)[None, :, None], (32, 1, 3)).astype(np.uint8)
    assert 0.9 < ssim(g, g + 20) < 1.0
    assert ssim(np.full((8, 8), 50), np.full((8, 8), 50)) == pytest.approx(1.0)  # window shrinks to the image
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, a[:, :16])


def test_bootstrap_mean_resamples_like_by_hand():
    x = np.random.default_rng(3).normal(1.0, 2.0, 40)
    ci, boot = bootstrap_mean(x, n_boot=2000, seed=5)
    rng = np.random.default_rng(5)
    by_hand = x[rng.integers(0, len(x), (2000, len(x)))].mean(1)
    np.testing.assert_allclose(boot, by_hand)
    np.testing.assert_allclose(ci, np.percentile(by_hand, [2.5, 97.5]), rtol=1e-12)
    assert ci[0] < x.mean() < ci[1]
    gen = np.random.default_rng(5)  # a generator goes on with its stream: a second draw differs
    assert bootstrap_mean(x, 2000, gen)[0] == ci and bootstrap_mean(x, 2000, gen)[0] != ci
    assert bootstrap_mean([2.0], 10)[0] == [2.0, 2.0] and all(math.isnan(v) for v in bootstrap_ci([2.0]))
    assert bootstrap_ci(np.zeros(5)) == [0.0, 0.0]


def test_spatial_distance_and_box_centre():
    assert spatial_distance([3.0, 4.0], [0.0, 0.0], 10.0) == pytest.approx(0.5)
    assert spatial_distance([0.3, 0.4], [0.0, 0.0], 0.1) == pytest.approx(1.0)  # d_gt floored at 0.5 m
    assert centre_in_box(10, 10, (8, 8, 12, 12), 0) and not centre_in_box(14, 10, (8, 8, 12, 12), 1)
    assert centre_in_box(14, 10, (8, 8, 12, 12), 2) and not centre_in_box(1, 1, None, 5)


# ----------------------------------------------------------------------------- grounding on a real scene
@pytest.fixture(scope="module")
def scene_sample(nav_episodes):
    cfg = EvalConfig(split="val", tour_frames=24).validate()
    ep = nav_episodes[0]
    state = SceneState(ep.scene_id, 32, cfg)
    sample, why = build_sample(ep, state, 8, 4, cfg)
    assert sample is not None, why
    return cfg, state, sample


def test_sample_matches_the_training_construction(scene_sample):
    cfg, state, s = scene_sample
    assert s.context.shape == (8, 32, 32, 3) and s.context.dtype == np.uint8
    assert np.all(np.diff(s.context_indices) > 0)
    np.testing.assert_array_equal(s.context[-1], s.target[0])  # the current view is the path's first frame
    assert s.context_poses.shape == (8, 3)
    np.testing.assert_allclose(s.context_poses[-1], s.start_pose)  # ... seen from the start pose
    np.testing.assert_array_equal(state.render_model(s.context_poses)["rgb"], s.context)  # poses match frames
    assert s.target.shape == (4, 32, 32, 3)
    red = (s.bbox == (255, 0, 0)).all(-1)
    x0, y0, x1, y1 = s.box
    assert red[y0, x0:x1 + 1].all() and red[y0:y1 + 1, x1].all()  # 1-px box at 32 px, like the loader
    bearing = math.atan2(s.episode.target_center[1] - s.final_pose[1], s.episode.target_center[0] - s.final_pose[0])
    assert abs((bearing - s.final_pose[2] + math.pi) % (2 * math.pi) - math.pi) < 1e-6  # centred on the target


def test_ground_truth_frames_score_perfectly(scene_sample):
    """SD = 0 for the true final frame (localisation recovers its pose), IF true for the true bbox frame,
    false for a frame without a box; the lattice alone localises within a lattice cell."""
    cfg, state, s = scene_sample
    m = grounding_metrics(s.target, s.bbox[None], s, state, cfg)
    assert m["sd"] == 0.0 and m["match"] == pytest.approx(1.0, abs=1e-5)
    assert m["if"] and m["if_box"] and m["if_gtbox"] and m["if_final"] and m["if_sd02"]
    assert m["psnr"] == pytest.approx(100.0) and m["ssim"] == pytest.approx(1.0)
    assert m["heading_err_deg"] < 1e-6
    blank = grounding_metrics(s.target, s.target[-1:], s, state, cfg)  # the final view with no box drawn
    assert not blank["if"] and not blank["box_found"] and blank["sd"] == 0.0
    black = grounding_metrics(s.target, np.zeros((1, 32, 32, 3), np.uint8), s, state, cfg)
    assert not black["if"] and not black["if_sd02"]
    # without the true path among the candidates: lattice (0.25 m, 30 deg) + refinement
    pose, sim = state.localize(s.target[-1], extra_poses=None)
    assert np.linalg.norm(pose[:2] - s.final_pose[:2]) < 0.3 and sim > 0.9
    # the no-bbox ablation judges the final frame: the true one is centred on the target
    nob = grounding_metrics(s.target, np.zeros((0, 32, 32, 3), np.uint8), s, state, cfg)
    assert nob["if"] and nob["if_box"] is None


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_pipeline_dir(tmp_path_factory):
    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    torch.manual_seed(0)
    model = Video4SpatialModel(transformer_config=dict(TINY), text_len=8, frame_size=(S, S),
                               context_attention="prefix").eval()
    pipe = Video4SpatialPipeline(model, make_scheduler(), num_target_frames=2, num_bbox_frames=1)
    path = tmp_path_factory.mktemp("wm") / "tiny-pipe"
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from world_model.ssg.clip import SmallClipSpec, build_small_clip, build_word_tokenizer, grammar_vocabulary

    spec = SmallClipSpec(image_size=32, patch_size=8, vision_layers=1, vision_width=32, vision_heads=2,
                         text_layers=1, text_width=32, text_heads=2, projection_dim=32, max_text_len=24)
    path = tmp_path_factory.mktemp("clip") / "clip-tiny"
    build_small_clip(build_word_tokenizer(grammar_vocabulary()), spec, seed=0).save_pretrained(path)
    return path


def _eval_args(out, pipe, episodes, clip, *extra):
    return ["eval-wm", f"episodes={episodes}", f"out_dir={out}", f"eval_wm.pipeline={pipe}", f"eval_wm.clip={clip}",
            "eval_wm.num_steps=2", "eval_wm.tour_frames=24", "progress=false", *extra]


def test_eval_wm_end_to_end_resumes_and_refuses_other_configs(tmp_path, tiny_pipeline_dir, tiny_clip_dir,
                                                              nav_episode_file, capsys):
    from agent.cli import main

    out = tmp_path / "ev"
    assert main(_eval_args(out, tiny_pipeline_dir, nav_episode_file, tiny_clip_dir, "n=2")) == 0
    summary = json.loads((out / "summary.json").read_text())
    for k in ("sd", "if", "if_sd02", "psnr", "ssim", "n", "clip_score", "sd_ci95", "if_ci95", "clip_score_gt"):
        assert k in summary, k
    assert summary["n"] + summary["n_skipped"] == 2 and summary["n"] >= 1
    assert summary["config"]["num_bbox"] == 1 and summary["config"]["cfg_mode"] == "joint"
    assert summary["config"]["precision"] == resolve_precision("auto")  # the resolved one, not "auto"
    assert -1.0 <= summary["clip_score"] <= 1.0 and summary["sd"] >= 0 and 0 <= summary["if"] <= 1
    assert "IF(SD<0.2)" in capsys.readouterr().out
    rows = [json.loads(ln) for ln in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    # rerun: nothing repeated; a larger n adds only the new sample
    assert main(_eval_args(out, tiny_pipeline_dir, nav_episode_file, tiny_clip_dir, "n=2")) == 0
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2
    assert main(_eval_args(out, tiny_pipeline_dir, nav_episode_file, tiny_clip_dir, "n=3")) == 0
    ids = [json.loads(ln)["sample_id"] for ln in (out / "samples.jsonl").read_text().splitlines()]
    assert len(ids) == 3 == len(set(ids)) and ids[:2] == [r["sample_id"] for r in rows]
    # an ablation into the same out_dir would mix results: refused with a readable message
    capsys.readouterr()
    assert main(_eval_args(out, tiny_pipeline_dir, nav_episode_file, tiny_clip_dir, "n=3",
                           "eval_wm.cfg_mode=text")) == 2
    assert "another configuration" in capsys.readouterr().err


def test_eval_wm_ablations_and_bad_input(tmp_path, tiny_pipeline_dir, nav_episode_file, capsys):
    from agent.cli import main

    out = tmp_path / "nobbox"
    assert main(_eval_args(out, tiny_pipeline_dir, nav_episode_file, "none", "n=1", "eval_wm.num_bbox=0",
                           "eval_wm.context_mode=contiguous", "eval_wm.cfg_mode=text")) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["num_bbox"] == 0 and s["config"]["context_mode"] == "contiguous"
    assert s["clip_score"] is None and "skipped" in s["clip_note"]
    row = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert row["status"] != "ok" or (row["if_box"] is None and row["if"] == row["if_final"])
    for bad, msg in (("eval_wm.cfg_mode=bogus", "cfg_mode"), ("eval_wm.context_mode=random", "context_mode"),
                     ("eval_wm.subset=odd", "subset"), ("eval_wm.ssg=true", "ssg"),
                     ("eval_wm.ssg_oracle=true", "ssg_oracle"),  # the controls left the library: research.ssg.controls
                     ("eval_wm.precision=fp16", "precision")):
        assert main(_eval_args(tmp_path / "bad", tiny_pipeline_dir, nav_episode_file, "none", "n=1", bad)) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="spatialnav train"):
        resolve_pipeline_path(tmp_path / "nowhere")


def test_best_of_n_candidates_are_recorded_and_scored_offline(tmp_path, tiny_pipeline_dir, nav_episode_file):
    """eval_wm.candidates=true records each of the N rollouts' grounding; the pipeline's pick is the
    row's own rollout, and research.best_of_n scores verifiers on the run, paired with a 1-sample run."""
    from agent.cli import main
    from research import best_of_n

    out, one = tmp_path / "bo3", tmp_path / "n1"
    assert main(_eval_args(out, tiny_pipeline_dir, nav_episode_file, "none", "n=2", "eval_wm.num_samples=3",
                           "eval_wm.candidates=true")) == 0
    assert main(_eval_args(one, tiny_pipeline_dir, nav_episode_file, "none", "n=2")) == 0
    rows = [r for r in best_of_n.read_rows(out) if r["status"] == "ok"]
    assert rows
    for r in rows:
        assert len(r["candidates"]) == 3 and 0 <= r["best_index"] < 3
        best = r["candidates"][r["best_index"]]
        for k in ("if", "if_sd02", "sd", "p_hat", "box_confidence"):
            assert best[k] == r[k], k  # the row's metrics are those of the rollout the pipeline picked
    res = best_of_n.score(best_of_n.read_rows(out), best_of_n.read_rows(one), n_boot=200)
    assert set(res) == {"pipeline", "first", "agreement", "medoid", "oracle"}
    for k in best_of_n.METRICS:
        assert res["pipeline"][k] == pytest.approx(np.mean([r[k] for r in rows]))
        assert all(res["oracle"][k] >= res[v][k] for v in res)  # any-of-N bounds every verifier
        assert res["first"]["vs_single"][k]["n"] == len(rows)
    with pytest.raises(ValueError, match="candidates=true"):
        best_of_n.score(best_of_n.read_rows(one))
    # the verifiers themselves, on hand-made goals: three agree near the origin, one is far away
    cands = [{"p_hat": [x, y, 0.0], "box_confidence": c} for x, y, c in
             ((0.0, 0.0, 0.4), (0.5, 0.0, 0.3), (5.0, 5.0, 0.9), (0.2, 0.4, 0.5))]
    assert best_of_n.pick_agreement(cands, radius=1.0) == 3  # 2 supporters each; the more confident
    assert best_of_n.pick_medoid(cands) == 3  # summed distances 8.02, 7.73, 20.4, 7.60


def test_ssg_oracle_control_feeds_true_target_masks_of_the_context(tmp_path, tiny_pipeline_dir, tiny_clip_dir,
                                                                   nav_episodes, nav_episode_file, monkeypatch):
    """research.ssg.controls control=oracle: eval-wm through its ssg_control hook."""
    from research.ssg.controls import main
    from world_model.pipeline import Video4SpatialPipeline
    from world_model.ssg.adapter import ssg_processors
    from world_model.ssg.oracle import OracleRelevance

    pipe = Video4SpatialPipeline.from_pretrained(tiny_pipeline_dir).init_ssg(
        tiny_clip_dir, num_tokens=4, layers=[-1], hidden_dim=32, num_heads=2)
    with torch.no_grad():
        for proc in ssg_processors(pipe.model.transformer):
            proc.to_v_ssg.weight.normal_(0, 0.5)
    adapter = pipe.save_ssg(tmp_path / "adapter")
    calls = []
    real = OracleRelevance.__call__

    def spy(self, scene_ids, target_ids, poses):
        out = real(self, scene_ids, target_ids, poses)
        calls.append((list(target_ids), np.asarray(poses), out))
        return out

    monkeypatch.setattr(OracleRelevance, "__call__", spy)
    out = tmp_path / "oracle"
    assert main(["control=oracle"] + _eval_args(out, tiny_pipeline_dir, nav_episode_file, "none", "n=1",
                                                "eval_wm.ssg=true", f"eval_wm.ssg_path={adapter}")[1:]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["ssg_control"] == "oracle" and s["config"]["ssg_used"] is True and s["n"] == 1
    (tids, poses, rel), = calls
    ep = nav_episodes[0]
    assert tids == [ep.target_id] and poses.shape == (1, 8, 3)
    g = pipe.ssg_prompter.clip.grid_size
    assert rel.shape == (1, 8, g, g) and float(rel.min()) >= 0 and float(rel.max()) <= 1
    # the plain eval-wm, or another control, into the same out_dir would mix results: refused
    from agent.cli import main as cli_main

    assert cli_main(_eval_args(out, tiny_pipeline_dir, nav_episode_file, "none", "n=1", "eval_wm.ssg=true",
                               f"eval_wm.ssg_path={adapter}")) == 2
    assert main(["control=shuffle"] + _eval_args(out, tiny_pipeline_dir, nav_episode_file, "none", "n=1",
                                                 "eval_wm.ssg=true", f"eval_wm.ssg_path={adapter}")[1:]) == 2
    # a control needs SSG on
    assert main(["control=oracle"] + _eval_args(tmp_path / "off", tiny_pipeline_dir, nav_episode_file, "none",
                                                "n=1")[1:]) == 2


def test_ssg_shuffle_control_gives_each_sample_the_previous_samples_prompt(tmp_path, tiny_pipeline_dir,
                                                                          tiny_clip_dir, nav_episodes,
                                                                          nav_episode_file, monkeypatch):
    """research.ssg.controls control=shuffle: eval-wm through its ssg_control hook."""
    from research.ssg.controls import main
    from world_model.pipeline import Video4SpatialPipeline

    pipe = Video4SpatialPipeline.from_pretrained(tiny_pipeline_dir).init_ssg(
        tiny_clip_dir, num_tokens=4, layers=[-1], hidden_dim=32, num_heads=2)
    adapter = pipe.save_ssg(tmp_path / "adapter")
    prompts, imagined = {}, []
    real_prompts, real_imagine = Video4SpatialPipeline.ssg_prompts, Video4SpatialPipeline.imagine

    def spy_prompts(self, frames, indices, instruction, relevance=None, poses=None):
        out = real_prompts(self, frames, indices, instruction, relevance=relevance, poses=poses)
        prompts[instruction] = out[0].detach().clone()
        return out

    @functools.wraps(real_imagine)  # evaluate reads imagine's signature to see SSG support
    def spy_imagine(self, frames, indices, instruction, **kw):
        fn = kw.get("ssg_prompt_fn")
        imagined.append((instruction, None if fn is None else fn(frames, indices, instruction, None)[0]))
        return real_imagine(self, frames, indices, instruction, **kw)

    monkeypatch.setattr(Video4SpatialPipeline, "ssg_prompts", spy_prompts)
    monkeypatch.setattr(Video4SpatialPipeline, "imagine", spy_imagine)
    out = tmp_path / "shuffle"
    assert main(["control=shuffle"] + _eval_args(out, tiny_pipeline_dir, nav_episode_file, "none", "n=3",
                                                 "eval_wm.ssg=true", f"eval_wm.ssg_path={adapter}")[1:]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["ssg_control"] == "shuffle" and s["n"] == 3
    instr = [e.instruction for e in nav_episodes[:3]]
    assert [i for i, _ in imagined] == instr
    for k, (_, tok) in enumerate(imagined):  # sample k imagines with sample k-1's prompt (cyclically)
        assert tok is not None and torch.equal(tok, prompts[instr[(k - 1) % 3]])
    assert main(["control=bogus"] + _eval_args(tmp_path / "b", tiny_pipeline_dir, nav_episode_file, "none",
                                               "n=1")[1:]) == 2


def test_relation_subset_keeps_only_relation_episodes(nav_episodes, nav_episode_file):
    cfg = EvalConfig(episodes=str(nav_episode_file), n=3, subset="relation").validate()
    want = [e.episode_id for e in nav_episodes if e.needs_relation]
    if want:
        assert [e.episode_id for e in select_episodes(cfg)] == want
    else:
        with pytest.raises(ValueError, match="relation"):
            select_episodes(cfg)


def test_imagine_writes_video_and_picture(tmp_path, tiny_pipeline_dir, nav_episode_file, capsys):
    import imageio.v2 as imageio
    import imageio_ffmpeg

    from world_model.imagine import main

    prefix = tmp_path / "im" / "ep0"
    cfg = {"split": "val", "episodes": str(nav_episode_file),
           "imagine": {"pipeline": str(tiny_pipeline_dir), "episode_index": 0, "num_steps": 2, "size": 32,
                       "out": str(prefix), "num_context": 4}}
    assert main(cfg) == 0
    mp4, png = prefix.with_suffix(".mp4"), prefix.with_suffix(".png")
    assert mp4.stat().st_size > 0 and png.stat().st_size > 0
    assert imageio_ffmpeg.count_frames_and_secs(str(mp4))[0] == 4  # max(K=4 context frames, T=2)
    pic = imageio.imread(png)
    assert pic.shape[1] >= 4 * 32  # the context row: 4 upscaled tiles
    assert str(mp4) in capsys.readouterr().out
    with pytest.raises(ValueError, match="episode_index"):
        main({**cfg, "imagine": {**cfg["imagine"], "episode_index": 99}})
