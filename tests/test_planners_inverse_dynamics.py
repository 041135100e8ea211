"""Inverse dynamics: the training loop learns synthetic camera motions; integration composes poses."""

import math

import numpy as np
import pytest
import torch

from planners.inverse_dynamics import (CANONICAL_DELTAS, MOTIONS, InverseDynamicsModel, Transitions, evaluate,
                                       integrate, predict, synthetic_transitions, train_inverse_dynamics)


@pytest.fixture(scope="module")
def data():
    return synthetic_transitions(400, image_size=32, seed=0)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return InverseDynamicsModel(image_size=32, channels=(8, 16, 32), hidden=64)


def test_synthetic_pairs_look_like_the_motions(data):
    # Turning left shifts the scene right: frame_b's left part equals frame_a's left-shifted content.
    i = int(np.nonzero(data.actions == 1)[0][0])
    a, b = data.frames_a[i].astype(float), data.frames_b[i].astype(float)
    shift = int(round(0.3 * 32))
    err_right = np.abs(b[:, shift + 2:] - a[:, :32 - shift - 2]).mean()
    err_none = np.abs(b - a).mean()
    assert err_right < err_none
    assert np.allclose(data.deltas[data.actions == 0], CANONICAL_DELTAS[0])


def test_training_lowers_the_loss_and_beats_chance(data):
    torch.set_num_threads(1)
    train, held = data.split(0.25, seed=1)
    model = tiny_model()
    before = evaluate(model, held)
    losses = train_inverse_dynamics(model, train, steps=150, batch_size=32, lr=2e-3, seed=0)
    assert len(losses) == 150
    assert np.mean(losses[-15:]) < 0.7 * np.mean(losses[:15])
    after = evaluate(model, held)
    assert after["accuracy"] > max(0.5, before["accuracy"] + 0.1)  # chance is 1/3
    assert after["mae_dx_m"] < before["mae_dx_m"]


def test_integrate_composes_the_predicted_motions(tmp_path):
    model = tiny_model()
    with torch.no_grad():  # force "TURN_LEFT" for every pair, then "MOVE_FORWARD"
        model.action_head.weight.zero_()
        model.action_head.bias.copy_(torch.tensor([0.0, 50.0, 0.0]))
    frames = np.random.default_rng(0).integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    poses = integrate(model, frames)
    assert poses.shape == (4, 3)
    assert np.allclose(poses[:, 2], np.radians([0, 30, 60, 90]))
    with torch.no_grad():
        model.action_head.bias.copy_(torch.tensor([50.0, 0.0, 0.0]))
    fwd = integrate(model, frames)
    assert np.allclose(fwd[-1], [0.75, 0.0, 0.0])
    # Low confidence contributes no motion.
    with torch.no_grad():
        model.action_head.bias.zero_()
    assert np.allclose(integrate(model, frames, min_prob=0.9), 0.0)
    # save_pretrained / from_pretrained round-trip gives the same predictions.
    model.save_pretrained(tmp_path / "idm")
    loaded = InverseDynamicsModel.from_pretrained(tmp_path / "idm")
    p1, d1 = predict(model, frames[:-1], frames[1:])
    p2, d2 = predict(loaded, frames[:-1], frames[1:])
    assert np.allclose(p1, p2, atol=1e-6) and np.allclose(d1, d2, atol=1e-6)
    assert MOTIONS[1] == 2  # class 1 is the env's TURN_LEFT


def test_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        Transitions(np.zeros((2, 8, 8, 3)), np.zeros((1, 8, 8, 3)), np.zeros(2, int), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="class indices"):
        Transitions(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)), np.array([3]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="mode"):
        integrate(tiny_model(), np.zeros((2, 32, 32, 3), np.uint8), mode="bogus")
    with pytest.raises(ValueError, match="too small"):
        InverseDynamicsModel(image_size=4, channels=(8, 8, 8))


def test_training_checkpoints_and_resumes_to_the_uninterrupted_run(data, tmp_path):
    """With an out_dir the loop checkpoints (the newest two kept), a second call resumes from the
    newest checkpoint and trains up to ``steps`` in all, and ends with the weights and the losses of
    one uninterrupted run; training.json counts the steps, samples and both invocations."""
    import json

    torch.set_num_threads(1)
    kw = dict(batch_size=8, lr=2e-3, seed=0, lr_schedule="constant_with_warmup", warmup_steps=2)
    whole = tiny_model()
    losses = train_inverse_dynamics(whole, data, steps=6, **kw)
    run = tmp_path / "run"
    first = train_inverse_dynamics(tiny_model(), data, steps=4, out_dir=run, ckpt_every_steps=2, **kw)
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["step_00000002", "step_00000004"]
    resumed = tiny_model()
    rest = train_inverse_dynamics(resumed, data, steps=6, out_dir=run, ckpt_every_steps=4, **kw)
    assert first + rest == losses
    for k, v in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, msg=k)
    assert "resumed from" in (run / "train.log").read_text()
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["step_00000004", "step_00000006"]
    meta = json.loads((run / "training.json").read_text())
    assert (meta["steps"], meta["samples"], meta["invocations"]) == (6, 48, 2) and meta["wall_seconds"] > 0
    assert train_inverse_dynamics(tiny_model(), data, steps=6, out_dir=run, **kw) == []  # nothing left to train
    with pytest.raises(ValueError, match="diffusers' schedules"):
        train_inverse_dynamics(tiny_model(), data, steps=2, lr_schedule="cosine_decay")
