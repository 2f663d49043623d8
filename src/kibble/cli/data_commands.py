"""Data commands: ``kibble rollout``, ``pipeline run``, ``inspect``, ``view``, ``export``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kibble.cli.base import (
    EXPERT_HELP,
    TASK_HELP,
    NumEnvsOption,
    _quiet_ray,
    app,
    local_path,
    pipeline_app,
)
from kibble.display import Display, RichDisplay, on_episode

if TYPE_CHECKING:
    from kibble.pipelines.config import DatasetConfig


@app.command()
def rollout(
    task: Annotated[str, typer.Argument(metavar="TASK", help=TASK_HELP)],
    expert: Annotated[str, typer.Option(metavar="SOURCE", help=EXPERT_HELP)],
    episodes: Annotated[int, typer.Option(min=1, metavar="N", help="Episodes to roll out.")],
    out: Annotated[
        str,  # not a Path, which would make gs://b/x gs:/b/x: a URL stays a URL
        typer.Option(
            metavar="DIR|URL",
            help="The dataset to write, a directory or a URL (gs://, s3://, file:///); a "
            "dataset already there is replaced.",
        ),
    ],
    seed: Annotated[
        int, typer.Option(min=0, metavar="N", help="Base seed the episode seeds derive from.")
    ] = 0,
    fraction: Annotated[
        float,
        typer.Option(
            metavar="F",
            help="Keep the episodes whose return is at least F times the expert return.",
        ),
    ] = 0.8,
    card: Annotated[
        Path | None,
        typer.Option(
            metavar="CARD.json",
            parser=local_path,
            help="An expert card whose expert and random returns set the threshold. Default: "
            "the expert return measured on these episodes.",
        ),
    ] = None,
    num_envs: NumEnvsOption = 4,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Sample an RLlib expert's actions instead of taking the most likely one.",
        ),
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Cut episodes at N steps.")
    ] = None,
) -> None:
    """Roll an expert out in one process (no Beam): validate, filter, tokenize, write a dataset."""
    from kibble.experts.sources import parse_source
    from kibble.pipelines.filtering import rule_text
    from kibble.pipelines.in_process import curate_tasks
    from kibble.pipelines.stages import TaskJob
    from kibble.schemas.layout import task_entries

    if parse_source(expert).uses_ray:
        _quiet_ray()
    from kibble.pipelines.guard import Interrupted

    job = TaskJob(
        task, expert, episodes, card=str(card) if card else None, sample=sample, max_steps=max_steps
    )
    try:
        with RichDisplay() as display, display.bar(f"rolling out {task}", episodes) as update:
            manifest = curate_tasks(
                _dataset_name(out),
                [job],
                out,
                seed=seed,
                fraction=fraction,
                num_envs=num_envs,
                on_episode=on_episode(update),
            )
    except Interrupted as e:  # one line saying what was kept; 130 or 143
        typer.echo(f"kibble: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    t = task_entries(manifest)[task]
    bar = "none" if t.threshold is None else f"{t.threshold:.1f}"
    rule = rule_text(t.rule, t.fraction)
    typer.echo(f"{task}: {t.counts()}; threshold {bar} ({rule}); wrote {out}")


def _dataset_name(out: str) -> str:
    """The dataset's name: the last part of its directory or URL."""
    return Path(out.partition("://")[2] or out).name or "dataset"


@pipeline_app.command(
    "run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def pipeline_run(
    ctx: typer.Context,
    config: Annotated[
        Path,
        typer.Argument(metavar="CONFIG.yaml", parser=local_path, help="The dataset config to run."),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            metavar="DIR|URL",
            help="Write the dataset here instead of the config's output: a directory or a "
            "URL (gs://, s3://).",
        ),
    ] = None,
) -> None:
    """Run the curation job on Beam; by default on Beam's local runner, a worker per core.

    Options kibble does not know go to Beam, e.g. --direct_num_workers=1, or --runner
    DataflowRunner --project P --region R --temp_location gs://B/tmp. A progress bar
    counts the shards rolled out; what Beam and its workers print goes to a log file
    (beside a local output, .NAME.log), which the last line names.
    """
    from kibble.pipelines.config import load_config
    from kibble.pipelines.guard import Interrupted, log_location
    from kibble.schemas.layout import task_entries

    cfg = load_config(config, output=out)
    log_file = log_location(cfg.output, cfg.name)
    try:
        # Beam logs while it is imported and its workers print to file descriptors 1 and
        # 2: all of it goes to the log while the bar draws on the terminal.
        with RichDisplay() as display, display.stage_output(log_file):
            manifest = _run_on_beam(cfg, ctx.args, display)
    except Interrupted as e:  # one line saying what was kept; 130 or 143
        typer.echo(f"kibble: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    for task, t in task_entries(manifest).items():
        typer.echo(f"{task}: {t.counts()}")
    typer.echo(f"wrote {cfg.output}; Beam's log: {_shown(log_file)}")


def _run_on_beam(cfg: DatasetConfig, beam_args: list[str], display: Display) -> dict:
    """The Beam job with a bar of the shards rolled out; returns the manifest."""
    from kibble.experts.sources import parse_source
    from kibble.pipelines.beam_job import planned_shards, run

    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # worker chatter, not news
    if any(parse_source(job.expert).uses_ray for job in cfg.tasks):
        _quiet_ray()
    episodes = sum(job.episodes for job in cfg.tasks)
    with display.bar(f"{cfg.name}: shards rolled out", planned_shards(cfg)) as update:
        # Drawn at once: Beam takes seconds to start its workers.
        update(completed=0, info=f"{episodes:,} episodes of {len(cfg.tasks)} task(s)")
        return run(cfg, beam_args, on_progress=lambda done: update(completed=done), keep_log=True)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@app.command()
def inspect(
    dataset_dir: Annotated[
        str,
        typer.Argument(
            metavar="DATASET", help="A dataset directory or URL (gs://, s3://, file:///)."
        ),
    ],
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Skip hashing the files (rows, sizes and counts are still checked)."
        ),
    ] = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Print only the summary (a line per task) and the verdict, not the columns "
            "and a sample row of each task.",
        ),
    ] = False,
) -> None:
    """Summarise a dataset and verify it: every file against the manifest (sha256, rows,
    bytes), the manifest's counts against the files, every file against its schema.
    Exits 1 naming each mismatch."""
    from kibble.reading.inspection import inspect_dataset

    report = inspect_dataset(dataset_dir, quick=quick)
    typer.echo(f"{dataset_dir}: schema version {', '.join(sorted(report.schema_versions))}")
    for name, t in sorted(report.tasks.items()):
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(t.rejected.items())) or "none"
        returns = (
            "n/a"
            if t.return_mean is None
            else f"{t.return_mean:.4g} (min {t.return_min:.4g}, max {t.return_max:.4g})"
        )
        typer.echo(
            f"  {name}: kept {t.kept}, rejected {rejected}; return {returns}; "
            f"{t.steps} steps, {t.tokens_per_step:.1f} tokens/step; {t.bytes:,} bytes"
        )
    if not summary:
        _echo_columns_and_samples(report)
    if report.problems:
        typer.echo("problems:", err=True)
        for problem in report.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1)
    checked = "rows, sizes and counts" if quick else "checksums, rows, sizes and counts"
    typer.echo(f"every file matches its schema and the manifest ({checked})")


def _echo_columns_and_samples(report) -> None:
    from kibble.reading.inspection import sample_values

    what = {"data": "kept timesteps, one row per step", "rejected": "one row per episode"}
    for top, columns in report.columns.items():
        typer.echo(f"columns of {top}/ ({what.get(top, top)}):")
        width = max(len(name) for name, _ in columns)
        for name, kind in columns:
            typer.echo(f"  {name:<{width}}  {kind}")
    for task, (rel, row) in sorted(report.samples.items()):
        typer.echo(f"sample row of {task} (the first of {rel}):")
        values = sample_values(row)
        width = max(len(name) for name, _ in values)
        for name, text in values:
            typer.echo(f"  {name:<{width}}  {text}")


@app.command()
def view(
    dataset_dir: Annotated[
        str, typer.Argument(help="A dataset directory or URL (gs://, s3://, file:///).")
    ],
    out: Annotated[
        str,  # not a Path, which would make gs://b/x.gif gs:/b/x.gif: a URL is refused
        typer.Option(
            metavar="FILE",
            help="The file to write, which must not exist yet: FILE.mp4 or FILE.gif for a "
            "video of the episode's images, FILE.png for a plot of its observation and action "
            "values and rewards.",
        ),
    ],
    task: Annotated[
        str | None,
        typer.Option(
            metavar="TASK",
            help="The task whose episode to draw, e.g. atari/Pong. Default: the dataset's "
            "task, when it has one.",
        ),
    ] = None,
    episode: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="The episode id to draw (the episode_id column). Default: the task's first "
            "kept episode, the kept one with the lowest episode index.",
        ),
    ] = None,
    fps: Annotated[int, typer.Option(min=1, max=120, help="Frames per second of a video.")] = 15,
    max_frames: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Draw only the first N steps (frames of a video, points of a plot). Default: all.",
        ),
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", hidden=True, help="Deprecated: --max-frames."),
    ] = None,
) -> None:
    """Draw one kept episode of a dataset: a video of its image observations, one frame per
    step with the step, the action and the reward written under it, or a plot of its raw
    observation and action values and its rewards (the picture for a task without images)."""
    from kibble.errors import KibbleError
    from kibble.reading.viewer import ViewConfig, view_episode

    if max_steps is not None:  # the option's old name, before it said what it counts
        if max_frames is not None and max_frames != max_steps:
            raise KibbleError(
                f"--max-steps {max_steps} and --max-frames {max_frames} disagree: --max-steps "
                "is the old name of --max-frames; give --max-frames only"
            )
        typer.echo("kibble: --max-steps is deprecated; use --max-frames", err=True)
        max_frames = max_steps
    config = ViewConfig(fps=fps, max_frames=max_frames)
    done = view_episode(dataset_dir, task, out, episode_id=episode, config=config)
    drawn = "" if done.drawn == done.length else f" (the first {done.drawn} drawn)"
    typer.echo(
        f"{done.task}: episode {done.episode_id}, return {done.episode_return:.4g}, "
        f"{done.length} step{'' if done.length == 1 else 's'}{drawn}; wrote {done.path}"
    )


@app.command("export")
def export(
    dataset_dir: Annotated[
        str,
        typer.Argument(
            metavar="DATASET", help="A dataset directory or URL (gs://, s3://, file:///)."
        ),
    ],
    out: Annotated[
        str,  # not a Path, which would make gs://b/x gs:/b/x: a URL is refused
        typer.Option(
            metavar="DIR",
            help="The directory to write, which must not exist yet. For minari it is a Minari "
            "datasets root: MINARI_DATASETS_PATH=DIR, then minari.load_dataset(ID).",
        ),
    ],
    format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="The format to write: minari.")
    ] = "minari",
    task: Annotated[
        list[str] | None,
        typer.Option(metavar="TASK", help="Export only this task (repeat for more). Default: all."),
    ] = None,
    episode: Annotated[
        list[str] | None,
        typer.Option(
            metavar="ID",
            help="Export only this episode (the episode_id column; repeat for more). "
            "Default: every kept episode.",
        ),
    ] = None,
) -> None:
    """Write a dataset's kept episodes in another library's format: one Minari dataset per
    task, with the raw observations, actions, rewards, terminations and truncations, the
    task's spaces, and ref_min_score/ref_max_score from the task's expert card. Minari
    episodes hold the observation after the last action and kibble does not record it, so
    each episode is exported without its last step (kept in the episode's metadata)."""
    from kibble.interrupts import Interrupted
    from kibble.reading.export import export_dataset

    try:
        result = export_dataset(dataset_dir, format, out, tasks=task, episode_ids=episode)
    except Interrupted as e:  # one line saying nothing was written; 130 or 143
        typer.echo(f"kibble: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    for t in result.tasks:
        scores = (
            f"ref scores {t.ref_min_score:g} (random) .. {t.ref_max_score:g} (expert)"
            if t.ref_max_score is not None
            else "no ref scores"
        )
        typer.echo(f"{t.task}: {t.episodes} episodes, {t.steps} steps as {t.dataset_id}; {scores}")
        for note in t.notes:
            typer.echo(f"  note: {note}")
    for skipped in result.skipped:
        typer.echo(f"{skipped}: kept no episode; not exported")
    typer.echo(
        f"wrote {result.out}, a Minari datasets root: with MINARI_DATASETS_PATH={result.out}, "
        "minari.load_dataset(ID) loads each id above"
    )
