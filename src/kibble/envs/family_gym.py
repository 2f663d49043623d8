"""Gymnasium tasks: classic control, MuJoCo (when mujoco is installed), any registered id.

``gym/<id>`` builds ``gymnasium.make(id)`` as registered (its own TimeLimit), so any
Gymnasium entry point, including third-party ones registered by import, is a task.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import gymnasium as gym

from kibble.errors import KibbleError

FAMILY = "gym"
CLASSIC_CONTROL = [
    "Acrobot-v1",
    "CartPole-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "Pendulum-v1",
]
MUJOCO = [
    "Ant-v5",
    "HalfCheetah-v5",
    "Hopper-v5",
    "Humanoid-v5",
    "HumanoidStandup-v5",
    "InvertedDoublePendulum-v5",
    "InvertedPendulum-v5",
    "Pusher-v5",
    "Reacher-v5",
    "Swimmer-v5",
    "Walker2d-v5",
]


def available() -> bool:
    return True


def _has_mujoco() -> bool:
    return importlib.util.find_spec("mujoco") is not None


def task_names() -> list[str]:
    return CLASSIC_CONTROL + (MUJOCO if _has_mujoco() else [])


def knows(name: str) -> bool:
    """Registered ids, and ``module:Id`` entry points (the module registers the id)."""
    if ":" in name:
        module, _, env_id = name.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise KibbleError(f"gym/{name}: cannot import {module!r}: {e}") from e
        return env_id in gym.registry
    return name in gym.registry


def describe(name: str) -> tuple[tuple[str, ...], str]:
    return ("rllib", "random"), ""


def make(name: str, **options: Any) -> gym.Env:
    if not knows(name):
        raise KibbleError(f"gym/{name}: no Gymnasium environment is registered as {name!r}")
    try:
        return gym.make(name, **options)
    except (gym.error.DependencyNotInstalled, ImportError) as e:
        raise KibbleError(f"gym/{name} needs a package that is not installed: {e}") from e
