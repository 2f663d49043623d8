"""Atari tasks: every game ale-py ships, with the standard preprocessing.

Frames are 80x80 grayscale (80 is divisible by 16: 25 patches, no padding), 4
frames skipped (max-pooled over the last two), sticky actions with probability
0.25 (ALE v5 default), up to 30 no-op starts (for games whose action 0 is NOOP),
the minimal action set, no frame stacking (Gato's transformer sees the history),
and the full game as an episode.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import AtariPreprocessing

FAMILY = "atari"
SCREEN_SIZE = 80


def available() -> bool:
    return importlib.util.find_spec("ale_py") is not None


@cache
def task_names() -> list[str]:
    import ale_py

    gym.register_envs(ale_py)
    return sorted(
        k[len("ALE/") : -len("-v5")]
        for k in gym.registry
        if k.startswith("ALE/") and k.endswith("-v5")
    )


def knows(name: str) -> bool:
    return name in task_names()


def describe(name: str) -> tuple[tuple[str, ...], str]:
    return ("rllib", "random"), ""


def make(name: str, **options: Any) -> gym.Env:
    task_names()  # registers the ALE environments
    env = gym.make(
        f"ALE/{name}-v5",
        frameskip=1,  # AtariPreprocessing skips frames (and max-pools the last two)
        repeat_action_probability=0.25,
        full_action_space=False,
        **options,
    )
    # No-op starts need a NOOP action; a few games' minimal action sets have none first.
    has_noop = env.unwrapped.get_action_meanings()[0] == "NOOP"
    env = AtariPreprocessing(
        env,
        noop_max=30 if has_noop else 0,
        frame_skip=4,
        screen_size=SCREEN_SIZE,
        grayscale_obs=True,
        grayscale_newaxis=True,  # (80, 80, 1): an image observation with a channel axis
        terminal_on_life_loss=False,
    )
    return env
