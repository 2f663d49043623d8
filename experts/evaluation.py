"""Roll a policy out on seeded episodes and measure it: the evaluation under expert
cards (``kibble expert eval``) and the generalist's evaluation (``kibble eval``).

Episode i resets with seed ``seed + i``, so a measurement is reproducible. What one
measurement plays is a :class:`RolloutSettings`, the one record every evaluation takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.policy import Policy
from kibble.experts.rollout import EpisodeJob, run_episodes
from kibble.experts.sources import ExpertSource, load_expert
from kibble.schemas.records import Episode


@dataclass(frozen=True, kw_only=True)
class RolloutSettings:
    """What an evaluation plays: ``episodes`` episodes on seeds ``seed .. seed + episodes
    - 1``, each cut at ``max_steps``, ``num_envs`` environments at a time.

    Expert cards (:func:`kibble.experts.card.make_card`), :func:`evaluate` and the
    generalist's evaluation (``kibble.trainer.evaluate.evaluate_task``) all take one.
    Invalid values are refused when the record is made.
    """

    episodes: int
    """Episodes to play (at least 1)."""
    seed: int = 0
    """Episode i resets with seed ``seed + i``."""
    max_steps: int | None = None
    """Cut every episode at this many steps, as a dataset config's ``max_steps`` does
    (None: play episodes to their end)."""
    num_envs: int = 4
    """Environments stepped in lockstep (one batched policy call per step; below 1, one).
    It changes only the speed: each episode depends on its seed alone."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise KibbleError(f"episodes must be at least 1, got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise KibbleError(f"max_steps must be at least 1 (or None), got {self.max_steps}")

    @property
    def seeds(self) -> list[int]:
        """The reset seeds, in episode order."""
        return [self.seed + i for i in range(self.episodes)]


def success_rate(episodes: list[Episode]) -> float | None:
    flags = [e.success for e in episodes if e.success is not None]
    return float(np.mean(flags)) if flags else None


def evaluate(
    task_id: str,
    source: str | ExpertSource,
    settings: RolloutSettings,
    *,
    sample: bool = False,
    on_episode: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """Roll ``source`` (greedy, or sampled with ``sample``) out as ``settings`` say."""
    task = get_task(task_id)
    policy = load_expert(task, source, *task.spaces(), sample=sample)
    return evaluate_policy(task_id, policy, settings, on_episode=on_episode)


def evaluate_policy(
    task_id: str,
    policy: Policy,
    settings: RolloutSettings,
    *,
    on_episode: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """Roll any batched ``policy`` out as ``settings`` say; the episodes in seed order.

    ``on_episode`` is called with each episode as it ends (for a progress bar).
    """
    task = get_task(task_id)
    jobs = [EpisodeJob(f"{task_id}#eval#{seed}", seed) for seed in settings.seeds]
    out = []
    episodes_run = run_episodes(
        task.make,
        policy,
        jobs,
        task=task_id,
        num_envs=settings.num_envs,
        max_steps=settings.max_steps,
    )
    for episode in episodes_run:
        out.append(episode)
        if on_episode:
            on_episode(episode)
    return sorted(out, key=lambda e: e.seed)
