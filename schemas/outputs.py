"""Checking where a command will write, before it does any work: one rule for all of them.

``kibble rollout`` and ``kibble pipeline run`` publish a dataset directory (a local path
or a URL) and replace the dataset there (:mod:`kibble.pipelines.publish`); ``kibble
export`` writes a new local directory (:mod:`kibble.reading.export`); ``kibble view`` a
new local file whose suffix says what to draw (:mod:`kibble.reading.viewer`).
:func:`check_output` is the one check, its keyword arguments what differs between them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow.fs as pafs

from kibble.atomic import recover
from kibble.errors import KibbleError
from kibble.schemas.layout import LAYOUT, is_url, list_entries, list_files, not_regular, resolve


def check_output(
    out: str | os.PathLike,
    *,
    replace_dataset: bool = True,
    local_only: str | None = None,
    suffixes: Mapping[str, str] | None = None,
    writer: str = "kibble",
    reads: Iterable[str | os.PathLike] = (),
) -> None:
    """Refuse an output that cannot be written, with the reason, before any work is done.

    By default ``out`` is where a dataset is published, which replaces everything under
    it: a local path or a URL that is absent, an empty directory, or a kibble dataset
    (complete, or left without a manifest by a killed job, which is recovered here).

    ``replace_dataset``: False: ``out`` must not exist at all; ``writer`` (what writes
    it, named in the refusal: ``"kibble view"``, ``"an export"``) never replaces anything.
    ``local_only``: ``out`` must be a local path; the reason why, said to a URL.
    ``suffixes``: ``out`` is one new file whose name ends in one of these (lower case),
    each mapped to what it holds (said when the name ends in none); its directory must
    exist. A file is never replaced, so this needs ``replace_dataset=False``.
    ``reads``: the datasets the command reads; ``out`` must be none of them and lie
    inside none (the next curation of that dataset would delete what was written there).

    A dataset output that holds a symbolic link (or a FIFO, socket or device) anywhere,
    or is one, is refused (:func:`check_no_links`): publishing deletes and writes under
    the output, and must never do so through a link, on any filesystem.
    """
    if suffixes is not None and replace_dataset:
        raise ValueError("a file output is never replaced: pass replace_dataset=False")
    shown = os.fspath(out)
    if local_only is not None and is_url(out):
        raise KibbleError(
            f"cannot write {shown}: {writer} writes to a local path ({local_only}); give a path"
        )
    if suffixes is not None and Path(out).suffix.lower() not in suffixes:
        kinds: dict[str, list[str]] = {}
        for suffix, holds in suffixes.items():
            kinds.setdefault(holds, []).append(suffix)
        named = " or ".join(f"{' or '.join(s)} ({holds})" for holds, s in kinds.items())
        raise KibbleError(
            f"cannot tell what to write to {shown}: give a file name ending in {named}"
        )
    for dataset in reads:
        _check_not_inside(out, dataset, writer)
    if replace_dataset:
        _check_dataset_output(out)
        return
    path = Path(out)
    if path.exists() or path.is_symlink():
        raise KibbleError(
            f"{shown} already exists, and {writer} never replaces anything: remove it, or "
            "give another name"
        )
    if suffixes is not None and not path.parent.is_dir():
        raise KibbleError(f"cannot write {shown}: the directory {path.parent} does not exist")


def _check_dataset_output(out: str | os.PathLike) -> None:
    """``out`` is absent, an empty directory or a kibble dataset: publishing may replace it."""
    if not is_url(out):
        recover(out)  # a publish killed on a filesystem without exchange
    fs, path = resolve(out)
    check_no_links(fs, path, os.fspath(out))
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.File:
        raise KibbleError(f"output {os.fspath(out)} is a file; give a directory for the dataset")
    if kind == pafs.FileType.NotFound:
        return
    strays = [rel for rel in list_files(out) if rel.split("/", 1)[0] not in LAYOUT]
    if strays:
        shown = ", ".join(strays[:3]) + (", ..." if len(strays) > 3 else "")
        raise KibbleError(
            f"output {os.fspath(out)} holds files that are not part of a kibble dataset "
            f"({shown}); writing a dataset replaces everything under it, so give a new "
            "directory or an existing dataset"
        )


def check_no_links(fs: pafs.FileSystem, path: str, shown: str) -> None:
    """Refuse a dataset output at ``path`` on ``fs`` that is a symbolic link or holds one
    (or a FIFO, socket or device) anywhere under it, naming it and what to do.

    Publishing replaces everything under the output: on a plain path the old tree is
    renamed away and deleted without following links, but on a ``file://`` URL pyarrow's
    local filesystem follows them when it lists, deletes and writes, so the files of the
    folder a link points to would be deleted and replaced. One rule for every filesystem:
    an output holding a link is refused. Object stores have no links.
    """
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    found = []
    if os.path.islink(path):
        found.append(f"{shown} itself is a symbolic link (to {os.readlink(path)})")
    else:
        for rel in list_entries(fs, path, pafs.FileType.Unknown)[:3]:
            found.append(not_regular(fs, path, rel) or f"{rel} is not a regular file")
    if found:
        raise KibbleError(
            f"output {shown} holds what is not a regular file or folder: {'; '.join(found)}. "
            "Writing a dataset deletes and replaces everything under its output, and kibble "
            "never deletes or writes through a link (nor into a FIFO, socket or device); "
            "remove it (or put the real folder in its place), or give a new directory"
        )


def _local_path(location: str | os.PathLike) -> str | None:
    """The real local path of a plain path or ``file://`` URL; None for other URLs."""
    try:
        fs, path = resolve(location)
    except KibbleError:
        return None
    if not isinstance(fs, pafs.LocalFileSystem):
        return None
    return os.path.realpath(path)


def _check_not_inside(out: str | os.PathLike, dataset: str | os.PathLike, writer: str) -> None:
    """``out`` is not the dataset ``dataset`` (being read) nor inside it: compared as real
    local paths (links resolved) where both are local, else as URLs."""
    where, inside = _local_path(out), _local_path(dataset)
    sep = os.sep
    if where is None or inside is None:
        where, inside, sep = os.fspath(out).rstrip("/"), os.fspath(dataset).rstrip("/"), "/"
    if where == inside or where.startswith(inside.rstrip(sep) + sep):
        raise KibbleError(
            f"cannot write {os.fspath(out)}: it is inside the dataset {os.fspath(dataset)} "
            f"that {writer} reads, and curating that dataset again replaces everything "
            "under it (what is written there would be deleted); give a path outside it"
        )
