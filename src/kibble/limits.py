"""One size guard for everything a user hands kibble: files, zip members, declared sizes.

An input can claim any size: a 3 MB zip whose member inflates to gigabytes, a space or
a network declared 30000 x 30000, a checkpoint's ``state.json`` naming a model of a
hundred billion weights, a YAML file whose aliases expand a billion times. Every reader
of such an input asks this module before it allocates:

- :func:`check_limit`: a size against kibble's fixed cap for that kind of input
  (:data:`TEXT_FILE_BYTES`, :data:`SB3_DATA_BYTES`, :data:`YAML_NODES`,
  :data:`SPACE_VALUES`, :data:`INFLATION`), caps far above any real file of the kind;
- :func:`check_memory`: bytes an input would make kibble allocate against the memory this
  machine has free (:func:`memory_available`);
- :func:`read_capped`, :func:`read_file`, :func:`read_member`: reading that stops one
  block past the cap or the declared size, whatever a header or ``stat`` said.

Each refusal is a :class:`TooLarge` (a :class:`~kibble.errors.KibbleError`): one
paragraph naming the input, its size, the limit and what to do.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO

from kibble.errors import KibbleError

MiB = 1 << 20

TEXT_FILE_BYTES = 16 * MiB
"""A YAML config, mixture, sidecar or JSON statistics file (real ones: kilobytes)."""
SB3_DATA_BYTES = 64 * MiB
"""An SB3 zip's ``data`` member, JSON text (real ones: tens of kilobytes)."""
YAML_NODES = 1_000_000
"""Values in one YAML file once its aliases are expanded (real configs: hundreds)."""
INFLATION = 100
"""How many times its compressed size a zip member over :data:`SB3_DATA_BYTES` may
inflate to: weights and JSON compress 1 to 10 times; a "zip bomb" of zeros, 1,000."""
SPACE_VALUES = 1 << 24
"""Values of one space an SB3 zip declares (shape product, ``n``, ``nvec``): 16.8 million,
200 times an 84x84x4 Atari frame stack."""

_BLOCK = MiB


class TooLarge(KibbleError):
    """An input larger than kibble's limit for it, or than this machine's free memory."""


def size_text(n: float) -> str:
    """Bytes as people read them: 512 bytes, 3.0 MiB, 7.2 GiB."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n)} bytes"


def memory_available() -> int | None:
    """Bytes this process can allocate now: the kernel's MemAvailable, at most what the
    cgroup (container) limit leaves, else physical memory; None when unknown."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            found.append(max(0, int(limit) - int(used)))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def check_limit(size: int, cap: int, what: str, fix: str, unit: str = "bytes") -> None:
    """Refuse ``what`` of ``size`` (bytes, or ``unit``) over kibble's ``cap`` for it."""
    if size <= cap:
        return
    if unit == "bytes":
        told, limit = size_text(size), size_text(cap)
    else:
        told, limit = f"{size:,} {unit}", f"{cap:,} {unit}"
    raise TooLarge(
        f"{what} is {told}, over kibble's limit of {limit} for it, so kibble refuses it "
        f"before loading it; {fix}"
    )


def check_memory(need: int, what: str, fix: str) -> None:
    """Refuse ``what`` when the ``need`` bytes it would allocate exceed free memory."""
    have = memory_available()
    if have is None or need <= have:
        return
    raise TooLarge(
        f"{what} would need {size_text(need)} of memory, more than the {size_text(have)} "
        f"this machine has free, so kibble refuses it before allocating anything; {fix}"
    )


def read_capped(stream: BinaryIO, cap: int, what: str, fix: str) -> bytes:
    """``stream``'s bytes, refused once they pass ``cap``: reading stops one block past it,
    so a header or ``stat`` that understated the size costs at most that block."""
    chunks, total = [], 0
    while True:
        block = stream.read(min(_BLOCK, cap + 1 - total))
        if not block:
            return b"".join(chunks)
        chunks.append(block)
        total += len(block)
        if total > cap:
            raise TooLarge(
                f"{what} holds more than {size_text(cap)}, more than it declared or kibble "
                f"reads for it (reading stopped there); {fix}"
            )


def read_file(path: str | Path, what: str, cap: int = TEXT_FILE_BYTES, fix: str = "") -> bytes:
    """The bytes of the file ``path`` (a config, a sidecar), refused past ``cap``."""
    fix = fix or f"give the real {what}, which is far smaller"
    with open(path, "rb") as f:
        check_limit(os.fstat(f.fileno()).st_size, cap, f"{what} {path}", fix)
        return read_capped(f, cap, f"{what} {path}", fix)


def read_text(path: str | Path, what: str, cap: int = TEXT_FILE_BYTES, fix: str = "") -> str:
    """:func:`read_file` as UTF-8 text (a UnicodeDecodeError when it is not)."""
    return read_file(path, what, cap, fix).decode()


def read_member(archive: zipfile.ZipFile, name: str, what: str, cap: int | None, fix: str) -> bytes:
    """Member ``name`` of ``archive``: its declared size checked against ``cap`` (None:
    free memory only) before reading, and reading stopped past that declared size."""
    info = archive.getinfo(name)
    if cap is not None:
        check_limit(info.file_size, cap, f"{what} (uncompressed)", fix)
    if info.file_size > SB3_DATA_BYTES and info.file_size > INFLATION * info.compress_size:
        raise TooLarge(
            f"{what} inflates from {size_text(info.compress_size)} to "
            f"{size_text(info.file_size)}, over {INFLATION} times (kibble's limit for a member "
            f"over {size_text(SB3_DATA_BYTES)}): a zip bomb, refused before it is read; {fix}"
        )
    check_memory(info.file_size, what, fix)
    with archive.open(info) as f:
        return read_capped(f, info.file_size, what, fix)
