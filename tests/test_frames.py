"""world_model.frames: the one area resize (training loader, eval-wm, the agents' context buffer)
and the one caption band (imagine pictures, episode videos and pictures)."""

from __future__ import annotations

import numpy as np
import pytest

from world_model.frames import area_resize, caption


def test_integer_factors_are_rounded_block_means():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 8, 12, 3), dtype=np.uint8)
    y = area_resize(x, (2, 3))
    want = np.round(x.astype(np.float32).reshape(3, 2, 4, 3, 4, 3).mean(axis=(2, 4)))
    assert y.dtype == np.uint8 and y.shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(y, want)
    f = area_resize(x.astype(np.float32), 4)  # float in: unrounded float32 means
    assert f.dtype == np.float32 and not np.allclose(f, np.round(f))


def test_other_sizes_weight_pixels_by_overlap():
    rng = np.random.default_rng(1)
    x = rng.random((2, 10, 10, 3)).astype(np.float32)
    y = area_resize(x, 4)  # 2.5 input pixels per output pixel
    np.testing.assert_allclose(y.mean(axis=(1, 2)), x.mean(axis=(1, 2)), rtol=1e-5)  # area kept
    # output pixel (0, 0) covers input rows/cols [0, 2.5): full weight on 0 and 1, half on 2
    wts = np.array([1.0, 1.0, 0.5]) / 2.5
    np.testing.assert_allclose(y[:, 0, 0], np.einsum("i,j,nijc->nc", wts, wts, x[:, :3, :3]), rtol=1e-5)
    const = np.full((1, 7, 5, 3), 77, np.uint8)
    np.testing.assert_array_equal(area_resize(const, (3, 11)), np.full((1, 3, 11, 3), 77, np.uint8))  # also up


def test_same_size_is_a_copy_and_bad_shapes_are_refused():
    x = np.zeros((1, 4, 4, 3), np.uint8)
    y = area_resize(x, 4)
    y[:] = 9
    assert x.max() == 0
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        area_resize(x[0], 2)


def test_caption_adds_a_band_with_text_above():
    img = np.zeros((20, 60, 3), np.uint8)
    out = caption(img, "hello", band=18)
    assert out.shape == (38, 60, 3)
    np.testing.assert_array_equal(out[18:], img)
    band = out[:18]
    assert (band == 255).any() and (band < 128).any()  # white band, dark letters
