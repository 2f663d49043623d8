"""Writing a curated dataset (docs/format.md section 9), and publishing it safely on any filesystem.

The layout and every read (``join``, ``list_files``, ``read_manifest``, the manifest's
``file_entries``) live in ``kibble.schemas.layout``; this module writes and publishes.
``check_output`` (:mod:`kibble.schemas.outputs`, the one check of every command's
output; here with its defaults, a dataset's) refuses an output before any work is done.

``DIR`` is a local path or a URL that pyarrow's filesystems reach (``gs://``, ``s3://``,
``abfs://``, ``file:///...``). A dataset is assembled in a staging location beside
``DIR`` on the same filesystem (Beam workers write their shard files there, so every
worker must reach it), then published:

* a plain local path: the staging directory is renamed into place. A killed job
  leaves the previous dataset untouched; a rerun replaces the whole directory.
* a URL (object stores have no atomic directory rename): the old ``manifest.json`` is
  deleted, then the files the new dataset does not have, the new files are copied in
  (server-side), and ``manifest.json`` is copied last: it is the commit marker. A job
  killed before publishing leaves the old dataset; one killed while publishing leaves
  a dataset without a manifest, which :func:`read_manifest` refuses; a rerun gives the
  same dataset with nothing left over.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

import kibble
from kibble.atomic import swap_in
from kibble.errors import KibbleError
from kibble.schemas.arrow import SCHEMA_VERSION
from kibble.schemas.layout import (
    MANIFEST,
    is_url,
    join,
    list_entries,
    list_files,
    resolve,
    sha256,
    write_bytes,
)
from kibble.schemas.outputs import check_no_links
from kibble.schemas.outputs import check_output as check_output  # the output of a dataset


def remove(location: str | os.PathLike, quiet: bool = False) -> None:
    """Delete a directory tree or a file if it is there; ``quiet``: never raise (cleanup)."""
    try:
        fs, path = resolve(location)
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            fs.delete_file(path)
    except (OSError, KibbleError):
        if not quiet:
            raise


def staging_dir(out: Path) -> Path:
    """A fresh local directory beside ``out`` to assemble the dataset in."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def staging_location(out: str | os.PathLike) -> str:
    """Where to assemble the dataset: a fresh location beside ``out``, same filesystem."""
    if not is_url(out):
        return str(staging_dir(Path(out)))
    base, sep, query = os.fspath(out).partition("?")
    parent, name = base.rstrip("/").rsplit("/", 1)
    if parent.endswith(":/"):  # gs://bucket
        raise KibbleError(
            f"output {os.fspath(out)} is a bucket; give a prefix inside it, "
            "e.g. gs://BUCKET/datasets/NAME"
        )
    return f"{parent}/.{name}.staging-{uuid.uuid4().hex[:8]}{sep}{query}"


def publish(staging: str | os.PathLike, out: str | os.PathLike) -> None:
    """Move the dataset assembled at ``staging`` to ``out``, replacing what was there.

    An ``out`` that holds a symbolic link (made since ``check_output`` looked) is refused
    here too, on every filesystem: nothing is deleted or written through a link.
    """
    check_no_links(*resolve(out), os.fspath(out))
    if is_url(staging) or is_url(out):
        fs, src = resolve(staging)
        publish_by_copy(fs, src, resolve(out)[1])
        return
    swap_in(staging, out)


def publish_by_copy(fs: pafs.FileSystem, src: str, dst: str) -> None:
    """Publish ``src`` to ``dst`` on a filesystem without atomic directory renames.

    Order: delete dst's manifest, delete what the new dataset does not have, copy the
    new files, copy manifest.json last (the commit), delete ``src``.
    """
    src, dst = src.rstrip("/"), dst.rstrip("/")
    check_no_links(fs, dst, dst)  # and the listings below never enter one (list_entries)
    new = list_entries(fs, src, pafs.FileType.File)
    if MANIFEST not in new:
        raise RuntimeError(f"{src} has no {MANIFEST}: nothing complete to publish")
    old = list_entries(fs, dst, pafs.FileType.File)
    old_dirs = list_entries(fs, dst, pafs.FileType.Directory)
    # From here until the last copy the dataset at dst has no manifest: incomplete.
    if MANIFEST in old:
        fs.delete_file(f"{dst}/{MANIFEST}")
    for rel in sorted(set(old) - set(new)):
        fs.delete_file(f"{dst}/{rel}")
    new_dirs = set()
    for rel in new:
        while rel := posixpath.dirname(rel):
            new_dirs.add(rel)
    for rel in old_dirs:  # parents first: a deleted parent takes its children along
        path = f"{dst}/{rel}"
        if rel not in new_dirs and fs.get_file_info(path).type == pafs.FileType.Directory:
            fs.delete_dir(path)
    for rel in ["", *sorted(new_dirs)]:
        fs.create_dir(f"{dst}/{rel}".rstrip("/"), recursive=True)
    for rel in new:
        if rel != MANIFEST:
            fs.copy_file(f"{src}/{rel}", f"{dst}/{rel}")
    fs.copy_file(f"{src}/{MANIFEST}", f"{dst}/{MANIFEST}")  # the commit
    fs.delete_dir(src)


def file_entry(root: str | os.PathLike, rel: str) -> dict[str, Any]:
    """The manifest entry of the Parquet file ``root/rel``: path, rows, bytes, sha256."""
    fs, path = resolve(join(root, rel))
    with fs.open_input_file(path) as f:
        rows = pq.ParquetFile(f).metadata.num_rows
    size = fs.get_file_info(path).size
    return {"path": rel, "rows": rows, "bytes": size, "sha256": sha256(join(root, rel))}


def build_file_entries(
    root: str | os.PathLike, known: dict[str, dict] | None = None
) -> list[dict[str, Any]]:
    """The manifest's ``files``, built from every Parquet file under ``root``: relative
    path, rows, bytes, sha256 (:func:`kibble.schemas.layout.file_entries` reads them).

    ``known``: entries already made where the files were written (Beam workers), by
    relative path; used while the size matches, so the launcher need not read the
    dataset back.
    """
    fs, base = resolve(root)
    out = []
    for rel in list_files(root):
        if not rel.endswith(".parquet"):
            continue
        entry = (known or {}).get(rel)
        if entry is None or fs.get_file_info(f"{base.rstrip('/')}/{rel}").size != entry["bytes"]:
            entry = file_entry(root, rel)
        out.append(entry)
    return out


def write_manifest(
    root: str | os.PathLike,
    name: str,
    *,
    config: dict,
    tasks: dict,
    known_files: dict[str, dict] | None = None,
) -> dict:
    manifest = {
        "name": name,
        "schema_version": SCHEMA_VERSION,
        "kibble_version": kibble.__version__,
        "config": config,
        "tasks": tasks,
        "files": build_file_entries(root, known_files),
    }
    write_bytes(
        join(root, MANIFEST), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    )
    return manifest
