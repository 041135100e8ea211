"""The red auxiliary box of the world model's bbox frames: drawing it and finding it again.

The box is the world model's own output format: ``draw_box`` draws it on the training targets
(collection, ``world_model.collect``, and the loader, ``world_model.data``) around the target's
``target_box``, and ``find_box`` reads it back from what the model imagines: evaluation
(``world_model.eval_metrics``) and the planners (``planners.rollout_reader``, which turns a box
into a goal) both use it.

The world model ends each rollout with bbox frames: the final view with a pure red
(``BOX_COLOR`` = 255, 0, 0) rectangle outline drawn on the target's outermost pixels
(``draw_box``: ``default_line_width`` = 2 px per 64 px of frame width, outer edge = the
target's bounding box).
Generated frames blur it and shift its colour, and scenes may hold red furniture, so
``find_box`` looks for a *thin rectangular outline* of red, not for red pixels:

1. red mask: r - max(g, b) >= min_redness and r >= min_red; a second pass uses a strict
   threshold (0.75 of the frame's 99th-percentile redness) that splits the pure-red box from
   a less red object it touches;
2. thin part: mask minus its morphological opening by a (max_line_width+1)^2 square,
   which removes solid red regions (red objects) and keeps lines; an outline drawn
   around a red object keeps its free sides;
3. 8-connected components (scipy.ndimage.label) of the thin part; for each:
   * thickness t from pixel count n and bbox h x w, solving n = 2t(h + w) - 4t^2
     (a solid rectangle gives t = min(h, w) / 2, an outline its line width);
     hollowness = 1 - t / (min(h, w) / 2);
   * side coverage: for each bbox side, the fraction of positions along it with a
     component pixel within a band of ceil(t) + 1 px; rectangularity = geometric mean
     of the four (a disc or blob covers its bbox sides only near their midpoints);
   * purity = 90th percentile of (r - max(g, b)) / 255 over the component;
   * confidence = purity * rectangularity^2 * hollowness * size factor (components
     narrower than ``min_side`` px are skipped; the factor ramps from 0.5 to 1 above it);
4. the best component above ``min_confidence`` gives the box; each side is refined
   to sub-pixel precision as the redness-weighted mean position of the line, and the
   reported box is the outline's outer edge (line centre -/+ (line_width - 1) / 2).

Coordinates are pixel indices: column x, row y, inclusive; a box drawn on pixels
[x0..x1] x [y0..y1] reads back as (x0, y0, x1, y1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

# Colour of the auxiliary box drawn into the bbox frames (pure red; the
# procedural palettes keep clear of it so a colour threshold can find it).
BOX_COLOR = (255, 0, 0)


@dataclass(frozen=True)
class BoxDetection:
    """A red box found in a frame (pixel-index coordinates, inclusive outer edge)."""

    x0: float
    y0: float
    x1: float
    y1: float
    cx: float
    cy: float
    confidence: float  # in [0, 1]
    image_hw: tuple[int, int] = (0, 0)  # size of the frame it was found in
    purity: float = 1.0
    rectangularity: float = 1.0
    support: float = 1.0  # fraction of frames agreeing (find_box_in_frames), 1 for one frame

    @property
    def width(self) -> float:
        return self.x1 - self.x0 + 1.0

    @property
    def height(self) -> float:
        return self.y1 - self.y0 + 1.0

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.x1, self.y1])

    def scaled_to(self, hw: tuple[int, int]) -> "BoxDetection":
        """The same box in a frame of another size (e.g. the real depth's)."""
        sy, sx = hw[0] / self.image_hw[0], hw[1] / self.image_hw[1]
        # Pixel edges scale, so map the continuous edges [x0, x1 + 1) and back.
        x0, x1 = self.x0 * sx, (self.x1 + 1.0) * sx - 1.0
        y0, y1 = self.y0 * sy, (self.y1 + 1.0) * sy - 1.0
        return replace(self, x0=x0, y0=y0, x1=x1, y1=y1, cx=(x0 + x1) / 2, cy=(y0 + y1) / 2,
                       image_hw=(int(hw[0]), int(hw[1])))


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (inclusive pixel coordinates): ``BoxDetection``s or
    (x0, y0, x1, y1) sequences."""
    ax0, ay0, ax1, ay1 = (float(v) for v in (a.as_array() if isinstance(a, BoxDetection) else a))
    bx0, by0, bx1, by1 = (float(v) for v in (b.as_array() if isinstance(b, BoxDetection) else b))
    ix = max(0.0, min(ax1, bx1) - max(ax0, bx0) + 1.0)
    iy = max(0.0, min(ay1, by1) - max(ay0, by0) + 1.0)
    inter = ix * iy
    union = (ax1 - ax0 + 1.0) * (ay1 - ay0 + 1.0) + (bx1 - bx0 + 1.0) * (by1 - by0 + 1.0) - inter
    return float(inter / union) if union > 0 else 0.0


def check_frame(frame) -> np.ndarray:
    """One RGB frame (H, W, 3) as float32 in [0, 255]: uint8 as is, floats in [0, 1] scaled, others clipped."""
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[-1] != 3:
        raise ValueError(f"frame must be (H, W, 3) RGB, got shape {f.shape}")
    if f.dtype != np.uint8:
        if np.issubdtype(f.dtype, np.floating) and f.size and float(np.nanmax(f)) <= 1.0:
            f = f * 255.0  # float frames in [0, 1]
        f = np.clip(np.nan_to_num(f), 0, 255)
    return f.astype(np.float32)


def default_line_width(width: int) -> int:
    """The outline width the training targets are drawn with at a frame width: 2 px at 64 px, scaled, >= 1."""
    return max(1, int(round(2 * width / 64)))


# ----------------------------------------------------------------------------- drawing
def target_box(instance: np.ndarray, target_id: int, min_pixels: int = 1) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1), inclusive, of ``target_id`` in an instance mask; None if hidden
    (fewer than ``min_pixels`` pixels)."""
    ys, xs = np.nonzero(np.asarray(instance) == int(target_id))
    if len(xs) < min_pixels:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def draw_box(frame: np.ndarray, box, thickness: int = 2, color=BOX_COLOR) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3) with a ``thickness``-px rectangle drawn *outside-in* on ``box``.

    ``box`` = (x0, y0, x1, y1) inclusive pixel coordinates, clipped to the frame; the rectangle's
    outer edge is the box edge, so the drawn lines lie on the target's outermost pixels.
    """
    out = np.array(frame, copy=True)
    h, w = out.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1, w - 1))
    y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1, h - 1))
    t = max(1, int(thickness))
    c = np.asarray(color, np.uint8)
    out[y0:min(y0 + t, y1 + 1), x0:x1 + 1] = c  # top
    out[max(y1 - t + 1, y0):y1 + 1, x0:x1 + 1] = c  # bottom
    out[y0:y1 + 1, x0:min(x0 + t, x1 + 1)] = c  # left
    out[y0:y1 + 1, max(x1 - t + 1, x0):x1 + 1] = c  # right
    return out


# ----------------------------------------------------------------------------- finding


def find_box(frame, min_redness: float = 70.0, min_red: float = 110.0, line_width: int | None = None,
             max_line_width: int | None = None, min_side: int = 6, max_aspect: float = 8.0,
             min_side_coverage: float = 0.5, min_confidence: float = 0.2) -> BoxDetection | None:
    """The most box-like red rectangle outline in an RGB frame (H, W, 3), or None (see module doc).

    ``line_width`` None = ``default_line_width(W)``; ``max_line_width`` None = line_width + 2.
    """
    f = check_frame(frame)
    h_img, w_img = f.shape[:2]
    line_width = default_line_width(w_img) if line_width is None else int(line_width)
    max_line_width = line_width + 2 if max_line_width is None else int(max_line_width)
    red = np.clip(f[..., 0] - np.maximum(f[..., 1], f[..., 2]), 0.0, 255.0)
    base = f[..., 0] >= min_red
    if not (base & (red >= min_redness)).any():
        return None
    # Two thresholds: the loose one survives blur; the strict one (relative to the reddest pixels,
    # which the pure-red box usually holds) splits a box from a less red object it touches.
    strict = max(min_redness, 0.75 * float(np.percentile(red[base], 99)) if base.any() else 0.0)
    best: BoxDetection | None = None
    for thr in sorted({float(min_redness), strict}):
        cand = _best_outline(red, base & (red >= thr), (h_img, w_img), line_width, max_line_width, min_side,
                             max_aspect, min_side_coverage, min_confidence)
        if cand is not None and (best is None or cand.confidence > best.confidence):
            best = cand
    return best


def _best_outline(red, mask, image_hw, line_width, max_line_width, min_side, max_aspect, min_side_coverage,
                  min_confidence) -> BoxDetection | None:
    """The best-scoring thin rectangular component of ``mask`` (steps 2-4 of the module doc)."""
    h_img, w_img = image_hw
    k = int(max_line_width) + 1
    thin = mask & ~ndimage.binary_opening(mask, structure=np.ones((k, k), bool))
    labels, n = ndimage.label(thin, structure=np.ones((3, 3), bool))
    best: BoxDetection | None = None
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == lab
        # Trim red clutter attached to the outline (reddish background, noise): an outline's
        # sides are the outermost rows/columns holding at least half the fullest one's pixels.
        rows_on = np.nonzero(comp.sum(1) >= 0.5 * comp.sum(1).max())[0]
        cols_on = np.nonzero(comp.sum(0) >= 0.5 * comp.sum(0).max())[0]
        r_lo, r_hi = max(rows_on[0] - 1, 0), min(rows_on[-1] + 2, comp.shape[0])
        c_lo, c_hi = max(cols_on[0] - 1, 0), min(cols_on[-1] + 2, comp.shape[1])
        sl = (slice(sl[0].start + r_lo, sl[0].start + r_hi), slice(sl[1].start + c_lo, sl[1].start + c_hi))
        comp = comp[r_lo:r_hi, c_lo:c_hi]
        h, w = comp.shape
        if min(h, w) < min_side or max(h, w) > max_aspect * min(h, w):
            continue
        npx = float(comp.sum())
        # Thickness t from n = 2t(h + w) - 4t^2 (smaller root).
        disc = max((h + w) ** 2 - 4.0 * npx, 0.0)
        t = ((h + w) - math.sqrt(disc)) / 4.0
        hollow = float(np.clip(1.0 - t / (min(h, w) / 2.0), 0.0, 1.0))
        if hollow <= 0:
            continue
        band = int(min(math.ceil(t) + 1, max(1, min(h, w) // 2)))
        cov = np.array([comp[:band].any(0).mean(), comp[-band:].any(0).mean(),
                        comp[:, :band].any(1).mean(), comp[:, -band:].any(1).mean()])
        if cov.min() < min_side_coverage:
            continue
        rect = float(np.exp(np.log(np.maximum(cov, 0.05)).mean()))
        purity = float(min(1.0, np.percentile(red[sl][comp], 90) / 255.0))
        size = float(np.clip((min(h, w) - min_side) / float(min_side) + 0.5, 0.0, 1.0))
        conf = purity * rect ** 2 * hollow * size
        if conf < min_confidence or (best is not None and conf <= best.confidence):
            continue
        # Sub-pixel sides: redness-weighted mean line position within each side band.
        wgt = red[sl] * comp
        rows = np.arange(h, dtype=np.float64)[:, None]
        cols = np.arange(w, dtype=np.float64)[None, :]

        def centre(wb, coord):
            s = wb.sum()
            return float((wb * coord).sum() / s) if s > 0 else float(coord.mean())

        top = centre(wgt[:band], rows[:band])
        bottom = centre(wgt[-band:], rows[-band:])
        left = centre(wgt[:, :band], cols[:, :band])
        right = centre(wgt[:, -band:], cols[:, -band:])
        half = (line_width - 1) / 2.0
        y0, y1 = sl[0].start + top - half, sl[0].start + bottom + half
        x0, x1 = sl[1].start + left - half, sl[1].start + right + half
        best = BoxDetection(x0=x0, y0=y0, x1=x1, y1=y1, cx=(x0 + x1) / 2.0, cy=(y0 + y1) / 2.0,
                            confidence=float(conf), image_hw=(h_img, w_img), purity=purity, rectangularity=rect)
    return best


def find_box_in_frames(frames, min_iou: float = 0.5, min_confidence: float = 0.2, **kwargs) -> BoxDetection | None:
    """Aggregate ``find_box`` over several bbox frames (B, H, W, 3) by consensus.

    The anchor is the detection with the largest summed confidence of detections overlapping
    it (IoU >= min_iou); the box is the per-coordinate median of those agreeing detections;
    support = agreeing frames / all frames; confidence = their mean confidence * support.
    None if no frame has a box or the confidence falls below ``min_confidence``.
    """
    fr = np.asarray(frames)
    if fr.ndim == 3:
        fr = fr[None]
    if fr.ndim != 4 or fr.shape[0] == 0 or fr.shape[-1] != 3:
        raise ValueError(f"frames must be (B, H, W, 3) with B >= 1, got shape {np.shape(frames)}")
    dets = [d for d in (find_box(f, min_confidence=min_confidence, **kwargs) for f in fr) if d is not None]
    if not dets:
        return None
    iou = np.array([[box_iou(a, b) for b in dets] for a in dets])
    conf = np.array([d.confidence for d in dets])
    anchor = int(np.argmax(((iou >= min_iou) * conf[None, :]).sum(1)))
    agree = [d for d, ok in zip(dets, iou[anchor] >= min_iou) if ok]
    a = np.median(np.stack([d.as_array() for d in agree]), axis=0)
    support = len(agree) / float(fr.shape[0])
    c = float(np.mean([d.confidence for d in agree])) * support
    if c < min_confidence:
        return None
    return BoxDetection(x0=a[0], y0=a[1], x1=a[2], y1=a[3], cx=(a[0] + a[2]) / 2, cy=(a[1] + a[3]) / 2,
                        confidence=c, image_hw=agree[0].image_hw, support=support,
                        purity=float(np.mean([d.purity for d in agree])),
                        rectangularity=float(np.mean([d.rectangularity for d in agree])))
