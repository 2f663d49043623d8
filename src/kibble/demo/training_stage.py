"""Stage 4: train the generalist on the dataset (``OUT/mixture.yaml`` -> ``OUT/run``).

The trainer answers both questions: :func:`kibble.trainer.summary.finished_run` (a
finished run of this mixture on these dataset files: reuse it) and
:func:`kibble.trainer.summary.resumable_progress` (an interrupted run of it: resume
with what is left of the time budget). Anything else in ``OUT/run`` is removed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from typing import Any

import yaml

from kibble.demo.config import DemoConfig, DemoPaths
from kibble.demo.stage import StageResult, set_torch_threads
from kibble.display import Display, on_training_start, on_training_step


def mixture_text(cfg: DemoConfig, paths: DemoPaths) -> str:
    """The mixture as YAML (what `kibble train` takes)."""
    body: dict[str, Any] = {
        "datasets": [{"path": str(paths.dataset), "weight": 1.0}],
        "model": cfg.model,
        "context": cfg.context,
        "batch_size": cfg.batch_size,
        "steps": cfg.train_steps,
        "learning_rate": cfg.learning_rate,
        "sampling": cfg.sampling,
        **({"task_weights": cfg.task_weights} if cfg.task_weights else {}),
        "action_logits": cfg.action_logits,
        "prompt_fraction": cfg.prompt_fraction,
        "seed": cfg.seed,
        "log_every": 5,
        "checkpoint_every": 100,
    }
    if cfg.train_minutes is not None:
        body["max_minutes"] = cfg.train_minutes
    header = (
        f"# Written by kibble demo; rerun with: kibble train {paths.mixture} --out {paths.run}\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)


def train_generalist(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """Train the generalist on the dataset; an interrupted run resumes, a finished one is
    reused while its mixture and dataset are unchanged."""
    from kibble.trainer.config import load_mixture
    from kibble.trainer.summary import finished_run, resumable_progress

    started = time.monotonic()
    paths.mixture.write_text(mixture_text(cfg, paths))
    config = load_mixture(paths.mixture)
    done = None if cfg.fresh else finished_run(paths.run, config)
    if done is not None:
        return StageResult(
            stage="train",
            reused=True,
            seconds=time.monotonic() - started,
            summary=f"reused {paths.run}: {done.line()}",
        )
    progress = None if cfg.fresh else resumable_progress(paths.run, config)
    if progress is None:
        # A finished run of other settings or files, or another mixture's checkpoint.
        shutil.rmtree(paths.run, ignore_errors=True)
    elif cfg.train_minutes is not None:
        spent = progress["seconds"] / 60
        config = replace(config, max_minutes=max(0.1, cfg.train_minutes - spent))
    summary = _train(config, cfg.torch_threads, paths, display)
    return StageResult(
        stage="train", reused=False, seconds=time.monotonic() - started, summary=summary.line()
    )


def _train(config, threads: int | None, paths: DemoPaths, display: Display):
    from kibble.trainer.threads import fastest_threads
    from kibble.trainer.train import train

    if threads is None:
        threads, _ = fastest_threads(config)  # a few seconds: 1 thread vs every core
    set_torch_threads(threads)
    limit = f", up to {config.max_minutes:.1f} min" if config.max_minutes else ""
    with display.bar(f"training ({config.model_name}{limit})", config.steps) as update:
        return train(
            config,
            paths.run,
            on_step=on_training_step(update),
            on_start=on_training_start(display, update),
        )
