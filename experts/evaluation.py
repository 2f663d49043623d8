"""Roll a policy out on seeded episodes and measure it: the evaluation under expert
cards (``kibble expert eval``) and the generalist's evaluation (``kibble eval``).

Episode i resets with seed ``seed + i``, so a measurement is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.policy import Policy
from kibble.experts.rollout import EpisodeJob, run_episodes
from kibble.experts.sources import ExpertSource, load_expert
from kibble.schemas.records import Episode


def success_rate(episodes: list[Episode]) -> float | None:
    flags = [e.success for e in episodes if e.success is not None]
    return float(np.mean(flags)) if flags else None


def evaluate(
    task_id: str,
    source: str | ExpertSource,
    episodes: int,
    seed: int = 0,
    num_envs: int = 4,
    on_episode: Callable[[Episode], None] | None = None,
    sample: bool = False,
    max_steps: int | None = None,
) -> list[Episode]:
    """Roll ``source`` out for ``episodes`` episodes on seeds ``seed .. seed + episodes - 1``."""
    task = get_task(task_id)
    policy = load_expert(task, source, *task.spaces(), sample)
    return evaluate_policy(task_id, policy, episodes, seed, num_envs, on_episode, max_steps)


def evaluate_policy(
    task_id: str,
    policy: Policy,
    episodes: int,
    seed: int = 0,
    num_envs: int = 4,
    on_episode: Callable[[Episode], None] | None = None,
    max_steps: int | None = None,
) -> list[Episode]:
    """Roll any batched ``policy`` out on seeds ``seed .. seed + episodes - 1``, in seed order.

    ``max_steps`` cuts episodes there (as a dataset config's ``max_steps`` does).
    """
    if episodes < 1:
        raise KibbleError(f"--episodes must be at least 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise KibbleError(f"--max-steps must be at least 1, got {max_steps}")
    task = get_task(task_id)
    jobs = [EpisodeJob(f"{task_id}#eval#{seed + i}", seed + i) for i in range(episodes)]
    out = []
    episodes_run = run_episodes(task.make, policy, jobs, task_id, num_envs, max_steps)
    for episode in episodes_run:
        out.append(episode)
        if on_episode:
            on_episode(episode)
    return sorted(out, key=lambda e: e.seed)
