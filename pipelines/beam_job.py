"""`kibble pipeline run`: the curation job on Apache Beam.

    plan shards -> roll out + validate + tokenize (staging files) -> group by task
    -> expert return + threshold -> filter + write each shard -> summaries

Each step is a labelled PTransform over small records (``Shard``, ``EpisodeOutcome``,
``Threshold``); tokens and pixels never travel through Beam: rollout workers write
them to staging Parquet files and the filter step copies kept rows from there, so
memory does not grow with the dataset. The launcher then writes ``rejected/``, the
manifest and the card, and publishes the finished dataset (``kibble.pipelines.publish``:
a rename for local paths; for URLs, copies with ``manifest.json`` last).

Staging lives beside the output, on the output's filesystem, so with a ``gs://``
output every Dataflow worker reaches it. Locally this runs on Beam's own runner,
multi-process over all cores by default; other Beam options pass through:

    kibble pipeline run configs/example.yaml
    kibble pipeline run configs/example.yaml --out gs://BUCKET/datasets/example \
        --runner DataflowRunner --project PROJECT --region REGION \
        --temp_location gs://BUCKET/tmp

On a remote runner kibble adds ``--setup_file`` so workers get its code
(``kibble.pipelines.remote``).

Everything a worker would need is checked on the launcher first (``load_config``); the
output's lock, the worker log and signals are ``kibble.pipelines.guard``'s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from kibble.atomic import fault_point
from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.card import read_card
from kibble.experts.sources import ExpertSource, load_expert, parse_source
from kibble.pipelines import guard, plots, publish, remote, stages
from kibble.pipelines.config import DatasetConfig
from kibble.pipelines.local import STAGING, finish_dataset
from kibble.pipelines.stages import EpisodeOutcome, Shard, TaskJob, Threshold
from kibble.schemas import layout

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
        self._fetched: list[str] = []  # local copies of experts given as URLs
        self._episodes = Metrics.counter("kibble", "episodes_rolled_out")

    def _policy(self, job: TaskJob):
        key = (job.task, job.expert, job.sample)
        if key not in self._policies:
            task = get_task(job.task)
            obs_space, act_space = task.spaces()
            source = parse_source(job.expert)
            if source.has_checkpoint and layout.is_url(source.location):
                # A URL: copied to this worker's disk.
                source = ExpertSource(source.kind, remote.fetch_expert(source.location))
                self._fetched.append(source.location)
            self._policies[key] = load_expert(task, source, obs_space, act_space, job.sample)
        return self._policies[key]

    def process(self, shard: Shard) -> Iterable[EpisodeOutcome]:
        staging = stages.shard_file(self.root, STAGING, shard.job.task, shard.index)
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
        for path in getattr(self, "_fetched", []):
            shutil.rmtree(path, ignore_errors=True)


class FinalizeShard(beam.DoFn):
    """Copy a shard's kept episodes from staging into the dataset; yields the file's
    manifest entry (path, rows, bytes, sha256), made here so the launcher need not
    read the dataset back."""

    def __init__(self, root: str) -> None:
        self.root = root

    def process(self, element, thresholds: dict[str, Threshold]) -> Iterable[dict]:
        (task, shard_index), outcomes = element
        threshold = thresholds[task]
        kept = sorted((o for o in outcomes if stages.is_kept(o, threshold)), key=lambda o: o.index)
        Metrics.counter("kibble", "kept").inc(len(kept))
        Metrics.counter("kibble", "rejected_below_threshold").inc(
            sum(1 for o in outcomes if o.reason is None and not stages.is_kept(o, threshold))
        )
        staging = stages.shard_file(self.root, STAGING, task, shard_index)
        out_file = stages.shard_file(self.root, layout.DATA_DIR, task, shard_index)
        if stages.finalize_shard(staging, [o.episode_id for o in kept], out_file):
            rel = stages.shard_name(layout.DATA_DIR, task, shard_index)
            yield publish.file_entry(self.root, rel)


class ThresholdPerTask(beam.PTransform):
    """(task, [outcomes]) groups -> (task, Threshold): Gato's expert return and the bar."""

    def __init__(self, jobs: dict[str, TaskJob], fraction: float, cards: dict | None = None):
        super().__init__()
        self.jobs, self.fraction, self.cards = jobs, fraction, cards or {}

    def expand(self, grouped):
        jobs, fraction, cards = self.jobs, self.fraction, self.cards
        return grouped | "Threshold" >> beam.MapTuple(
            lambda task, outs: (
                task,
                stages.task_threshold(jobs[task], outs, fraction, cards.get(task)),
            )
        )


def _write_json(value, path: str) -> None:
    publish.write_bytes(path, json.dumps(value).encode())


def _summary_file(root: str, task: str) -> str:
    return layout.join(root, SUMMARIES, f"{layout.task_dir_name(task)}.json")


def _write_summary(element, thresholds: dict[str, Threshold], root: str) -> None:
    task, outcomes = element
    body = {
        "threshold": asdict(thresholds[task]),
        "outcomes": [asdict(o) for o in sorted(outcomes, key=lambda o: o.index)],
    }
    publish.write_bytes(_summary_file(root, task), json.dumps(body).encode())


def default_options(argv: list[str], output: str | None = None) -> PipelineOptions:
    """Beam options from the command line; locally, all cores in separate processes.

    On a remote runner (``output`` given): the package for workers, output checked
    (``remote.worker_args``).
    """
    args = list(argv)
    if output is not None:
        args = remote.worker_args(args, output)
    if not any(a.startswith("--runner") for a in args):
        if not any(a.startswith("--direct_running_mode") for a in args):
            args.append("--direct_running_mode=multi_processing")
        if not any(a.startswith("--direct_num_workers") for a in args):
            args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        args.append("--default_sdk_harness_log_level=WARNING")  # workers log INFO otherwise
    return PipelineOptions(args)


def planned_shards(config: DatasetConfig) -> int:
    """How many shards (units of parallel work) the job rolls out: a progress bar's total."""
    return sum(stages.count_shards(job, config.episodes_per_shard) for job in config.tasks)


@contextmanager
def _watch_rollouts(root: str, on_progress: Callable[[int], None] | None) -> Iterator[None]:
    """Tell ``on_progress`` how many shards workers have rolled out (their staging files,
    each written whole), every half second while the pipeline runs."""
    if on_progress is None:
        yield
        return
    stop = threading.Event()
    staging = layout.join(root, STAGING)

    def watch() -> None:
        while not stop.wait(0.5):
            try:
                done = sum(1 for f in layout.list_files(staging) if f.endswith(".parquet"))
            except OSError:  # a listing racing a worker's write: count again next time
                continue
            on_progress(done)

    thread = threading.Thread(target=watch, name="kibble-rollout-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _build(p: beam.Pipeline, config: DatasetConfig, rollout_jobs: dict, root: str, cards: dict):
    """The job's transforms (see the module docstring)."""
    jobs = {job.task: job for job in config.tasks}
    per_shard = config.episodes_per_shard
    files_json = layout.join(root, SUMMARIES, "files.json")
    # Shards are made on the workers from one small record per task, then spread
    # over them: nothing per episode or per shard is built on the launcher.
    outcomes = (
        p
        | "PlanTasks" >> beam.Create([rollout_jobs[job.task] for job in config.tasks])
        | "PlanShards" >> beam.FlatMap(stages.plan_shards, per_shard)
        | "SpreadShards" >> beam.Reshuffle()
        | "RolloutValidateTokenize" >> beam.ParDo(RolloutShards(root, config.seed, config.num_envs))
    )
    by_task = (
        outcomes
        | "KeyByTask" >> beam.Map(lambda o: (o.task, o))
        | "GroupByTask" >> beam.GroupByKey()
    )
    thresholds = beam.pvalue.AsDict(
        by_task | "ExpertReturnAndThreshold" >> ThresholdPerTask(jobs, config.fraction, cards)
    )
    (
        outcomes
        | "KeyByShard" >> beam.Map(lambda o: ((o.task, o.index // per_shard), o))
        | "GroupByShard" >> beam.GroupByKey()
        | "FilterAndWrite" >> beam.ParDo(FinalizeShard(root), thresholds=thresholds)
        | "CollectFileEntries" >> beam.combiners.ToList()
        | "WriteFileEntries" >> beam.Map(_write_json, path=files_json)
    )
    by_task | "WriteSummaries" >> beam.Map(_write_summary, thresholds=thresholds, root=root)


def _assemble(config: DatasetConfig, root: str) -> dict:
    """From the workers' summaries: rejected/, the manifest and the card in ``root``."""
    files_json = layout.join(root, SUMMARIES, "files.json")
    known_files = {e["path"]: e for e in json.loads(layout.read_bytes(files_json))}
    tasks, rejected = {}, []
    for job in config.tasks:
        summary = json.loads(layout.read_bytes(_summary_file(root, job.task)))
        threshold = Threshold(**summary["threshold"])
        outs = [EpisodeOutcome(**o) for o in summary["outcomes"]]
        task_dir = layout.join(root, layout.DATA_DIR, layout.task_dir_name(job.task))
        files = [
            layout.join(task_dir, rel)
            for rel in layout.list_files(task_dir)
            if rel.endswith(".parquet")
        ]
        tasks[job.task] = stages.task_entry(job, outs, threshold, files).to_dict()
        plots.return_histogram(root, job.task, outs, threshold)
        rejected += stages.rejected_rows(outs, threshold)
    for scratch in (STAGING, SUMMARIES, remote.EXPERTS):
        publish.remove(layout.join(root, scratch))
    return finish_dataset(root, config.name, config.as_dict(), tasks, rejected, known_files)


def run(
    config: DatasetConfig,
    beam_args: list[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    keep_log: bool = False,
) -> dict:
    """Run the job; returns the manifest of the dataset written to ``config.output``.

    ``on_progress`` (called from a watcher thread) gets the number of shards rolled out
    so far, of :func:`planned_shards`. What Beam and its workers print goes to a log
    file (``guard.log_location``: ``.NAME.log`` beside a local output), started afresh
    once the output's lock is held and removed when the job succeeds unless
    ``keep_log`` (`kibble pipeline run` keeps it and names it); a job that fails in a
    worker raises one KibbleError naming the root cause and that file. SIGINT/SIGTERM
    raise ``guard.Interrupted`` once staging is removed.
    """
    out = config.output
    options = default_options(beam_args or [], out)
    # Cards are read here: remote workers do not see the launcher's files.
    cards = {job.task: read_card(job.card) for job in config.tasks if job.card}
    log_file = guard.log_location(out, config.name)
    with guard.interruptible(out) as state, guard.output_lock(out):
        publish.check_output(out)
        root = publish.staging_location(out)
        try:
            if remote.is_remote(options):
                rollout_jobs = remote.ship_experts(config.tasks, root)
            else:
                rollout_jobs = {job.task: job for job in config.tasks}
            try:
                with (
                    guard.worker_log(log_file),
                    _watch_rollouts(root, on_progress),
                    beam.Pipeline(options=options) as p,
                ):
                    _build(p, config, rollout_jobs, root, cards)
            except (KibbleError, guard.Interrupted):
                raise
            except Exception as e:  # a worker's error, as Beam reports it: one paragraph
                raise guard.worker_failure(e, log_file, out) from e
            manifest = _assemble(config, root)
            fault_point("staged")
            with state.publishing():
                publish.publish(root, out)
        except BaseException as e:
            if isinstance(e, guard.Interrupted):
                guard.silence_beam(log_file)  # its threads report the workers' end
                guard.stop_children()  # no worker may write to staging after it goes
            publish.remove(root, quiet=True)
            raise
    if not layout.is_url(out) and not keep_log:
        log_file.unlink(missing_ok=True)  # nothing to look at: the job succeeded
    return manifest
