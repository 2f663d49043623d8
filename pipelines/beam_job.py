"""`kibble pipeline run`: the curation job on Apache Beam.

    plan shards -> roll out + validate + tokenize (staging files) -> group by task
    -> expert return + threshold -> filter + write each shard -> summaries

Each step is a labelled PTransform over small records (``Shard``, ``EpisodeOutcome``,
``Threshold``); tokens and pixels never travel through Beam: rollout workers write
them to staging Parquet files and the filter step copies kept rows from there, so
memory does not grow with the dataset. The driver then writes ``rejected/``, the
manifest and the card, and moves the finished dataset into place (atomic rename).

Locally this runs on Beam's own runner, multi-process over all cores by default:

    kibble pipeline run configs/demo.yaml

Other Beam options pass through (``--direct_num_workers=1``, ``--runner=...``).
Remote runners need the staging and output directories on a filesystem every
worker reaches; that part (gs:// outputs, Dataflow packaging) is not built yet.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from kibble.envs import get_task
from kibble.experts.sources import load_expert
from kibble.pipelines import dataset, plots, stages
from kibble.pipelines.config import DatasetConfig
from kibble.pipelines.local import STAGING, finish_dataset
from kibble.pipelines.stages import EpisodeOutcome, Shard, TaskJob, Threshold

log = logging.getLogger(__name__)
SUMMARIES = ".summaries"


class RolloutShards(beam.DoFn):
    """Roll out shards; each worker loads an expert and builds environments once per
    task (on its first shard of the task) and reuses them for the rest."""

    def __init__(self, root: str, base_seed: int, num_envs: int) -> None:
        self.root, self.base_seed, self.num_envs = root, base_seed, num_envs

    def setup(self) -> None:
        self._policies: dict = {}
        self._envs: dict[str, list] = {}
        self._episodes = Metrics.counter("kibble", "episodes_rolled_out")

    def _policy(self, job: TaskJob):
        key = (job.task, job.expert, job.sample)
        if key not in self._policies:
            task = get_task(job.task)
            obs_space, act_space = task.spaces()
            self._policies[key] = load_expert(task, job.expert, obs_space, act_space, job.sample)
        return self._policies[key]

    def process(self, shard: Shard) -> Iterable[EpisodeOutcome]:
        staging = stages.shard_file(Path(self.root), STAGING, shard.job.task, shard.index)
        outcomes = stages.rollout_shard(
            shard,
            staging,
            self.base_seed,
            self.num_envs,
            policy=self._policy(shard.job),
            env_pool=self._envs.setdefault(shard.job.task, []),
        )
        self._episodes.inc(len(outcomes))
        for outcome in outcomes:
            if outcome.reason is not None:
                Metrics.counter("kibble", f"rejected_{outcome.reason}").inc()
            yield outcome

    def teardown(self) -> None:
        for pool in getattr(self, "_envs", {}).values():
            for env in pool:
                env.close()


class FinalizeShard(beam.DoFn):
    """Copy a shard's kept episodes from staging into the dataset."""

    def __init__(self, root: str) -> None:
        self.root = root

    def process(self, element, thresholds: dict[str, Threshold]) -> Iterable[int]:
        (task, shard_index), outcomes = element
        threshold = thresholds[task]
        kept = sorted((o for o in outcomes if stages.is_kept(o, threshold)), key=lambda o: o.index)
        Metrics.counter("kibble", "kept").inc(len(kept))
        Metrics.counter("kibble", "rejected_below_threshold").inc(
            sum(1 for o in outcomes if o.reason is None and not stages.is_kept(o, threshold))
        )
        root = Path(self.root)
        staging = stages.shard_file(root, STAGING, task, shard_index)
        out_file = stages.shard_file(root, dataset.DATA_DIR, task, shard_index)
        yield stages.finalize_shard(staging, [o.episode_id for o in kept], out_file)


class ThresholdPerTask(beam.PTransform):
    """(task, [outcomes]) groups -> (task, Threshold): Gato's expert return and the bar."""

    def __init__(self, jobs: dict[str, TaskJob], fraction: float) -> None:
        super().__init__()
        self.jobs, self.fraction = jobs, fraction

    def expand(self, grouped):
        jobs, fraction = self.jobs, self.fraction
        return grouped | "Threshold" >> beam.MapTuple(
            lambda task, outs: (task, stages.task_threshold(jobs[task], outs, fraction))
        )


def _write_summary(element, thresholds: dict[str, Threshold], root: str) -> None:
    task, outcomes = element
    path = Path(root) / SUMMARIES / f"{dataset.task_dir_name(task)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "threshold": asdict(thresholds[task]),
        "outcomes": [asdict(o) for o in sorted(outcomes, key=lambda o: o.index)],
    }
    path.write_text(json.dumps(body))


def default_options(argv: list[str]) -> PipelineOptions:
    """Beam options from the command line; locally, all cores in separate processes."""
    args = list(argv)
    if not any(a.startswith("--runner") for a in args):
        if not any(a.startswith("--direct_running_mode") for a in args):
            args.append("--direct_running_mode=multi_processing")
        if not any(a.startswith("--direct_num_workers") for a in args):
            args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        args.append("--default_sdk_harness_log_level=WARNING")  # workers log INFO otherwise
    return PipelineOptions(args)


def run(config: DatasetConfig, beam_args: list[str] | None = None) -> dict:
    """Run the job; returns the manifest of the dataset written to ``config.output``."""
    from kibble.errors import KibbleError

    out = Path(config.output)
    if out.exists() and not out.is_dir():
        raise KibbleError(f"output {out} is a file; give a directory for the dataset")
    jobs = {job.task: job for job in config.tasks}
    shards = [s for job in config.tasks for s in stages.plan_shards(job, config.episodes_per_shard)]
    per_shard = config.episodes_per_shard
    root = dataset.staging_dir(out)
    try:
        with beam.Pipeline(options=default_options(beam_args or [])) as p:
            outcomes = (
                p
                | "PlanShards" >> beam.Create(shards)
                | "RolloutValidateTokenize"
                >> beam.ParDo(RolloutShards(str(root), config.seed, config.num_envs))
            )
            by_task = (
                outcomes
                | "KeyByTask" >> beam.Map(lambda o: (o.task, o))
                | "GroupByTask" >> beam.GroupByKey()
            )
            thresholds = beam.pvalue.AsDict(
                by_task | "ExpertReturnAndThreshold" >> ThresholdPerTask(jobs, config.fraction)
            )
            (
                outcomes
                | "KeyByShard" >> beam.Map(lambda o: ((o.task, o.index // per_shard), o))
                | "GroupByShard" >> beam.GroupByKey()
                | "FilterAndWrite" >> beam.ParDo(FinalizeShard(str(root)), thresholds=thresholds)
            )
            by_task | "WriteSummaries" >> beam.Map(
                _write_summary, thresholds=thresholds, root=str(root)
            )
        tasks, rejected = {}, []
        for job in config.tasks:
            summary_path = root / SUMMARIES / f"{dataset.task_dir_name(job.task)}.json"
            summary = json.loads(summary_path.read_text())
            threshold = Threshold(**summary["threshold"])
            outs = [EpisodeOutcome(**o) for o in summary["outcomes"]]
            files = sorted(
                (root / dataset.DATA_DIR / dataset.task_dir_name(job.task)).glob("*.parquet")
            )
            tasks[job.task] = stages.task_entry(job, outs, threshold, files)
            plots.return_histogram(root, job.task, outs, threshold)
            rejected += stages.rejected_rows(outs, threshold)
        shutil.rmtree(root / STAGING)
        shutil.rmtree(root / SUMMARIES)
        manifest = finish_dataset(root, config.name, config.as_dict(), tasks, rejected)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    dataset.publish(root, out)
    return manifest
