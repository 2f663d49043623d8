"""Checking where a command will write, before it does any work: one rule for all of them.

``kibble rollout`` and ``kibble pipeline run`` publish a dataset directory (a local path
or a URL) and replace the dataset there (:mod:`kibble.pipelines.publish`); ``kibble
export`` writes a new local directory (:mod:`kibble.reading.export`); ``kibble view`` a
new local file whose suffix says what to draw (:mod:`kibble.reading.viewer`).
:func:`check_output` is the one check, its keyword arguments what differs between them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pyarrow.fs as pafs

from kibble.atomic import recover
from kibble.errors import KibbleError
from kibble.schemas.layout import LAYOUT, is_url, list_files, resolve


def check_output(
    out: str | os.PathLike,
    *,
    replace_dataset: bool = True,
    local_only: str | None = None,
    suffixes: Mapping[str, str] | None = None,
    writer: str = "kibble",
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
