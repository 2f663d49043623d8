"""Expert commands: ``kibble tasks``, ``kibble expert train``, ``kibble expert eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kibble.cli.base import (
    EXPERT_HELP,
    TASK_HELP,
    NumEnvsOption,
    SeedOption,
    _parse_overrides,
    _quiet_ray,
    _stderr,
    app,
    expert_app,
    local_path,
)
from kibble.display import RichDisplay, on_episode, on_expert_iteration
from kibble.errors import KibbleError


@app.command()
def tasks(
    family: Annotated[
        str | None,
        typer.Option(
            metavar="FAMILY",
            help="List only this family's tasks: gym, atari, dmc, metaworld, procgen or babyai.",
        ),
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
    console = _stderr()
    # Drawn on a terminal only: on a pipe or file rich draws nothing and then, stopping,
    # prints an empty line to stderr.
    shown = console.is_interactive
    reading = track(
        listed, description="reading spaces", transient=True, console=console, disable=not shown
    )
    for task in reading:
        rows.append((task, *task.space_descriptions()))
    width = max((len(t.id) for t, _, _ in rows), default=0)
    for task, obs, act in rows:
        note = f"  # {task.note}" if task.note else ""
        experts = ",".join(task.expert_sources)
        typer.echo(f"{task.id:<{width}}  obs={obs}  act={act}  experts={experts}{note}")


@expert_app.command("train")
def expert_train(
    task: Annotated[str, typer.Argument(metavar="TASK", help=TASK_HELP)],
    out: Annotated[
        Path,
        typer.Option(
            metavar="DIR", parser=local_path, help="The expert's directory; a rerun on it resumes."
        ),
    ],
    algorithm: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="PPO or SAC (SAC needs continuous actions). Default: PPO."
        ),
    ] = None,
    timesteps: Annotated[
        int, typer.Option(min=1, metavar="N", help="Environment steps to train for.")
    ] = 200_000,
    target_return: Annotated[
        float | None,
        typer.Option(metavar="R", help="Stop once the mean training return reaches R."),
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(metavar="M", help="Stop after M minutes, with a checkpoint."),
    ] = None,
    num_env_runners: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="RLlib env-runner actors, one CPU each; with 0 this process samples.",
        ),
    ] = 0,
    num_envs: Annotated[
        int, typer.Option(min=1, metavar="N", help="Environments each env runner steps.")
    ] = 8,
    checkpoint_every: Annotated[
        int, typer.Option(min=1, metavar="N", help="Checkpoint every N training iterations.")
    ] = 5,
    seed: Annotated[int, typer.Option(metavar="N", help="RLlib's seed.")] = 0,
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Train on an existing Ray cluster: its head's HOST:PORT (e.g. "
            "10.0.0.5:6379), or auto. Run kibble on a machine that joined it. Default: a "
            "local Ray started for this run.",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Set an RLlib AlgorithmConfig field, e.g. --set lr=1e-4; repeat for several.",
        ),
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
    task: Annotated[str, typer.Argument(metavar="TASK", help=TASK_HELP)],
    expert: Annotated[str, typer.Option(metavar="SOURCE", help=EXPERT_HELP)],
    episodes: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Episodes to play with the expert, and as many with the random policy.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="CARD.json",
            parser=local_path,
            help="The expert card to write. Default: print the measurement, write nothing.",
        ),
    ] = None,
    seed: SeedOption = 0,
    num_envs: NumEnvsOption = 4,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Sample an RLlib expert's actions (seeded per episode) instead of taking "
            "the most likely one.",
        ),
    ] = False,
    max_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Cut episodes at N steps, as a dataset config's max_steps does.",
        ),
    ] = None,
) -> None:
    """Evaluate an expert (and the random policy, same seeds) on TASK; write its expert card.

    Without --out, prints what the card would say and writes nothing.
    """
    from kibble.experts.card import RolloutSettings, make_card, write_card
    from kibble.experts.sources import parse_source

    if out is not None and out.is_dir():
        raise KibbleError(f"--out {out} is a directory; give the card's file name")
    settings = RolloutSettings(episodes=episodes, seed=seed, num_envs=num_envs, max_steps=max_steps)
    src = parse_source(expert)
    if src.uses_ray:
        _quiet_ray()
    total = episodes if src.is_random else 2 * episodes
    label = expert if src.is_random else f"{expert} and random"
    with RichDisplay() as display, display.bar(f"evaluating {label}", total) as update:
        card = make_card(task, expert, settings, sample=sample, on_episode=on_episode(update))
    if out is not None:
        write_card(card, out)
    sr = "" if card.success_rate is None else f", success rate {card.success_rate:.2f}"
    wrote = f"; wrote {out}" if out is not None else " (no --out: no card written)"
    typer.echo(
        f"{task} {expert}: return {card.expert_return.mean:.1f} ± {card.expert_return.std:.1f} "
        f"over {episodes} episodes{sr}; random policy {card.random_return.mean:.1f}{wrote}"
    )
