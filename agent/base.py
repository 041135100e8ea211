"""The ``Agent`` protocol and the registry that resolves agents by name.

An agent maps observations to discrete actions (``envs.actions``). The runner
builds it through a factory ``factory(env=..., seed=..., **kwargs)`` so that
config (Hydra) flows into plain constructor arguments. Agents that live in
heavier modules (world model, frontier + CLIP) are registered by a
``"module:attribute"`` string and imported only when asked for.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any, Callable, Protocol, runtime_checkable

AgentFactory = Callable[..., "Agent"]


@runtime_checkable
class Agent(Protocol):
    """What the runner needs from an agent.

    ``reset`` is called once per episode with the first observation, its info
    dict and the optional context (``env.unwrapped.context_tour()``, a dict of
    rgb/depth/poses in the episode-start frame). ``act`` returns an int action.
    """

    def reset(self, obs: dict, info: dict | None = None, context: dict | None = None) -> None: ...

    def act(self, obs: dict) -> int: ...


# name -> factory, or "module:attribute" imported on first use.
_REGISTRY: dict[str, AgentFactory | str] = {
    "random": "agent.baselines:RandomAgent",
    "oracle": "agent.baselines:OracleAgent",
    "world_model": "agent.world_model_agent:WorldModelAgent",
    "frontier_clip": "agent.frontier_clip:FrontierClipAgent",
}


def register_agent(name: str, factory: AgentFactory | str, overwrite: bool = False) -> None:
    """Register ``factory`` (a callable or a lazy ``"module:attribute"`` path) as ``name``."""
    if not overwrite and name in _REGISTRY:
        raise ValueError(f"agent {name!r} is already registered (pass overwrite=True to replace it)")
    if isinstance(factory, str) and ":" not in factory:
        raise ValueError(f"lazy agent path {factory!r} must look like 'package.module:Attribute'")
    _REGISTRY[name] = factory


def available_agents() -> list[str]:
    return sorted(_REGISTRY)


def resolve_agent(name_or_factory: str | AgentFactory) -> AgentFactory:
    """A factory from a registered name, a ``"module:attribute"`` path, or a callable."""
    if callable(name_or_factory):
        return name_or_factory
    name = str(name_or_factory)
    target = _REGISTRY.get(name, name if ":" in name else None)
    if target is None:
        raise ValueError(f"unknown agent {name!r}; available: {', '.join(available_agents())}")
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ValueError(
                f"agent {name!r} lives in module {module_name!r}, which is not available yet ({e}); "
                f"available now: {', '.join(n for n in available_agents() if _importable(n))}"
            ) from e
        raise
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"agent {name!r}: module {module_name!r} has no attribute {attr!r}") from None
    if name in _REGISTRY:
        _REGISTRY[name] = factory
    return factory


def _importable(name: str) -> bool:
    target = _REGISTRY[name]
    if callable(target):
        return True
    return importlib.util.find_spec(target.partition(":")[0]) is not None


def make_agent(name_or_factory: str | AgentFactory, env: Any = None, seed: int | None = None,
               **kwargs: Any) -> Agent:
    """Build an agent; ``env`` is passed for privileged baselines (the Oracle) and for
    agents that need the env's camera settings."""
    agent = resolve_agent(name_or_factory)(env=env, seed=seed, **kwargs)
    if not isinstance(agent, Agent):
        raise TypeError(f"{name_or_factory!r} built {type(agent).__name__}, which lacks reset(obs, ...) / act(obs)")
    return agent


@functools.lru_cache(maxsize=1)
def auto_threads() -> int:
    """Torch CPU threads for the agent: the cores left free by other work (1-minute load average),
    at least 1. Oversubscribing cores that a training job keeps busy makes OpenMP spin: on this
    2-core machine one imagination took ~11 s with 2 threads beside the training job and ~1 s with 1.
    Decided once per process (later calls would count this process's own load)."""
    n = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = 0.0
    return int(max(1, min(n, n - round(load))))


def set_threads(threads) -> int | None:
    """Apply ``threads`` (None: leave torch as is; "auto": ``auto_threads()``; an int) and return it."""
    if threads is None:
        return None
    import torch

    n = auto_threads() if str(threads).lower() == "auto" else int(threads)
    torch.set_num_threads(n)
    return n
