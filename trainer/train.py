"""The training loop: config, device, data, model, optimizer, schedule, loop, checkpoints.

AdamW (betas 0.9/0.95, weight decay 0.1), linear warm-up then cosine decay to a tenth of
the peak, gradient clipping at 1.0 (Gato). Loss per task family and tokens/s go
to TensorBoard (``RUN_DIR/tensorboard``) and to ``RUN_DIR/metrics.jsonl``.

Rerunning on the same ``RUN_DIR`` resumes from its checkpoint: model, optimizer, step,
and the loader's and torch's random states, so on a CPU the loss curve continues exactly
as if the run had not stopped; ``metrics.jsonl`` is cut back to the checkpoint's step
(to nothing without one), so no step is logged twice. One run at a time holds a
``RUN_DIR`` (a lock beside its checkpoint). Under ``torchrun`` each process trains on its
own batches (seeded by rank) and DistributedDataParallel averages the gradients.

A run ends cleanly however it ends (:mod:`kibble.trainer.safety`): a non-finite loss is
an error naming the step and keeping the last good checkpoint, SIGINT and SIGTERM raise
:class:`~kibble.trainer.safety.TrainingInterrupted` saying what was kept, and a batch
that cannot fit in memory is refused before anything is allocated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kibble.atomic import hold
from kibble.errors import KibbleError
from kibble.trainer.checkpoint import (
    CHECKPOINT,
    NonFiniteWeights,
    load_model,
    load_optimizer,
    read_state,
    save_checkpoint,
)
from kibble.trainer.config import MixtureConfig
from kibble.trainer.mixture_data import MixtureData
from kibble.trainer.model import Gato
from kibble.trainer.safety import (
    TrainingInterrupted,
    check_memory,
    diverged,
    interrupted,
    stop_on_signals,
)
from kibble.trainer.summary import (
    METRICS,
    TASKS,
    TrainingSummary,
    final_losses,
    keep_metrics_until,
    read_metrics,
    write_record,
)

__all__ = ["TrainingInterrupted", "learning_rate", "pick_device", "train"]

log = logging.getLogger(__name__)

RUN_CONFIG = "mixture.json"


def learning_rate(step: int, cfg: MixtureConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to ``final_lr`` at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.learning_rate * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.final_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (
        cfg.learning_rate - cfg.final_lr
    )


def pick_device(name: str, where: str = "the mixture") -> torch.device:
    """The torch device a mixture's ``device`` names; one this machine lacks is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            have = f"only {count} CUDA GPU(s)" if count else "no CUDA GPU"
            raise KibbleError(
                f"{where}: device: {name} was asked for (in the file or by --device), but "
                f"torch sees {have} here; use device: cpu, or auto to take a GPU when there is one"
            )
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise KibbleError(f"{where}: device: {name!r} is not a torch device ({e})") from e


@dataclass(kw_only=True)
class StepReport:
    """What the loop tells its caller after each optimizer step."""

    step: int
    steps: int
    loss: float
    tokens_per_s: float
    learning_rate: float
    family_loss: dict[str, float]


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )


def bfloat16(precision: str, device: torch.device) -> bool:
    """Whether training autocasts to bfloat16 (``precision`` "auto": on a GPU only)."""
    return precision == "bfloat16" or (precision == "auto" and device.type == "cuda")


def train(
    config: MixtureConfig,
    run_dir: str | Path,
    *,
    on_step: Callable[[StepReport], None] | None = None,
    on_start: Callable[[dict], None] | None = None,
) -> TrainingSummary:
    """Train (or resume) a run; returns a summary of what was done (and, on rank 0,
    records it in ``RUN_DIR/training.json``: see :mod:`kibble.trainer.summary`).

    ``on_start`` gets what is about to be trained (once the data and model are ready),
    ``on_step`` a :class:`StepReport` every ``log_every`` steps. A loss that is not finite
    raises a KibbleError (the last good checkpoint kept); SIGINT or SIGTERM raise
    :class:`TrainingInterrupted` (a KeyboardInterrupt) saying what was kept.
    """
    run_dir = Path(run_dir)
    dist = Distributed.from_env()
    device = pick_device(config.device, config.source)
    check_memory(config, device)  # before anything big is allocated
    # Rank 0 writes the run folder: one run at a time, leftovers of killed ones removed.
    lock = hold(run_dir / CHECKPOINT) if dist.rank == 0 else nullcontext()
    try:
        with lock, stop_on_signals():
            return _train(config, run_dir, dist, device, on_step, on_start)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as e:
        raise interrupted(e, run_dir) from None


def _train(
    config: MixtureConfig,
    run_dir: Path,
    dist: Distributed,
    device: torch.device,
    on_step: Callable[[StepReport], None] | None,
    on_start: Callable[[dict], None] | None,
) -> TrainingSummary:
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)

    resume = (run_dir / CHECKPOINT).exists()
    state = read_state(run_dir) if resume else None
    if state is not None:
        saved = MixtureConfig.from_dict(state["config"], f"{run_dir / CHECKPOINT}/state.json")
        if saved.model != config.model:
            raise KibbleError(
                f"{run_dir / CHECKPOINT} was written by another model config "
                f"({saved.model_name}: {saved.model}) than this mixture's "
                f"({config.model_name}: {config.model}); use a new --out folder"
            )

    data = MixtureData(config, config.model.max_observation_tokens)
    # Each process draws its own batches; rank 0 draws what a single process would.
    data.rng = np.random.default_rng([config.seed, dist.rank] if dist.rank else config.seed)
    torch.manual_seed(config.seed + dist.rank)
    model = Gato(config.model).to(device)
    optimizer = torch.optim.AdamW(
        model.optimizer_groups(config.weight_decay), lr=config.learning_rate, betas=config.betas
    )
    step, tokens_seen, elapsed = 0, 0, 0.0
    if state is not None:
        load_model(run_dir, model)
        load_optimizer(run_dir, optimizer, state)
        progress = state["progress"]
        step, tokens_seen, elapsed = progress["step"], progress["tokens"], progress["seconds"]
        if dist.world == 1:
            data.set_rng_state(progress["loader_rng"])
            torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
        else:  # exact resumption is promised for one process; ranks reseed by step
            data.rng = np.random.default_rng([config.seed, dist.rank, step])
        log.info("resuming %s at step %d", run_dir, step)
    if dist.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Windows logged after the checkpoint (all of them without one) will be redone.
        keep_metrics_until(run_dir, step)
        (run_dir / RUN_CONFIG).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        _write_tasks(run_dir, data)

    use_compile = config.compile if config.compile is not None else device.type == "cuda"
    net: torch.nn.Module = torch.compile(model) if use_compile else model
    if dist.world > 1:
        # A batch without images leaves the patch embedding unused on that rank.
        net = torch.nn.parallel.DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if bfloat16(config.precision, device)
        else nullcontext()
    )
    families = sorted({t.family for t in data.tasks})
    family_of_task = torch.tensor([families.index(t.family) for t in data.tasks], device=device)
    writer = _tensorboard(run_dir) if dist.rank == 0 else None
    metrics = open(run_dir / METRICS, "a") if dist.rank == 0 else None  # noqa: SIM115
    deadline = None if config.max_minutes is None else time.monotonic() + 60 * config.max_minutes
    if on_start is not None and dist.rank == 0:
        on_start(
            {
                "step": step,
                "parameters": model.num_parameters(),
                "tasks": [t.task for t in data.tasks],
                "episodes": data.num_episodes,
                "timesteps": data.num_steps,
                "device": str(device),
            }
        )
    window_loss, window_fam = [], torch.zeros(len(families), 2, device=device)
    window_tokens, window_start = 0, time.monotonic()
    stopped_early = False
    try:
        model.train()
        while step < config.steps:
            lr = learning_rate(step, config)
            for g in optimizer.param_groups:
                g["lr"] = lr
            batch = data.sample_batch(config.batch_size).to_torch(device)
            with autocast:
                loss, per_seq = net(batch, legal_actions=config.action_logits == "legal")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            try:
                optimizer.step()
            except RuntimeError as e:  # a learning rate too large for float32
                if "overflow" not in str(e):
                    raise
                what = f"the update overflows float32 ({e})"
                raise diverged(config, run_dir, step + 1, _tasks(data, batch), what) from None
            step += 1
            value = loss.item()  # the one sync per step there always was
            if not math.isfinite(value):
                what = f"the loss is {value}"
                raise diverged(config, run_dir, step, _tasks(data, batch), what)
            n_tokens = int(batch["lengths"].sum()) * dist.world
            tokens_seen += n_tokens
            window_tokens += n_tokens
            window_loss.append(value)
            window_fam.index_add_(0, family_of_task[batch["task_index"]], per_seq.detach())
            now = time.monotonic()
            last = step == config.steps or (deadline is not None and now >= deadline)
            if step % config.log_every == 0 or last:
                seconds = now - window_start
                elapsed += seconds
                fam = {
                    f: float(window_fam[i, 0] / window_fam[i, 1])
                    for i, f in enumerate(families)
                    if window_fam[i, 1] > 0
                }
                report = StepReport(
                    step=step,
                    steps=config.steps,
                    loss=float(np.mean(window_loss)),
                    tokens_per_s=window_tokens / seconds,
                    learning_rate=lr,
                    family_loss=fam,
                )
                if dist.rank == 0:
                    _log_metrics(writer, metrics, report, tokens_seen)
                    if on_step is not None:
                        on_step(report)
                window_loss, window_tokens, window_start = [], 0, time.monotonic()
                window_fam.zero_()
            if dist.rank == 0 and (step % config.checkpoint_every == 0 or last):
                try:
                    _save(run_dir, model, optimizer, config, data, step, tokens_seen, elapsed)
                except NonFiniteWeights as e:  # the loss was finite, the update was not
                    raise diverged(config, run_dir, step, _tasks(data, batch), str(e)) from None
            if deadline is not None and now >= deadline and step < config.steps:
                stopped_early = True
                log.info("max_minutes reached at step %d; checkpoint saved", step)
                break
    finally:
        if writer is not None:
            writer.close()
        if metrics is not None:
            metrics.close()
        if dist.world > 1:
            import torch.distributed as tdist

            tdist.destroy_process_group()
    summary = TrainingSummary(
        run_dir=str(run_dir),
        step=step,
        steps=config.steps,
        tokens=tokens_seen,
        seconds=elapsed,
        parameters=model.num_parameters(),
        stopped_early=stopped_early,
        resumed=resume,
        tasks=[t.task for t in data.tasks],
    )
    if dist.rank == 0:
        summary.final_loss, summary.final_family_loss = final_losses(read_metrics(run_dir))
        write_record(run_dir, summary, config)
    return summary


def _tasks(data: MixtureData, batch: dict[str, torch.Tensor]) -> list[str]:
    """The tasks of a batch's sequences, once each."""
    return sorted({data.tasks[i].task for i in batch["task_index"].tolist()})


def _save(run_dir, model, optimizer, config, data, step, tokens, elapsed) -> None:
    progress = {
        "step": step,
        "tokens": tokens,
        "seconds": elapsed,
        "loader_rng": data.rng_state(),
    }
    save_checkpoint(run_dir, model, optimizer, config, progress)


def _write_tasks(run_dir: Path, data: MixtureData) -> None:
    """The tasks the run trains on, with their token layout and expert returns (for eval)."""
    tasks = [t.to_dict() for t in data.tasks]  # TaskInfo.from_dict reads them back
    (run_dir / TASKS).write_text(json.dumps(tasks, indent=2) + "\n")


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is in the train extra; metrics.jsonl is always written
        log.warning("tensorboard is not installed; writing %s only", METRICS)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _log_metrics(writer, metrics, report: StepReport, tokens: int) -> None:
    row = {
        "step": report.step,
        "loss": report.loss,
        "lr": report.learning_rate,
        "tokens_per_s": report.tokens_per_s,
        "tokens": tokens,
        "family_loss": report.family_loss,
    }
    metrics.write(json.dumps(row) + "\n")
    metrics.flush()
    if writer is not None:
        writer.add_scalar("loss/all", report.loss, report.step)
        for family, value in report.family_loss.items():
            writer.add_scalar(f"loss/{family}", value, report.step)
        writer.add_scalar("tokens_per_s", report.tokens_per_s, report.step)
        writer.add_scalar("learning_rate", report.learning_rate, report.step)
