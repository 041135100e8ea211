"""Agents, the episode runner and the ``spatialnav`` CLI.

``agent.base``: the ``Agent`` protocol and the name -> factory registry;
``agent.baselines``: Random and (privileged) Oracle; ``agent.runner``:
resumable evaluation (``agent.fair_play``: what an agent is given; ``agent.episode_log``,
``agent.provenance``, ``agent.sharding``: its files, fingerprint and shards; ``agent.tables``,
``agent.comparison``: its tables and paired comparisons); ``agent.video``: drawing video frames and pictures;
``agent.picture``: the README's episode picture;
``agent.cli``: the console script.
"""

from agent.base import Agent, available_agents, make_agent, register_agent

__all__ = ["Agent", "available_agents", "make_agent", "register_agent"]
