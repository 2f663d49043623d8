"""Replace a directory by a fully written one, so the path always holds the old or the new.

Expert checkpoints, trainer checkpoints and local datasets are all written beside their
final path and then swapped in. A plain "rename the old away, rename the new in" leaves
an instant with nothing at the path; a ``kill -9`` there loses the path (the old copy
survives only under a hidden name). On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps two
directories in one atomic step, so this module uses it where the kernel and the
filesystem allow, and falls back to the two renames elsewhere (then a rerun finds the
hidden old copy: :func:`recover` puts it back).

:func:`hold` is a lock per target (``flock`` on ``.NAME.lock`` beside it): a second
writer of the same target is refused at once with the holder's pid, host and start
time, and the holder removes what killed writers left beside the target
(``.NAME.staging-*``, ``.NAME.old-*``).

Fault injection (tests only): ``KIBBLE_FAULT=publish:STEP`` kills the process with
SIGKILL at STEP of :func:`swap_in` (``exchanged``, ``removing``, ``published``; on the
fallback ``parked`` and ``moved``; ``staged`` is marked by the caller with
:func:`fault_point`); ``KIBBLE_FAULT=...,no-exchange`` forces the two-rename fallback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kibble.errors import KibbleError

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = None
# Read once: the fault hooks cost one comparison when unset (every real run).
_FAULTS = frozenset(filter(None, os.environ.get("KIBBLE_FAULT", "").split(",")))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the paths ``a`` and ``b`` (both exist); False where unsupported."""
    global _libc
    if "no-exchange" in _FAULTS:  # test-only: a filesystem without RENAME_EXCHANGE
        return False
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # the filesystem or kernel cannot exchange: fall back
    raise OSError(err, os.strerror(err), str(b))


def old_name(target: Path) -> Path:
    """Where the fallback parks the old directory while the new one moves in."""
    return target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"


def swap_in(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the complete directory ``new`` to ``target``, replacing what was there.

    ``new`` must be on the same filesystem as ``target`` (write it beside). Afterwards
    ``new`` no longer exists and the old ``target`` is deleted.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        new.rename(target)
        return
    if _exchange(new, target):
        fault_point("exchanged")
        _discard(new)  # ``new`` now names the old contents
        fault_point("published")
        return
    old = old_name(target)
    target.rename(old)
    fault_point("parked")
    new.rename(target)
    fault_point("moved")
    _discard(old)
    fault_point("published")


def recover(target: str | os.PathLike) -> None:
    """After a killed fallback swap: if ``target`` is missing, restore its parked old copy."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return
    parked = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if parked:
        log.warning("restoring %s from %s (a swap was interrupted)", target, parked[-1])
        parked[-1].rename(target)


def fault_point(step: str) -> None:
    """Test-only: SIGKILL this process here if ``KIBBLE_FAULT`` names ``publish:STEP``."""
    if _FAULTS and f"publish:{step}" in _FAULTS:
        os.kill(os.getpid(), signal.SIGKILL)


def _discard(path: Path) -> None:
    """Delete a replaced copy; under fault injection, a kill with it half deleted."""
    if _FAULTS:
        for root, _dirs, files in os.walk(path):
            if files:
                os.unlink(os.path.join(root, files[0]))
                break
        fault_point("removing")
    shutil.rmtree(path, ignore_errors=True)


def lock_file(target: str | os.PathLike) -> Path:
    """``.NAME.lock`` beside ``target``."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def _holder(path: Path) -> str:
    """Who holds the lock, from what it wrote into the lock file."""
    try:
        info = json.loads(path.read_text())
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return f"pid {info['pid']} on {info['host']}, started {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


def _open_locked(path: Path) -> int:
    """An fd of ``path`` holding an exclusive flock; KibbleError if another holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise KibbleError(
                f"{path.parent / path.name[1 : -len('.lock')]} is being written by another "
                f"kibble run ({_holder(path)}); wait for it to finish, or write elsewhere "
                f"(the lock is {path})"
            ) from None
        # The holder before us may have unlinked the file it locked: lock the one at the path.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def remove_leftovers(target: str | os.PathLike) -> list[Path]:
    """Restore or delete what killed writers left beside ``target``; call with :func:`hold`.

    A parked old copy comes back if ``target`` is missing (:func:`recover`); any other
    ``.NAME.old-*`` and every ``.NAME.staging-*`` is deleted. Returns what was deleted.
    """
    target = Path(target)
    recover(target)
    removed = []
    for pattern in (f".{target.name}.old-*", f".{target.name}.staging-*"):
        for path in sorted(target.parent.glob(pattern)):
            log.warning("removing %s (left by a run that was killed)", path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def hold(target: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of ``target`` (local paths) while writing it; refuse if another run does.

    On entry, what killed runs left beside ``target`` is cleaned up (none of it can
    belong to a live run: every writer holds this lock). The lock file records the
    holder (pid, host, start time) and is removed on exit.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = lock_file(target)
    fd = _open_locked(path)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        remove_leftovers(target)
        fault_point("locked")
        yield
    finally:
        # Unlinked while still locked: a waiter that opened it re-checks the inode.
        Path(path).unlink(missing_ok=True)
        os.close(fd)
