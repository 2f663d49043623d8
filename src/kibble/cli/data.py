"""Data commands: ``kibble rollout``, ``kibble pipeline run``, ``kibble inspect``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from kibble.cli.base import _quiet_ray, app, pipeline_app
from kibble.display import RichDisplay, on_episode


@app.command()
def rollout(
    task: Annotated[str, typer.Argument(help="Task id, e.g. gym/CartPole-v1.")],
    expert: Annotated[str, typer.Option(help="Checkpoint path, 'scripted' or 'random'.")],
    episodes: Annotated[int, typer.Option(min=1, help="Episodes to roll out.")],
    out: Annotated[Path, typer.Option(help="Dataset directory to write (replaced).")],
    seed: Annotated[int, typer.Option(min=0, help="Base seed of the episode seeds.")] = 0,
    fraction: Annotated[
        float, typer.Option(help="Keep episodes with return >= fraction x expert return.")
    ] = 0.8,
    card: Annotated[
        Path | None, typer.Option(help="Expert card: use its expert and random returns.")
    ] = None,
    num_envs: Annotated[int, typer.Option(min=1, help="Environments stepped together.")] = 4,
    sample: Annotated[
        bool, typer.Option("--sample", help="Sample an RLlib expert's actions.")
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Cut episodes at this many steps.")
    ] = None,
) -> None:
    """Roll an expert out in one process (no Beam): validate, filter, tokenize, write a dataset."""
    from kibble.experts.sources import parse_source
    from kibble.pipelines.local import TaskJob, curate
    from kibble.schemas.dataset import task_entries

    if parse_source(expert).uses_ray:
        _quiet_ray()
    from kibble.pipelines.guard import Interrupted

    job = TaskJob(task, expert, episodes, str(card) if card else None, sample, max_steps)
    try:
        with RichDisplay() as display, display.bar(f"rolling out {task}", episodes) as update:
            manifest = curate(out.name, [job], out, seed, fraction, num_envs, on_episode(update))
    except Interrupted as e:  # one line saying what was kept; 130 or 143
        typer.echo(f"kibble: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    t = task_entries(manifest)[task]
    typer.echo(f"{task}: {t.counts()}; threshold {t.threshold} ({t.rule}); wrote {out}")


@pipeline_app.command(
    "run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def pipeline_run(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="Dataset config YAML.")],
    out: Annotated[
        str | None,
        typer.Option(help="Override the config's output: a directory or a URL (gs://, s3://)."),
    ] = None,
) -> None:
    """Run the curation job on Beam (local multi-process runner by default).

    Options kibble does not know go to Beam, e.g. --direct_num_workers=1, or
    --runner DataflowRunner --project P --region R --temp_location gs://B/tmp.
    """
    from kibble.experts.sources import parse_source
    from kibble.pipelines.beam_job import run
    from kibble.pipelines.config import load_config
    from kibble.schemas.dataset import task_entries

    cfg = load_config(config, output=out)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # worker chatter, not news
    if any(parse_source(job.expert).uses_ray for job in cfg.tasks):
        _quiet_ray()
    typer.echo(
        f"{cfg.name}: {sum(j.episodes for j in cfg.tasks)} episodes of {len(cfg.tasks)} task(s) "
        f"on Beam ...",
        err=True,
    )
    from kibble.pipelines.guard import Interrupted

    try:
        manifest = run(cfg, ctx.args)
    except Interrupted as e:  # one line saying what was kept; 130 or 143
        typer.echo(f"kibble: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    for task, t in task_entries(manifest).items():
        typer.echo(f"{task}: {t.counts()}")
    typer.echo(f"wrote {cfg.output}")


@app.command()
def inspect(
    dataset_dir: Annotated[
        str, typer.Argument(help="A dataset directory or URL (gs://, s3://, file:///).")
    ],
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Skip hashing the files (rows, sizes and counts are still checked)."
        ),
    ] = False,
) -> None:
    """Summarise a dataset and verify it: every file against the manifest (sha256, rows,
    bytes), the manifest's counts against the files, every file against its schema.
    Exits 1 naming each mismatch."""
    from kibble.pipelines.inspection import inspect_dataset

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
    if report.problems:
        typer.echo("problems:", err=True)
        for problem in report.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(1)
    checked = "rows, sizes and counts" if quick else "checksums, rows, sizes and counts"
    typer.echo(f"every file matches its schema and the manifest ({checked})")
