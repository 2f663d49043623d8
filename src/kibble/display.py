"""How kibble shows work in progress: one helper for every command and the demo.

A :class:`Display` draws progress bars and lines above them. :class:`Display` itself
shows nothing (library use, tests); :class:`RichDisplay` draws with rich on stderr. The
callbacks the layers below take (an expert's training iterations, the trainer's start
and steps, finished episodes) are made here once, from a bar's ``update``:
:func:`on_episode`, :func:`on_expert_iteration`, :func:`on_training_start`,
:func:`on_training_step`.

:func:`output_to` sends what libraries and worker processes print (file descriptors 1
and 2) to a log file, so it does not scroll over the bars; a :class:`RichDisplay` keeps
drawing on a copy of the real stderr taken before.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, Protocol


class Update(Protocol):
    """A bar's update function: set ``completed``, ``advance`` it, or change its ``info``."""

    def __call__(
        self,
        *,
        completed: float | None = None,
        advance: float | None = None,
        info: str | None = None,
    ) -> None: ...


class Display:
    """Shows nothing; subclasses draw. Every command and the demo talk to one of these."""

    @contextmanager
    def bar(self, description: str, total: float | None) -> Iterator[Update]:
        """A progress bar for the ``with`` block; yields its :class:`Update`."""
        yield lambda **_: None

    def line(self, text: str) -> None:
        """A line worth keeping above the bars (a stage's result, what is being trained)."""

    def stage_output(self, log_file: Path) -> AbstractContextManager:
        """Where a stage's own output goes: here, unchanged."""
        return nullcontext()

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RichDisplay(Display):
    """Bars drawn with rich on stderr: a bar per piece of work, lines above them.

    ``transient``: bars vanish when their work ends (the demo, where stage lines stay);
    otherwise a command's bar stays on screen as its record. ``stage_output`` points file
    descriptors 1 and 2 at a log file while the bars keep drawing on a copy of stderr.
    """

    def __init__(self, transient: bool = False) -> None:
        self.transient = transient

    def __enter__(self) -> RichDisplay:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._stderr = os.fdopen(os.dup(2), "w", buffering=1)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=Console(file=self._stderr),
            transient=self.transient,
            redirect_stdout=False,  # a stage's prints go to its log, not over the bars
            redirect_stderr=False,
        )
        return self

    def _start(self) -> None:
        # Drawn from the first update or line on: a command that fails while loading
        # (a user error) leaves no empty bar above its one-paragraph message.
        if not self.progress.live.is_started:
            self.progress.start()

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()
        self._stderr.close()

    @contextmanager
    def bar(self, description: str, total: float | None) -> Iterator[Update]:
        task = self.progress.add_task(description, total=total, info="")

        def update(
            *, completed: float | None = None, advance: float | None = None, info: str | None = None
        ) -> None:
            fields = {} if info is None else {"info": info}
            self._start()
            self.progress.update(task, completed=completed, advance=advance, **fields)

        try:
            yield update
        finally:
            if self.transient:
                self.progress.remove_task(task)
            else:
                self.progress.stop_task(task)

    def line(self, text: str) -> None:
        self._start()
        self.progress.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def stage_output(self, log_file: Path) -> AbstractContextManager:
        return output_to(log_file)


# -- the callbacks the layers below take, made once -------------------------------------


def on_episode(update: Update) -> Callable[[Any], None]:
    """``on_episode`` for rollouts, cards and evaluation: one step of the bar per episode."""
    return lambda _episode: update(advance=1)


def on_expert_iteration(update: Update) -> Callable[[Any], None]:
    """``on_iteration`` for `train_expert`: env steps done, the iteration and its return.

    Iterations in which no episode ended report no return: the last one stays shown.
    """
    last = {"return": "n/a"}

    def show(report: Any) -> None:
        if report.return_mean is not None:
            last["return"] = f"{report.return_mean:.1f}"
        update(
            completed=report.env_steps,
            info=f"iter {report.iteration}, mean return {last['return']}",
        )

    return show


def on_training_start(display: Display, update: Update) -> Callable[[dict], None]:
    """``on_start`` for the trainer: a line saying what is trained, the bar at its step."""

    def start(info: dict) -> None:
        resuming = f", resuming at step {info['step']}" if info["step"] else ""
        display.line(
            f"    training {info['parameters']:,} parameters on {info['device']}{resuming}: "
            f"{info['episodes']} episodes, {info['timesteps']:,} timesteps of "
            f"{len(info['tasks'])} tasks"
        )
        update(completed=info["step"])

    return start


def on_training_step(update: Update) -> Callable[[Any], None]:
    """``on_step`` for the trainer: the step, the windowed loss and the token rate."""
    return lambda r: update(
        completed=r.step, info=f"loss {r.loss:.3f}, {r.tokens_per_s:,.0f} tok/s"
    )


# -- where printed output goes ----------------------------------------------------------


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``path`` for the block, for this process and the
    processes it starts (Beam's workers, Ray's). Python's and C's buffers are flushed at
    both ends, so nothing printed before or after lands on the wrong side."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _flush_all()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        _flush_all()
        for fd, saved_fd in zip((1, 2), saved, strict=True):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)


def _flush_all() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    # C stdio too (C++ iostreams are synced to it): ALE's banner, MuJoCo's warnings.
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)
