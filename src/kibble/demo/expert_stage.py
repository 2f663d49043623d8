"""Stage 1: an RLlib expert for every ``rllib`` task, trained, resumed or reused.

Reuse is the expert's own answer: :func:`kibble.experts.rllib_train.training_finished`
(its stop rule, read from its metadata), not a copy of that rule here.
"""

from __future__ import annotations

import time
from pathlib import Path

from kibble.demo.config import RLLIB, DemoConfig, DemoPaths
from kibble.demo.stage import StageResult, fmt, set_torch_threads
from kibble.display import Display, on_expert_iteration


def expert_config(cfg: DemoConfig, task: str, out: Path):
    """What `kibble expert train` is run with for ``task`` (also the reuse question)."""
    from kibble.experts.rllib_train import ExpertTrainConfig

    return ExpertTrainConfig(
        task=task,
        out=out,
        timesteps=cfg.expert_timesteps,
        target_return=cfg.expert_target_return,
        max_minutes=cfg.expert_max_minutes,
        seed=cfg.seed,
        overrides=dict(cfg.expert_overrides),
    )


def train_experts(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """Train (or resume, or reuse) an RLlib expert for every ``rllib`` task."""
    from kibble.experts.rllib_policy import read_expert_metadata
    from kibble.experts.rllib_train import training_finished

    started = time.monotonic()
    details, made = [], False
    for t in (t for t in cfg.tasks if t.expert == RLLIB):
        out = paths.expert(t.task)
        train_cfg = expert_config(cfg, t.task, out)
        if not cfg.fresh and training_finished(out, train_cfg):
            meta = read_expert_metadata(out) or {}
            p = meta.get("progress") or {}
            details.append(
                f"{t.task}: reused {out} ({meta.get('algorithm')}, {p.get('env_steps', 0):,} "
                f"env steps, mean training return {fmt(p.get('return_mean'))})"
            )
            continue
        made = True
        meta = _train_expert(cfg, train_cfg, display)
        p = meta.get("progress") or {}
        details.append(
            f"{t.task}: {meta['algorithm']} trained to {p.get('env_steps', 0):,} env steps, "
            f"mean training return {fmt(p.get('return_mean'))} -> {out}"
        )
    if not details:
        seconds = time.monotonic() - started
        summary = "no RLlib experts"
        return StageResult(stage="experts", reused=True, seconds=seconds, summary=summary)
    verb = "trained" if made else "reused"
    summary = f"{verb} {len(details)} RLlib expert(s)"
    seconds = time.monotonic() - started
    return StageResult(
        stage="experts", reused=not made, seconds=seconds, summary=summary, details=details
    )


def _train_expert(cfg: DemoConfig, train_cfg, display: Display) -> dict:
    import ray

    from kibble.experts.rllib_train import train_expert

    try:
        with display.bar(f"RLlib expert {train_cfg.task}", cfg.expert_timesteps) as update:
            update(info="starting Ray")
            return train_expert(train_cfg, on_iteration=on_expert_iteration(update))
    finally:
        set_torch_threads(cfg.threads)  # train_expert sets its own
        if ray.is_initialized():
            ray.shutdown()  # its processes would hold memory and CPU through the later stages
