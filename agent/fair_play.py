"""Fair play: what the runner hands an agent, decided by the agent's class alone.

Every agent but a privileged one (class attribute ``privileged = True``, the Oracle) sees only the
observation, ``PUBLIC_INFO_KEYS`` of the info and the context tour's ``PUBLIC_CONTEXT_KEYS``, and
is built with a ``SensorView`` of the env (its sensor settings, nothing else). The metrics in
``info`` (distance_to_goal, success, ...) are ground truth and never reach it. ``episode_id``
reaches it only as an opaque token (``episode_token``): the real id names the scene seed
("val_100003_2"), which would let an agent rebuild the scene; the token serves only to seed the
agent's randomness per episode. ``agent_access`` is the one decision; ``build_agent`` builds an
agent by it.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from agent.base import make_agent

# The info keys and the context tour's fields a non-privileged agent sees.
PUBLIC_INFO_KEYS = ("episode_id",)
PUBLIC_CONTEXT_KEYS = ("rgb", "depth", "poses", "pitch", "indices")
# Sensor and task settings a robot would know about itself.
SENSOR_ATTRIBUTES = ("observation_space", "action_space", "width", "height", "hfov_deg", "max_depth",
                     "max_episode_steps", "success_distance")


class PrivilegedAccessError(AttributeError):
    """A non-privileged agent asked the env for ground truth."""


class SensorView:
    """The env as a non-privileged agent may see it: copies of the sensor settings, nothing else.

    It holds no reference to the env, so scene, grid, episode, pose and the like are out of
    reach; asking for them raises ``PrivilegedAccessError`` naming the rule.
    """

    def __init__(self, env) -> None:
        sim = env.unwrapped
        for k in SENSOR_ATTRIBUTES:
            if hasattr(sim, k):
                object.__setattr__(self, k, getattr(sim, k))

    @property
    def unwrapped(self) -> "SensorView":
        return self

    def __getattr__(self, name: str):
        raise PrivilegedAccessError(
            f"env.{name} is not available to a non-privileged agent: it may read only obs, "
            f"info keys {PUBLIC_INFO_KEYS}, the context tour and the sensor settings {SENSOR_ATTRIBUTES} "
            f"(set `privileged = True` on the agent class to mark it as an oracle)"
        )

    def __setattr__(self, name: str, value) -> None:
        raise PrivilegedAccessError("SensorView is read-only")


@dataclasses.dataclass(frozen=True)
class Access:
    """What the runner hands an agent: ``privileged`` = built with the env itself and given the
    full info (ground truth); ``context`` = given the context tour at reset."""

    privileged: bool = False
    context: bool = False


def agent_access(agent) -> Access:
    """The one place that decides what an agent gets, from its class alone.

    ``agent`` is an agent class, a factory or an instance. Only class attributes count (read
    statically, so a property or an instance attribute cannot widen access), and only the value
    ``True`` grants: ``privileged = True`` (the Oracle) and ``needs_context = True``. A factory
    that is not a class (a function) is granted nothing before it builds; what it builds is then
    judged by its class (``build_agent``).
    """
    cls = agent if isinstance(agent, type) else type(agent)
    return Access(privileged=inspect.getattr_static(cls, "privileged", False) is True,
                  context=inspect.getattr_static(cls, "needs_context", False) is True)


def is_privileged(agent) -> bool:
    """``agent_access(agent).privileged``: decided by the class, never by an instance attribute."""
    return agent_access(agent).privileged


def build_agent(factory, env, seed=None, **kwargs) -> tuple[Any, Access]:
    """Build ``factory`` as fair play allows and return it with its ``Access``.

    A privileged class is built with ``env``; anything else with ``SensorView(env)``. The access
    is then read from the built agent's class; a privileged agent that its factory's class did not
    declare (a function returning an Oracle, a class that made itself privileged while building)
    is refused, so what it was built with and what it is given always agree.
    """
    grant = agent_access(factory)
    bot = make_agent(factory, env=env if grant.privileged else SensorView(env), seed=seed, **kwargs)
    access = agent_access(bot)
    if access.privileged and not grant.privileged:
        raise ValueError(
            f"{type(bot).__name__} is privileged but was built by {getattr(factory, '__name__', factory)!r}, "
            f"whose class does not say privileged = True: pass the agent class itself so the runner can "
            f"give it the env"
        )
    return bot, access


def episode_token(episode_id) -> str:
    """An opaque, stable stand-in for an episode id (a salted hash): the same id always gives the
    same token (so seeding stays reproducible), and the token says nothing about the scene."""
    import hashlib

    return "ep-" + hashlib.sha256(b"spatialnav-episode-token:" + str(episode_id).encode()).hexdigest()[:16]


def public_info(info: dict) -> dict:
    """The part of an env info dict a non-privileged agent may see (``episode_id`` as a token)."""
    out = {k: info[k] for k in PUBLIC_INFO_KEYS if k in info}
    if "episode_id" in out:
        out["episode_id"] = episode_token(out["episode_id"])
    return out


def public_context(context: dict | None) -> dict | None:
    """The context tour's fields a non-privileged agent may see (``PUBLIC_CONTEXT_KEYS``: frames and poses)."""
    return None if context is None else {k: context[k] for k in PUBLIC_CONTEXT_KEYS if k in context}
