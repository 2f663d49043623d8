"""SIGINT and SIGTERM as an exception: :func:`interruptible` makes them raise
:class:`Interrupted` in the main thread (once: a second signal while cleaning up is
ignored), so a command removes its staging and releases its lock on the way out, then
prints one line saying what was kept and exits 128 + the signal number. Publishing is
never cut in half: signals wait while the output is swapped in (``publishing``).

Used by the curation (``kibble.pipelines.guard``) and by ``kibble export``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The job was stopped by a signal; the message says what the output holds.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it.
    """

    def __init__(self, signum: int, output: str, had_dataset: bool | None, published: bool):
        self.signum, self.output = signum, output
        self.had_dataset, self.published = had_dataset, published
        super().__init__(str(self))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        if self.published:
            return (
                f"interrupted by {name} after publishing: the new dataset at {self.output} is whole"
            )
        if self.had_dataset is None:
            kept = f"whatever was at {self.output} is kept, untouched"
        elif self.had_dataset:
            kept = f"the old dataset at {self.output} is kept, untouched"
        else:
            kept = f"there was no dataset at {self.output} and none was written"
        return f"interrupted by {name}: nothing was published; {kept}; staging removed"


class Guard:
    """State of :func:`interruptible`: whether the output has been published yet."""

    def __init__(self) -> None:
        self.published = False
        self._blocked = False

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Hold SIGINT/SIGTERM back while publishing; they arrive after it (as "published")."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            yield
            self.published = True
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


@contextmanager
def interruptible(out: str | os.PathLike, *, had_dataset: bool | None) -> Iterator[Guard]:
    """SIGINT/SIGTERM raise :class:`Interrupted` inside this block (main thread only).

    ``had_dataset``: whether ``out`` held a dataset when it began (None: not known, a
    URL), for the message.
    """
    guard = Guard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    had = had_dataset
    fired: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if fired:
            return  # already stopping: let the cleanup finish
        fired.append(signum)
        raise Interrupted(signum, os.fspath(out), had, guard.published)

    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield guard
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
