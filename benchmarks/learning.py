"""Score against training minutes: train a named mixture for a wall-clock budget, evaluating
it at a few marks on the way.

    python benchmarks/learning.py MIXTURE.yaml --out DIR --minutes 4,8,12 \
        --card CARD.json [--card ...] [--episodes 20] [--threads 2] [--set key=value ...] \
        [--past-steps [PREFIX=]N ...]

Training runs in segments (``max_minutes`` = the time to the next mark), resuming from the
checkpoint between them: resumption is byte-exact, so the segments train what one run of
the last mark's length would. At each mark the run folder is copied to ``DIR/at-<M>min``
and every task with a card whose expert is not the random policy plays ``--episodes``
episodes (seeds 1000.., cut at the card's ``max_steps``, as ``kibble demo`` evaluates);
the table printed at the end has one row per mark: steps, tokens, and each task's
expert-normalized score. Tasks without a real expert are not scored (as in the demo).
``--past-steps metaworld/=0`` evaluates tasks whose id starts with ``metaworld/`` seeing
no earlier timesteps (``kibble eval --past-steps``); a bare ``N`` applies to every task.

Run it on a quiet machine: the minutes are wall-clock training time (the evaluation is not
counted), so anything else running slows training and lowers every score. To compare
configurations on a busy machine, mark by optimizer steps instead (``--at-steps
500,1000,2000``): the scores then do not depend on the machine's speed, and minutes follow
from the tokens/s that ``benchmarks/trainer.py`` measures on a quiet one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from kibble.experts.card import RolloutSettings, read_card
from kibble.trainer.config import load_mixture
from kibble.trainer.evaluate import LoadedRun, evaluate_task
from kibble.trainer.train import train


def _overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = yaml.safe_load(value)
    return out


class _Mark(Exception):
    """Raised from the step callback once the checkpoint at the mark is saved."""


def _train_to_step(config, run: Path, mark: int):
    """Train until the checkpoint at step ``mark`` exists (the schedule still spans
    ``config.steps``); returns the run's summary as of that checkpoint."""
    if mark % config.checkpoint_every:
        sys.exit(
            f"--at-steps marks must be multiples of checkpoint_every ({config.checkpoint_every})"
        )

    def on_step(report) -> None:
        # Called every log_every steps, before that step's checkpoint: the first call after
        # the mark comes once the mark's checkpoint is on disk.
        if report.step > mark:
            raise _Mark

    if mark >= config.steps:
        return train(config, run)
    with contextlib.suppress(_Mark):
        train(config, run, on_step=on_step)
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    progress = state["progress"]
    return SimpleNamespace(
        step=progress["step"],
        tokens=progress["tokens"],
        seconds=progress["seconds"],
    )


def _past_steps(values: list[str]) -> dict[str, int]:
    """``[PREFIX=]N`` options -> {task id prefix: N} ("" for a bare N: every task)."""
    out = {}
    for value in values:
        prefix, _, n = value.rpartition("=")
        out[prefix] = int(n)
    return out


def _past_steps_of(task: str, by_prefix: dict[str, int]) -> int | None:
    matches = [p for p in by_prefix if task.startswith(p)]
    return by_prefix[max(matches, key=len)] if matches else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mixture", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the runs")
    parser.add_argument("--minutes", default="4,8,12", help="marks, comma-separated")
    parser.add_argument("--at-steps", default=None, help="marks in optimizer steps instead")
    parser.add_argument("--card", type=Path, action="append", default=[], help="repeatable")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="evaluation seeds seed..")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="mixture key=value")
    parser.add_argument(
        "--past-steps", action="append", default=[], help="[TASK_PREFIX=]N, repeatable"
    )
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists; give a new folder")
    by_steps = args.at_steps is not None
    marks = [float(m) for m in (args.at_steps if by_steps else args.minutes).split(",")]
    past_steps = _past_steps(args.past_steps)
    cards = [read_card(c) for c in args.card]
    scored = [(c, p) for c, p in zip(cards, args.card, strict=True) if c.expert != "random"]
    torch.set_num_threads(args.threads)
    run = args.out / "run"
    rows, done = [], 0.0
    unit = "steps" if by_steps else "min"
    for mark in marks:
        if by_steps:
            config = load_mixture(args.mixture, _overrides(args.set))
            t0 = time.monotonic()
            summary = _train_to_step(config, run, int(mark))
        else:
            config = load_mixture(
                args.mixture, {**_overrides(args.set), "max_minutes": mark - done}
            )
            t0 = time.monotonic()
            summary = train(config, run)
        done = mark
        snapshot = args.out / f"at-{mark:g}{unit}"
        shutil.copytree(run, snapshot)
        loaded = LoadedRun.load(snapshot)
        t1 = time.monotonic()
        scores = {}
        for card, path in scored:
            row = evaluate_task(
                loaded,
                card.task,
                RolloutSettings(
                    episodes=args.episodes, seed=args.seed, num_envs=4, max_steps=card.max_steps
                ),
                card=path,
                past_steps=_past_steps_of(card.task, past_steps),
            )
            scores[card.task] = row.score
            print(
                f"  {mark:g} {unit}  {card.task}: return {row.return_mean:.1f} "
                f"score {row.score:.1f}%  success {row.success_rate}",
                flush=True,
            )
        rows.append(
            {
                unit: mark,
                "step": summary.step,
                "tokens": summary.tokens,
                "train_seconds": round(summary.seconds, 1),
                "segment_wall_seconds": round(t1 - t0, 1),
                "eval_seconds": round(time.monotonic() - t1, 1),
                "scores": scores,
            }
        )
        (args.out / "learning.json").write_text(json.dumps(rows, indent=2) + "\n")
        if summary.step >= config.steps:
            break
    tasks = [c.task for c, _ in scored]
    acting = ", ".join(f"past steps {p or 'all'}={n}" for p, n in past_steps.items())
    print(
        f"\n{args.mixture} ({', '.join(args.set) or 'as written'}), {args.threads} threads"
        + (f"; {acting}" if acting else "")
    )
    print(f"| {unit} | step | tokens | tokens/s | " + " | ".join(tasks) + " | mean |")
    print("|---" * (len(tasks) + 5) + "|")
    for r in rows:
        s = [r["scores"][t] for t in tasks]
        cells = " | ".join(f"{v:.1f}" for v in s)
        rate = r["tokens"] / max(r["train_seconds"], 1e-9)
        print(
            f"| {r[unit]:g} | {r['step']} | {r['tokens']:,} | {rate:,.0f} | {cells} "
            f"| {np.mean(s):.1f} |"
        )


if __name__ == "__main__":
    main()
