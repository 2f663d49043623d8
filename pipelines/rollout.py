"""Roll one policy out in one environment and record an ``Episode``."""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from kibble.schemas.records import Episode


class Policy(Protocol):
    name: str

    def act(self, observation: Any) -> Any: ...


def make_episode_id(task: str, base_seed: int, index: int) -> str:
    """Stable id of the ``index``-th episode of ``task`` in a job with base seed ``base_seed``."""
    return f"{task}#s{base_seed}#{index:06d}"


def _stack(values: list[Any]) -> Any:
    """A list of T nested values -> one nested value of arrays with leading axis T."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _stack([v[k] for v in values]) for k in first}
    if isinstance(first, tuple):
        return tuple(_stack([v[i] for v in values]) for i in range(len(first)))
    return np.stack([np.asarray(v) for v in values])


def rollout_episode(
    env: gym.Env,
    policy: Policy,
    task: str,
    episode_id: str,
    seed: int,
    max_steps: int | None = None,
) -> Episode:
    """Reset ``env`` with ``seed`` and step ``policy`` until the episode ends.

    ``max_steps`` cuts the rollout (both flags stay False on the last step then,
    so a cut episode is told apart from one the environment ended).
    """
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, terminated, truncated = [], [], [], [], []
    while True:
        action = policy.act(obs)
        observations.append(obs)
        actions.append(action)
        obs, reward, term, trunc, _ = env.step(action)
        rewards.append(float(reward))
        terminated.append(bool(term))
        truncated.append(bool(trunc))
        if term or trunc or (max_steps is not None and len(rewards) >= max_steps):
            break
    return Episode(
        task=task,
        episode_id=episode_id,
        observations=_stack(observations),
        actions=_stack(actions),
        rewards=np.asarray(rewards, np.float64),
        terminated=np.asarray(terminated, bool),
        truncated=np.asarray(truncated, bool),
        seed=seed,
        expert=policy.name,
    )
