"""The read side of a curated dataset: its layout, locations, the manifest, per-task entries.

Layout (docs/format.md section 9)::

    DIR/
      data/<task>/part-00000.parquet   kept episodes, tokenized schema (<task> is the id
                                       with "/" as "__", e.g. gym__CartPole-v1)
      rejected/part-00000.parquet      every episode not kept: task, episode_id,
                                       episode_return, episode_length, reason, detail
      manifest.json                    schema version, config, per-task counts, expert
                                       values and threshold, files with rows and sha256
      README.md                        the dataset card
      returns/<task>.png               return histograms
      views/<task>.gif|.png            one kept episode per task: its first frames (a task
                                       with images) or a plot of its values

``DIR`` is a local path or a URL that pyarrow's filesystems reach (``gs://``, ``s3://``,
``abfs://``, ``file:///...``). All paths here are strings or ``os.PathLike``; URLs stay
strings (``Path`` would fold ``gs://b`` into ``gs:/b``), so join them with :func:`join`.

Everything that reads a dataset (the trainer, ``kibble inspect``, the demo, notebooks)
uses this module; writing and publishing belong to ``kibble.pipelines.publish``.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pyarrow.fs as pafs

from kibble import limits
from kibble.errors import KibbleError
from kibble.schemas.arrow import SCHEMA_VERSION
from kibble.schemas.parquet import filesystem_and_path
from kibble.schemas.tree import (  # re-exported: the layout's readers use them
    REGULAR_ONLY as REGULAR_ONLY,
)
from kibble.schemas.tree import dataset_file as dataset_file
from kibble.schemas.tree import list_entries as list_entries
from kibble.schemas.tree import list_files as list_files
from kibble.schemas.tree import not_regular as not_regular

MANIFEST = "manifest.json"
CARD = "README.md"
DATA_DIR = "data"
REJECTED_DIR = "rejected"
RETURNS_DIR = "returns"
VIEWS_DIR = "views"
LAYOUT = (MANIFEST, CARD, DATA_DIR, REJECTED_DIR, RETURNS_DIR, VIEWS_DIR)
"""The top-level names of a dataset directory."""


def task_dir_name(task_id: str) -> str:
    """A task id as one path component: ``gym/CartPole-v1`` -> ``gym__CartPole-v1``."""
    return task_id.replace("/", "__")


def is_url(location: str | os.PathLike) -> bool:
    """True for ``scheme://...`` locations (``file://`` included), False for plain paths."""
    return "://" in os.fspath(location)


def join(location: str | os.PathLike, *parts: str) -> str:
    """``location/part/...`` for a local path or a URL (a URL's ``?query`` stays at the end).

    >>> join("gs://bucket/ds", "data", "part-00000.parquet")
    'gs://bucket/ds/data/part-00000.parquet'
    >>> join("s3://bucket/ds/?region=eu-west-1", "manifest.json")
    's3://bucket/ds/manifest.json?region=eu-west-1'
    """
    location = os.fspath(location)
    if not is_url(location):
        return os.path.join(location, *parts)
    base, sep, query = location.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + sep + query


def resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path on it of a local path or URL.

    Readers of a dataset (the trainer, notebooks) use it with the manifest's relative
    file paths: ``fs, root = resolve(url)``, then ``pq.ParquetFile(fs.open_input_file(
    f"{root}/{entry['path']}"))``. An unknown or unreachable scheme is a KibbleError.
    """
    return filesystem_and_path(location)


def read_bytes(location: str | os.PathLike) -> bytes:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write a small file in one call (its parent directories are made as needed)."""
    fs, path = resolve(location)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def sha256(location: str | os.PathLike) -> str:
    fs, path = resolve(location)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_schema_version(found: object, where: str) -> None:
    """A KibbleError unless ``found`` (a manifest's or a file's schema version) is the one
    this kibble reads; it says whether an older or a newer kibble wrote it and what to do
    (docs/format.md section 11)."""
    if found is not None and str(found) == SCHEMA_VERSION:
        return
    version = str(found) if found is not None else None
    if version is not None and version.isdigit() and int(version) < int(SCHEMA_VERSION):
        raise KibbleError(
            f"{where} has kibble schema version {version!r}: an older kibble wrote it, and "
            f"this one reads version {SCHEMA_VERSION!r} (which stores raw observations and "
            "actions beside the tokens). Rebuild the dataset with `kibble pipeline run "
            "CONFIG` (or `kibble rollout`)"
        )
    if version is not None and version.isdigit():
        raise KibbleError(
            f"{where} has kibble schema version {version!r}: a newer kibble wrote it, and "
            f"this one reads version {SCHEMA_VERSION!r}. Upgrade kibble, or rebuild the "
            "dataset with this one (`kibble pipeline run CONFIG`)"
        )
    raise KibbleError(
        f"{where} has kibble schema version {version!r}, which no kibble writes (this one "
        f"reads version {SCHEMA_VERSION!r}); it is damaged or not a kibble dataset: rebuild "
        "it with `kibble pipeline run CONFIG`"
    )


def no_dataset(location: str | os.PathLike) -> str:
    """The message for a dataset path where nothing is: most often a dataset not made yet
    (a newcomer's first ``kibble train configs/mixture.yaml``), or a relative path read
    from another working directory, so the absolute path is shown too."""
    where = os.fspath(location)
    if not is_url(where):
        # A publish killed between the fallback's two renames (file systems without
        # RENAME_EXCHANGE) parks the old dataset beside the path: say so, never guess.
        path = Path(where)
        parked = sorted(path.parent.glob(f".{path.name}.old-*")) if path.name else []
        if parked and not path.exists():
            return (
                f"no dataset at {where}: a publish there was interrupted, and the previous "
                f"dataset is parked at {parked[-1]}; the next kibble run writing {where} "
                f"restores it, or rename it back yourself (mv {parked[-1]} {where})"
            )
    if not is_url(where) and not os.path.isabs(where):
        where += f" ({os.path.abspath(where)})"
    return (
        f"no dataset at {where}: nothing is there; make it first with `kibble pipeline run "
        "CONFIG.yaml` (or `kibble rollout`), or give the path of one"
    )


def read_manifest(location: str | os.PathLike) -> dict:
    """The manifest of the dataset at ``location`` (a local path or URL).

    Nothing at ``location`` is a KibbleError saying so (:func:`no_dataset`). A dataset
    without ``manifest.json`` is not complete (a job publishing it was killed) or not a
    kibble dataset; both are a KibbleError, as is a manifest of another schema version
    (:func:`check_schema_version`).
    """
    fs, path = dataset_file(location, MANIFEST)
    if fs.get_file_info(path).type != pafs.FileType.File:
        _, where = resolve(location)
        if fs.get_file_info(where).type == pafs.FileType.NotFound:
            raise KibbleError(no_dataset(location))
        raise KibbleError(
            f"{os.fspath(location)} has no {MANIFEST}: it is not a kibble dataset, or the job "
            "writing it did not finish (run it again)"
        )
    try:
        with fs.open_input_stream(path) as stream:
            text = limits.read_capped(
                stream, MANIFEST_BYTES, join(location, MANIFEST),
                "a kibble manifest of that size would list millions of files: split the "
                "dataset, or check the file is the dataset's own",
            )  # fmt: skip
        manifest = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KibbleError(f"{join(location, MANIFEST)} is not valid JSON: {e}") from e
    if isinstance(manifest, dict) and "schema_version" in manifest:
        check_schema_version(manifest["schema_version"], join(location, MANIFEST))
    return manifest


MANIFEST_BYTES = 256 * limits.MiB
"""The largest manifest.json read (about 1.5 million files listed): a bigger one is
refused before it is parsed (``kibble.limits``)."""
FILE_FIELDS = ("path", "rows", "bytes", "sha256")
"""What the manifest records of each file it lists."""


FILE_ROOTS = (DATA_DIR, REJECTED_DIR)
"""The folders a manifest's files lie in: every ``.parquet`` file kibble writes, and so
every file ``kibble inspect`` verifies."""

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def path_problem(rel: object) -> str | None:
    """Why ``rel`` is not a file path a manifest may list, or None.

    The rule, for every reader and ``kibble inspect`` alike: a relative POSIX path,
    normalized (no empty, ``.`` or ``..`` part, no backslash), no URL, under ``data/`` or
    ``rejected/``, naming a ``.parquet`` file.

    >>> path_problem("data/gym__CartPole-v1/part-00000.parquet") is None
    True
    >>> path_problem("data/../../etc/passwd")
    "has a '..' part (a manifest's paths are normalized)"
    """
    if not isinstance(rel, str) or not rel:
        return "is not a non-empty string"
    if "\\" in rel:
        return "holds a backslash (a manifest's paths are POSIX paths, with /)"
    if any(ord(c) < 32 for c in rel):
        return "holds a control character"
    if "://" in rel or _SCHEME.match(rel):
        return "is a URL (a manifest's paths are relative to the dataset)"
    if rel.startswith("/"):
        return "is absolute (a manifest's paths are relative to the dataset)"
    parts = rel.split("/")
    for bad, name in (("", "an empty"), (".", "a '.'"), ("..", "a '..'")):
        if bad in parts:
            return f"has {name} part (a manifest's paths are normalized)"
    if parts[0] not in FILE_ROOTS or len(parts) < 2 or not rel.endswith(".parquet"):
        return f"is not a .parquet file under {' or '.join(d + '/' for d in FILE_ROOTS)}"
    return None


def file_entries(manifest: dict, where: str = MANIFEST) -> list[dict]:
    """The manifest's ``files``, each checked to be an object with :data:`FILE_FIELDS`
    and a path that obeys :func:`path_problem`, each path listed once.

    Every reader of a manifest's files goes through here (the reader, and so the trainer,
    the API, view and export; ``kibble inspect``), so a manifest naming a file outside
    the dataset, or one file twice, is refused by all of them before any file is opened.
    """
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        raise KibbleError(
            f'{where} has no list of files ("files"): it is damaged or not a kibble '
            "manifest; curate the dataset again"
        )
    seen: set[str] = set()
    for entry in files:
        if not isinstance(entry, dict) or not set(FILE_FIELDS) <= set(entry):
            raise KibbleError(
                f"{where}: a file entry lacks {', '.join(FILE_FIELDS)}: {entry!r:.100}; the "
                "manifest is damaged or was not written by kibble (curate the dataset again)"
            )
        rel = entry["path"]
        problem = path_problem(rel)
        if problem is None and rel in seen:
            problem = "is listed twice (each file is listed once)"
        if problem is not None:
            shown = repr(rel) if len(repr(rel)) <= 200 else repr(rel)[:200] + "..."
            raise KibbleError(
                f"{where} lists the file path {shown}, which {problem}: a manifest lists "
                "each of its dataset's files once, as a relative path under "
                f"{' or '.join(d + '/' for d in FILE_ROOTS)}, and kibble reads no other; "
                "the manifest is damaged or was edited (curate the dataset again)"
            )
        seen.add(rel)
    return files


def footer_mismatches(entry: dict, size: int, rows: int) -> list[str]:
    """How a file's size and footer row count differ from its manifest entry ([] if not)."""
    rel, problems = entry["path"], []
    if size != entry["bytes"]:
        problems.append(f"{rel}: {size} bytes, the manifest says {entry['bytes']}")
    if rows != entry["rows"]:
        problems.append(f"{rel}: {rows} rows, the manifest says {entry['rows']}")
    return problems


@dataclass
class TaskEntry:
    """One task's entry in ``manifest.json["tasks"]`` (docs/format.md section 9).

    Written by the pipelines (``to_dict``), read by everything else (``from_dict``);
    ``counts`` is the one "kept N of M" line every command prints.
    """

    expert: str
    """The expert source as configured (checkpoint path, ``sb3:...``, ``scripted``...)."""
    planned: int
    kept: int
    rejected: dict[str, int]
    """Rejected episodes by reason; kept + sum(rejected) == planned."""
    steps: int
    """Timesteps of the kept episodes."""
    tokens: int
    """Tokens of the kept episodes (observation + separator + action)."""
    expert_return: float | None
    expert_return_source: str
    random_return: float | None
    fraction: float
    threshold: float | None
    rule: str
    extra: dict = field(default_factory=dict)
    """Keys a newer writer added, kept as they are."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest.json") -> TaskEntry:
        if not isinstance(d, dict):
            raise KibbleError(f"{where}: a task entry must be a JSON object, got {d!r:.60}")
        names = [f.name for f in fields(cls) if f.name != "extra"]
        missing = [n for n in names if n not in d]
        if missing:
            raise KibbleError(
                f"{where}: a task entry lacks {', '.join(missing)}; the manifest is damaged "
                "or was not written by kibble (run the pipeline again)"
            )
        return cls(**{n: d[n] for n in names}, extra={k: v for k, v in d.items() if k not in names})

    def rejected_text(self) -> str:
        """``below_threshold 6, invalid_nan 1`` or ``none``."""
        return ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"

    def counts(self) -> str:
        """``kept 10 of 16 (rejected: below_threshold 6); 714 steps, 12,852 tokens``."""
        return (
            f"kept {self.kept} of {self.planned} (rejected: {self.rejected_text()}); "
            f"{self.steps:,} steps, {self.tokens:,} tokens"
        )


def task_entries(manifest: dict, where: str = "manifest.json") -> dict[str, TaskEntry]:
    """Every task's typed entry, by task id, in the manifest's order."""
    tasks = manifest.get("tasks") if isinstance(manifest, dict) else None
    if not isinstance(tasks, dict):
        raise KibbleError(f'{where}: has no "tasks" object; it is not a kibble manifest')
    return {task: TaskEntry.from_dict(d, f"{where}: {task}") for task, d in tasks.items()}
