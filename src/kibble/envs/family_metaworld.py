"""Meta-World tasks: the 50 v3 tasks (``metaworld/reach-v3``), each with a scripted expert.

Built with ``gym.make("Meta-World/MT1", env_name=..., seed=variations_seed)``:
observations Box(39,) float64 (hand, object and goal positions), actions
Box(-1, 1, (4,)) float32, 500 steps an episode (Meta-World's ``max_path_length``).

How goals are randomized: Meta-World's MT1 benchmark draws 50 variations of each
task (goal and object positions) from ``variations_seed`` (0 by default, the
benchmark's own). Each episode plays one of them: ``reset(seed=s)`` picks variation
``default_rng(s).integers(50)``, so the episode is a pure function of its seed
(Meta-World's own wrapper would pick from the environment's running RNG, and
ignores the reset seed). ``reset()`` without a seed picks the next variation from
that generator, so unseeded resets (RLlib's vector autoresets) still see all 50.

``end_on_success=True`` ends an episode (terminated) at the first step the task
reports success; by default episodes run to 500 steps, as in Meta-World, and
``max_episode_steps`` can only shorten them (Meta-World's own 500-step limit stays).
Meta-World's declared goal bounds are [0, 0] while real observations carry the goal,
so its observation space does not contain its observations (the env checker is off).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

FAMILY = "metaworld"
# Scripted-policy success rate below this marks a task as weak in `kibble tasks`.
WEAK_SCRIPTED_SUCCESS = 0.8
# Scripted-expert success rates measured with benchmarks/metaworld_scripted.py
# (10 episodes per task, seeds 0..9, metaworld 3.1.1, mujoco 3.3.0).
SCRIPTED_SUCCESS: dict[str, float] = {
    "assembly-v3": 1.0,
    "basketball-v3": 1.0,
    "bin-picking-v3": 1.0,
    "box-close-v3": 0.9,
    "button-press-topdown-v3": 1.0,
    "button-press-topdown-wall-v3": 1.0,
    "button-press-v3": 1.0,
    "button-press-wall-v3": 1.0,
    "coffee-button-v3": 1.0,
    "coffee-pull-v3": 1.0,
    "coffee-push-v3": 1.0,
    "dial-turn-v3": 1.0,
    "disassemble-v3": 1.0,
    "door-close-v3": 1.0,
    "door-lock-v3": 1.0,
    "door-open-v3": 1.0,
    "door-unlock-v3": 1.0,
    "drawer-close-v3": 1.0,
    "drawer-open-v3": 1.0,
    "faucet-close-v3": 1.0,
    "faucet-open-v3": 1.0,
    "hammer-v3": 1.0,
    "hand-insert-v3": 1.0,
    "handle-press-side-v3": 1.0,
    "handle-press-v3": 1.0,
    "handle-pull-side-v3": 1.0,
    "handle-pull-v3": 1.0,
    "lever-pull-v3": 1.0,
    "peg-insert-side-v3": 0.7,
    "peg-unplug-side-v3": 1.0,
    "pick-out-of-hole-v3": 1.0,
    "pick-place-v3": 1.0,
    "pick-place-wall-v3": 1.0,
    "plate-slide-back-side-v3": 1.0,
    "plate-slide-back-v3": 1.0,
    "plate-slide-side-v3": 1.0,
    "plate-slide-v3": 1.0,
    "push-back-v3": 1.0,
    "push-v3": 1.0,
    "push-wall-v3": 1.0,
    "reach-v3": 1.0,
    "reach-wall-v3": 1.0,
    "shelf-place-v3": 1.0,
    "soccer-v3": 0.7,
    "stick-pull-v3": 0.9,
    "stick-push-v3": 1.0,
    "sweep-into-v3": 0.9,
    "sweep-v3": 1.0,
    "window-close-v3": 1.0,
    "window-open-v3": 1.0,
}


def available() -> bool:
    return importlib.util.find_spec("metaworld") is not None


@cache
def task_names() -> list[str]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(ALL_V3_ENVIRONMENTS)


def knows(name: str) -> bool:
    return name in task_names()


def describe(name: str) -> tuple[tuple[str, ...], str]:
    rate = SCRIPTED_SUCCESS.get(name)
    note = ""
    if rate is not None and rate < WEAK_SCRIPTED_SUCCESS:
        note = f"weak scripted expert: success {rate:.0%} in 10 episodes"
    return ("scripted", "rllib", "random"), note


def static_spaces(name: str) -> tuple[spaces.Space, spaces.Space]:
    """For listings: every v3 task has Box(39,) observations and Box(4,) actions.

    Their bounds differ per task; build the task for its exact spaces.
    """
    return _reach_spaces()


@cache
def _reach_spaces() -> tuple[spaces.Space, spaces.Space]:
    env = make("reach-v3")
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def make(
    name: str,
    *,
    max_episode_steps: int | None = None,
    end_on_success: bool = False,
    variations_seed: int = 0,
) -> gym.Env:
    import metaworld  # noqa: F401  (registers Meta-World/MT1)

    env = gym.make(
        "Meta-World/MT1",
        env_name=name,
        seed=variations_seed,
        terminate_on_success=end_on_success,
        disable_env_checker=True,  # Meta-World's observations exceed its declared goal bounds
    )
    env = SeededVariation(env)
    if max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    return env


class SeededVariation(gym.Wrapper):
    """Pick the episode's task variation from its reset seed (see the module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        from metaworld.wrappers import PseudoRandomTaskSelectWrapper, RandomTaskSelectWrapper

        inner = env
        while not isinstance(inner, RandomTaskSelectWrapper | PseudoRandomTaskSelectWrapper):
            inner = inner.env
        inner.toggle_sample_tasks_on_reset(False)
        self._tasks = inner.tasks
        self._rng = np.random.default_rng(0)
        self.variation: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.variation = int(self._rng.integers(len(self._tasks)))
        self.env.unwrapped.set_task(self._tasks[self.variation])
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "variation": self.variation}
