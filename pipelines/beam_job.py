"""`kibble pipeline run`: the curation's Beam executor.

It runs ``kibble.pipelines.curation.STEPS``, the one definition of the curation, as
Beam transforms: the plan (``PlanTasks``, ``PlanShards``, ``SpreadShards``), then a
labelled ``ParDo`` per shard step over (shard, carried) elements and, per task step,
a group by task and a ``ParDo`` whose results reach later steps as side inputs; each
task's summary goes to a staging JSON file for the launcher. Elements are small frozen
records (``Shard``, ``ShardResult``, ``Threshold``); tokens and pixels never travel
through Beam: rollout workers write them to staging Parquet files and the filter step
copies kept rows from there, so memory does not grow with the dataset.
``kibble.pipelines.curation.curate`` does the rest, as for the in-process executor:
the lock, staging, ``rejected/``, the manifest, the card, and publishing
(``kibble.pipelines.publish``: a rename for local paths; for URLs, copies with
``manifest.json`` last).

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

import importlib.util
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from kibble.errors import KibbleError
from kibble.pipelines import curation, guard, remote, stages
from kibble.pipelines.config import DatasetConfig
from kibble.pipelines.stages import TaskJob
from kibble.pipelines.task_results import TaskSummary
from kibble.schemas import layout

log = logging.getLogger(__name__)


class _StepFn(beam.DoFn):
    """A step of ``curation.STEPS`` on a worker: one ``curation.Worker`` per DoFn
    instance (its experts and environments reused across bundles). The results of the
    task steps before it come as side inputs (task -> result), one per label."""

    def __init__(self, step: curation.Step, settings: curation.Settings, labels: list[str]):
        self.step, self.settings, self.labels = step, settings, labels

    def setup(self) -> None:
        self._worker = curation.Worker(self.settings, count=_count)

    def earlier(self, task: str, results: tuple) -> dict:
        return {label: r[task] for label, r in zip(self.labels, results, strict=True)}

    def teardown(self) -> None:
        if hasattr(self, "_worker"):
            self._worker.close()


class RunShardStep(_StepFn):
    """A shard step on (shard, carried) elements; yields (shard, the new carried)."""

    def process(self, element, *results):
        shard, carried = element
        earlier = self.earlier(shard.job.task, results)
        yield shard, self.step.run(self._worker, shard, carried, earlier)


class RunTaskStep(_StepFn):
    """A task step on (task, [(shard, carried)]) groups; yields (task, result)."""

    def process(self, element, *results):
        task, group = element
        group = sorted(group, key=lambda pair: pair[0].index)
        job = group[0][0].job
        yield (
            task,
            self.step.run(self._worker, job, [c for _, c in group], self.earlier(task, results)),
        )


def _count(name: str, n: int) -> None:
    Metrics.counter("kibble", name).inc(n)


def _summary_file(root: str, task: str) -> str:
    return layout.join(root, curation.SUMMARIES, f"{layout.task_dir_name(task)}.json")


def _write_summary(element: tuple[str, TaskSummary], root: str) -> None:
    task, summary = element
    layout.write_bytes(_summary_file(root, task), json.dumps(summary.to_json()).encode())


RUNNER_ALIASES = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}
"""Runners Beam knows only by their full name: ``--runner DaskRunner`` (``kibble[dask]``:
a ``dask.distributed`` cluster, no JVM and nothing downloaded; docs/scaling-out.md)."""


def _runner_aliases(args: list[str]) -> list[str]:
    """``--runner DaskRunner`` as Beam needs it; a clear error without its package."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg.startswith("--runner="):
            prefix, value = "--runner=", arg.removeprefix("--runner=")
        elif i and out[i - 1] == "--runner":
            prefix, value = "", arg
        else:
            continue
        if value not in RUNNER_ALIASES:
            continue
        if value == "DaskRunner" and importlib.util.find_spec("distributed") is None:
            raise KibbleError(
                "--runner DaskRunner needs Beam's Dask extra: pip install 'kibble[dask]' "
                "(apache-beam[dask]); then give the cluster with --dask_client_address "
                "HOST:PORT"
            )
        out[i] = prefix + RUNNER_ALIASES[value]
    return out


def default_options(argv: list[str], output: str | None = None) -> PipelineOptions:
    """Beam options from the command line; locally, all cores in separate processes.

    On a remote runner (``output`` given): the package for workers, output checked
    (``remote.worker_args``).
    """
    args = _runner_aliases(argv)
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
    staging = layout.join(root, curation.STAGING)

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


def build(p: beam.Pipeline, jobs: list[TaskJob], settings: curation.Settings, per_shard: int):
    """``curation.STEPS`` as Beam transforms; each task's summary goes to a staging file."""
    # Shards are made on the workers from one small record per task, then spread
    # over them: nothing per episode or per shard is built on the launcher.
    carried = (
        p
        | "PlanTasks" >> beam.Create(jobs)
        | "PlanShards" >> beam.FlatMap(stages.plan_shards, per_shard)
        | "SpreadShards" >> beam.Reshuffle()
        | "Start" >> beam.Map(lambda shard: (shard, None))
    )
    labels: list[str] = []
    results: list = []  # the task steps' results so far, as side inputs
    last = None
    for step in curation.STEPS:
        if step.scope == curation.SHARD:
            carried = carried | step.label >> beam.ParDo(
                RunShardStep(step, settings, list(labels)), *results
            )
            continue
        last = (
            carried
            | f"KeyByTask{step.label}" >> beam.Map(lambda pair: (pair[0].job.task, pair))
            | f"GroupByTask{step.label}" >> beam.GroupByKey()
            | step.label >> beam.ParDo(RunTaskStep(step, settings, list(labels)), *results)
        )
        labels.append(step.label)
        results.append(beam.pvalue.AsDict(last))
    last | "WriteSummaries" >> beam.Map(_write_summary, root=settings.root)


class BeamExecutor:
    """Runs the curation's steps as one Beam pipeline (see the module docstring)."""

    def __init__(
        self,
        options: PipelineOptions,
        log_file: Path,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.options, self.log_file, self.on_progress = options, log_file, on_progress

    def run(self, config: DatasetConfig, settings: curation.Settings) -> dict[str, TaskSummary]:
        root = settings.root
        if remote.is_remote(self.options):
            shipped = remote.ship_experts(config.tasks, root)
            jobs = [shipped[job.task] for job in config.tasks]
        else:
            jobs = list(config.tasks)
        pipeline = beam.Pipeline(options=self.options)
        try:
            with (
                guard.worker_log(self.log_file),
                _watch_rollouts(root, self.on_progress),
                pipeline as p,
            ):
                build(p, jobs, settings, config.episodes_per_shard)
        except guard.Interrupted:
            guard.silence_beam(self.log_file)  # its threads report the workers' end
            guard.stop_children()  # no worker may write to staging after it goes
            raise
        except KibbleError:
            raise
        except Exception as e:  # a worker's error, as Beam reports it: one paragraph
            raise guard.worker_failure(e, self.log_file, config.output) from e
        finally:
            # DaskRunner's result holds the dask client it opened and never closes.
            client = getattr(getattr(pipeline, "result", None), "client", None)
            if client is not None:
                client.close()
        return {
            job.task: TaskSummary.from_json(
                json.loads(layout.read_bytes(_summary_file(root, job.task)))
            )
            for job in config.tasks
        }


def run(
    config: DatasetConfig,
    beam_args: list[str] | None = None,
    *,
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
    log_file = guard.log_location(out, config.name)
    manifest = curation.curate(config, BeamExecutor(options, log_file, on_progress))
    if not layout.is_url(out) and not keep_log:
        log_file.unlink(missing_ok=True)  # nothing to look at: the job succeeded
    return manifest
