"""The ground truth of the world model's evaluation: held-out samples and where a view was taken.

For every held-out episode of a split (``select_episodes``) ``build_sample`` builds the sample
exactly as ``world_model.collect.collect_scene`` does (so the model sees in-distribution inputs):
the scene's scripted tour + agent frames turning into the start heading as the context video
(rendered at ``render_scale`` x the model size and area-pooled, as the training loader does),
non-contiguous (or contiguous) context sampling, and the ground-truth target video along the
shortest path ending centred on the target, plus the bbox frame (``GroundTruthSample``).

``SceneState`` holds one scene's simulator objects (grid, renderers, tour) and localises a frame:
the pose whose rendered view is most similar to it (``SceneState.localize``). Candidates are
navigable NavGrid points every ``loc_spacing`` m (0.25) inside the bounding box of the start pose
and the true path, grown by ``loc_margin`` m (2.0) (``region_of``), times ``loc_headings`` (12)
headings, plus the true path poses; similarity is the colour normalised cross-correlation
``ncc(a, b) = <a - mean a, b - mean b> / (|a - mean a| |b - mean b|)`` of the RGB images
area-resized to ``loc_size`` x ``loc_size`` (16) (``view_features``). The coarse pass renders the
whole scene's lattice at ``loc_size`` once per scene in batched ray casts; the best ``refine_top``
are refined in 3 rounds of 3x3 positions x 3 headings (steps 0.125/0.0625/0.031 m and
15/7.5/3.75 deg), rendered exactly like the ground truth (``render_scale`` x model size, pooled).
The ground-truth final frame is therefore localised at its own pose (similarity 1, SD = 0).
The metrics built on it: ``world_model.eval_metrics``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.geometry import wrap_angle

from .boxes import default_line_width, draw_box, target_box
from .collect import agent_prelude, path_to_target
from .eval_config import EvalConfig
from .frames import area_resize


def view_features(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, size*size*3) zero-mean unit-norm colour vectors: ``ncc(a, b) = feat(a) . feat(b)``."""
    f = area_resize(np.asarray(frames, np.float32), size).reshape(len(frames), -1)
    f = f - f.mean(1, keepdims=True)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-6)


def select_episodes(cfg: EvalConfig) -> list:
    """Episodes of the split (or file), filtered to ``subset``; the first ``n``."""
    from envs.episodes import generate_episodes, load_episodes

    want = int(cfg.n)
    rel = cfg.subset == "relation"
    if cfg.episodes:
        eps = load_episodes(str(cfg.episodes))
        if rel:
            eps = [e for e in eps if e.needs_relation]
        if not eps:
            raise ValueError(f"{cfg.episodes} holds no {'relation ' if rel else ''}episodes")
        return eps[:want]
    if not rel:
        return generate_episodes(cfg.split, want, seed=int(cfg.episode_seed))
    # generate_episodes is prefix-stable in n: grow the pool until enough need a relation
    m = 5 * want
    while True:
        pool_ = generate_episodes(cfg.split, m, seed=int(cfg.episode_seed))
        eps = [e for e in pool_ if e.needs_relation]
        if len(eps) >= want or m >= 40 * want:
            if not eps:
                raise ValueError(f"no episode of split {cfg.split!r} needs a spatial relation among {m}")
            return eps[:want]
        m *= 2


@dataclass
class GroundTruthSample:
    """One held-out sample built from a simulator episode (model-size frames)."""

    sample_id: str
    episode: Any
    context: np.ndarray  # (K, S, S, 3) uint8
    context_indices: np.ndarray  # (K,)
    context_poses: np.ndarray  # (K, 3) world x, y, yaw of the context frames (pitch 0)
    target: np.ndarray  # (T, S, S, 3) uint8 true path frames (first = start view, last = centred view)
    bbox: np.ndarray  # (S, S, 3) uint8 the last true frame with the red box
    box: np.ndarray  # (4,) target box at model size (x0, y0, x1, y1)
    path_poses: np.ndarray  # (P, 3) world x, y, yaw of the full true path
    start_pose: np.ndarray
    final_pose: np.ndarray
    d_gt: float


class SceneState:
    """Per-scene simulator objects shared by its samples: grid, renderers, tour, localisation cache."""

    def __init__(self, scene_id: str, frame_size: int, cfg: EvalConfig) -> None:
        from envs.navigation import NavGrid
        from envs.renderer import Renderer
        from envs.scenes import load_scene
        from envs.tour import context_tour

        self.scene = load_scene(scene_id)
        self.grid = NavGrid.from_scene(self.scene)
        self.S = int(frame_size)
        self.factor = int(cfg.render_scale)
        self.hi = Renderer(self.scene, width=self.S * self.factor, height=self.S * self.factor, threads=1)
        self.loc_size = int(min(cfg.loc_size, self.S))
        self.lo = Renderer(self.scene, width=self.loc_size, height=self.loc_size, threads=1)
        rng = np.random.default_rng([int(cfg.seed), zlib.crc32(str(scene_id).encode()), 7])
        tour = context_tour(self.scene, self.grid, n_frames=int(cfg.tour_frames), rng=rng, renderer=self.hi,
                            outputs=("rgb",))
        self.tour_rgb = area_resize(tour["rgb"], self.S)
        self.tour_indices = np.asarray(tour["indices"], np.int64)
        self.tour_poses = np.asarray(tour["poses"], np.float64)
        self.tour_num_raw = int(tour["num_raw_frames"])
        self.cfg = cfg
        self._lattice: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ rendering
    def render_model(self, poses: np.ndarray, outputs=("rgb",)) -> dict[str, np.ndarray]:
        """Render at ``render_scale`` x model size; rgb pooled to the model size, others at render size."""
        out = dict(self.hi.render(np.asarray(poses, np.float64).reshape(-1, 3), outputs=outputs))
        if "rgb" in out:
            out["rgb"] = area_resize(out["rgb"], self.S)
        return out

    def _features_hi(self, poses: np.ndarray, chunk: int = 512) -> np.ndarray:
        return np.concatenate([view_features(self.render_model(poses[i:i + chunk])["rgb"], self.loc_size)
                               for i in range(0, len(poses), chunk)])

    def lattice(self) -> tuple[np.ndarray, np.ndarray]:
        """Coarse candidates of the whole scene (navigable points every loc_spacing x headings) and their
        features at loc_size, computed once per scene in batched casts."""
        if self._lattice is None:
            g = self.grid
            step = max(1, int(round(float(self.cfg.loc_spacing) / g.cell_size)))
            rows, cols = np.nonzero(g.navigable)
            keep = (rows % step == 0) & (cols % step == 0)
            xy = np.asarray(g.cell_to_world(np.stack([rows[keep], cols[keep]], -1)), np.float64).reshape(-1, 2)
            yaws = np.arange(int(self.cfg.loc_headings)) * (2 * math.pi / int(self.cfg.loc_headings))
            poses = np.concatenate([np.column_stack([xy, np.full(len(xy), y)]) for y in yaws])
            feats = [view_features(self.lo.render(poses[i:i + 2048], outputs=("rgb",))["rgb"], self.loc_size)
                     for i in range(0, len(poses), 2048)]
            self._lattice = (poses, np.concatenate(feats) if feats else np.zeros((0, self.loc_size ** 2 * 3)))
        return self._lattice

    # ------------------------------------------------------------------ localisation
    def localize(self, frame: np.ndarray, extra_poses: np.ndarray | None = None,
                 region: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, float]:
        """Pose (x, y, yaw) whose rendered view best matches ``frame`` (S, S, 3), and that similarity.

        Coarse: lattice candidates inside ``region`` (x0, y0, x1, y1; None = whole scene) and
        ``extra_poses`` scored by colour NCC at loc_size; fine: ``refine_top`` best refined in
        three rounds of 3x3 positions x 3 headings, rendered like the ground truth.
        """
        q = view_features(np.asarray(frame)[None], self.loc_size)[0]
        poses, feats = self.lattice()
        if region is not None and len(poses):
            x0, y0, x1, y1 = region
            m = (poses[:, 0] >= x0) & (poses[:, 0] <= x1) & (poses[:, 1] >= y0) & (poses[:, 1] <= y1)
            poses, feats = poses[m], feats[m]
        if extra_poses is not None and len(extra_poses):
            ex = np.asarray(extra_poses, np.float64).reshape(-1, 3)
            poses = np.concatenate([ex, poses])  # extras first: ties go to them
            feats = np.concatenate([self._features_hi(ex), feats])
        if not len(poses):
            raise ValueError(f"{self.scene.scene_id}: no localisation candidates (empty region)")
        s = feats @ q
        order = np.argsort(-s, kind="stable")[: int(self.cfg.refine_top)]
        best = poses[order]
        best_s = s[order]
        for dxy, dyaw in ((0.125, math.radians(15)), (0.0625, math.radians(7.5)), (0.03125, math.radians(3.75))):
            cands = [best]
            for ox in (-dxy, 0.0, dxy):
                for oy in (-dxy, 0.0, dxy):
                    for oyaw in (-dyaw, 0.0, dyaw):
                        if ox == oy == oyaw == 0.0:
                            continue
                        c = best + np.array([ox, oy, oyaw])
                        cands.append(c[np.asarray(self.grid.is_navigable(c[:, :2]), bool).reshape(-1)])
            cand = np.concatenate(cands)
            sc = self._features_hi(cand) @ q
            order = np.argsort(-sc, kind="stable")[: int(self.cfg.refine_top)]
            best, best_s = cand[order], sc[order]
        p = best[0].copy()
        p[2] = wrap_angle(p[2])
        return p, float(best_s[0])

    # ------------------------------------------------------------------ ground truth
    def target_view(self, pose, target_id: int) -> dict[str, Any]:
        """Where the target appears in the view from ``pose``: pixel count (render size), box at model size,
        bearing of its pixel centroid (radians, left positive)."""
        inst = self.hi.render(np.asarray(pose, np.float64).reshape(1, 3), outputs=("instance",))["instance"][0]
        mask = inst == int(target_id)
        n = int(mask.sum())
        out = {"pixels": n, "box": None, "bearing": None}
        if n >= int(self.cfg.min_target_pixels):
            b = target_box(inst, target_id)
            out["box"] = np.array([b[0] // self.factor, b[1] // self.factor, b[2] // self.factor,
                                   b[3] // self.factor], np.int64)
            cx = float(np.nonzero(mask)[1].mean()) + 0.5
            out["bearing"] = -math.atan((cx - self.hi.cx) / self.hi.fx)
        return out


def build_sample(ep, state: SceneState, num_context: int, num_target: int, cfg: EvalConfig,
                 index: int = 0) -> tuple[GroundTruthSample | None, str]:
    """The ground-truth sample of one episode, constructed as ``world_model.collect.collect_scene`` and
    ``world_model.data.ContextVideoDataset`` do; (None, reason) when the path or the final view fails."""
    # the loader's sampling (its module imports torch: only when a sample is built)
    from .data import sample_context_indices, subsample_path

    start = np.asarray(ep.start_pose, np.float64)
    path = path_to_target(state.grid, start, ep.view_points, ep.target_center, int(cfg.max_path_steps))
    if path is None:
        return None, "no shortest path to a view point"
    final = state.hi.render(path[-1], outputs=("rgb", "instance"))
    box = target_box(final["instance"][0], ep.target_id, int(cfg.min_target_pixels))
    if box is None:
        return None, "target not visible in the final view"
    prelude = agent_prelude(start, int(cfg.agent_frames))
    rgb = state.render_model(np.concatenate([prelude, path[:-1]]))["rgb"]
    agent_rgb = rgb[: len(prelude)]
    path_rgb = np.concatenate([rgb[len(prelude):], area_resize(final["rgb"], state.S)])
    frames = np.concatenate([state.tour_rgb, agent_rgb])
    poses = np.concatenate([state.tour_poses, prelude])
    indices = np.concatenate([state.tour_indices, state.tour_num_raw + np.arange(len(agent_rgb))])
    rng = np.random.default_rng([int(cfg.seed), zlib.crc32(str(ep.episode_id).encode()), int(index)])
    pos = sample_context_indices(len(frames), num_context, rng, cfg.context_mode == "contiguous")
    if len(pos) < num_context:
        return None, f"only {len(frames)} context frames < num_context={num_context}"
    tp = subsample_path(len(path_rgb), num_target)
    f = state.factor
    box_m = np.array([box[0] // f, box[1] // f, box[2] // f, box[3] // f], np.int64)
    thick = cfg.box_thickness if cfg.box_thickness is not None else default_line_width(state.S)
    d_gt = float(state.grid.geodesic_distance(start[:2], path[-1][None, :2]))
    if not math.isfinite(d_gt):
        d_gt = float(ep.geodesic_distance)
    return GroundTruthSample(
        sample_id=str(ep.episode_id), episode=ep, context=frames[pos], context_indices=indices[pos],
        context_poses=poses[pos],
        target=path_rgb[tp], bbox=draw_box(path_rgb[-1], box_m, thick), box=box_m, path_poses=path,
        start_pose=start, final_pose=path[-1].copy(), d_gt=d_gt,
    ), ""


def region_of(sample: GroundTruthSample, margin: float | None) -> tuple[float, float, float, float] | None:
    """The localisation region (x0, y0, x1, y1): the start pose and the true path grown by ``margin`` m
    (None: the whole scene)."""
    if margin is None:
        return None
    pts = np.concatenate([sample.start_pose[None, :2], sample.path_poses[:, :2]])
    lo, hi = pts.min(0) - float(margin), pts.max(0) + float(margin)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
