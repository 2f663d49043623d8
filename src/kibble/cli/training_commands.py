"""Training commands: ``kibble train``, ``kibble eval`` and the end-to-end ``kibble demo``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from kibble.cli.base import NumEnvsOption, SeedOption, _parse_overrides, app, local_path
from kibble.display import (
    Display,
    RichDisplay,
    on_episode,
    on_training_start,
    on_training_step,
)
from kibble.errors import KibbleError


@app.command(context_settings={"allow_extra_args": False})
def train(
    mixture: Annotated[
        Path,
        typer.Argument(
            metavar="MIXTURE.yaml",
            parser=local_path,
            help="The mixture config: datasets and their weights, the model, the steps; "
            "configs/mixture.yaml shows every key.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            metavar="RUN_DIR",
            parser=local_path,
            help="The run's directory; a rerun on it resumes.",
        ),
    ],
    steps: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Train to step N instead of the mixture's steps."),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            min=0,
            metavar="M",
            help="Stop after M minutes, with a checkpoint, instead of the mixture's max_minutes.",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            metavar="DEVICE",
            help="auto, cpu or cuda[:N], instead of the mixture's device. Default: auto (a "
            "GPU if there is one).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Torch CPU threads. Default: torch's own choice, one per physical core. On a "
            "machine other jobs keep busy, 1 can be several times faster (kibble demo times "
            "both).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Set a mixture key, e.g. --set learning_rate=1e-3; repeat for several.",
        ),
    ] = None,
) -> None:
    """Train a Gato-style generalist on a mixture of curated datasets.

    Writes RUN_DIR/checkpoint (the config, and the weights and optimizer state as
    safetensors), RUN_DIR/metrics.jsonl and TensorBoard logs in RUN_DIR/tensorboard. On
    several GPUs: torchrun --nproc_per_node N -m kibble train MIXTURE.yaml --out RUN_DIR.
    """
    from kibble.trainer.config import load_mixture
    from kibble.trainer.train import TrainingInterrupted
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
    try:
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
    except TrainingInterrupted as e:  # SIGINT/SIGTERM: one line, exit 130/143
        typer.echo(f"kibble: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    if rank0:
        typer.echo(f"{summary.line()}; checkpoint in {out / 'checkpoint'}")


@app.command("eval")
def eval_(
    run_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_DIR", parser=local_path, help="A run directory kibble train wrote."
        ),
    ],
    task: Annotated[
        list[str],
        typer.Option(metavar="TASK", help="A task id to play; repeat for several tasks."),
    ],
    episodes: Annotated[
        int, typer.Option(min=1, metavar="N", help="Episodes to play per task.")
    ] = 20,
    seed: SeedOption = 0,
    num_envs: NumEnvsOption = 4,
    card: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="CARD.json",
            parser=local_path,
            help="An expert card to score its task against; repeat for several. Default: the "
            "expert and random returns in the training dataset's manifest.",
        ),
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Cut episodes at N steps, as the expert cards' were."
        ),
    ] = None,
    past_steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Earlier timesteps of the episode the model sees when it acts; 0 shows it "
            "only the current observation. Default: as many as its training context holds "
            "(Gato). Fewer can stop a model from repeating its own earlier actions past the "
            "moment the task changes phase (docs/learning.md).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Torch CPU threads. Default: torch's own choice, one per physical core.",
        ),
    ] = None,
) -> None:
    """Run the generalist in the real environments; report expert-normalized scores.

    Writes RUN_DIR/eval/: a JSON per task, summary.json, scores.md and scores.png.
    """
    from kibble.experts.card import RolloutSettings
    from kibble.trainer.evaluate import LoadedRun, evaluate_task, evaluation_plan, write_report

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    plan = evaluation_plan(task, card or [])
    settings = RolloutSettings(episodes=episodes, seed=seed, num_envs=num_envs, max_steps=max_steps)
    run = LoadedRun.load(run_dir)
    rows = []
    with RichDisplay() as display:
        for t, task_card in plan:
            with display.bar(f"evaluating {t}", episodes) as update:
                rows.append(
                    evaluate_task(
                        run,
                        t,
                        settings,
                        card=task_card,
                        on_episode=on_episode(update),
                        past_steps=past_steps,
                    )
                )
    summary = write_report(run_dir, rows)
    typer.echo(summary["table"])
    typer.echo(f"wrote {run_dir / 'eval'}")


@app.command()
def demo(
    out: Annotated[
        Path,
        typer.Option(metavar="DIR", parser=local_path, help="Where the demo writes everything."),
    ] = Path("kibble-out/demo"),
    short: Annotated[
        bool,
        typer.Option(
            "--short", help="Run every stage at tiny sizes, as CI does: about a minute and a half."
        ),
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Redo every stage, even those already done.")
    ] = False,
    seed: Annotated[
        int, typer.Option(min=0, metavar="N", help="The seed every stage's seeds derive from.")
    ] = 0,
) -> None:
    """Run the main job end to end: experts -> cards -> dataset -> generalist -> report.

    Trains an RLlib expert for gym/CartPole-v1; uses Meta-World's scripted experts for
    reach-v3 and drawer-open-v3, the BabyAI bot for GoToObj-v0 and a random one for
    procgen/starpilot; writes an expert card per task; curates a dataset with the Beam
    job on the local runner; trains a tiny Gato on it; evaluates it against the cards;
    writes DIR/report.md with plots. Under 20 minutes on 2 CPU cores. A rerun reuses
    what is already done, unless --fresh.
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
