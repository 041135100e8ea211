"""The small frame autoencoder: shapes, standardised latents, save/load, training + resume, the
latent-space comparison (``research.latent_spaces``), and a Video4Spatial pipeline that samples in its latent space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from research.latent_spaces import evaluate_latent_spaces
from world_model.autoencoder import AutoencoderTrainConfig, FrameAutoencoder, to_tensor, train_autoencoder
from world_model.latents import decode_latents, encode_frames

S = 16


def tiny_ae(seed=0) -> FrameAutoencoder:
    torch.manual_seed(seed)
    return FrameAutoencoder(latent_channels=4, channels=(8, 16), frame_size=S).eval()


class Bank:
    """A FrameBank stand-in: smooth random frames (blobs), so there is structure to learn."""

    def __init__(self, n=64, seed=0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:S, 0:S]
        frames = np.zeros((n, S, S, 3), np.float64)
        for i in range(n):
            for _ in range(3):
                cy, cx, r = rng.uniform(0, S, 2).tolist() + [rng.uniform(2, 6)]
                frames[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(0, 255, 3)
        self.frames = np.clip(frames, 0, 255).astype(np.uint8)
        self.frame_size = S

    def __len__(self):
        return len(self.frames)

    def sample(self, n, rng):
        return self.frames[rng.integers(0, len(self.frames), n)]

    def spread(self, n):
        return self.frames[:n]


def test_video_shapes_and_wrong_frame_size():
    ae = tiny_ae()
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, S, S, 3), dtype=np.uint8)
    z = encode_frames(frames, ae)
    assert z.shape == (2, 4, 3, S // 2, S // 2)
    out = decode_latents(z, ae)
    assert out.shape == frames.shape and out.dtype == np.uint8
    # each frame is coded on its own: frame 1 of video 0 equals coding it alone
    alone = encode_frames(frames[0, 1:2][None], ae)
    torch.testing.assert_close(alone[:, :, 0], z[:1, :, 1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=f"{S}x{S}"):
        encode_frames(np.zeros((1, 2, 2 * S, 2 * S, 3), np.uint8), ae)
    with pytest.raises(ValueError, match="multiples of 8"):
        FrameAutoencoder(channels=(12, 16))


def test_calibrate_standardises_latents_and_save_load(tmp_path):
    ae = tiny_ae()
    x = to_tensor(Bank(48).frames)
    raw = ae.encode_raw(x).detach()
    assert raw.std() > 0 and (raw.mean((0, 2, 3)).abs() > 1e-3).any()
    ae.calibrate(x)
    z = encode_frames(Bank(48).frames[None], ae)[0]  # (C, N, h, w)
    flat = z.reshape(z.shape[0], -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(4), atol=1e-3, rtol=0)
    ae.save_pretrained(tmp_path / "ae")
    ae2 = FrameAutoencoder.from_pretrained(tmp_path / "ae")
    torch.testing.assert_close(ae2.latent_std, ae.latent_std)
    torch.testing.assert_close(encode_frames(Bank(4).frames[None], ae2), encode_frames(Bank(4).frames[None], ae))


def test_training_improves_reconstruction_and_resumes(tmp_path):
    bank = Bank(64)
    cfg = dict(out_dir=str(tmp_path / "run"), latent_channels=4, channels=(8, 16), batch_size=16, lr=3e-3,
               max_steps=60, calib_frames=64, num_threads=1)
    before = evaluate_latent_spaces(tiny_ae(), bank.frames, pixel_sizes=())[0]["psnr"]
    out = train_autoencoder(AutoencoderTrainConfig.from_dict(cfg), bank=bank)
    assert out["steps"] == 60
    rows = evaluate_latent_spaces(out["model"], bank.frames, pixel_sizes=(S, S // 2))
    assert rows[0]["psnr"] == 100.0  # pixel space at the full size is lossless (PSNR capped at 100)
    ae_row = rows[-1]
    assert ae_row["latent"].startswith("autoencoder") and ae_row["tokens_per_frame"] == (S // 4) ** 2
    assert ae_row["psnr"] > before + 3.0, (before, ae_row["psnr"])
    assert (tmp_path / "run" / "autoencoder" / "TRAINING.json").exists()
    # a second invocation with more steps resumes from step 60
    out2 = train_autoencoder(AutoencoderTrainConfig.from_dict({**cfg, "max_steps": 65}), bank=bank)
    assert out2["steps"] == 65
    assert "resumed from" in (tmp_path / "run" / "train.log").read_text()
    with pytest.raises(ValueError, match="unknown autoencoder training key"):
        AutoencoderTrainConfig.from_dict({"latent_chanels": 4})


def test_pipeline_samples_in_the_autoencoder_latent_space(tmp_path):
    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler
    from world_model.text_encoder import load_text_encoder

    ae = tiny_ae()
    ae.calibrate(to_tensor(Bank(32).frames))
    torch.manual_seed(0)
    tcfg = dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
                text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=128)
    model = Video4SpatialModel(transformer_config=tcfg, text_len=8, frame_size=(S, S), latent_space="autoencoder")
    te = load_text_encoder("minilm", max_length=8)
    pipe = Video4SpatialPipeline(model.eval(), make_scheduler(), autoencoder=ae, text_encoder=te,
                                 num_target_frames=2, num_bbox_frames=1)
    ctx = Bank(3, seed=1).frames
    r = pipe.imagine(ctx, [0, 4, 9], "go to the red chair", num_steps=2, seed=3)
    assert r.frames.shape == (2, S, S, 3) and r.bbox_frames.shape == (1, S, S, 3)
    pipe.save_pretrained(tmp_path / "pipe")
    pipe2 = Video4SpatialPipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(pipe2.autoencoder, FrameAutoencoder)
    pipe2._text_encoder = te
    np.testing.assert_array_equal(pipe2.imagine(ctx, [0, 4, 9], "go to the red chair", num_steps=2, seed=3).frames,
                                  r.frames)


def test_latent_pipeline_loads_in_a_process_that_never_imported_the_autoencoder(tmp_path, monkeypatch):
    """diffusers loads a component only from an imported module: from_pretrained imports ours
    (``spatialnav eval-wm eval_wm.pipeline=<latent pipeline>`` failed without it)."""
    import sys

    from world_model.model import Video4SpatialModel
    from world_model.pipeline import Video4SpatialPipeline, make_scheduler

    tcfg = dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
                text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=128)
    model = Video4SpatialModel(transformer_config=tcfg, text_len=8, frame_size=(S, S), latent_space="autoencoder")
    Video4SpatialPipeline(model, make_scheduler(), autoencoder=tiny_ae()).save_pretrained(tmp_path / "pipe")
    monkeypatch.delitem(sys.modules, "world_model.autoencoder")
    import world_model

    monkeypatch.delattr(world_model, "autoencoder", raising=False)
    pipe = Video4SpatialPipeline.from_pretrained(tmp_path / "pipe")
    assert type(pipe.autoencoder).__name__ == "FrameAutoencoder" and "world_model.autoencoder" in sys.modules


def _collected_dir(path, size=32, n_scenes=2):
    """A tiny collected directory: grey frames, one sample per scene, the target box at [8, 8, 23, 23]."""
    from world_model.collect import CollectConfig
    from world_model.shards import write_index, write_shard

    def grey(n, v):
        return np.full((n, size, size, 3), v, np.uint8)

    scenes = []
    for k in range(n_scenes):
        path_rgb = grey(4, 90 + 10 * k)
        scenes.append({"scene_id": f"procgen/val/{k}", "tour_rgb": grey(6, 120), "tour_poses": np.zeros((6, 3)),
                       "tour_indices": np.arange(6) * 2, "tour_num_raw": 12,
                       "samples": [{"episode_id": f"e{k}", "instruction": "go to the chair", "target_id": 3,
                                    "target_center": np.zeros(3), "agent_rgb": grey(2, 100),
                                    "agent_poses": np.zeros((2, 3)), "path_rgb": path_rgb,
                                    "path_poses": np.zeros((4, 3)), "box": np.array([8, 8, 23, 23], np.int32),
                                    "bbox_rgb": path_rgb[-1]}]})
    n = write_shard(path / "shard_00000.npz", scenes)
    write_index(path, "val", 0, CollectConfig(frame_size=size),
                [{"file": "shard_00000.npz", "num_samples": n, "num_scenes": n_scenes}], done=True)
    return path


def test_box_recall_and_training_boxes(tmp_path):
    from research.latent_spaces import box_recall
    from world_model.autoencoder import FrameBank, with_random_boxes
    from world_model.boxes import find_box

    d = _collected_dir(tmp_path)
    torch.manual_seed(0)
    ae = FrameAutoencoder(latent_channels=4, channels=(8, 16), frame_size=32)
    rows = {r["latent"]: r for r in box_recall(ae, d, n=2, pixel_sizes=(32, 16))}
    # pixel space keeps the drawn box exactly (at 16 px the loader draws it 1 px wide)
    assert rows["pixel 32x32"]["found"] == 1.0 and rows["pixel 32x32"]["iou"] > 0.9
    assert rows["pixel 16x16"]["found"] == 1.0
    assert rows["autoencoder 4x16x16"]["found"] == 0.0  # an untrained autoencoder blurs it away
    bank = FrameBank(d)
    assert bank.frame_size == 32 and len(bank) == 2 * (6 + 2 + 4)
    rng = np.random.default_rng(0)
    boxed = with_random_boxes(bank.frames, 1.0, rng)
    from world_model.boxes import BOX_COLOR

    assert all((f == np.asarray(BOX_COLOR, np.uint8)).all(-1).sum() >= 12 for f in boxed)  # an outline in each
    assert np.mean([find_box(f) is not None for f in boxed]) >= 0.5  # the smallest ones fall under find_box's limits
    np.testing.assert_array_equal(with_random_boxes(bank.frames, 0.0, rng), bank.frames)


def test_world_model_trains_in_the_autoencoder_latent_space(tmp_path):
    """TrainConfig.autoencoder: the world model trains on the autoencoder's latents, and the exported
    pipeline carries the autoencoder and imagines full-size frames."""
    from world_model.pipeline import Video4SpatialPipeline
    from world_model.text_encoder import load_text_encoder
    from world_model.train import TrainConfig, train

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            rng = np.random.default_rng(i)
            return {"context": rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8),
                    "context_indices": np.array([0, 3 + i, 9]),
                    "target": Bank(3, seed=i).frames, "instruction": f"go to box {i}"}

    ae = tiny_ae()
    ae.calibrate(to_tensor(Bank(32).frames))
    ae.save_pretrained(tmp_path / "ae")
    te = load_text_encoder("minilm", max_length=8)
    tcfg = dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
                text_dim=384, freq_dim=32, ffn_dim=48, num_layers=1, rope_max_seq_len=128)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), transformer=tcfg, text_len=8, frame_size=S, num_context=3,
                      num_target=2, num_bbox=1, batch_size=4, lr=3e-3, warmup_steps=1, ckpt_every_steps=1000,
                      log_every=5, max_steps=3, autoencoder=str(tmp_path / "ae"))
    out = train(cfg, dataset=Data(), text_encoder=te)
    assert out["step"] == 3 and np.isfinite(out["loss"])
    pipe = Video4SpatialPipeline.from_pretrained(tmp_path / "run" / "pipeline")
    assert isinstance(pipe.autoencoder, FrameAutoencoder) and pipe.model.config.latent_space == "autoencoder"
    pipe._text_encoder = te
    r = pipe.imagine(Bank(3, seed=7).frames, [0, 4, 9], "go to box 1", num_steps=2, seed=0)
    assert r.frames.shape == (2, S, S, 3)


def test_init_partial_moves_trained_blocks_into_the_latent_space(tmp_path, tiny_pipeline):
    """init_partial: a pixel pipeline's blocks go into a latent-space model of the same width; the
    patch embedding and output head (other channels and patch) start fresh; an unrelated width fails."""
    from conftest import TINY_WM
    from world_model.train import TrainConfig, build_model

    tiny_pipeline.save_pretrained(tmp_path / "pixel")
    src = tiny_pipeline.model.state_dict()
    latent_tcfg = dict(TINY_WM, patch_size=[1, 2, 2], in_channels=4, out_channels=4)
    cfg = TrainConfig(transformer=latent_tcfg, text_len=8, frame_size=S, autoencoder="unused",
                      init_from=str(tmp_path / "pixel"), init_partial=True)
    model = build_model(cfg)
    assert model.config.latent_space == "autoencoder" and model.latent_channels == 4
    dst = model.state_dict()
    fresh = [k for k in dst if not (k in src and src[k].shape == dst[k].shape)]
    assert fresh and all("patch_embedding" in k or "proj_out" in k for k in fresh), fresh
    for k in dst:
        if k not in fresh:
            torch.testing.assert_close(dst[k], src[k], msg=k)

    wide = dict(TINY_WM, attention_head_dim=16, ffn_dim=64)
    with pytest.raises(ValueError, match="widths must agree"):
        build_model(TrainConfig(transformer=wide, text_len=8, frame_size=S, init_from=str(tmp_path / "pixel"),
                                init_partial=True))
