"""Curate a dataset in this process, no Beam (`kibble rollout`).

The same stages as the Beam job (``kibble.pipelines.stages``), run one after the
other with each task as a single shard. Memory stays bounded: episodes stream to
a staging file as they finish, and filtering copies it a row group at a time.

Like the Beam job, it checks every job before any work (``kibble.pipelines.checks``),
holds the output's lock while it writes, and stops cleanly on SIGINT/SIGTERM
(``kibble.pipelines.guard``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict

import pyarrow as pa

from kibble.atomic import fault_point
from kibble.errors import KibbleError
from kibble.pipelines import dataset_card, filtering, guard, plots, publish, stages
from kibble.pipelines.checks import check_episodes, check_job
from kibble.pipelines.stages import TaskJob, episode_seed
from kibble.reading import viewer
from kibble.schemas import layout
from kibble.schemas.arrow import REJECTED_EPISODE_SCHEMA
from kibble.schemas.parquet import EpisodeFileWriter
from kibble.schemas.records import Episode

__all__ = ["TaskJob", "curate", "episode_seed", "finish_dataset"]

STAGING = ".staging"


def finish_dataset(
    root: str | os.PathLike,
    name: str,
    config: dict,
    tasks: dict,
    rejected: list[dict],
    known_files: dict[str, dict] | None = None,
) -> dict:
    """Write rejected/, the manifest, one episode picture per task (views/) and the
    dataset card into ``root`` (a path or URL).

    ``known_files``: manifest entries of data files made where they were written.
    """
    with EpisodeFileWriter(
        layout.join(root, layout.REJECTED_DIR, "part-00000.parquet"), REJECTED_EPISODE_SCHEMA
    ) as writer:
        writer.write(pa.Table.from_pylist(rejected, schema=REJECTED_EPISODE_SCHEMA))
    manifest = publish.write_manifest(root, name, config, tasks, known_files)
    for task in tasks:  # views/: read back through the manifest, so after it
        viewer.card_view(root, task)
    dataset_card.write_dataset_card(root, manifest)
    return manifest


def check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise KibbleError(f"the filter fraction must be in (0, 1], got {fraction}")


def curate(
    name: str,
    jobs: list[TaskJob],
    out: str | os.PathLike,
    base_seed: int = 0,
    fraction: float = filtering.DEFAULT_FRACTION,
    num_envs: int = 4,
    on_episode: Callable[[Episode], None] | None = None,
) -> dict:
    """Curate every task into a dataset at ``out`` (a path or URL; replaced as a whole,
    see ``kibble.pipelines.publish``); returns the manifest."""
    check_fraction(fraction)
    for job in jobs:
        try:
            check_job(job)
        except KibbleError as e:
            raise KibbleError(f"{job.task} (expert {job.expert}): {e}") from e
    check_episodes(sum(job.episodes for job in jobs))
    with guard.interruptible(out) as state, guard.output_lock(out):
        publish.check_output(out)
        root = publish.staging_location(out)
        try:
            tasks, rejected = {}, []
            for job in jobs:
                (shard,) = stages.plan_shards(job, job.episodes)
                staging = stages.shard_file(root, STAGING, job.task, 0)
                outcomes = stages.rollout_shard(shard, staging, base_seed, num_envs, on_episode)
                threshold = stages.task_threshold(job, outcomes, fraction)
                kept = [o.episode_id for o in outcomes if stages.is_kept(o, threshold)]
                out_file = stages.shard_file(root, layout.DATA_DIR, job.task, 0)
                written = stages.finalize_shard(staging, kept, out_file)
                files = [out_file] if written else []
                tasks[job.task] = stages.task_entry(job, outcomes, threshold, files).to_dict()
                plots.return_histogram(root, job.task, outcomes, threshold)
                rejected += stages.rejected_rows(outcomes, threshold)
            publish.remove(layout.join(root, STAGING))
            config = {"name": name, "seed": base_seed, "filter": {"fraction": fraction},
                      "tasks": [asdict(j) for j in jobs]}  # fmt: skip
            manifest = finish_dataset(root, name, config, tasks, rejected)
            fault_point("staged")
            with state.publishing():
                publish.publish(root, out)
        except BaseException:
            publish.remove(root, quiet=True)
            raise
    return manifest
