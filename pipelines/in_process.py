"""The curation's in-process executor (`kibble rollout`, tests): no Beam.

It runs ``kibble.pipelines.curation.STEPS`` in this process, a task at a time, each
step over the task's shards in order; ``kibble.pipelines.curation.curate`` does the
rest (checks, lock, signals, staging, assembling, publishing), as for the Beam job.
Memory stays bounded: episodes stream to a staging file as they finish, and filtering
copies it a row group at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from kibble.pipelines import curation, filtering, stages
from kibble.pipelines.config import DatasetConfig
from kibble.pipelines.stages import TaskJob
from kibble.pipelines.task_results import TaskSummary
from kibble.schemas.records import Episode

__all__ = ["InProcess", "curate_tasks", "run"]


class InProcess:
    """Runs the steps here; ``on_episode`` sees every episode as it finishes (progress)."""

    def __init__(self, on_episode: Callable[[Episode], None] | None = None) -> None:
        self.on_episode = on_episode

    def run(self, config: DatasetConfig, settings: curation.Settings) -> dict[str, TaskSummary]:
        worker = curation.Worker(settings, on_episode=self.on_episode)
        summaries = {}
        try:
            for job in config.tasks:
                shards = list(stages.plan_shards(job, config.episodes_per_shard))
                carried: list = [None] * len(shards)
                earlier: dict = {}
                for step in curation.STEPS:
                    if step.scope == curation.SHARD:
                        carried = [
                            step.run(worker, s, c, earlier)
                            for s, c in zip(shards, carried, strict=True)
                        ]
                    else:
                        earlier[step.label] = step.run(worker, job, carried, earlier)
                summaries[job.task] = earlier[curation.STEPS[-1].label]
        finally:
            worker.close()
        return summaries


def run(config: DatasetConfig, *, on_episode: Callable[[Episode], None] | None = None) -> dict:
    """Curate ``config`` in this process; returns the manifest."""
    return curation.curate(config, InProcess(on_episode))


def curate_tasks(
    name: str,
    jobs: Iterable[TaskJob],
    out: str | os.PathLike,
    *,
    seed: int = 0,
    fraction: float = filtering.DEFAULT_FRACTION,
    num_envs: int = 4,
    on_episode: Callable[[Episode], None] | None = None,
) -> dict:
    """Curate ``jobs`` into a dataset at ``out`` in this process, each task one shard
    (one data file); returns the manifest."""
    jobs = list(jobs)
    config = DatasetConfig(
        name,
        os.fspath(out),
        jobs,
        seed=seed,
        fraction=fraction,
        num_envs=num_envs,
        episodes_per_shard=max((job.episodes for job in jobs), default=1),
    )
    return run(config, on_episode=on_episode)
