"""A dataset's folder as kibble reads it: listed without entering links, and only
regular files opened (a FIFO blocks ``open()`` forever; a link may lead out of the
dataset). ``kibble.schemas.layout`` re-exports these."""

from __future__ import annotations

import os
import stat

import pyarrow.fs as pafs

from kibble.errors import KibbleError
from kibble.schemas.parquet import filesystem_and_path


def _resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    return filesystem_and_path(location)


def list_files(location: str | os.PathLike) -> list[str]:
    """Every regular file under ``location``, as sorted relative POSIX paths; [] if it is
    absent. Links and what lies behind them are not listed (:func:`list_entries`)."""
    return list_entries(*_resolve(location), pafs.FileType.File)


def list_entries(fs: pafs.FileSystem, root: str, kind: pafs.FileType) -> list[str]:
    """What lies under ``root`` of one ``kind``, as sorted relative POSIX paths.

    ``File``: regular files; ``Directory``: real directories; ``Unknown``: everything
    else (symbolic links, FIFOs, sockets, devices). A local filesystem (a plain path or
    ``file://``) is walked without following links: pyarrow's own listing follows them,
    so a link under a dataset would make its target's files look like the dataset's, to
    be read, replaced or deleted. Object stores have no links.
    """
    if isinstance(fs, pafs.LocalFileSystem):
        return sorted(rel for rel, found in _walk_local(root) if found == kind)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    # Filesystems differ on a leading "/" (fsspec adds one): compare without it.
    n = len(root.strip("/"))
    return sorted(info.path.lstrip("/")[n:].lstrip("/") for info in infos if info.type == kind)


def _walk_local(root: str) -> list[tuple[str, pafs.FileType]]:
    """(relative path, kind) of everything under the local directory ``root``; a link is
    ``Unknown`` and never entered (``root`` itself, the path a user named, may be one)."""
    out, pending = [], [""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as entries:
                found = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in found:
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                out.append((path, pafs.FileType.Unknown))
            elif entry.is_dir(follow_symlinks=False):
                out.append((path, pafs.FileType.Directory))
                pending.append(path)
            elif entry.is_file(follow_symlinks=False):
                out.append((path, pafs.FileType.File))
            else:
                out.append((path, pafs.FileType.Unknown))
    return out


def not_regular(fs: pafs.FileSystem, root: str, rel: str) -> str | None:
    """What ``rel`` under ``root`` (a path on ``fs``) is, where it is not a regular file
    reached through real directories: ``"data is a symbolic link (to /elsewhere)"``,
    ``"data/x/part-00000.parquet is a FIFO"``; None for a regular file or nothing there.

    Locally each part of ``rel`` is checked with ``lstat``, before anything is opened (a
    FIFO blocks ``open()`` until a writer comes; a link leads out of the dataset)."""
    if not isinstance(fs, pafs.LocalFileSystem):
        kind = fs.get_file_info(f"{root.rstrip('/')}/{rel}").type
        if kind in (pafs.FileType.File, pafs.FileType.NotFound):
            return None
        what = "a directory" if kind == pafs.FileType.Directory else "not a regular file"
        return f"{rel} is {what}"
    parts = rel.split("/")
    for i in range(len(parts)):
        shown = "/".join(parts[: i + 1])
        path = os.path.join(root, *parts[: i + 1])
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None  # nothing there: the caller's own message says so
        last = i == len(parts) - 1
        if stat.S_ISLNK(mode):
            try:
                target = f" (to {os.readlink(path)})"
            except OSError:
                target = ""
            return f"{shown} is a symbolic link{target}"
        if (last and stat.S_ISREG(mode)) or (not last and stat.S_ISDIR(mode)):
            continue
        return f"{shown} is {_kind_of(mode)}"
    return None


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a FIFO (a named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


REGULAR_ONLY = (
    "a dataset holds only regular files in real folders, and kibble never reads through a "
    "link or from a FIFO, socket or device; replace it with the file itself, or curate the "
    "dataset again"
)


def dataset_file(location: str | os.PathLike, rel: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of the file ``rel`` of the dataset at ``location``, for
    reading: the one place a dataset's files are resolved by everything that reads them
    (the reader and so the trainer, the API, view and export; ``kibble inspect``;
    :func:`read_manifest`).

    ``rel`` must be a regular file reached through real directories (:func:`not_regular`),
    else a KibbleError, before anything is opened. Nothing there is left to the caller
    (its message: missing, not a dataset).
    """
    fs, base = _resolve(location)
    problem = not_regular(fs, base, rel)
    if problem is not None:
        raise KibbleError(f"in the dataset at {os.fspath(location)}, {problem}: {REGULAR_ONLY}")
    return fs, f"{base.rstrip('/')}/{rel}"
