"""What ends a training run cleanly: a signal, a diverging loss, a batch too big for memory.

- **Signals.** Inside :func:`stop_on_signals`, SIGTERM interrupts training as SIGINT
  (Ctrl-C) does. ``train()`` turns either into :class:`TrainingInterrupted`, whose
  message says which checkpoint was kept and whose ``exit_code`` is 128 + the signal
  (130, 143), so the command line prints one line and exits as a shell expects.
- **Divergence.** A loss or weights that are not finite end the run with
  :func:`diverged`: the step, the tasks in the batch, what to change; the last good
  checkpoint stays as it was (NaN weights are never written).
- **Memory.** :func:`check_memory` refuses a context and batch whose activations alone
  cannot fit in the device's free memory, before anything is allocated, rather than
  crashing (or swapping) minutes later. It is a lower bound: passing it does not
  promise the run fits.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from kibble import limits
from kibble.errors import KibbleError
from kibble.trainer.checkpoint import CHECKPOINT, read_state
from kibble.trainer.config import MixtureConfig, parameter_count


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training; ``str()`` says what was kept."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like SIGINT's KeyboardInterrupt."""


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM raises in the block as SIGINT does (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def kept_checkpoint(run_dir: Path) -> int | None:
    """The step of the checkpoint ``run_dir`` holds to resume from; None without one."""
    try:
        return int(read_state(run_dir)["progress"]["step"])
    except (KibbleError, KeyError, TypeError, ValueError):
        return None


def interrupted(error: KeyboardInterrupt, run_dir: Path) -> TrainingInterrupted:
    """The one-line report of a run stopped by SIGINT (or SIGTERM)."""
    signum = signal.SIGTERM if isinstance(error, _Terminated) else signal.SIGINT
    step = kept_checkpoint(run_dir)
    kept = (
        "no checkpoint was written yet, so a rerun starts from step 0"
        if step is None
        else f"the checkpoint at step {step} in {run_dir / CHECKPOINT} is kept; "
        "run the same command again to resume"
    )
    name = signal.Signals(signum).name
    return TrainingInterrupted(f"training interrupted by {name}: {kept}", signum)


def diverged(
    config: MixtureConfig, run_dir: Path, step: int, tasks: list[str], what: str
) -> KibbleError:
    """The error that ends a run whose loss (or weights) stopped being finite."""
    clip = (
        f"lower grad_clip (now {config.grad_clip:g})"
        if config.grad_clip > 0
        else "enable grad_clip (e.g. 1.0)"
    )
    fix = f"Lower learning_rate (now {config.learning_rate:g}) or {clip} in {config.source}"
    kept = kept_checkpoint(run_dir)
    if kept is None:
        then = f"no checkpoint was written before it. {fix}, and train again"
    else:
        then = (
            f"the last good checkpoint, at step {kept} in {run_dir / CHECKPOINT}, is kept. "
            f"{fix}, then rerun with the same --out to resume from it, or delete {run_dir} "
            "to start over"
        )
    return KibbleError(
        f"training diverged at step {step}: {what}, on a batch of {', '.join(sorted(tasks))}; "
        f"nothing of this step was saved: {then}"
    )


# -- memory -------------------------------------------------------------------------------


def estimate_bytes(config: MixtureConfig, device: torch.device) -> int:
    """A lower bound of the memory one training step needs: weights, gradients and AdamW's
    two moments (fp32), and the activations each layer keeps for the backward pass."""
    m = config.model
    parameters = parameter_count(m)
    tokens = config.batch_size * config.context
    per_value = 2 if device.type == "cuda" else 4  # bf16 autocast on a GPU
    # Per layer: layer-norm outputs, q, k, v, attention output, projection, residuals
    # (about 10 x width) and the MLP's two ff-wide tensors.
    activations = tokens * m.layers * (10 * m.width + 2 * m.ff) * per_value
    return 16 * parameters + activations


def free_bytes(device: torch.device) -> int | None:
    """Memory free for this run on ``device``; None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return limits.memory_available()  # the same reading as every other size guard


def check_memory(config: MixtureConfig, device: torch.device) -> None:
    """Refuse a config whose lower-bound memory exceeds what is free on ``device``."""
    need, free = estimate_bytes(config, device), free_bytes(device)
    if free is None or need <= free:
        return
    raise KibbleError(
        f"{config.source}: context {config.context} x batch_size {config.batch_size} with "
        f"the {config.model_name} model needs at least {_gib(need)} of memory on {device}, "
        f"but {_gib(free)} is free. Lower context or batch_size (or use a smaller model)"
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"
