"""The ``kibble`` command line (SPEC section 8).

Every command has ``--help``. A user error (``KibbleError``) ends in a one-paragraph
message on stderr and exit status 1, never a traceback; anything else is a bug and
keeps its traceback. Commands whose stage has not landed yet say so and exit 1.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

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


def _not_built(command: str, issue: int) -> NoReturn:
    typer.echo(f"kibble {command} is not built yet (tracked in issue #{issue}).", err=True)
    raise typer.Exit(1)


@app.command()
def tasks(
    family: Annotated[
        str | None, typer.Option(help="Only this family: gym, atari, dmc, metaworld, procgen.")
    ] = None,
) -> None:
    """List tasks, one per line, with their spaces and expert sources."""
    _not_built("tasks", 3)


@expert_app.command("train")
def expert_train(
    task: Annotated[str, typer.Argument(help="Task id, e.g. gym/CartPole-v1.")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory.")],
) -> None:
    """Train an RLlib expert for TASK and checkpoint it to --out."""
    _not_built("expert train", 3)


@expert_app.command("eval")
def expert_eval(
    task: Annotated[str, typer.Argument(help="Task id, e.g. gym/CartPole-v1.")],
    expert: Annotated[str, typer.Option(help="Checkpoint path, 'scripted' or 'random'.")],
    episodes: Annotated[int, typer.Option(help="Evaluation episodes.")],
    out: Annotated[Path, typer.Option(help="Expert card JSON to write.")],
) -> None:
    """Evaluate an expert on TASK and write its expert card."""
    _not_built("expert eval", 3)


@app.command()
def rollout(
    task: Annotated[str, typer.Argument(help="Task id, e.g. gym/CartPole-v1.")],
    expert: Annotated[str, typer.Option(help="Checkpoint path, 'scripted' or 'random'.")],
    episodes: Annotated[int, typer.Option(help="Episodes to roll out.")],
    out: Annotated[Path, typer.Option(help="Dataset directory to write.")],
) -> None:
    """Roll an expert out in one environment (no Beam) and write a dataset."""
    _not_built("rollout", 4)


@pipeline_app.command("run")
def pipeline_run(
    config: Annotated[Path, typer.Argument(help="Dataset config YAML.")],
    out: Annotated[Path | None, typer.Option(help="Override the config's output.")] = None,
) -> None:
    """Run the curation pipeline on Beam (local runner by default)."""
    _not_built("pipeline run", 4)


@app.command()
def inspect(
    dataset_dir: Annotated[Path, typer.Argument(help="A dataset directory.")],
) -> None:
    """Summarise a dataset: counts, returns, tokens per step, size, schema checks."""
    _not_built("inspect", 4)


@app.command()
def train(
    mixture: Annotated[Path, typer.Argument(help="Mixture YAML.")],
    out: Annotated[Path, typer.Option(help="Run directory.")],
) -> None:
    """Train a Gato-style generalist on a mixture of datasets."""
    _not_built("train", 5)


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A training run directory.")],
    task: Annotated[str, typer.Option(help="Task id to evaluate on.")],
    episodes: Annotated[int, typer.Option(help="Evaluation episodes.")],
) -> None:
    """Evaluate a trained generalist in the real environment (expert-normalized score)."""
    _not_built("eval", 5)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("kibble-out/demo"),
    episodes: Annotated[int, typer.Option(help="Random CartPole episodes to roll out.")] = 20,
    seed: Annotated[int, typer.Option(help="Base seed (episode i resets with seed + i).")] = 0,
) -> None:
    """Run the main job end to end on embedded defaults.

    For now: random CartPole episodes -> Gato tokens -> raw and tokenized Parquet ->
    read back, schema-validated, actions decoded and checked -> summary.json.
    """
    from rich.progress import track

    from kibble.demo import DemoConfig, run_demo

    summary = run_demo(
        DemoConfig(out=out, episodes=episodes, seed=seed),
        progress=lambda it: track(it, description="rollout + tokenize + write"),
    )
    typer.echo(
        f"{summary.task}: {summary.episodes} episodes, {summary.steps} steps, "
        f"{summary.tokens} tokens ({summary.tokens_per_step:.0f} per step)\n"
        f"return mean {summary.return_mean:.1f} (min {summary.return_min:.0f}, "
        f"max {summary.return_max:.0f})\n"
        f"tokenized Parquet {summary.tokenized_bytes} bytes in {summary.row_groups} row "
        f"group(s), raw {summary.raw_bytes} bytes, schema version {summary.schema_version}\n"
        f"read back with pyarrow, validated, actions decoded from tokens match\n"
        f"wrote {out / 'summary.json'}"
    )


def main() -> None:
    """Console-script entry point: user errors become one-paragraph messages."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KibbleError as e:
        typer.echo(f"kibble: error: {e}", err=True)
        sys.exit(1)
