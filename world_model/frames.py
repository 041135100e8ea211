"""Pixels of RGB frames: the area resize every frame takes on its way to the model, and the
caption band of the pictures and videos (``spatialnav imagine``, episode videos)."""

from __future__ import annotations

import numpy as np

_CHUNK = 1024  # frames per step: a float copy of a whole collected shard would take GBs


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: output pixel i averages the input over [i, i + 1) * n_in / n_out,
    each input pixel weighted by its overlap (an area resample, down or up)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return (overlap / overlap.sum(1, keepdims=True)).astype(np.float32)


def area_resize(frames: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) frames resized to ``size`` (an int or (height, width)) by area averaging.

    Integer factors take plain block means (how the training loader makes the model's frames
    from the collected ones); other sizes weight each input pixel by its overlap with the
    output pixel. uint8 frames come back uint8 (rounded means), others float32. Always a new
    array, also when the size already matches.
    """
    x = np.asarray(frames)
    th, tw = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if x.ndim != 4:
        raise ValueError(f"frames must be (N, H, W, C), got shape {x.shape}")
    n, h, w, c = x.shape
    out_dtype = np.uint8 if x.dtype == np.uint8 else np.float32
    if (h, w) == (th, tw):
        return x.astype(out_dtype, copy=True)
    out = np.empty((n, th, tw, c), out_dtype)
    blocks = h % th == 0 and w % tw == 0
    if not blocks:
        ah, aw = _area_weights(h, th), _area_weights(w, tw)
    for i in range(0, n, _CHUNK):
        f = x[i:i + _CHUNK].astype(np.float32)
        if blocks:
            y = f.reshape(-1, th, h // th, tw, w // tw, c).mean(axis=(2, 4))
        else:
            y = np.einsum("ih,nhwc,jw->nijc", ah, f, aw)
        out[i:i + _CHUNK] = np.clip(np.round(y), 0, 255) if out_dtype == np.uint8 else y
    return out


def caption(img: np.ndarray, text: str, band: int = 18, font_size: int = 12) -> np.ndarray:
    """``img`` (H, W, 3) with a white band of ``text`` above it."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = img.shape[:2]
    canvas = Image.new("RGB", (w, h + band), (255, 255, 255))
    canvas.paste(Image.fromarray(np.asarray(img, np.uint8)), (0, band))
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    ImageDraw.Draw(canvas).text((3, 2), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


__all__ = ["area_resize", "caption"]
