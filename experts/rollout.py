"""Roll a policy out in several environments at once and record ``Episode``s.

``run_episodes`` keeps ``num_envs`` environments stepping in lockstep so the policy
sees a batch of observations per call (one forward pass for a neural expert).
Each episode depends only on its seed and the policy, never on how many
environments ran beside it or in which slot, so results are reproducible (every
reset here is seeded; RLlib's own training loop is another matter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from kibble.experts.policy import EnvironmentAware, Policy
from kibble.schemas.records import Episode


@dataclass(frozen=True)
class EpisodeJob:
    """One episode to roll out: its id and its reset seed."""

    episode_id: str
    seed: int


def make_episode_id(task: str, base_seed: int, index: int) -> str:
    """Stable id of the ``index``-th episode of ``task`` in a job with base seed ``base_seed``."""
    return f"{task}#s{base_seed}#{index:06d}"


def stack_values(values: list[Any]) -> Any:
    """A list of T nested values -> one nested value of arrays with leading axis T."""
    first = values[0]
    if isinstance(first, dict):
        return {k: stack_values([v[k] for v in values]) for k in first}
    if isinstance(first, tuple):
        return tuple(stack_values([v[i] for v in values]) for i in range(len(first)))
    return np.stack([np.asarray(v) for v in values])


@dataclass
class _Recorder:
    job: EpisodeJob
    observation: Any
    observations: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    terminated: list = field(default_factory=list)
    truncated: list = field(default_factory=list)
    success: bool | None = None

    def episode(self, task: str, expert: str) -> Episode:
        return Episode(
            task=task,
            episode_id=self.job.episode_id,
            observations=stack_values(self.observations),
            actions=stack_values(self.actions),
            rewards=np.asarray(self.rewards, np.float64),
            terminated=np.asarray(self.terminated, bool),
            truncated=np.asarray(self.truncated, bool),
            seed=self.job.seed,
            expert=expert,
            success=self.success,
        )


def run_episodes(
    make_env: Callable[[], gym.Env],
    policy: Policy,
    jobs: Iterable[EpisodeJob],
    task: str,
    num_envs: int = 1,
    max_steps: int | None = None,
    env_pool: list[gym.Env] | None = None,
) -> Iterator[Episode]:
    """Roll ``policy`` out for every job, ``num_envs`` environments at a time.

    Episodes are yielded as they finish (so not in job order when ``num_envs > 1``).
    ``max_steps`` cuts an episode: its last step then has neither flag set. Meta-World
    style ``info["success"]`` is recorded as whether the episode ever succeeded.

    ``env_pool``: environments to reuse (and extend) across calls, e.g. a Beam worker's
    across shards; the caller owns and closes them. Every episode starts with a seeded
    reset, so reusing an environment does not change its episodes.
    """
    pending = iter(jobs)
    owned = env_pool is None
    envs: list[gym.Env] = [] if env_pool is None else env_pool
    active: dict[int, _Recorder] = {}

    def start(slot: int) -> None:
        job = next(pending, None)
        if job is None:
            active.pop(slot, None)
            return
        if slot == len(envs):  # build environments only as jobs need them
            envs.append(make_env())
        obs, _ = envs[slot].reset(seed=job.seed)
        policy.start_episode(slot, job.seed)
        if isinstance(policy, EnvironmentAware):
            policy.bind_environment(slot, envs[slot])
        active[slot] = _Recorder(job, obs)

    try:
        for slot in range(max(1, num_envs)):
            start(slot)
            if slot not in active:
                break
        while active:
            slots = sorted(active)
            actions = policy.act([active[s].observation for s in slots], slots)
            for slot, action in zip(slots, actions, strict=True):
                rec = active[slot]
                obs, reward, terminated, truncated, info = envs[slot].step(action)
                rec.observations.append(rec.observation)
                rec.actions.append(action)
                rec.rewards.append(float(reward))
                rec.terminated.append(bool(terminated))
                rec.truncated.append(bool(truncated))
                if "success" in info:
                    rec.success = bool(rec.success) or bool(info["success"])
                rec.observation = obs
                if terminated or truncated or (max_steps and len(rec.rewards) >= max_steps):
                    yield rec.episode(task, policy.name)
                    start(slot)
    finally:
        if owned:
            for env in envs:
                env.close()
