"""Atari tasks: every game ale-py ships, with the standard preprocessing.

Frames are 80x80 grayscale (80 is divisible by 16: 25 patches, no padding), 4
frames skipped (max-pooled over the last two), sticky actions with probability
0.25 (ALE v5 default), up to 30 no-op starts (for games whose action 0 is NOOP),
the minimal action set, no frame stacking (Gato's transformer sees the history),
and the full game as an episode. :func:`dynamics` states these settings as data.

**Raw frames for an expert's own view.** An expert trained elsewhere (an RL Zoo agent
sees 84x84 frames stacked 4 deep) computes its observation from the screen, not from
kibble's 80x80 frame. Every Atari task environment is wrapped in :class:`RawFrames`
(outermost), whose ``raw_frame()`` returns the RGB screen behind the current
observation: after a step, the element-wise maximum of the last two of the skipped
frames (as ``AtariPreprocessing`` pools its grayscale frames, and as SB3's
``MaxAndSkipEnv`` pools RGB frames); after a reset, the screen after the no-op start.
Capturing costs two screen copies per agent step, so it is off until the first
``raw_frame()`` call (right after a reset); recorded observations never change.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing

FAMILY = "atari"
SCREEN_SIZE = 80
FRAME_SKIP = 4
STICKY_ACTIONS = 0.25
NOOP_MAX = 30


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


@cache
def _action_meanings(name: str) -> tuple[str, ...]:
    task_names()  # registers the ALE environments
    env = gym.make(f"ALE/{name}-v5", full_action_space=False)
    try:
        return tuple(env.unwrapped.get_action_meanings())
    finally:
        env.close()


def dynamics(name: str) -> dict[str, Any]:
    """How the task's environment moves, as an expert trained elsewhere must match it.

    ``frame_skip``: emulator frames per agent step; ``max_pool``: observations pool the
    last two of them; ``sticky_actions``: probability that the emulator repeats the
    previous action on a frame; ``noop_max``: up to that many NOOP steps after a reset;
    ``terminal_on_life_loss``: a lost life ends the episode; ``fire_reset``: FIRE is
    pressed automatically at reset; ``full_action_space``: all 18 actions.
    """
    has_noop = _action_meanings(name)[0] == "NOOP"
    return {
        "game": name,
        "frame_skip": FRAME_SKIP,
        "max_pool": True,
        "sticky_actions": STICKY_ACTIONS,
        "noop_max": NOOP_MAX if has_noop else 0,
        "terminal_on_life_loss": False,
        "fire_reset": False,
        "full_action_space": False,
    }


def make(name: str, **options: Any) -> gym.Env:
    task_names()  # registers the ALE environments
    env = gym.make(
        f"ALE/{name}-v5",
        frameskip=1,  # AtariPreprocessing skips frames (and max-pools the last two)
        repeat_action_probability=STICKY_ACTIONS,
        full_action_space=False,
        **options,
    )
    # No-op starts need a NOOP action; a few games' minimal action sets have none first.
    has_noop = env.unwrapped.get_action_meanings()[0] == "NOOP"
    tap = _ScreenTap(env)
    env = AtariPreprocessing(
        tap,
        noop_max=NOOP_MAX if has_noop else 0,
        frame_skip=FRAME_SKIP,
        screen_size=SCREEN_SIZE,
        grayscale_obs=True,
        grayscale_newaxis=True,  # (80, 80, 1): an image observation with a channel axis
        terminal_on_life_loss=False,
    )
    return RawFrames(env, tap)


class _ScreenTap(gym.Wrapper):
    """Under the frame skip: keeps the RGB screens of the last two emulator frames of a
    step (the frames ``AtariPreprocessing`` pools), once enabled."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.enabled = False
        self.frame = 0  # emulator frames into the current agent step
        self.screens: list[np.ndarray] = []

    def start_step(self) -> None:
        self.frame = 0
        self.screens.clear()

    def step(self, action: Any) -> Any:
        out = self.env.step(action)
        self.frame += 1
        if self.enabled and self.frame >= FRAME_SKIP - 1:
            self.screens.append(self.env.unwrapped.ale.getScreenRGB())
            if len(self.screens) > 2:  # no-op steps inside a reset
                del self.screens[0]
        return out


class RawFrames(gym.Wrapper):
    """The task's environment, plus ``raw_frame()``: the RGB screen behind its observation.

    ``frame_index`` counts resets and steps, so a reader can tell a new frame from one
    it has already seen.
    """

    def __init__(self, env: gym.Env, tap: _ScreenTap) -> None:
        super().__init__(env)
        self._tap = tap
        self._after_reset = True
        self.frame_index = 0

    def reset(self, **kwargs: Any) -> Any:
        out = self.env.reset(**kwargs)
        self._tap.start_step()
        self._after_reset = True
        self.frame_index += 1
        return out

    def step(self, action: Any) -> Any:
        self._tap.start_step()
        out = self.env.step(action)
        self._after_reset = False
        self.frame_index += 1
        return out

    def raw_frame(self, pool: bool = True) -> np.ndarray:
        """(210, 160, 3) uint8: the RGB screen of the last step (``pool``: the element-wise
        maximum of its last two emulator frames), or the reset's."""
        if self._after_reset:
            self._tap.enabled = True  # from here on, steps keep their screens
            return self.env.unwrapped.ale.getScreenRGB()
        if not self._tap.enabled:
            raise RuntimeError(
                "raw_frame() was first called in the middle of an episode; call it right "
                "after reset() so the following steps keep their screens"
            )
        screens = self._tap.screens
        if not screens:  # the step ended the game before its last frames: no observation
            return self.env.unwrapped.ale.getScreenRGB()  # any agent acts on
        if not pool or len(screens) == 1:
            return screens[-1]
        return np.maximum(screens[-2], screens[-1])
