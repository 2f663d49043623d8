"""What keeps a curation job's failures small: signals, the output lock, worker logs.

* :func:`interruptible`: SIGINT and SIGTERM raise :class:`Interrupted`
  (``kibble.interrupts``), so the job removes its staging and releases its lock on the
  way out; the command prints one line saying what was kept and exits 128 + the signal
  number. Publishing itself is never cut in half: signals wait while the dataset is
  swapped in.
* :func:`output_lock`: one writer per local output (``kibble.atomic.hold``); it also
  removes what killed runs left beside the output.
* :func:`worker_log`: what Beam and its worker processes print goes to a log file, and
  :func:`worker_failure` makes a failed job one paragraph: the root cause and that file.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path

from kibble import interrupts
from kibble.atomic import hold
from kibble.errors import KibbleError
from kibble.interrupts import Guard
from kibble.interrupts import Interrupted as Interrupted  # re-exported: the job's signal
from kibble.schemas.layout import MANIFEST, is_url

log = logging.getLogger(__name__)


def _had_dataset(out: str | os.PathLike) -> bool | None:
    if is_url(out):
        return None  # not worth a round trip to say so
    return (Path(out) / MANIFEST).is_file()


def interruptible(out: str | os.PathLike) -> AbstractContextManager[Guard]:
    """SIGINT/SIGTERM raise :class:`Interrupted` inside this block (``kibble.interrupts``)."""
    return interrupts.interruptible(out, had_dataset=_had_dataset(out))


def output_lock(out: str | os.PathLike) -> AbstractContextManager[None]:
    """The lock of a local output (refuses a second writer); URLs have none."""
    return nullcontext() if is_url(out) else hold(out)


def stop_children() -> None:
    """SIGKILL this process's descendants (Beam's worker processes), so none writes to
    staging after it is removed. Linux only (reads /proc); elsewhere a no-op."""
    try:
        stats = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return
    parents: dict[int, int] = {}
    for pid in stats:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                text = f.read().decode(errors="replace")
            parents[int(pid)] = int(text.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    ours, frontier = [], [os.getpid()]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        ours += kids
        frontier += kids
    for pid in ours:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def silence_beam(log_file: Path) -> None:
    """After an interrupt: what Beam's threads report as their workers go (exceptions,
    error logs) is written to ``log_file`` instead of the terminal. Process-wide, for a
    process about to end."""
    import traceback

    def to_log(args: threading.ExceptHookArgs) -> None:
        with suppress(OSError), open(log_file, "a") as f:
            traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=f)

    threading.excepthook = to_log
    handler = logging.FileHandler(log_file)
    for name in ("apache_beam", "grpc"):
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.addHandler(handler)


def log_location(out: str | os.PathLike, name: str) -> Path:
    """Where a job's worker log goes: ``.NAME.log`` beside a local output, else under
    ``$XDG_CACHE_HOME/kibble/logs`` (``~/.cache``)."""
    if not is_url(out):
        out = Path(out).absolute()
        return out.parent / f".{out.name}.log"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "dataset"
    return cache / "kibble" / "logs" / f"{safe}-{os.getpid()}.log"


@contextmanager
def worker_log(path: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 (and so Beam's worker processes, which inherit them)
    and Beam's loggers to ``path`` for the duration.

    They write into a pipe that a thread copies to the file, dropping what cannot be
    written: on a full disk a write to the file itself failed in Beam's threads, and the
    job then waited forever instead of failing (issue 25). The log loses lines; the job
    ends with the worker's error as usual.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log_file = open(path, "wb")  # noqa: SIM115  (this job's log only; the drain closes it)
    read_end, write_end = os.pipe()
    drain = threading.Thread(
        target=_drain, args=(read_end, log_file), name="kibble-worker-log", daemon=True
    )
    drain.start()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    stream = open(os.dup(2), "w", buffering=1)  # noqa: SIM115  (closed below)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("apache_beam").addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger("apache_beam").removeHandler(handler)
        with suppress(OSError):
            stream.close()
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved_fd in zip((1, 2), saved, strict=True):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)
        # The pipe ends when every writer has closed it (workers that outlive the job may
        # hold it a while: then the log is left to the thread).
        drain.join(timeout=10)


def _drain(read_end: int, log_file) -> None:
    """Copy the pipe into the log until every writer closed it; never stop reading, or
    the writers would block on a full pipe."""
    try:
        while chunk := os.read(read_end, 1 << 16):
            try:
                log_file.write(chunk)
                log_file.flush()
            except OSError:
                pass  # a full disk: the line is lost, the writer is not blocked
    finally:
        os.close(read_end)
        with suppress(OSError):
            log_file.close()


_ERROR_LINE = re.compile(r"(?m)^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.+)$")


def root_cause(error: BaseException) -> str:
    """The first ``Type: message`` of what a worker raised: Beam's error carries the
    worker's tracebacks as text (root cause first), or the exception itself in-process."""
    chain, e = [], error
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in reversed(chain):  # a KibbleError anywhere: its own message
        if isinstance(e, KibbleError):
            return _strip_beam(str(e))
    for e in chain:
        found = _ERROR_LINE.findall(str(e))
        if found:
            kind, message = found[0]
            kind = kind.rsplit(".", 1)[-1]
            return _strip_beam(message if kind == "KibbleError" else f"{kind}: {message}")
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {_strip_beam(lines[-1] if lines else '')}".rstrip(": ")


def _strip_beam(message: str) -> str:
    return re.sub(r" \[while running '[^']*'\]", "", message).strip()


def worker_failure(error: BaseException, log_file: Path, out: str | os.PathLike) -> KibbleError:
    """One paragraph for a failed Beam job: the root cause, the log, the output's state."""
    return KibbleError(
        f"the curation job failed: {root_cause(error)}. Nothing was published (the dataset "
        f"at {os.fspath(out)} is as it was); Beam's full log is in {log_file}"
    )
