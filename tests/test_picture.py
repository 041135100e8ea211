"""``spatialnav picture`` (agent.picture): one episode through the runner's own loop, drawn as a strip."""

from __future__ import annotations

import numpy as np
from PIL import Image

from agent.picture import record_episode, save_episode_picture
from agent.fair_play import build_agent
from envs.actions import Action


class ContextRecorder:
    """A non-privileged agent that needs the context tour: turns left 3 times, then STOP."""

    needs_context = True

    def __init__(self, env=None, seed=None):
        self.seen = []

    def reset(self, obs, info=None, context=None):
        self.seen.append((sorted(info), None if context is None else len(context["rgb"])))
        self.t = 0

    def act(self, obs):
        self.t += 1
        return int(Action.TURN_LEFT if self.t <= 3 else Action.STOP)


def test_record_episode_gives_the_agent_what_an_evaluation_gives(nav_episodes):
    from envs.gym_env import ObjectNavEnv

    env = ObjectNavEnv(episodes=nav_episodes[:1], width=16, height=16)
    try:
        bot, access = build_agent(ContextRecorder, env, seed=0)
        rec = record_episode(env, bot, 0, seed=0)
    finally:
        env.close()
    assert not access.privileged and access.context
    (info_keys, n_tour), = bot.seen
    assert n_tour and n_tour > 0  # the context tour, as run_episode gives it (the old copy gave None)
    assert "distance_to_goal" not in info_keys  # public info only
    assert len(rec["rgb"]) == 5 and rec["info"]["steps"] == 4 and rec["info"]["called_stop"]
    assert rec["rgb"][0].shape == (16, 16, 3) and rec["instruction"]


def test_save_episode_picture_writes_a_strip(tmp_path, nav_episode_file):
    path = save_episode_picture(tmp_path / "p.png", agent="oracle", episodes=nav_episode_file, width=32, height=32,
                                n_frames=3, max_episode_steps=20)
    img = np.asarray(Image.open(path))
    assert img.ndim == 3 and img.shape[0] > 32 and img.shape[1] > 3 * 32  # caption band; frames + map side by side
