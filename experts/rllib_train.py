"""Train a per-task expert with RLlib (new API stack), resumable.

An expert directory holds ``checkpoint/`` (an RLlib Algorithm checkpoint, replaced
atomically each time), ``kibble_expert.json`` (task, algorithm, spaces, settings, the
Ray nodes it ran on, progress) and ``progress.jsonl`` (one line per training iteration).
Running the command again on the same directory resumes from the checkpoint.

The settings and the AlgorithmConfig are :mod:`kibble.experts.rllib_config`'s; the Ray
it runs on (local, or a cluster joined with ``--ray-address``) is
:mod:`kibble.experts.ray_cluster`'s. This module runs the training loop, checkpoints,
and owns the stop rule (:func:`stop_rule_met`, :func:`training_finished`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import kibble
from kibble.atomic import recover, swap_in
from kibble.envs import get_task, space_summary
from kibble.errors import KibbleError
from kibble.experts.ray_cluster import init_ray, ray_placement, warn_if_too_few_cpus
from kibble.experts.rllib_config import ExpertTrainConfig, build_algorithm_config
from kibble.experts.rllib_policy import (
    CHECKPOINT_SUBDIR,
    EXPERT_METADATA,
    UnitFloatImages,
    read_expert_metadata,
)
from kibble.tokenize.codecs import is_image_space

log = logging.getLogger(__name__)

__all__ = [
    "ExpertTrainConfig",
    "IterationReport",
    "build_algorithm_config",
    "stop_rule_met",
    "train_expert",
    "training_finished",
]


@dataclass(kw_only=True)
class IterationReport:
    iteration: int
    env_steps: int
    return_mean: float | None
    seconds: float


def _training_env(task_id: str):
    """The task's environment as RLlib trains on it (image observations as floats)."""
    env = get_task(task_id).make()
    return UnitFloatImages(env) if is_image_space(env.observation_space) else env


def _save_checkpoint(algo: Any, out: Path) -> None:
    """Write the checkpoint beside the old one, then swap, so one always exists whole."""
    tmp = out / f".{CHECKPOINT_SUBDIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp.resolve()))
    swap_in(tmp, out / CHECKPOINT_SUBDIR)


def train_expert(
    cfg: ExpertTrainConfig, on_iteration: Callable[[IterationReport], None] | None = None
) -> dict:
    """Train (or resume) an expert; returns the metadata written to ``kibble_expert.json``."""
    task = get_task(cfg.task)
    obs_space, act_space = task.spaces()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise KibbleError(f"--out {out} is a file; give a directory for the expert")
    previous = read_expert_metadata(out)
    if previous is not None and previous.get("task") != cfg.task:
        raise KibbleError(
            f"{out} holds an expert for {previous.get('task')}, not {cfg.task}; "
            "choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)

    import ray
    from ray.tune.registry import register_env

    env_name = f"kibble:{cfg.task}"
    task_id = cfg.task
    register_env(env_name, lambda _env_config: _training_env(task_id))
    algorithm, config = build_algorithm_config(cfg, env_name, obs_space, act_space)
    import torch

    torch.set_num_threads(cfg.torch_threads)
    if not ray.is_initialized():
        init_ray(cfg.ray_address)
    warn_if_too_few_cpus(cfg.num_env_runners)
    try:
        algo = config.build_algo()
    except ValueError as e:  # RLlib's validation of the settings (e.g. a bad --set value)
        raise KibbleError(f"RLlib refused the {algorithm} settings for {cfg.task}: {e}") from e
    checkpoint = out / CHECKPOINT_SUBDIR
    recover(checkpoint)  # a swap killed on a filesystem without exchange
    if checkpoint.exists():
        algo.restore_from_path(str(checkpoint.resolve()))
        log.info("resumed %s from %s", cfg.task, checkpoint)

    metadata = {
        "task": cfg.task,
        "algorithm": algorithm,
        "observation_space": space_summary(obs_space),
        "action_space": space_summary(act_space),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "kibble_version": kibble.__version__,
        "ray": ray_placement(algo, cfg.ray_address, cfg.num_env_runners),
        "progress": previous.get("progress") if previous else None,
    }
    # Written before training too, so an interrupted run is recognised when resumed.
    (out / EXPERT_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    started = time.monotonic()
    report = None
    try:
        with (out / "progress.jsonl").open("a") as progress:
            while True:
                result = algo.train()
                runners = result.get("env_runners", {})
                report = IterationReport(
                    iteration=int(result["training_iteration"]),
                    env_steps=int(result.get("num_env_steps_sampled_lifetime", 0)),
                    return_mean=_finite(runners.get("episode_return_mean")),
                    seconds=time.monotonic() - started,
                )
                progress.write(json.dumps(asdict(report)) + "\n")
                progress.flush()
                if on_iteration:
                    on_iteration(report)
                done = stop_rule_met(report, cfg)
                if done or report.iteration % cfg.checkpoint_every == 0:
                    _save_checkpoint(algo, out)
                if done:
                    break
    finally:
        algo.stop()
    metadata["progress"] = asdict(report) if report else None
    (out / EXPERT_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def stop_rule_met(report: IterationReport, cfg: ExpertTrainConfig) -> bool:
    """The rule `train_expert` stops on: the step budget spent, the target mean training
    return reached, or this run's time limit (``max_minutes``) used up."""
    return (
        report.env_steps >= cfg.timesteps
        or (
            cfg.target_return is not None
            and report.return_mean is not None
            and report.return_mean >= cfg.target_return
        )
        or (cfg.max_minutes is not None and report.seconds >= 60 * cfg.max_minutes)
    )


def training_finished(out: str | Path, cfg: ExpertTrainConfig) -> bool:
    """True when the expert directory ``out`` holds a checkpoint for ``cfg.task`` whose
    last completed `train_expert` run met ``cfg``'s stop rule (:func:`stop_rule_met`), so
    running `train_expert` with ``cfg`` again would not train further.

    Reads ``kibble_expert.json``, whose progress is written when a run ends (with its
    final checkpoint), not the per-iteration ``progress.jsonl`` (which can run ahead of
    the checkpoint after an interruption). A run that stopped at its ``max_minutes``
    counts as finished when ``cfg`` has a time limit too; give ``max_minutes=None`` to
    ask only about the step budget and the target return.
    """
    out = Path(out)
    meta = read_expert_metadata(out)
    if meta is None or meta.get("task") != cfg.task or not (out / CHECKPOINT_SUBDIR).is_dir():
        return False
    progress = meta.get("progress") or {}
    if not progress:
        return False
    report = IterationReport(
        iteration=int(progress.get("iteration", 0)),
        env_steps=int(progress.get("env_steps", 0)),
        return_mean=_finite(progress.get("return_mean")),
        seconds=float(progress.get("seconds", 0.0)),
    )
    return stop_rule_met(report, cfg)


def _finite(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None
