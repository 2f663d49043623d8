"""The curation job, defined once: the ordered steps every executor runs.

    plan: each task's episodes -> shards (``stages.plan_shards``)
    RolloutValidateTokenize   per shard: roll out, validate, tokenize to a staging file
    ExpertReturnAndThreshold  per task:  Gato's expert return and the threshold
    FilterAndWrite            per shard: copy kept episodes from staging to data/
    SummarizeTask             per task:  threshold, outcomes and data files
    assemble (launcher):      rejected/, histograms, the manifest, views/, the card

:data:`STEPS` is the list; a shard step runs once per shard on what the step before
produced for that shard, a task step once per task on what every shard of the task
produced. Each step also sees the results of the task steps before it (a shard's
``FilterAndWrite`` its task's threshold). A new stage is one :class:`Step` added here:
both executors, ``kibble.pipelines.in_process`` (`kibble rollout`, tests) and
``kibble.pipelines.beam_job`` (`kibble pipeline run`), interpret the list as it is.

:func:`curate` is the frame around an executor, the same for both: the output's lock,
signals (``kibble.pipelines.guard``), staging beside the output, assembling the dataset
from the last step's :class:`~kibble.pipelines.task_results.TaskSummary` per task, and
publishing (``kibble.pipelines.publish``). The manifest's ``config`` is always the
config as run, ``DatasetConfig.as_dict()``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyarrow as pa

from kibble.atomic import fault_point
from kibble.envs import get_task
from kibble.experts.card import ExpertCard, read_card
from kibble.experts.policy import Policy
from kibble.experts.sources import ExpertSource, load_expert, parse_source
from kibble.pipelines import dataset_card, guard, plots, publish, stages, task_results
from kibble.pipelines.config import DatasetConfig
from kibble.pipelines.stages import EpisodeOutcome, Shard, TaskJob, Threshold
from kibble.pipelines.task_results import TaskSummary
from kibble.reading import viewer
from kibble.schemas import layout
from kibble.schemas.arrow import REJECTED_EPISODE_SCHEMA
from kibble.schemas.parquet import EpisodeFileWriter
from kibble.schemas.records import Episode

log = logging.getLogger(__name__)
STAGING = ".staging"
"""Scratch folder (in the staging dataset) of the rolled-out shards' tokens."""
SUMMARIES = ".summaries"
"""Scratch folder where a distributed executor leaves each task's summary."""
EXPERTS = ".experts"
"""Scratch folder of expert checkpoints shipped to remote workers (``kibble.pipelines.remote``)."""
SHARD, TASK = "shard", "task"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What every step needs, the same on every worker (small: pickled to workers)."""

    root: str = field(kw_only=False)
    """The staging dataset being written (a path or URL)."""
    seed: int
    num_envs: int
    fraction: float
    cards: Mapping[str, ExpertCard] = field(default_factory=dict)
    """Expert cards by task, read on the launcher (remote workers do not see its files)."""


class Worker:
    """A worker's state across the shards it runs: the experts and environments it
    reuses (built on its first shard of a task), experts fetched from URLs, and hooks."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_episode: Callable[[Episode], None] | None = None,
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_episode = on_episode
        self._count = count
        self._policies: dict[tuple, Policy] = {}
        self._envs: dict[str, list] = {}
        self._fetched: list[str] = []  # local copies of experts given as URLs

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (Beam's metrics; nothing in process)."""
        if self._count is not None and n:
            self._count(name, n)

    def policy(self, job: TaskJob) -> Policy:
        key = (job.task, job.expert, job.sample)
        if key not in self._policies:
            task = get_task(job.task)
            obs_space, act_space = task.spaces()
            source = parse_source(job.expert)
            if source.has_checkpoint and layout.is_url(source.location):
                # Beam's options come with remote: imported only when a URL needs it
                # (importing them logs a warning about Google Cloud's clients).
                from kibble.pipelines.remote import fetch_expert

                source = ExpertSource(source.kind, fetch_expert(source.location))
                self._fetched.append(source.location)
            self._policies[key] = load_expert(task, source, obs_space, act_space, sample=job.sample)
        return self._policies[key]

    def env_pool(self, task: str) -> list:
        return self._envs.setdefault(task, [])

    def close(self) -> None:
        for pool in self._envs.values():
            for env in pool:
                env.close()
        self._envs.clear()
        for path in self._fetched:
            shutil.rmtree(path, ignore_errors=True)
        self._fetched.clear()


@dataclass(frozen=True)
class ShardResult:
    """What the shard steps carry from one to the next (small: crosses Beam stages)."""

    outcomes: tuple[EpisodeOutcome, ...]
    """The shard's episodes, in index order."""
    file: dict | None = None
    """The manifest entry of the shard's data file, once written (None: nothing kept)."""


def rollout(worker: Worker, shard: Shard, _carried: None, _earlier: Mapping) -> ShardResult:
    """Roll the shard out, validate every episode, tokenize the valid ones to staging."""
    job, s = shard.job, worker.settings
    outcomes = stages.rollout_shard(
        shard,
        stages.shard_file(s.root, STAGING, job.task, shard.index),
        base_seed=s.seed,
        num_envs=s.num_envs,
        on_episode=worker.on_episode,
        policy=worker.policy(job),
        env_pool=worker.env_pool(job.task),
    )
    worker.count("episodes_rolled_out", len(outcomes))
    for outcome in outcomes:
        if outcome.reason is not None:
            worker.count(f"rejected_{outcome.reason}")
    return ShardResult(tuple(outcomes))


def threshold(
    worker: Worker, job: TaskJob, carried: list[ShardResult], _earlier: Mapping
) -> Threshold:
    """Gato's expert return (or the card's) and the threshold, from all of a task's episodes."""
    outcomes = [o for result in carried for o in result.outcomes]
    s = worker.settings
    return stages.task_threshold(job, outcomes, s.fraction, card=s.cards.get(job.task))


def filter_and_write(
    worker: Worker, shard: Shard, carried: ShardResult, earlier: Mapping
) -> ShardResult:
    """Copy the shard's kept episodes from staging into ``data/``; the file's manifest
    entry is made here, so the launcher need not read the dataset back."""
    bar: Threshold = earlier[THRESHOLD.label]
    task, root = shard.job.task, worker.settings.root
    kept = [o for o in carried.outcomes if stages.is_kept(o, bar)]
    worker.count("kept", len(kept))
    worker.count(
        "rejected_below_threshold",
        sum(1 for o in carried.outcomes if o.reason is None and not stages.is_kept(o, bar)),
    )
    staging = stages.shard_file(root, STAGING, task, shard.index)
    out_file = stages.shard_file(root, layout.DATA_DIR, task, shard.index)
    if not stages.finalize_shard(staging, [o.episode_id for o in kept], out_file):
        return carried
    rel = stages.shard_name(layout.DATA_DIR, task, shard.index)
    return replace(carried, file=publish.file_entry(root, rel))


def summarize(
    _worker: Worker, _job: TaskJob, carried: list[ShardResult], earlier: Mapping
) -> TaskSummary:
    return TaskSummary(
        threshold=earlier[THRESHOLD.label],
        outcomes=tuple(o for result in carried for o in result.outcomes),
        files=tuple(result.file for result in carried if result.file is not None),
    )


@dataclass(frozen=True)
class Step:
    """One step of the curation: ``run(worker, shard_or_job, carried, earlier)``.

    A shard step gets one shard, what the previous shard step made of it (None for the
    first) and returns the shard's new :class:`ShardResult`; a task step gets the task's
    job and every shard's result in shard order. ``earlier``: the results of the task
    steps before this one, for this task, by label.
    """

    label: str
    """The step's name: Beam's transform label."""
    scope: str
    """``SHARD`` or ``TASK``."""
    run: Callable[[Worker, Any, Any, Mapping[str, Any]], Any]


ROLLOUT = Step("RolloutValidateTokenize", SHARD, rollout)
THRESHOLD = Step("ExpertReturnAndThreshold", TASK, threshold)
FILTER = Step("FilterAndWrite", SHARD, filter_and_write)
SUMMARY = Step("SummarizeTask", TASK, summarize)
STEPS: tuple[Step, ...] = (ROLLOUT, THRESHOLD, FILTER, SUMMARY)
"""The curation, in order; the last step's result per task is a ``TaskSummary``."""


@contextmanager
def timed(phase: str) -> Iterator[None]:
    """Log how long ``phase`` of a curation took (DEBUG; benchmarks/pipeline.py reads it)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        log.debug("phase %s: %.3f s", phase, time.perf_counter() - start)


class Executor(Protocol):
    """Runs :data:`STEPS` over every task of ``config``; returns each task's summary."""

    def run(self, config: DatasetConfig, settings: Settings) -> dict[str, TaskSummary]: ...


def finish_dataset(
    root: str | os.PathLike,
    config: DatasetConfig,
    *,
    tasks: dict,
    rejected: list[dict],
    known_files: dict[str, dict] | None = None,
) -> dict:
    """Write rejected/, the manifest, one episode picture per task (views/) and the
    dataset card into ``root`` (a path or URL).

    ``known_files``: manifest entries of data files made where they were written.
    """
    with (
        timed("rejected"),
        EpisodeFileWriter(
            layout.join(root, layout.REJECTED_DIR, "part-00000.parquet"), REJECTED_EPISODE_SCHEMA
        ) as writer,
    ):
        writer.write(pa.Table.from_pylist(rejected, schema=REJECTED_EPISODE_SCHEMA))
    with timed("manifest"):
        manifest = publish.write_manifest(
            root, config.name, config=config.as_dict(), tasks=tasks, known_files=known_files
        )
    with timed("views"):
        for task in tasks:  # views/: read back through the manifest, so after it
            viewer.card_view(root, task)
    with timed("card"):
        dataset_card.write_dataset_card(root, manifest)
    return manifest


def assemble(config: DatasetConfig, root: str, summaries: Mapping[str, TaskSummary]) -> dict:
    """The finished dataset in ``root`` from every task's summary; returns the manifest."""
    tasks, rejected, known_files = {}, [], {}
    for job in config.tasks:
        summary = summaries[job.task]
        outcomes, bar = list(summary.outcomes), summary.threshold
        known_files.update((entry["path"], entry) for entry in summary.files)
        files = [layout.join(root, entry["path"]) for entry in summary.files]
        with timed("task entries"):
            tasks[job.task] = task_results.task_entry(job, outcomes, bar, files).to_dict()
            rejected += task_results.rejected_rows(outcomes, bar)
        with timed("histograms"):
            plots.return_histogram(root, job.task, outcomes, bar)
    for scratch in (STAGING, SUMMARIES, EXPERTS):
        publish.remove(layout.join(root, scratch))
    return finish_dataset(root, config, tasks=tasks, rejected=rejected, known_files=known_files)


def curate(config: DatasetConfig, executor: Executor) -> dict:
    """Curate ``config`` into a dataset at ``config.output`` (a path or URL; replaced as a
    whole) with ``executor``; returns the manifest."""
    out = config.output
    cards = {job.task: read_card(job.card, task=job.task) for job in config.tasks if job.card}
    with guard.interruptible(out) as state, guard.output_lock(out):
        publish.check_output(out)
        root = publish.staging_location(out)
        try:
            settings = Settings(
                root,
                seed=config.seed,
                num_envs=config.num_envs,
                fraction=config.fraction,
                cards=cards,
            )
            with timed("steps"):
                summaries = executor.run(config, settings)
            manifest = assemble(config, root, summaries)
            fault_point("staged")
            with state.publishing(), timed("publishing"):
                publish.publish(root, out)
        except BaseException:
            publish.remove(root, quiet=True)
            raise
    return manifest
