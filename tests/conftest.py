"""Shared pytest fixtures: a few real val episodes from three procedural scenes.

Session-scoped (each xdist worker builds them once, ~3 s): tests that need an
episode file share it instead of regenerating scenes.
"""

from __future__ import annotations

import os

import pytest

# Tests share 2 cores with the rest of the team: keep BLAS/Embree from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def nav_episodes():
    """Three val episodes, one per scene (three different procedural apartments)."""
    from envs.episodes import generate_episodes

    return generate_episodes("val", 3, seed=0, episodes_per_scene=1)


@pytest.fixture(scope="session")
def nav_episode_file(nav_episodes, tmp_path_factory):
    """The same episodes saved as a habitat-layout json.gz."""
    from envs.episodes import save_episodes

    return save_episodes(tmp_path_factory.mktemp("episodes") / "val3.json.gz", nav_episodes)
