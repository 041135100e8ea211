"""find_box on clean / blurred / noisy frames, rejections, aggregation, and box_to_goal geometry."""

import math

import numpy as np
import pytest
from scipy import ndimage

from planners.camera import focal_length
from planners.rollout_reader import (BoxDetection, box_to_goal, find_box, find_box_in_frames, fuse_goals,
                                     view_similarity)

S = 64


def scene(rng, size=S):
    """A smooth random colour field (stand-in for a rendered room), values 20..220."""
    img = ndimage.gaussian_filter(rng.uniform(0, 255, (size, size, 3)), (4, 4, 0))
    return (img - img.min()) / max(np.ptp(img), 1e-6) * 200 + 20


def draw_box(img, x0, y0, x1, y1, lw=2, color=(255, 0, 0)):
    img = img.copy()
    for t in range(lw):
        img[y0 + t, x0:x1 + 1] = color
        img[y1 - t, x0:x1 + 1] = color
        img[y0:y1 + 1, x0 + t] = color
        img[y0:y1 + 1, x1 - t] = color
    return img


def degrade(img, kind, rng):
    if kind == "clean":
        out = img
    elif kind == "blur":
        out = ndimage.gaussian_filter(img, (1.0, 1.0, 0))
    elif kind == "noise":
        out = ndimage.gaussian_filter(img, (0.8, 0.8, 0)) + rng.normal(0, 12, img.shape)
    else:  # colour drift of a generated frame: red pulled toward orange/dark, then blur
        out = ndimage.gaussian_filter(img * [0.85, 1.0, 1.0] + [0, 25, 15], (0.7, 0.7, 0))
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["clean", "blur", "noise", "drift"])
@pytest.mark.parametrize("seed", range(4))
def test_find_box_within_2px(kind, seed):
    rng = np.random.default_rng(seed)
    x0, y0 = (int(v) for v in rng.integers(1, 30, 2))
    x1, y1 = x0 + int(rng.integers(8, 32)), y0 + int(rng.integers(8, 32))
    frame = degrade(draw_box(scene(rng), x0, y0, x1, y1), kind, rng)
    det = find_box(frame)
    assert det is not None, f"missed the {kind} box {(x0, y0, x1, y1)}"
    assert np.abs(det.as_array() - [x0, y0, x1, y1]).max() <= 2.0
    assert det.cx == pytest.approx((x0 + x1) / 2, abs=1.5) and det.cy == pytest.approx((y0 + y1) / 2, abs=1.5)
    assert 0.2 <= det.confidence <= 1.0
    assert det.image_hw == (S, S)


@pytest.mark.parametrize("seed", range(4))
def test_no_box_gives_none(seed):
    rng = np.random.default_rng(100 + seed)
    assert find_box(degrade(scene(rng), "noise", rng)) is None
    assert find_box(np.zeros((S, S, 3), np.uint8)) is None
    assert find_box(np.full((S, S, 3), (255, 0, 0), np.uint8)) is None  # all red: no outline


def test_red_blobs_and_red_furniture_are_not_boxes():
    rng = np.random.default_rng(7)
    img = scene(rng)
    yy, xx = np.mgrid[:S, :S]
    disc = img.copy()
    disc[(yy - 30) ** 2 + (xx - 28) ** 2 < 12 ** 2] = (235, 15, 15)
    assert find_box(degrade(disc, "blur", rng)) is None
    cabinet = img.copy()
    cabinet[20:44, 14:40] = (200, 30, 25)  # a solid red rectangle is an object, not an outline
    assert find_box(degrade(cabinet, "clean", rng)) is None
    ring = img.copy()
    r = np.hypot(yy - 32, xx - 32)
    ring[(r > 11) & (r < 13.2)] = (255, 0, 0)  # a red circle outline
    det = find_box(degrade(ring, "clean", rng))
    assert det is None or det.confidence < 0.3
    # The box drawn around a red object is still found.
    boxed = draw_box(cabinet, 10, 16, 44, 48)
    det = find_box(degrade(boxed, "blur", rng))
    assert det is not None
    assert np.abs(det.as_array() - [10, 16, 44, 48]).max() <= 2.0


def test_find_box_in_frames_votes_out_outliers():
    rng = np.random.default_rng(3)
    base = scene(rng)
    frames = np.stack([
        degrade(draw_box(base, 20, 10, 40, 30), "blur", rng),
        degrade(draw_box(base, 21, 11, 41, 31), "noise", rng),
        degrade(draw_box(base, 2, 40, 14, 60), "clean", rng),  # a stray box elsewhere
        degrade(base, "clean", rng),  # no box
    ])
    agg = find_box_in_frames(frames)
    assert agg is not None
    assert np.abs(agg.as_array() - [20.5, 10.5, 40.5, 30.5]).max() <= 2.0
    assert agg.support == pytest.approx(0.5)
    single = find_box(frames[0])
    assert agg.confidence < single.confidence  # disagreement lowers confidence
    assert find_box_in_frames(frames[3:]) is None
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        find_box_in_frames(np.zeros((2, 3)))


def make_box(cx, cy, w, h, size=S, conf=0.9):
    return BoxDetection(x0=cx - w / 2, y0=cy - h / 2, x1=cx + w / 2, y1=cy + h / 2, cx=cx, cy=cy,
                        confidence=conf, image_hw=(size, size))


def test_box_to_goal_bearing_sign_and_frame():
    depth = np.full((128, 128, 1), 3.0, np.float32)
    right = box_to_goal(make_box(50, 32, 10, 12), depth, (0.0, 0.0, 0.0))
    left = box_to_goal(make_box(12, 32, 10, 12), depth, (0.0, 0.0, 0.0))
    assert right.bearing < 0 and right.xy[1] < 0  # box right of centre -> goal on the agent's right
    assert left.bearing > 0 and left.xy[1] > 0
    assert right.source == "depth"
    # z-depth 3 m at bearing b: horizontal range 3 / cos(b).
    assert right.range_m == pytest.approx(3.0 / math.cos(right.bearing), rel=1e-3)
    assert right.xy[0] == pytest.approx(3.0, abs=1e-6)
    f = focal_length(S, 79.0)
    assert right.xy[1] == pytest.approx(-3.0 * (50 + 0.5 - 32) / f, abs=1e-6)
    # Same view from another pose: rotated and shifted into the start frame.
    turned = box_to_goal(make_box(50, 32, 10, 12), depth, (1.0, 2.0, math.pi / 2))
    assert turned.xy[1] == pytest.approx(2.0 + 3.0, abs=1e-6)  # 3 m ahead along +y
    assert turned.xy[0] > 1.0  # the agent's right is +x when facing +y
    assert right.radius_m > 0 and np.all(np.linalg.eigvalsh(right.cov) > 0)


def test_box_to_goal_without_depth_uses_ground_contact():
    f = focal_length(S, 79.0)
    true_z = 2.5
    # The floor contact 2.5 m ahead: v - H/2 = f * 0.88 / z; the outline's bottom row is the object's
    # lowest row (data.py draws it on the object's outer pixels), whose bottom edge is the contact.
    v_b = S / 2 + f * 0.88 / true_z
    y1 = v_b - 1.0
    box = BoxDetection(x0=28, y0=y1 - 14, x1=36, y1=y1, cx=32, cy=y1 - 7, confidence=0.8, image_hw=(S, S))
    g = box_to_goal(box, None, (0.0, 0.0, 0.0), object_height_m=1.0)
    assert "ground" in g.source
    assert g.range_m == pytest.approx(true_z, rel=0.15)
    # A box touching the bottom edge cannot use ground contact: size prior only, less certain.
    low = BoxDetection(x0=28, y0=40, x1=36, y1=S - 1, cx=32, cy=51.5, confidence=0.8, image_hw=(S, S))
    g2 = box_to_goal(low, None, (0.0, 0.0, 0.0))
    assert g2.source == "size" and g2.radius_m > g.radius_m


def test_fuse_goals():
    a = box_to_goal(make_box(32, 32, 10, 12), np.full((S, S), 2.0, np.float32), (0.0, 0.0, 0.0))
    b = box_to_goal(make_box(32, 32, 10, 12), np.full((S, S), 2.4, np.float32), (0.0, 0.0, 0.0))
    fused = fuse_goals(a, b)
    assert a.xy[0] < fused.xy[0] < b.xy[0]
    assert fused.radius_m < min(a.radius_m, b.radius_m)


def test_view_similarity():
    rng = np.random.default_rng(0)
    a = degrade(scene(rng), "clean", rng)
    b = degrade(scene(rng), "clean", rng)
    assert view_similarity(a, a) == pytest.approx(1.0)
    assert view_similarity(a, degrade(a.astype(float), "noise", rng)) > 0.9
    assert view_similarity(a, b) < 0.6


@pytest.mark.parametrize("size, seed", [(32, 0), (32, 1), (128, 0)])
def test_find_box_at_the_world_model_frame_sizes(size, seed):
    # world_model/boxes.py:draw_box draws 2 px per 64 px of width: 1 px at 32, 4 px at 128.
    rng = np.random.default_rng(seed)
    k = size / 64
    lw = max(1, round(2 * k))
    x0, y0 = (int(v) for v in rng.integers(1, int(28 * k), 2))
    x1, y1 = x0 + int(rng.integers(int(10 * k), int(30 * k))), y0 + int(rng.integers(int(10 * k), int(30 * k)))
    img = draw_box(scene(rng, size), x0, y0, x1, y1, lw)
    frame = np.clip(ndimage.gaussian_filter(img, (0.7 * k, 0.7 * k, 0)), 0, 255).astype(np.uint8)
    det = find_box(frame)
    assert det is not None
    assert np.abs(det.as_array() - [x0, y0, x1, y1]).max() <= 2.0


# ----------------------------------------------------------------------------- a box drawn as the training data draws it
def _one_target_scene(x_front, y_centre, height=0.8, depth_m=0.5, width=0.6):
    """Floor + one box-shaped target (instance 1) whose front face is ``x_front`` m ahead of the origin."""
    from envs.geometry import MeshBuilder
    from envs.scene import ObjectInstance, semantic_id

    b = MeshBuilder()
    b.add_box([0, 0, -0.05], [30, 30, 0.1], (128, 128, 128), semantic=semantic_id("floor"), shaded=False)
    obj = ObjectInstance(1, "chair", "green", "room", center=[x_front + depth_m / 2, y_centre, height / 2],
                         size=[depth_m, width, height])
    b.add_box(obj.center, obj.size, (40, 160, 60), instance=1, semantic=semantic_id("chair"))
    return b.build("test/one_target", [obj])


@pytest.mark.parametrize("size", [128, 64])
def test_box_from_data_draw_box_on_a_rendered_mask_gives_the_range(size):
    """world_model/boxes.py:draw_box draws the box on the target's outermost pixels (its instance-mask bbox);
    box_to_goal must read it that way: range within 5% from ground contact + size prior, and from depth."""
    from envs.renderer import Renderer
    from world_model.boxes import draw_box as data_draw_box, target_box

    for x_front, y_c in [(1.5, 0.0), (2.5, 0.4), (3.5, -0.5)]:
        r = Renderer(_one_target_scene(x_front, y_c), width=size, height=size, threads=1)
        out = r.render([0.0, 0.0, 0.0], outputs=("rgb", "depth", "instance"))
        box = target_box(out["instance"][0], 1)
        assert box is not None
        frame = data_draw_box(out["rgb"][0], box, thickness=max(1, round(2 * size / 64)))
        det = find_box(frame)
        assert det is not None and np.abs(det.as_array() - box).max() <= 0.5
        true_range = math.hypot(x_front, y_c)  # the front face, where the object meets the floor
        g = box_to_goal(det, None, (0.0, 0.0, 0.0), object_height_m=0.8)
        assert g.source == "ground+size"
        assert g.range_m == pytest.approx(true_range, rel=0.05), (size, x_front, y_c, g.range_m)
        gd = box_to_goal(det, out["depth"][0], (0.0, 0.0, 0.0))
        assert gd.source == "depth" and gd.range_m == pytest.approx(true_range, rel=0.05)
        assert math.atan2(g.xy[1], g.xy[0]) == pytest.approx(math.atan2(y_c, x_front + 0.25), abs=math.radians(3))
