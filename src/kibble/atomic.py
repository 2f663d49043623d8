"""Replace a directory by a fully written one, so the path always holds the old or the new.

Expert checkpoints, trainer checkpoints and local datasets are all written beside their
final path and then swapped in. A plain "rename the old away, rename the new in" leaves
an instant with nothing at the path; a ``kill -9`` there loses the path (the old copy
survives only under a hidden name). On Linux, ``renameat2(RENAME_EXCHANGE)`` swaps two
directories in one atomic step, so this module uses it where the kernel and the
filesystem allow, and falls back to the two renames elsewhere (then a rerun finds the
hidden old copy: :func:`recover` puts it back).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the paths ``a`` and ``b`` (both exist); False where unsupported."""
    global _libc
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
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now names the old contents
        return
    old = old_name(target)
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def recover(target: str | os.PathLike) -> None:
    """After a killed fallback swap: if ``target`` is missing, restore its parked old copy."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return
    parked = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if parked:
        log.warning("restoring %s from %s (a swap was interrupted)", target, parked[-1])
        parked[-1].rename(target)
