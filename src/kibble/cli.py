"""The ``kibble`` command line (the README's Commands table).

Every command has ``--help``. A user error (``KibbleError``) ends in a one-paragraph
message on stderr and exit status 1, never a traceback; anything else is a bug and
keeps its traceback. Commands whose stage has not landed yet say so and exit 1.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from kibble.display import (
    Display,
    RichDisplay,
    on_episode,
    on_expert_iteration,
    on_training_start,
    on_training_step,
)
from kibble.errors import KibbleError

app = typer.Typer(
    name="kibble",
    help=(
        "kibble turns reinforcement-learning experts into Gato training data: experts -> "
        "Beam rollouts -> validate + filter -> Gato tokens -> curated Parquet -> trainer."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
expert_app = typer.Typer(help="Train per-task experts and measure them (expert cards).")
pipeline_app = typer.Typer(help="Run the Beam curation job that writes a dataset.")
app.add_typer(expert_app, name="expert", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline", no_args_is_help=True)


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


def _parse_overrides(items: list[str]) -> dict:
    """``["lr=1e-4", "gamma=0.995"]`` -> {"lr": 0.0001, "gamma": 0.995} (values as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KibbleError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _quiet_ray() -> None:
    """Ray and RLlib log deprecation notices and hints at WARNING on every module build;
    keep the terminal for kibble's progress and real errors. RLlib sets its loggers'
    levels when imported, so this imports it first."""
    import ray.rllib  # noqa: F401

    for name in ("ray", "ray.rllib"):
        logging.getLogger(name).setLevel(logging.ERROR)


@app.command()
def tasks(
    family: Annotated[
        str | None, typer.Option(help="Only this family: gym, atari, dmc, metaworld, procgen.")
    ] = None,
) -> None:
    """List tasks, one per line: id, observation and action spaces, expert sources.

    Any other registered Gymnasium id also works as gym/<id>. The first listing builds
    every environment to read its spaces (about half a minute); later ones are cached.
    """
    from rich.progress import track

    from kibble.envs import list_tasks

    listed = list_tasks(family)
    rows = []
    for task in track(listed, description="reading spaces", transient=True, console=_stderr()):
        rows.append((task, *task.space_descriptions()))
    width = max((len(t.id) for t, _, _ in rows), default=0)
    for task, obs, act in rows:
        note = f"  # {task.note}" if task.note else ""
        experts = ",".join(task.expert_sources)
        typer.echo(f"{task.id:<{width}}  obs={obs}  act={act}  experts={experts}{note}")


@expert_app.command("train")
def expert_train(
    task: Annotated[str, typer.Argument(help="Task id, e.g. gym/CartPole-v1.")],
    out: Annotated[Path, typer.Option(help="Expert directory (resumed if it exists).")],
    algorithm: Annotated[
        str | None, typer.Option(help="PPO or SAC (default PPO; SAC for continuous actions).")
    ] = None,
    timesteps: Annotated[
        int, typer.Option(min=1, help="Total environment steps to train for.")
    ] = 200_000,
    target_return: Annotated[
        float | None, typer.Option(help="Stop once the mean training return reaches this.")
    ] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes.")] = None,
    num_env_runners: Annotated[
        int,
        typer.Option(
            min=0, help="RLlib env-runner actors, one CPU each (0: sample in this process)."
        ),
    ] = 0,
    num_envs: Annotated[int, typer.Option(min=1, help="Environments per env runner.")] = 8,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, help="Checkpoint every N iterations.")
    ] = 5,
    seed: Annotated[int, typer.Option(help="RLlib seed.")] = 0,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="An existing Ray cluster: its head's HOST:PORT (e.g. 10.0.0.5:6379), or auto; "
            "run kibble on a machine that joined it (default: a local Ray)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override an RLlib AlgorithmConfig field: --set lr=1e-4."),
    ] = None,
) -> None:
    """Train an RLlib expert for TASK, checkpointing to --out; rerun to resume."""
    from kibble.experts.rllib_train import ExpertTrainConfig, train_expert

    _quiet_ray()

    cfg = ExpertTrainConfig(
        task=task,
        out=out,
        algorithm=algorithm,
        timesteps=timesteps,
        target_return=target_return,
        max_minutes=max_minutes,
        num_env_runners=num_env_runners,
        num_envs_per_env_runner=num_envs,
        checkpoint_every=checkpoint_every,
        seed=seed,
        ray_address=ray_address,
        overrides=_parse_overrides(set_ or []),
    )
    with RichDisplay() as display, display.bar(f"training {task}", timesteps) as update:
        update(info="starting Ray")
        meta = train_expert(cfg, on_iteration=on_expert_iteration(update))
    progress = meta.get("progress") or {}
    typer.echo(
        f"{task}: {meta['algorithm']} trained to {progress.get('env_steps', 0):,} env steps, "
        f"mean training return {progress.get('return_mean')}; checkpoint in {out / 'checkpoint'}"
    )


@expert_app.command("eval")
def expert_eval(
    task: Annotated[str, typer.Argument(help="Task id, e.g. gym/CartPole-v1.")],
    expert: Annotated[str, typer.Option(help="Checkpoint path, 'scripted' or 'random'.")],
    episodes: Annotated[int, typer.Option(help="Evaluation episodes.")],
    out: Annotated[Path, typer.Option(help="Expert card JSON to write.")],
    seed: Annotated[int, typer.Option(min=0, help="Episode i resets with seed + i.")] = 0,
    num_envs: Annotated[int, typer.Option(min=1, help="Environments stepped together.")] = 4,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Sample an RLlib expert's actions (seeded per episode) instead of greedy.",
        ),
    ] = False,
    max_steps: Annotated[
        int | None,
        typer.Option(min=1, help="Cut episodes at this many steps (as the dataset does)."),
    ] = None,
) -> None:
    """Evaluate an expert (and the random policy, same seeds) on TASK; write its expert card."""
    from kibble.experts.card import make_card, write_card
    from kibble.experts.sources import parse_source

    if out.is_dir():
        raise KibbleError(f"--out {out} is a directory; give the card's file name")
    src = parse_source(expert)
    if src.uses_ray:
        _quiet_ray()
    total = episodes if src.is_random else 2 * episodes
    label = expert if src.is_random else f"{expert} and random"
    with RichDisplay() as display, display.bar(f"evaluating {label}", total) as update:
        card = make_card(
            task, expert, episodes, seed, num_envs, on_episode(update), sample, max_steps
        )
    write_card(card, out)
    sr = "" if card.success_rate is None else f", success rate {card.success_rate:.2f}"
    typer.echo(
        f"{task} {expert}: return {card.expert_return.mean:.1f} +- {card.expert_return.std:.1f} "
        f"over {episodes} episodes{sr}; random policy {card.random_return.mean:.1f}; wrote {out}"
    )


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
    job = TaskJob(task, expert, episodes, str(card) if card else None, sample, max_steps)
    with RichDisplay() as display, display.bar(f"rolling out {task}", episodes) as update:
        manifest = curate(out.name, [job], out, seed, fraction, num_envs, on_episode(update))
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
    manifest = run(cfg, ctx.args)
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


@app.command(context_settings={"allow_extra_args": False})
def train(
    mixture: Annotated[Path, typer.Argument(help="Mixture YAML (datasets, model, steps, ...).")],
    out: Annotated[Path, typer.Option(help="Run directory; rerunning on it resumes.")],
    steps: Annotated[
        int | None, typer.Option(min=1, help="Override the mixture's total steps.")
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option(min=0, help="Stop (with a checkpoint) after this long.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda[:N].")] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="Torch CPU threads (default: all cores; 1 on a busy machine)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a mixture key, e.g. --set learning_rate=1e-3."),
    ] = None,
) -> None:
    """Train a Gato-style generalist on a mixture of curated datasets.

    Writes RUN_DIR/checkpoint (config + safetensors weights and optimizer state),
    metrics.jsonl and TensorBoard logs (RUN_DIR/tensorboard). Several GPUs:
    torchrun --nproc_per_node N -m kibble train MIXTURE.yaml --out RUN_DIR.
    """
    from kibble.trainer.config import load_mixture
    from kibble.trainer.train import train as run_training

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    overrides = _parse_overrides(set_ or [])
    for key, value in (("steps", steps), ("max_minutes", max_minutes), ("device", device)):
        if value is not None:
            overrides[key] = value
    config = load_mixture(mixture, overrides)
    if out.exists() and not out.is_dir():
        raise KibbleError(f"--out {out} is a file; give a directory")
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 shows and reports
    with (
        RichDisplay() if rank0 else Display() as display,
        display.bar("training", config.steps) as update,
    ):
        summary = run_training(
            config,
            out,
            on_step=on_training_step(update),
            on_start=on_training_start(display, update),
        )
    if rank0:
        typer.echo(f"{summary.line()}; checkpoint in {out / 'checkpoint'}")


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A `kibble train` run directory.")],
    task: Annotated[list[str], typer.Option(help="Task id; repeat for several tasks.")],
    episodes: Annotated[int, typer.Option(min=1, help="Evaluation episodes per task.")] = 20,
    seed: Annotated[int, typer.Option(min=0, help="Episode i resets with seed + i.")] = 0,
    num_envs: Annotated[int, typer.Option(min=1, help="Environments stepped together.")] = 4,
    card: Annotated[
        list[Path] | None,
        typer.Option(help="Expert card(s) to score against (default: the dataset manifest)."),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Cut episodes here (as the expert cards were).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch threads (default: torch's, all cores).")
    ] = None,
) -> None:
    """Run the generalist in the real environments; report expert-normalized scores.

    Writes RUN_DIR/eval/: a JSON per task, summary.json, scores.md and scores.png.
    """
    from kibble.experts.card import read_card
    from kibble.trainer.evaluate import LoadedRun, evaluate_task, write_report

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    cards = {read_card(c).task: c for c in card or []}
    run = LoadedRun.load(run_dir)
    rows = []
    with RichDisplay() as display:
        for t in task:
            with display.bar(f"evaluating {t}", episodes) as update:
                rows.append(
                    evaluate_task(
                        run,
                        t,
                        episodes,
                        seed,
                        num_envs,
                        cards.get(t),
                        on_episode(update),
                        max_steps,
                    )
                )
    summary = write_report(run_dir, rows)
    typer.echo(summary["table"])
    typer.echo(f"wrote {run_dir / 'eval'}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("kibble-out/demo"),
    short: Annotated[
        bool,
        typer.Option("--short", help="Tiny sizes at every stage (CI): about a minute."),
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Redo every stage, even those already done.")
    ] = False,
    seed: Annotated[int, typer.Option(min=0, help="Base seed of every stage.")] = 0,
) -> None:
    """Run the main job end to end: experts -> cards -> dataset -> generalist -> report.

    Trains an RLlib expert for gym/CartPole-v1; uses Meta-World's scripted experts
    (reach, drawer-close) and random ones for procgen/starpilot and atari/Pong; writes
    expert cards; curates a dataset with the Beam job (local runner); trains a tiny
    Gato on it; evaluates it against the cards; writes OUT/report.md with plots.
    Under 20 minutes on 2 CPU cores. A rerun reuses what exists (unless --fresh).
    """
    import time

    from kibble.demo import PRESETS, duration, run_demo

    config = PRESETS["short" if short else "default"](out)
    config.seed, config.fresh = seed, fresh
    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # worker chatter, not news
    started = time.monotonic()
    # Bars vanish when their work ends; the stage lines stay. While a stage runs, what
    # libraries and Beam's workers print goes to its log file (Display.stage_output).
    with RichDisplay(transient=True) as display:
        results = run_demo(config, display)
    reused = sum(r.reused for r in results)
    typer.echo(
        f"demo done in {duration(time.monotonic() - started)} "
        f"({reused} of {len(results)} stages reused); report: {out / 'report.md'}"
    )


def main() -> None:
    """Console-script entry point: user errors become one-paragraph messages."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KibbleError as e:
        typer.echo(f"kibble: error: {e}", err=True)
        sys.exit(1)
