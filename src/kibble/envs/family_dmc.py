"""DeepMind Control Suite tasks (``suite.BENCHMARKING``) as Gymnasium environments.

Task names are ``domain-task`` (``dmc/cartpole-swingup``). Observations are the
state: the observation dict's arrays flattened and concatenated in key order (the
order Gato's tokenizer uses for dicts), float64. ``pixels=True`` gives a uint8
``size x size x 3`` render instead (software rendering here: about 40 steps/s).
Actions are the bounded action spec. Episodes are 1000 steps; dm_control ends
them with discount 1, which is a truncation, while discount 0 is a termination.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

FAMILY = "dmc"


def available() -> bool:
    return importlib.util.find_spec("dm_control") is not None


def task_names() -> list[str]:
    from dm_control import suite

    return sorted(f"{d}-{t}" for d, t in suite.BENCHMARKING)


def knows(name: str) -> bool:
    return name in task_names()


def describe(name: str) -> tuple[tuple[str, ...], str]:
    return ("rllib", "random"), ""


def make(name: str, *, pixels: bool = False, size: int = 64, camera_id: int = 0) -> gym.Env:
    domain, task = name.split("-", 1)
    return DmControlEnv(domain, task, pixels=pixels, size=size, camera_id=camera_id)


class DmControlEnv(gym.Env):
    """A dm_control suite task behind the Gymnasium API."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        pixels: bool = False,
        size: int = 64,
        camera_id: int = 0,
    ) -> None:
        from dm_control import suite

        self._env = suite.load(domain, task, task_kwargs={"random": 0})
        self._pixels, self._size, self._camera_id = pixels, size, camera_id
        spec = self._env.action_spec()
        self.action_space = spaces.Box(
            spec.minimum.astype(np.float32), spec.maximum.astype(np.float32), dtype=np.float32
        )
        if pixels:
            self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        else:
            n = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = spaces.Box(-np.inf, np.inf, (n,), np.float64)
        self.render_mode = "rgb_array"

    def _observation(self, time_step: Any) -> np.ndarray:
        if self._pixels:
            return self.render()
        obs = time_step.observation
        return np.concatenate([np.asarray(obs[k], np.float64).reshape(-1) for k in sorted(obs)])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)  # the task's RandomState draws the initial state
        return self._observation(self._env.reset()), {}

    def step(self, action: np.ndarray):
        ts = self._env.step(np.asarray(action, np.float64))
        last = ts.last()
        terminated = bool(last and ts.discount == 0.0)
        truncated = bool(last and not terminated)
        return self._observation(ts), float(ts.reward or 0.0), terminated, truncated, {}

    def render(self) -> np.ndarray:
        return self._env.physics.render(self._size, self._size, camera_id=self._camera_id)
