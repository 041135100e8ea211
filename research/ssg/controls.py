"""Controls on the SSG prompt, run as ``spatialnav eval-wm`` (the same samples, metrics and files).

    python -m research.ssg.controls control=oracle|shuffle split=test n=200 eval_wm.subset=relation \\
        eval_wm.ssg=true [eval_wm.ssg_path=DIR] out_dir=runs/eval_wm/test_rel_ssg_<control>

Every argument but ``control`` is an ``eval-wm`` override (configs/config.yaml, ``eval_wm:`` block).
Each control goes through the library's one hook, ``world_model.evaluate.evaluate(ssg_control=...)``,
which hands ``imagine`` an ``ssg_prompt_fn`` per sample:

* ``oracle``: the prompter reads the true target coverage of each CLIP cell of the context frames
  (``world_model.ssg.oracle.OracleRelevance``) in place of CLIP's relevance: what a perfect "where"
  buys on grounding, never a deployable prompt (an agent does not know the target's mask).
* ``shuffle``: each sample imagines with the SSG prompt of the nearest earlier episode (cyclically)
  that yields a sample, and the learned null prompt: a gain that survives it does not come from the
  sample's own context and instruction.

The control is part of the run's fingerprint (``summary.json``'s ``config.ssg_control``), so resuming
an out_dir with another control, or with none, is refused. Compare with the plain SSG run by
``spatialnav compare compare.dirs=[OWN,CONTROL]`` (paired bootstrap over samples).
"""

from __future__ import annotations

import sys
from typing import Any

CONTROLS = ("oracle", "shuffle")


class OracleControl:
    """``ssg_prompt_fn`` per sample: the prompt built from the true target masks of its context."""

    name = "oracle"

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self._oracle = None

    def __call__(self, i: int, episode, sample, states: dict):
        from world_model.ssg.oracle import OracleRelevance

        if self._oracle is None:  # the adapter (and its CLIP grid) is loaded by evaluate, before the first sample
            self._oracle = OracleRelevance(self.pipe.ssg_prompter.clip.grid_size)
        rel = self._oracle([episode.scene_id], [episode.target_id], sample.context_poses[None])[0]
        return lambda frames, indices, instruction, poses: self.pipe.ssg_prompts(
            frames, indices, instruction, relevance=rel, poses=poses)


class ShuffleControl:
    """``ssg_prompt_fn`` per sample: the prompt of the nearest earlier episode (cyclically) that yields a
    sample. Deterministic in the sample's index, so an interrupted run resumes with the same prompts; a
    scene's state is reused from ``states`` when it is the current one."""

    name = "shuffle"

    def __init__(self, pipe, cfg) -> None:
        from world_model.eval_samples import select_episodes

        self.pipe, self.cfg = pipe, cfg
        self.episodes = select_episodes(cfg)  # the list evaluate walks (deterministic in cfg)
        self.size = int(pipe.model.config.frame_size[0])
        self.n_t = int(cfg.num_target if cfg.num_target is not None else pipe.config.num_target_frames)
        self._cache: dict[int, Any] = {}

    def prompt_of(self, i: int, states: dict):
        from world_model.eval_samples import SceneState, build_sample

        eps = self.episodes
        for step in range(1, len(eps)):
            j = (i - step) % len(eps)
            if j not in self._cache:
                ep = eps[j]
                st = states.get(ep.scene_id) or SceneState(ep.scene_id, self.size, self.cfg)
                sample, _ = build_sample(ep, st, int(self.cfg.num_context), self.n_t, self.cfg, index=0)
                self._cache[j] = None if sample is None else self.pipe.ssg_prompts(
                    sample.context, sample.context_indices, ep.instruction, poses=sample.context_poses)[0].detach()
            if self._cache[j] is not None:
                return self._cache[j]
        raise ValueError("the shuffle control needs at least two episodes that yield a sample")

    def __call__(self, i: int, episode, sample, states: dict):
        tokens = self.prompt_of(i, states)
        return lambda frames, indices, instruction, poses: (tokens, self.pipe.ssg_prompter.null_prompt(1))


def make_control(name: str, pipe, cfg):
    if name == "oracle":
        return OracleControl(pipe)
    if name == "shuffle":
        return ShuffleControl(pipe, cfg)
    raise ValueError(f"control must be one of {CONTROLS}, got {name!r}")


def run(control: str, cfg, pipe=None, clip=None) -> dict:
    """``world_model.evaluate.evaluate`` of the EvalConfig ``cfg`` with the named control; the summary."""
    from world_model.evaluate import evaluate
    from world_model.loading import load_pipeline

    if control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")
    if not cfg.ssg:
        raise ValueError(f"the {control} control changes the SSG prompt: it needs eval_wm.ssg=true "
                         "(and an adapter: eval_wm.ssg_path=..., else the shipped one)")
    if pipe is None:
        pipe = load_pipeline(cfg.pipeline)
    return evaluate(cfg, pipe=pipe, clip=clip, ssg_control=make_control(control, pipe, cfg))


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from agent.cli import CLIError, compose_config
    from world_model.eval_config import config_from_cli
    from world_model.eval_report import format_table
    from world_model.evaluate import SAMPLES_FILE, SUMMARY_FILE

    argv = list(sys.argv[1:] if argv is None else argv)
    controls = [a.partition("=")[2] for a in argv if a.startswith("control=")]
    rest = [a for a in argv if not a.startswith("control=")]
    try:
        if len(controls) != 1:
            raise ValueError(f"give one control=<{'|'.join(CONTROLS)}> (then eval-wm overrides)")
        ec = config_from_cli(compose_config(rest))
        summary = run(controls[0], ec)
    except (CLIError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Console().print(format_table(summary, f"eval-wm {ec.split} subset={ec.subset} SSG control={controls[0]}"))
    print(f"wrote {summary['out_dir']}/{SUMMARY_FILE} and {SAMPLES_FILE} ({summary['n']} samples)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
