"""`WorldModelAgent`: imagine the way to the target, read the goal off the imagination, drive there.

One step (docs/agents.md, "World-model agent"):

    obs -> ContextBuffer (tour first, then own frames, original indices kept)
        -> non-contiguous context sample (K frames) -> pipeline.imagine(context, indices, instruction)
        -> Rollout (target frames + bbox frames; N candidates in ranking mode)
        -> planners.ranking: red box in the bbox frames, final view localised against the posed
           real frames, box -> goal (real depth when the view matches), scored by goal evidence
        -> goal estimate in the start frame -> ObstacleMap (real depth) + Navigator -> action;
           StopPolicy calls STOP.

Receding horizon: the agent re-imagines every ``reimagine_every`` steps while it holds a
confident goal, every ``explore_reimagine_every`` steps while it does not, and at once
when the real view has drifted away from every imagined frame (``view_similarity`` below
``divergence``) or when it reached the goal estimate without being allowed to stop.
Without a confident imagined goal it takes the action its **CLIP guide** proposes
(``clip_guidance``, on by default; ``planners.value_map``): a ``ClipValueMap`` scores every view
and projects the score onto the agent's map, and a ``ClipGuide`` explores frontiers ranked by
that value map and approaches views CLIP recognises as the target. The guide's STOP (the target
recognised, close and centred) is honoured even while an imagined goal is held. A STOP at an
imagined goal needs the goal check's leave (``goal_check``; without one, the current view's CLIP
z-score at least ``stop_confirm_z``); an unconfirmed imagined goal is dropped, and later imagined
goals within ``reject_m`` of it are ignored. So the agent = the Frontier+CLIP
baseline + imagined goals with priority, and the noise ablation reduces it to that
baseline: the gap is what imagination adds. With
``clip_guidance=False`` it explores the nearest frontier of its own map and keeps
re-imagining from the new views.

Ablations (``ablation``): "noise" replaces every imagined rollout by uniform noise frames
of the same shape (the box reader then finds nothing, so the agent only explores);
"no_ssg" runs the world model with its SSG branch off (``world_model.ssg.ssg_disabled``;
identical to "none" for a checkpoint without an SSG adapter).

Fair play: the agent reads only obs (rgb, depth, gps, compass, instruction) and the
context tour (frames, depth, poses, indices in the start frame); camera settings come
from the sensor view the runner hands it.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from agent.base import set_threads
from agent.baselines import episode_rng
from agent.context import ContextBuffer
from envs.actions import FORWARD_STEP_M, Action
from envs.geometry import wrap_angle
from envs.instruction_reader import read_instruction as read_text
from planners.camera import HFOV_DEG, check_observation
from planners.mapping import ObstacleMap
from planners.path import FrontierExplorer, Navigator, PathPlanner, StopPolicy, goal_in_view
from planners.ranking import Candidate, rank_candidates, read_candidate
from planners.rollout_reader import GoalEstimate, view_thumbnails
from planners.value_map import ClipGuide, ClipValueMap
from world_model.boxes import draw_box
from world_model.loading import load_pipeline

ABLATIONS = ("none", "noise", "no_ssg")
# keys of the `guide` block (configs/agent/frontier_clip.yaml's), read off the two components' signatures;
# the camera, devices and planner blocks come from the agent's own arguments
VALUE_MAP_KEYS = tuple(k for k in inspect.signature(ClipValueMap).parameters if k not in ("clip", "hfov_deg", "device"))
GUIDE_POLICY_KEYS = tuple(k for k in inspect.signature(ClipGuide).parameters
                          if k not in ("value_map", "hfov_deg", "path", "navigator"))
GUIDE_KEYS = ("use_tour",) + VALUE_MAP_KEYS + GUIDE_POLICY_KEYS


def load_inverse_dynamics(path: str | Path | None):
    if path is None:
        return None
    from planners.inverse_dynamics import InverseDynamicsModel

    p = Path(path)
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"inverse-dynamics checkpoint {str(p)!r} not found; train one with "
                                f"`python -m planners.inverse_dynamics --out {p}` or set inverse_dynamics=null")
    return InverseDynamicsModel.from_pretrained(str(p)).eval()


def close_in_count(depth, min_depth_m: float, max_steps: int, step_m: float = FORWARD_STEP_M) -> int:
    """Forward steps to take before a confirmed STOP: 0 when the median depth of the view's central patch
    (the middle eighth of each side) is at most ``min_depth_m``, else one plus one per ``step_m`` beyond it,
    at most ``max_steps``."""
    d = np.asarray(depth, np.float64)
    if d.ndim == 3:
        d = d[..., 0]
    h, w = d.shape
    ph, pw = max(1, h // 16), max(1, w // 16)
    patch = d[h // 2 - ph:h // 2 + ph, w // 2 - pw:w // 2 + pw]
    patch = patch[np.isfinite(patch) & (patch > 0)]
    if patch.size == 0 or max_steps <= 0:
        return 0
    c = float(np.median(patch))
    if c <= min_depth_m:
        return 0
    return int(min(max_steps, math.floor((c - min_depth_m) / step_m) + 1))


class WorldModelAgent:
    """Imagine-then-plan agent (module docstring).

    Args:
        env: the runner's sensor view of the env (camera settings only); may be None.
        seed: agent seed, combined with each episode id.
        pipeline: a ``Video4SpatialPipeline``, the directory it was saved to, or None for the shipped
            weights (world_model/weights/v4s-small), else runs/wm/pipeline
            (``world_model.loading.load_pipeline``).
        inverse_dynamics: optional ``InverseDynamicsModel`` (or its directory) to place the
            imagined final view by integrating imagined motion when retrieval finds no match.
        num_context: K context frames per imagination; ``context_mode``: ContextBuffer.sample mode
            ("relevant" weights frames by the CLIP guide's score of each, ``context_temperature``).
        num_candidates: N rollouts per imagination (>1 = ranking mode, best-of-N by goal evidence).
        elite_frac, agree_m: ranking's elite fraction and agreement distance (m).
        num_steps, guidance_scale, cfg_mode: sampling settings of ``pipeline.imagine``.
        reimagine_every: steps between imaginations while a confident goal is held.
        explore_reimagine_every: steps between imaginations while exploring.
        divergence: re-imagine when the real view's best similarity to the imagined frames
            falls below this.
        min_confidence: a goal needs at least this candidate score to be acted on.
        min_match, depth_match: view-similarity thresholds to localise the imagined final view on a
            real frame, and to range its box with that frame's real depth.
        use_tour_map: integrate the tour's depth into the obstacle map at reset (with a CLIP guide that
            uses the tour, the value map integrates it while it projects the tour's scores).
        give_up_steps: STOP after this many steps with neither a goal nor a frontier.
        ablation: "none", "noise" or "no_ssg".
        hfov_deg, max_depth: camera (read from ``env`` when it has them).
        mapping, path, navigator, stop, box, goal: keyword blocks of ObstacleMap, PathPlanner,
            Navigator, StopPolicy, find_box_in_frames and box_to_goal (their defaults: those signatures).
        frontier_min_size: smallest frontier cluster (cells) worth exploring.
        clip_guidance: keep a CLIP value map and take the CLIP guide's action (``planners.value_map``)
            whenever no confident imagined goal is held, and its STOP always (module docstring).
        stop_confirm_z: without a goal check, with a guide: STOP at an imagined goal only when the
            current view's CLIP z-score (``ClipValueMap``) is at least this (None: the box alone
            decides).
        goal_check: the learned STOP test (``planners.goal_check``): "shipped" (default:
            planners/weights/goal-check) or a directory. A STOP at an imagined goal then needs its
            p(success here) of the current RGB-D view and instruction at least ``goal_check_threshold``
            (None: the checkpoint's own, 0.5), and ``stop_confirm_z`` is not used. None: the guide's
            CLIP z-score decides (``stop_confirm_z``), as before 2026-12-06.
        scan_deg: with a goal check: at an arrival whose view it refuses, turn in place (TURN_LEFT) and check
            each new view, until it accepts one (STOP) or the agent has turned this many degrees by its own
            compass (then the goal is dropped as unconfirmed). The target may be beside or behind the agent
            when it reaches the goal estimate, and the goal check judges only what is in view. 0 (default):
            drop the goal at the first refused view. On 60 val episodes 330 turned approached-not-stopped
            into false stops (success -0.017 [-0.167, +0.133]): the goal check is far less precise on
            turned views (docs/experiments/2026-12-06-arrival-scan.md).
        close_in_steps, close_in_depth_m: at an arrival the stop check accepts, walk up to ``close_in_steps``
            forward steps before the STOP: one when the median depth of the view's central patch exceeds
            ``close_in_depth_m``, plus one per 0.25 m beyond (``close_in_count``). The arrival is declared up
            to the stop radius from the goal estimate, the success region ends 1 m from the target. Default 2
            (1.0 m): on 60 val episodes with the shipped weights, replayed, success +0.100 [+0.033, +0.183]
            (docs/experiments/2026-12-07-close-in.md); 0: STOP where the check accepted.
        read_instruction: read the instruction back into the grammar's spec (``envs.instruction_reader``)
            and give the world model, the CLIP guide and the goal check its template wording, which is
            what they were trained on ("Make for the gray bed, the one right beside the blue cupboard"
            -> "go to the grey bed next to the blue cabinet"). A template instruction is passed on
            unchanged, and so is one that names no known category. False: pass every instruction as is.
        reject_m: imagined goals within this of an unconfirmed one are ignored (m).
        trust_support: None (default) or k: an imagined goal that k imaginations agree on needs no CLIP
            confirmation to STOP, and a location the guide did not confirm comes back as a goal when
            imagination puts a goal there again (the k-th time counting the vetoed one).
        clip, guide: the value map's CLIP (None: the shipped small CLIP; "minilm" the MiniLM-text one) and
            the guide's other settings (``GUIDE_KEYS``: the keys of configs/agent/frontier_clip.yaml).
        ssg: load an SSG adapter into the pipeline: a checkpoint directory, or "shipped" for
            world_model/weights/v4s-small-ssg (None: the pipeline's own, if it was saved with one).
        precision: the world model's compute precision, "auto" (bf16 autocast where the device has
            bf16 units, else fp32), "fp32" or "bf16" (``Video4SpatialPipeline.imagine``).
        device, threads: torch device and CPU threads for the world model (default 1: at the small
            model's size a second thread slows imagine; None: leave as is; "auto": the cores other
            work leaves free, ``auto_threads``).
        trace: record every imagination's boxed candidates (box, where its final view was placed, the
            next-best retrieval matches, its goal, the belief after it) in ``episode_stats()["trace"]``,
            for offline analysis of goal placement (``agent.failure_modes.goal_placement``). The
            agent acts the same with or without it.

    The defaults are the CLI's (configs/agent/world_model.yaml, checked by tests/test_config_defaults.py):
    ``WorldModelAgent()`` and ``spatialnav eval agent=world_model`` run the same agent.
    """

    needs_context = True
    privileged = False
    # The agent's StopPolicy settings beyond StopPolicy's own defaults (configs/agent/world_model.yaml `stop:`).
    STOP_DEFAULTS = {"min_confidence": 0.3}

    def __init__(self, env=None, seed: int | None = 0, pipeline=None, inverse_dynamics=None,
                 num_context: int = 8, context_mode: str = "relevant", context_temperature: float = 1.0,
                 num_candidates: int = 1, elite_frac: float = 0.4, agree_m: float = 1.0, num_steps: int = 8,
                 guidance_scale: float = 3.0,
                 cfg_mode: str = "joint", reimagine_every: int = 12, explore_reimagine_every: int = 6,
                 divergence: float = 0.2, min_confidence: float = 0.15, min_match: float = 0.3,
                 depth_match: float = 0.8, use_tour_map: bool = True, give_up_steps: int = 24,
                 ablation: str = "none", hfov_deg: float = HFOV_DEG, max_depth: float = 10.0,
                 mapping: dict | None = None, path: dict | None = None, navigator: dict | None = None,
                 stop: dict | None = None, box: dict | None = None, goal: dict | None = None,
                 frontier_min_size: int = 5, clip_guidance: bool = True, stop_confirm_z: float | None = 0.6,
                 reject_m: float = 0.75, clip=None, guide: dict | None = None, ssg: str | None = None,
                 precision: str = "auto", device: str = "cpu", threads: int | str | None = 1,
                 trace: bool = False, trust_support: int | None = None, goal_check: str | None = "shipped",
                 goal_check_threshold: float | None = None, scan_deg: float = 0.0,
                 close_in_steps: int = 2, close_in_depth_m: float = 1.0,
                 read_instruction: bool = True) -> None:
        if ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
        if num_candidates < 1 or num_context < 1:
            raise ValueError(f"num_candidates and num_context must be >= 1, got {num_candidates}, {num_context}")
        if context_mode == "relevant" and not clip_guidance:
            raise ValueError("context_mode='relevant' (the default) ranks frames by the CLIP guide's scores: set "
                             "clip_guidance=True or another context_mode (e.g. 'noncontiguous')")
        self.threads = set_threads(threads)
        self.pipeline = (load_pipeline(pipeline, device) if pipeline is None or isinstance(pipeline, (str, Path))
                         else pipeline)
        if ssg is not None:  # an SSG adapter on top of the backbone ("shipped" = world_model/weights/v4s-small-ssg)
            from world_model.ssg.checkpoint import default_ssg_dir

            self.pipeline.load_ssg(default_ssg_dir() if str(ssg) == "shipped" else ssg)
        self.inverse_dynamics = (load_inverse_dynamics(inverse_dynamics)
                                 if isinstance(inverse_dynamics, (str, Path)) or inverse_dynamics is None
                                 else inverse_dynamics)
        self.seed = seed
        self.hfov_deg = float(getattr(env, "hfov_deg", hfov_deg)) if env is not None else float(hfov_deg)
        self.max_depth = float(getattr(env, "max_depth", max_depth)) if env is not None else float(max_depth)
        fs = self.pipeline.model.config.frame_size
        self.frame_size = (int(fs[0]), int(fs[1])) if not np.isscalar(fs) else (int(fs), int(fs))
        self.num_target = int(self.pipeline.config.num_target_frames)
        self.num_bbox = int(self.pipeline.config.num_bbox_frames)
        self.num_context, self.context_mode = int(num_context), context_mode
        self.context_temperature = float(context_temperature)
        self.num_candidates, self.elite_frac, self.agree_m = int(num_candidates), float(elite_frac), float(agree_m)
        self.sampling = {"num_steps": int(num_steps), "guidance_scale": float(guidance_scale), "cfg_mode": cfg_mode}
        self.reimagine_every, self.explore_reimagine_every = int(reimagine_every), int(explore_reimagine_every)
        self.divergence, self.min_confidence = float(divergence), float(min_confidence)
        self.min_match, self.depth_match = float(min_match), float(depth_match)
        self.use_tour_map, self.give_up_steps = bool(use_tour_map), int(give_up_steps)
        self.ablation = ablation
        self.map_kwargs = {"hfov_deg": self.hfov_deg, "max_depth": self.max_depth, **(mapping or {})}
        self.path_kwargs, self.nav_kwargs = dict(path or {}), dict(navigator or {})
        self.stop_policy = StopPolicy(**{"hfov_deg": self.hfov_deg, **self.STOP_DEFAULTS, **(stop or {})})
        self.box_kwargs = dict(box or {})
        self.goal_kwargs = {"hfov_deg": self.hfov_deg, **(goal or {})}
        self.frontier_min_size = int(frontier_min_size)
        self._imagine_params = set(inspect.signature(self.pipeline.imagine).parameters)
        if "precision" in self._imagine_params:  # transformer compute precision (world_model.pipeline.resolve_precision)
            from world_model.pipeline import resolve_precision

            self.sampling["precision"] = resolve_precision(str(precision), self.pipeline.model.device,
                                                           self.pipeline.model.dtype)
        if ablation != "noise":
            getattr(self.pipeline, "text_encoder", None)  # load the instruction encoder now, not in step 1
        self._warned_ssg = False
        self.stop_confirm_z = None if stop_confirm_z is None else float(stop_confirm_z)
        self.reject_m = float(reject_m)
        if trust_support is not None and int(trust_support) < 1:
            raise ValueError(f"trust_support must be None or >= 1, got {trust_support!r}")
        self.trust_support = None if trust_support is None else int(trust_support)
        self.goal_check = None
        if goal_check is not None:  # the learned STOP test (planners.goal_check) instead of the CLIP z-score
            from planners.goal_check import load_goal_check

            self.goal_check = load_goal_check(None if str(goal_check) == "shipped" else goal_check)
            if goal_check_threshold is not None:
                self.goal_check.threshold = float(goal_check_threshold)
        if scan_deg < 0:
            raise ValueError(f"scan_deg must be >= 0 (0 = no scan), got {scan_deg!r}")
        self.scan_deg = float(scan_deg)
        if int(close_in_steps) < 0 or not float(close_in_depth_m) > 0:
            raise ValueError(f"close_in_steps must be >= 0 and close_in_depth_m > 0, got {close_in_steps!r}, "
                             f"{close_in_depth_m!r}")
        self.close_in_steps, self.close_in_depth_m = int(close_in_steps), float(close_in_depth_m)
        self.read_instruction = bool(read_instruction)
        self.guide: ClipGuide | None = None  # the Frontier+CLIP policy, asked for an action every step
        self.value_map: ClipValueMap | None = None  # its perception: CLIP score of every view, value layer
        self.guide_use_tour = False
        if clip_guidance:
            g = dict(guide or {})
            unknown = sorted(set(g) - set(GUIDE_KEYS))
            if unknown:
                raise ValueError(f"unknown guide setting(s) {unknown}; the guide takes {sorted(GUIDE_KEYS)} "
                                 "(configs/agent/frontier_clip.yaml)")
            self.guide_use_tour = bool(g.pop("use_tour", True))
            vm = {k: g.pop(k) for k in VALUE_MAP_KEYS if k in g}
            self.value_map = ClipValueMap(clip, hfov_deg=self.hfov_deg, device=device, **vm)
            self.guide = ClipGuide(self.value_map, hfov_deg=self.hfov_deg, path=path, navigator=navigator,
                                   **{"frontier_min_size": frontier_min_size, **g})
        self.buffer = ContextBuffer(frame_size=self.frame_size)
        self.rng = np.random.default_rng(seed)
        self.trace = bool(trace)
        self._reset_state()

    # ------------------------------------------------------------------ episode
    def _reset_state(self) -> None:
        # One map: the agent integrates depth into it; the guide and its value map read and project onto it.
        self.map = ObstacleMap(**self.map_kwargs)
        self.navigator = Navigator(self.map, PathPlanner(self.map, **self.path_kwargs), **self.nav_kwargs)
        self.goal: GoalEstimate | None = None
        self.goal_score = 0.0
        self.rollout = None
        self.candidates: list[Candidate] = []
        self.best: Candidate | None = None
        self.pose = np.zeros(3)
        self.instruction = ""  # what the models are given (``read_instruction``)
        self.last_action: int | None = None
        self.since_imagine = 0
        self.force_imagine = True
        self.rejected: list[np.ndarray] = []  # imagined goals the guide did not confirm at STOP
        self.rejected_support: list[int] = []  # imaginations that put a goal at each rejected location
        self.goal_support = 0  # imaginations fused into the held goal
        self.explorer = FrontierExplorer(self.navigator, give_up_steps=self.give_up_steps,
                                         frontier_min_size=self.frontier_min_size)
        self.stats = {"imaginations": 0, "imagine_seconds": 0.0, "steps_with_goal": 0, "steps": 0,
                      "guide_steps": 0, "guide_stops": 0, "unconfirmed_goals": 0, "trusted_stops": 0,
                      "scans": 0, "scan_steps": 0, "scan_stops": 0, "close_in_steps": 0}
        self.scan_turned: float | None = None  # degrees turned in the current arrival scan (None: not scanning)
        self.scan_yaw = 0.0
        self.closing: int | None = None  # forward steps left before the STOP a confirmed arrival earned (close_in_steps)
        self.obs: dict | None = None
        self.last_check: dict | None = None  # the goal check's answer at the last arrival
        self.trace_records: list[dict] = []
        self.stop_records: list[dict] = []  # arrivals at imagined goals and the stop decision (trace)
        self.travelled_m = 0.0

    def reset(self, obs: dict, info: dict | None = None, context: dict | None = None) -> None:
        check_observation(obs, self.map.max_reach_m)  # before any state changes
        if not isinstance(obs.get("instruction"), str):
            raise ValueError(f"observation instruction must be a string, got {obs.get('instruction')!r}")
        self.buffer.clear()
        self._reset_state()
        episode_id = (info or {}).get("episode_id", "")
        self.rng = episode_rng(self.seed, episode_id)
        text = str(obs["instruction"])
        self.instruction = read_text(text).canonical if self.read_instruction else text
        has_tour = context is not None and len(context.get("rgb", ()))
        tour_mapped = False
        if self.guide is not None:
            self.value_map.reset(self.instruction, self.map)
            guided_tour = bool(self.guide_use_tour and has_tour)
            # the guide's own random stream (frontier ties), seeded like the agent's
            self.guide.reset(episode_rng(self.seed, episode_id), look_around=0 if guided_tour else 11)
            if guided_tour:  # score and project the tour, integrating its depth into the map frame by frame
                self.value_map.add_tour(context, update_map=True)
                tour_mapped = True
        if has_tour:
            self.buffer.add_tour(context["rgb"], context["poses"], context.get("indices"), context.get("depth"))
            if self.use_tour_map and not tour_mapped and context.get("depth") is not None:
                pitch = np.asarray(context.get("pitch", np.zeros(len(context["rgb"]))), np.float64).reshape(-1)
                for d, p, pt in zip(context["depth"], np.asarray(context["poses"], np.float64), pitch):
                    self.map.update(d, p, pitch=float(pt))

    # ------------------------------------------------------------------ imagination
    def _imagine_rollouts(self, sample) -> tuple[np.ndarray, np.ndarray, object]:
        """(N, T, H, W, 3) frames and (N, B, H, W, 3) bbox frames of N imagined candidates."""
        n, (h, w) = self.num_candidates, self.frame_size
        if self.ablation == "noise":
            frames = self.rng.integers(0, 256, (n, self.num_target, h, w, 3), dtype=np.uint8)
            boxes = self.rng.integers(0, 256, (n, self.num_bbox, h, w, 3), dtype=np.uint8)
            return frames, boxes, None
        kwargs = dict(self.sampling, num_samples=n, seed=int(self.rng.integers(2 ** 31)))
        if "context_poses" in self._imagine_params:  # a pose-aware SSG prompter reads them
            kwargs["context_poses"] = sample.poses
        ctx = nullcontext()
        if self.ablation == "no_ssg":
            from world_model.ssg import ssg_disabled, ssg_processors

            transformer = self.pipeline.model.transformer
            if ssg_processors(transformer):
                ctx = ssg_disabled(transformer)
            elif not self._warned_ssg:
                warnings.warn("ablation='no_ssg': this world-model checkpoint has no SSG adapter, so the "
                              "ablation is identical to 'none'", stacklevel=2)
                self._warned_ssg = True
            if "ssg" in self._imagine_params:
                kwargs["ssg"] = None
        with ctx:
            rollout = self.pipeline.imagine(sample.frames, sample.indices, self.instruction, **kwargs)
        if rollout.samples is not None:
            return rollout.samples, rollout.sample_bbox_frames, rollout
        return rollout.frames[None], rollout.bbox_frames[None], rollout

    def imagine(self) -> GoalEstimate | None:
        """Imagine N candidates from the current context, rank them, update the goal belief."""
        t0 = time.perf_counter()
        relevance = None
        if self.context_mode == "relevant":
            relevance = np.asarray(self.value_map.scores)  # one CLIP score per buffered frame, in order
            if len(relevance) != len(self.buffer):
                raise RuntimeError(f"CLIP guide scores ({len(relevance)}) out of step with the context buffer "
                                   f"({len(self.buffer)})")
        sample = self.buffer.sample(self.num_context, self.rng, self.context_mode, relevance=relevance,
                                    temperature=self.context_temperature)
        frames, bbox, rollout = self._imagine_rollouts(sample)
        refs, ref_poses, ref_thumbs = self.buffer.frames, self.buffer.poses, self.buffer.thumbnails()
        motion = None
        if self.inverse_dynamics is not None:
            from planners.inverse_dynamics import integrate

        cands = []
        for i in range(len(frames)):
            if self.inverse_dynamics is not None:
                motion = integrate(self.inverse_dynamics, frames[i])[-1]
            cands.append(read_candidate(i, frames[i], bbox[i], self.pose, ref_frames=refs, ref_poses=ref_poses,
                                        ref_depth=self.buffer.depth, obstacle_map=self.map, min_match=self.min_match,
                                        depth_match=self.depth_match, motion_rel_pose=motion,
                                        box_kwargs=self.box_kwargs, goal_kwargs=self.goal_kwargs,
                                        ref_thumbs=ref_thumbs))
        best, goal = rank_candidates(cands, agree_m=self.agree_m, elite_frac=self.elite_frac)
        self.candidates, self.best = cands, best
        shown = best.index if best else 0
        self.rollout = {"frames": frames[shown], "bbox_frames": bbox[shown], "box": best.box if best else None,
                        "thumbs": view_thumbnails(frames[shown]), "pipeline_rollout": rollout}
        self._update_goal(goal, best.score if best else 0.0)
        if self.trace:
            self._trace(frames, cands, best, ref_thumbs)
        self.since_imagine = 0
        self.force_imagine = False
        self.stats["imaginations"] += 1
        self.stats["imagine_seconds"] += time.perf_counter() - t0
        return goal

    def _trace(self, frames, cands: list[Candidate], best: Candidate | None, ref_thumbs, top_k: int = 3) -> None:
        """One record per boxed candidate of this imagination (``trace``): only what the agent itself
        knows; ground truth is joined offline (``agent.failure_modes.goal_placement``)."""
        n_tour = int(self.buffer.is_tour.sum())
        for c in cands:
            if c.box is None or c.goal is None:
                continue
            sims = ref_thumbs @ view_thumbnails(frames[c.index][-1])
            top = np.argsort(-sims)[:top_k]
            self.trace_records.append({
                "step": int(self.stats["steps"]), "candidate": int(c.index), "best": best is c,
                "box": [float(c.box.x0), float(c.box.y0), float(c.box.x1), float(c.box.y1)],
                "image_hw": [int(v) for v in c.box.image_hw], "box_confidence": float(c.box.confidence),
                "localization": c.localization, "view_match": float(c.view_match),
                "view_pose": [float(v) for v in c.view_pose], "pose": [float(v) for v in self.pose],
                "matches": [int(i) for i in top], "match_sims": [float(sims[i]) for i in top],
                "match_is_tour": [bool(i < n_tour) for i in top],
                "match_poses": [[float(v) for v in self.buffer.poses[i]] for i in top],
                "goal": [float(v) for v in c.goal.xy], "goal_source": c.goal.source, "score": float(c.score),
                "belief": None if self.goal is None else [float(v) for v in self.goal.xy],
            })

    def _update_goal(self, goal: GoalEstimate | None, score: float) -> None:
        """Belief update: agreeing evidence is fused, a stronger new goal replaces a weaker old one,
        and an unconfirmed old goal loses weight each time imagination does not support it."""
        self.goal_score *= 0.7
        support = 1
        near = [k for k, q in enumerate(self.rejected) if goal is not None and np.linalg.norm(goal.xy - q) <= self.reject_m]
        if near:  # the guide saw no target there when the agent stood at it
            if score >= self.min_confidence:  # imagination puts a goal there again (trust_support)
                for k in near:
                    self.rejected_support[k] += 1
                support = max(self.rejected_support[k] for k in near)
            if self.trust_support is None or support < self.trust_support:
                goal = None
        if goal is not None and not self.map.can_hold(np.minimum(goal.xy, self.pose[:2]) - 1.0,
                                                      np.maximum(goal.xy, self.pose[:2]) + 1.0):
            goal = None  # a reading far outside any indoor scene (and the map's bound): not a goal
        if goal is None or score < self.min_confidence:
            if self.goal is not None and self.goal_score < self.min_confidence:
                self.goal, self.goal_support = None, 0
            return
        if self.goal is not None and np.linalg.norm(goal.xy - self.goal.xy) <= self.agree_m:
            from planners.rollout_reader import fuse_goals

            self.goal = fuse_goals(self.goal, goal)
            self.goal_score = max(self.goal_score, score) + 0.5 * min(self.goal_score, score)
            self.goal_support += support
        elif self.goal is None or score >= self.goal_score:
            self.goal, self.goal_score, self.goal_support = goal, score, support

    def _diverged(self, rgb_small: np.ndarray) -> bool:
        if self.rollout is None or self.since_imagine < 2:
            return False
        sims = self.rollout["thumbs"] @ view_thumbnails(rgb_small)
        return float(sims.max()) < self.divergence

    def _should_imagine(self, rgb_small: np.ndarray) -> bool:
        if self.force_imagine or self.rollout is None:
            return True
        every = self.reimagine_every if self.goal is not None else self.explore_reimagine_every
        return self.since_imagine >= every or (self.goal is not None and self._diverged(rgb_small))

    # ------------------------------------------------------------------ acting
    def act(self, obs: dict) -> int:
        # A bad observation (NaN or far gps, wrong shapes) is refused before anything changes, so
        # the next good one continues the episode as if the bad one never came.
        check_observation(obs, self.map.max_reach_m)
        prev = self.pose[:2].copy()
        self.pose = self.navigator.observe(obs, self.last_action)  # depth and collisions into the map
        if self.stats["steps"]:
            self.travelled_m += float(np.hypot(*(self.pose[:2] - prev)))  # odometry path length
        self.buffer.append(obs["rgb"], self.pose, obs.get("depth"))
        self.obs = obs  # the goal check reads the current view
        self.stats["steps"] += 1
        rgb_small = self.buffer.newest()[0]
        guide_action = None
        if self.guide is not None:  # score the view, then ask the guide what it would do
            self.value_map.observe(obs["rgb"], obs["depth"], self.guide.observe(obs, self.last_action, update_map=False))
            guide_action = self.guide.act()
        if self.scan_turned is None and self.closing is None and self._should_imagine(rgb_small):  # not mid-scan
            self.imagine()
        self.since_imagine += 1
        action = self._act_on_belief(guide_action)
        self.last_action = int(action)
        return int(action)

    def _act_on_belief(self, guide_action: int | None = None) -> int:
        if self.closing is not None:  # a confirmed arrival: the last steps towards the target, then STOP
            return self._close_in_step()
        if self.goal is None:
            self.scan_turned = None
        if guide_action == Action.STOP:  # CLIP recognises the target, close and centred
            self.stats["guide_stops"] += 1
            return int(Action.STOP)
        if self.scan_turned is not None and self.goal is not None:
            self.stats["steps_with_goal"] += 1
            action = self._scan_step(self.goal)
            if action is not None:
                return int(action)
        elif self.goal is not None:
            self.stats["steps_with_goal"] += 1
            action = self._act_on_goal(self.goal)
            if action is not None:
                return int(action)
        if guide_action is not None:
            self.stats["guide_steps"] += 1
            return int(guide_action)
        return int(self._explore())

    def _act_on_goal(self, g: GoalEstimate) -> int | None:
        """STOP, a step towards ``g`` or a turn to face it; None when the goal was dropped (the
        caller then lets the guide act, or explores)."""
        if self.stop_policy.should_stop(self.pose, g.xy, g.confidence, g.radius_m):
            if self._confirmed():
                self._trace_stop_check(g, "confirmed")
                return self._confirmed_stop()
            if self.trust_support is not None and self.goal_support >= self.trust_support:
                self.stats["trusted_stops"] += 1  # imagination agreed with itself: STOP without CLIP
                self._trace_stop_check(g, "trusted")
                return int(Action.STOP)
            if self.goal_check is not None and self.last_check is not None and self.scan_deg > 0:
                self._trace_stop_check(g, "scan")  # look around from here before giving the goal up
                self.stats["scans"] += 1
                self.scan_turned, self.scan_yaw = 0.0, float(self.pose[2])
                return self._scan_turn()
            self._reject(g)
            return None
        a = self.navigator.act(g.xy)
        if a is not None and a != Action.STOP:
            self.explorer.idle_steps = 0
            return int(a)
        # At (or unable to get nearer to) the estimate without leave to stop: face it and look
        # again from here; if it is in view already, the estimate was wrong, so drop it.
        if not goal_in_view(self.pose, g.xy, self.hfov_deg):
            self.force_imagine = True
            return int(self._turn_towards(g.xy))
        self._drop_goal()
        return None

    def _scan_step(self, g: GoalEstimate) -> int | None:
        """One step of an arrival scan (``scan_deg``): check the view the last turn brought, STOP when the
        goal check accepts it, else turn on, or give the goal up once the scan has turned far enough."""
        turn = abs(math.degrees(wrap_angle(float(self.pose[2]) - self.scan_yaw)))
        self.scan_turned += turn
        self.scan_yaw = float(self.pose[2])
        if self._confirmed():
            self.stats["scan_stops"] += 1
            self._trace_stop_check(g, "confirmed")
            self.scan_turned = None
            return self._confirmed_stop()
        # the scan ends at scan_deg, or when a turn did not turn the agent (by its own compass)
        if self.scan_turned >= self.scan_deg - 1e-6 or turn < 1e-3:
            self.scan_turned = None
            self._reject(g)
            return None
        self._trace_stop_check(g, "scan")
        return self._scan_turn()

    def _confirmed_stop(self) -> int:
        """The stop check accepted the view: STOP, after the forward steps ``close_in_count`` reads off this
        view (``close_in_steps``; docs/experiments/2026-12-07-close-in.md)."""
        k = 0
        if self.close_in_steps > 0 and self.obs is not None and self.obs.get("depth") is not None:
            k = close_in_count(self.obs["depth"], self.close_in_depth_m, self.close_in_steps)
        self.closing = k
        return self._close_in_step()

    def _close_in_step(self) -> int:
        if self.closing:
            self.closing -= 1
            self.stats["close_in_steps"] += 1
            return int(Action.MOVE_FORWARD)
        self.closing = None
        return int(Action.STOP)

    def _scan_turn(self) -> int:
        self.stats["scan_steps"] += 1
        return int(Action.TURN_LEFT)

    def _reject(self, g: GoalEstimate) -> None:
        """The stop check refused the imagined goal ``g``: remember the place and drop the goal."""
        self.stats["unconfirmed_goals"] += 1
        self._trace_stop_check(g, "vetoed")
        self.rejected.append(np.asarray(g.xy, np.float64).copy())
        self.rejected_support.append(self.goal_support)
        self._drop_goal()

    def _drop_goal(self) -> None:
        self.goal, self.goal_score, self.goal_support = None, 0.0, 0
        self.force_imagine = True

    def _trace_stop_check(self, g: GoalEstimate, decision: str) -> None:
        """One record per arrival at an imagined goal (``trace``): what the stop decision saw, so
        ``agent.failure_modes.stop_checks`` can join it with where the agent really stood."""
        if not self.trace:
            return
        view = None if self.value_map is None else self.value_map.last_view
        rec = {"step": int(self.stats["steps"]), "pose": [float(v) for v in self.pose],
               "goal": [float(v) for v in g.xy], "goal_confidence": float(g.confidence),
               "goal_score": float(self.goal_score), "support": int(self.goal_support), "decision": decision,
               "z": None if view is None else float(view["z"]),
               "clip_score": None if view is None else float(view["score"])}
        if self.last_check is not None:
            rec["goal_check_p"] = float(self.last_check["p_success"])
            rec["goal_check_visible"] = float(self.last_check["p_visible"])
        rec["travelled_m"] = float(self.travelled_m)
        if self.rollout is not None:  # how much the real view looks like the imagination
            sims = self.rollout["thumbs"] @ view_thumbnails(self.buffer.newest()[0])
            rec["imagined_match"] = float(sims.max())
            rec["imagined_final_match"] = float(sims[-1])
        self.stop_records.append(rec)

    def _confirmed(self) -> bool:
        """The check of a STOP at an imagined goal: the goal check's p(success here) when the agent has
        one, else the guide's CLIP z-score of the current view."""
        self.last_check = None
        if self.goal_check is not None and self.obs is not None and self.obs.get("depth") is not None:
            self.last_check = self.goal_check.check(self.obs["rgb"], self.obs["depth"], self.instruction)
            return self.last_check["stop"]
        if self.value_map is None or self.stop_confirm_z is None or self.value_map.last_view is None:
            return True
        return bool(self.value_map.last_view["z"] >= self.stop_confirm_z)

    def _turn_towards(self, xy) -> Action:
        b = wrap_angle(math.atan2(xy[1] - self.pose[1], xy[0] - self.pose[0]) - self.pose[2])
        return Action.TURN_LEFT if b > 0 else Action.TURN_RIGHT

    def _explore(self) -> int:
        """Nearest reachable frontier, else a free point far from the agent's own path (new
        viewpoints to imagine from); turn in place when neither is reachable, STOP after
        ``give_up_steps`` idle steps (``FrontierExplorer``)."""
        return self.explorer.act(self.pose, lambda: self.buffer.poses[~self.buffer.is_tour][:, :2], self.rng)

    # ------------------------------------------------------------------ introspection
    def episode_stats(self) -> dict:
        """Per-episode counters the runner adds to the episode's row."""
        s = dict(self.stats)
        s["goal_fraction"] = s["steps_with_goal"] / max(1, s["steps"])
        s["instruction"] = self.instruction  # as the models read it (``read_instruction``)
        if self.trace:
            s["trace"] = list(self.trace_records)
            s["stop_checks"] = list(self.stop_records)
        return s

    def debug_panels(self) -> dict[str, np.ndarray]:
        """Video panels (``agent.video.panel_frame``):

        * ``imagined``: the last imagination's target frames, then its bbox frame with the box the
          reader found outlined in green, then the posed real frame the imagined final view was
          matched to (retrieval; black when the candidate had no box to place);
        * ``map``: the agent's own obstacle map with its pose, the planned path (orange), the goal
          estimate (red dot, 2-sigma circle) or, while exploring, the frontier target (blue).
        """
        h, w = self.frame_size
        black = np.zeros((h, w, 3), np.uint8)
        if self.rollout is None:
            imagined = np.zeros((h, w * (self.num_target + 2), 3), np.uint8)
        else:
            bbox = self.rollout["bbox_frames"][-1]
            det = self.rollout["box"]
            if det is not None:
                bbox = draw_box(bbox, (det.x0, det.y0, det.x1, det.y1), thickness=1, color=(0, 255, 0))
            matched = black
            if self.best is not None and "match_index" in self.best.extras:
                matched = self.buffer.frame(int(self.best.extras["match_index"]))
            imagined = np.concatenate(list(self.rollout["frames"]) + [bbox, matched], axis=1)
        g = self.goal
        target = self.explorer.target
        marks = [] if g is not None or target is None else [(target, (40, 90, 255))]
        mp = self.map.to_image(pose=self.pose, path=self.navigator.path, goal=None if g is None else g.xy,
                               goal_radius=None if g is None else g.radius_m, marks=marks)
        return {"imagined": imagined, "map": mp}

    def debug_caption(self) -> str:
        """One line for the video: the instruction and what the agent believes right now."""
        s = f'"{self.instruction}"  step {self.stats["steps"]}, {self.stats["imaginations"]} imaginations'
        if self.goal is not None:
            d = float(np.linalg.norm(self.goal.xy - self.pose[:2]))
            s += f"; goal {d:.1f} m away ({self.goal.source}, score {self.goal_score:.2f})"
        elif self.best is not None and self.best.box is not None:
            s += f"; box seen, too weak (score {self.best.score:.2f})"
        else:
            s += "; no box: exploring"
        if self.goal is None and self.guide is not None:
            n = int(self.guide.candidates)
            s += f" with the CLIP guide ({n} recognised view{'s' if n != 1 else ''})"
        if self.ablation != "none":
            s += f"  [ablation={self.ablation}]"
        return s


__all__ = ["WorldModelAgent", "ABLATIONS", "load_pipeline"]
