"""Procgen tasks: the 16 games (``procgen2``, imported as ``procgen``), Gymnasium API.

Observations are 64x64x3 uint8 frames (4 patches a side), actions Discrete(15),
``distribution_mode="easy"`` by default, and unlimited levels. ``reset(seed=s)``
starts a fresh game whose level sequence is drawn from ``s`` (building it takes
about 0.5 s); ``reset()`` without a seed goes on to the next level of the same
sequence (instant), so a worker seeds once and then runs its episodes in order,
reproducibly. Procgen ends episodes after 1000 steps: that is a truncation.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

FAMILY = "procgen"
MAX_STEPS = 1000
GAMES = [
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
]  # fmt: skip


def available() -> bool:
    return importlib.util.find_spec("procgen") is not None


def task_names() -> list[str]:
    return list(GAMES)


def knows(name: str) -> bool:
    return name in GAMES


def describe(name: str) -> tuple[tuple[str, ...], str]:
    return ("rllib", "random"), ""


def static_spaces(name: str) -> tuple[spaces.Space, spaces.Space]:
    """Every game has the same spaces: no need to build one to know them."""
    return ProcgenEnv.observation_space, ProcgenEnv.action_space


def make(name: str, distribution_mode: str = "easy") -> gym.Env:
    return ProcgenEnv(name, distribution_mode=distribution_mode)


def _import_procgen() -> Any:
    """``procgen.ProcgenGym3Env``, imported without the old Gym's banner.

    procgen imports the unmaintained ``gym`` package, whose import prints a notice of
    several lines (from ``gym_notices``) to stderr: in every process that plays Procgen,
    so on every rollout worker. kibble never uses that ``gym``; its notice for the
    installed version is blanked while it is imported. Nothing else is hidden: warnings
    and errors of the import still show.
    """
    if "gym" not in sys.modules:
        try:
            import gym_notices.notices as gym_notices
        except ImportError:  # no notices to print
            gym_notices = None
        if gym_notices is not None:
            notices = gym_notices.notices
            gym_notices.notices = {}
            try:
                import procgen  # noqa: F401  (imports gym, which finds no notice)
            finally:
                gym_notices.notices = notices
    from procgen import ProcgenGym3Env

    return ProcgenGym3Env


class ProcgenEnv(gym.Env):
    """One Procgen game (a gym3 vector env of 1) behind the Gymnasium API."""

    observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = spaces.Discrete(15)

    def __init__(self, game: str, distribution_mode: str = "easy") -> None:
        self.game, self.distribution_mode = game, distribution_mode
        self._env: Any = None
        self._t = 0

    def _start(self, seed: int) -> None:
        ProcgenGym3Env = _import_procgen()

        self._env = ProcgenGym3Env(
            num=1,
            env_name=self.game,
            num_levels=0,
            start_level=0,
            rand_seed=seed,
            distribution_mode=self.distribution_mode,
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._env is None:
            self._start(0 if seed is None else int(seed))
        # gym3 has already started the next level after the previous one ended.
        _, obs, _ = self._env.observe()
        self._t = 0
        return obs["rgb"][0].copy(), {"level_seed": self._env.get_info()[0].get("level_seed")}

    def step(self, action: int):
        self._env.act(np.asarray([action], np.int32))
        reward, obs, first = self._env.observe()
        self._t += 1
        info = self._env.get_info()[0]
        done = bool(first[0])
        # On `first`, gym3 already shows the next level's first frame; the last frame of
        # this one is not available (kibble does not store final observations).
        truncated = done and self._t >= MAX_STEPS and not info.get("prev_level_complete", 0)
        terminated = done and not truncated
        return obs["rgb"][0].copy(), float(reward[0]), terminated, truncated, info
