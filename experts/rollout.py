"""Roll a policy out in several environments at once and record ``Episode``s.

``run_episodes`` keeps ``num_envs`` environments stepping in lockstep so the policy
sees a batch of observations per call (one forward pass for a neural expert).
Each episode depends only on its seed and the policy, never on how many
environments ran beside it or in which slot, so results are reproducible (every
reset here is seeded; RLlib's own training loop is another matter).
"""

from __future__ import annotations

import zlib
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


def episode_seed(base_seed: int, task: str, index: int) -> int:
    """The reset seed of episode ``index`` of ``task``: from (base seed, task, index) only."""
    seq = np.random.SeedSequence([base_seed, zlib.crc32(task.encode()), index])
    return int(seq.generate_state(1)[0] & 0x7FFFFFFF)


def stack_values(values: list[Any]) -> Any:
    """A list of T nested values -> one nested value of arrays with leading axis T."""
    first = values[0]
    if isinstance(first, dict):
        return {k: stack_values([v[k] for v in values]) for k in first}
    if isinstance(first, tuple):
        return tuple(stack_values([v[i] for v in values]) for i in range(len(first)))
    return np.stack([np.asarray(v) for v in values])


@dataclass(frozen=True)
class ActionNoise:
    """Recovery data (DART-style): on a ``fraction`` of steps the environment executes a
    perturbed action while the episode records the expert's own action for that state.

    The data then shows how the expert returns to its path from states a little off it,
    which a cloned policy reaches in closed loop. Continuous (Box) actions get Gaussian
    noise of ``scale`` times the box's width per dimension, clipped to the box; other
    action spaces a uniformly random action. The noise of an episode depends only on its
    seed, so noisy rollouts stay reproducible.
    """

    fraction: float
    """Share of steps whose executed action is perturbed, in [0, 1]."""
    scale: float = 0.1
    """Gaussian standard deviation as a fraction of each Box dimension's width."""

    def rng(self, seed: int) -> np.random.Generator:
        return np.random.default_rng([seed, 0x4E4F4953])

    def apply(self, action: Any, space: gym.Space, rng: np.random.Generator) -> Any:
        """The action to execute: ``action`` itself, or a perturbed one."""
        if rng.random() >= self.fraction:
            return action
        if (
            isinstance(space, gym.spaces.Box)
            and np.all(np.isfinite(space.low))
            and np.all(np.isfinite(space.high))
        ):
            width = (space.high - space.low).astype(np.float64)
            noisy = (
                np.asarray(action, np.float64) + rng.normal(0.0, self.scale, width.shape) * width
            )
            return np.clip(noisy, space.low, space.high).astype(space.dtype)
        sample_space = space
        sample_space.seed(int(rng.integers(2**31)))
        return sample_space.sample()


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
    *,
    task: str,
    num_envs: int = 1,
    max_steps: int | None = None,
    env_pool: list[gym.Env] | None = None,
    noise: ActionNoise | None = None,
) -> Iterator[Episode]:
    """Roll ``policy`` out for every job, ``num_envs`` environments at a time.

    Episodes are yielded as they finish (so not in job order when ``num_envs > 1``).
    ``max_steps`` cuts an episode: its last step then has neither flag set. Meta-World
    style ``info["success"]`` is recorded as whether the episode ever succeeded.

    ``env_pool``: environments to reuse (and extend) across calls, e.g. a Beam worker's
    across shards; the caller owns and closes them. Every episode starts with a seeded
    reset, so reusing an environment does not change its episodes.

    ``noise``: execute perturbed actions on some steps while recording the expert's
    (:class:`ActionNoise`); rewards, success and episode ends are those of what ran.
    """
    pending = iter(jobs)
    owned = env_pool is None
    envs: list[gym.Env] = [] if env_pool is None else env_pool
    active: dict[int, _Recorder] = {}
    noise_rngs: dict[int, np.random.Generator] = {}

    def start(slot: int) -> None:
        job = next(pending, None)
        if job is None:
            active.pop(slot, None)
            return
        if slot == len(envs):  # build environments only as jobs need them
            envs.append(make_env())
        obs, _ = envs[slot].reset(seed=job.seed)
        policy.start_episode(slot, job.seed)
        if noise is not None:
            noise_rngs[slot] = noise.rng(job.seed)
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
                executed = action
                if noise is not None:
                    executed = noise.apply(action, envs[slot].action_space, noise_rngs[slot])
                obs, reward, terminated, truncated, info = envs[slot].step(executed)
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
