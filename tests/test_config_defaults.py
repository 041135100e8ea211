"""One source of defaults: what the CLI composes from configs/ equals what the Python API defaults to.

``WorldModelAgent()`` and ``spatialnav eval agent=world_model`` must run the same agent, ``EvalConfig()``
and ``spatialnav eval-wm`` the same evaluation, ``imagine_episode({})`` and ``spatialnav imagine`` the same
rollout. The constructors / dataclasses are the source; each YAML key is checked against them.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
AGENT_YAMLS = sorted((CONFIGS / "agent").glob("*.yaml"))


def _mismatches(yaml_block: dict, defaults: dict, where: str) -> list[str]:
    out = []
    for k, v in yaml_block.items():
        if k not in defaults:
            out.append(f"{where}: '{k}' is in the YAML but the Python side has no such setting")
        elif defaults[k] != v and not (v == {} and defaults[k] is None):  # an empty block = "none given"
            out.append(f"{where}.{k}: YAML {v!r} != Python {defaults[k]!r}")
    return out


def _agent_defaults(name: str) -> dict:
    from agent.base import resolve_agent

    params = inspect.signature(resolve_agent(name)).parameters
    return {k: p.default for k, p in params.items() if p.default is not p.empty}


def test_every_agent_yaml_is_checked():
    assert {p.stem for p in AGENT_YAMLS} >= {"world_model", "frontier_clip", "random", "oracle"}


@pytest.mark.parametrize("path", AGENT_YAMLS, ids=lambda p: p.stem)
def test_agent_yaml_equals_constructor_defaults(path):
    cfg = yaml.safe_load(path.read_text())
    name = cfg.pop("name")
    assert name == path.stem
    defaults = _agent_defaults(name)
    stop = cfg.pop("stop", None)
    assert not _mismatches(cfg, defaults, f"configs/agent/{path.name}")
    if stop is not None:  # the world-model agent's StopPolicy block: StopPolicy's defaults + the agent's own
        from agent.world_model_agent import WorldModelAgent
        from planners.path import StopPolicy

        effective = dataclasses.asdict(StopPolicy(**WorldModelAgent.STOP_DEFAULTS))
        assert not _mismatches(stop, effective, f"configs/agent/{path.name}:stop")


def test_world_model_agent_python_and_cli_defaults_are_the_measured_ones():
    # The settings docs/results.md's world_model rows were measured with (configs/agent/world_model.yaml).
    d = _agent_defaults("world_model")
    assert (d["num_steps"], d["reimagine_every"], d["explore_reimagine_every"], d["context_mode"], d["threads"]) \
        == (8, 12, 6, "relevant", 1)


def test_relevant_context_without_a_guide_is_a_clear_error():
    from agent.world_model_agent import WorldModelAgent

    with pytest.raises(ValueError, match="context_mode='relevant'.*noncontiguous"):
        WorldModelAgent(pipeline=object(), clip_guidance=False, threads=None)


def test_eval_wm_block_equals_eval_config():
    from world_model.eval_config import EvalConfig

    block = yaml.safe_load((CONFIGS / "config.yaml").read_text())["eval_wm"]
    defaults = {f.name: f.default for f in dataclasses.fields(EvalConfig)}
    assert not _mismatches(block, defaults, "config.yaml:eval_wm")


def test_imagine_block_equals_imagine_defaults():
    from world_model.imagine import DEFAULTS

    block = yaml.safe_load((CONFIGS / "config.yaml").read_text())["imagine"]
    assert set(block) == set(DEFAULTS)
    assert not _mismatches(block, DEFAULTS, "config.yaml:imagine")


def test_the_check_catches_a_disagreement():
    assert _mismatches({"num_steps": 16, "nope": 1}, {"num_steps": 8}, "x") == [
        "x.num_steps: YAML 16 != Python 8", "x: 'nope' is in the YAML but the Python side has no such setting"]


# Every section of configs/world_model/*.yaml has a reader: model + train (world_model.train.main),
# data (world_model.collect.main). A section nothing reads (a `sampling:` block, a `planner/` group) misleads.
WORLD_MODEL_SECTIONS = {"model", "train", "data"}


@pytest.mark.parametrize("path", sorted((CONFIGS / "world_model").glob("*.yaml")), ids=lambda p: p.stem)
def test_world_model_presets_hold_only_sections_that_are_read(path):
    assert set(yaml.safe_load(path.read_text())) <= WORLD_MODEL_SECTIONS



@pytest.mark.parametrize("group", ["env/default.yaml", "task/objectnav.yaml"])
def test_env_and_task_yaml_equal_the_env_defaults(group):
    from envs.gym_env import ObjectNavEnv

    params = inspect.signature(ObjectNavEnv).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not p.empty}
    assert not _mismatches(yaml.safe_load((CONFIGS / group).read_text()), defaults, f"configs/{group}")
