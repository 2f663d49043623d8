"""`kibble inspect`: what a dataset holds, checked against its schemas.

Reads footers and the small per-episode columns; tokens and pixels only of the one
sample row it shows per task (summarised: long lists cut, images as their shapes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kibble.errors import KibbleError
from kibble.reading.raw_check import raw_value_problems
from kibble.schemas import layout
from kibble.schemas.columns import type_name
from kibble.schemas.layout import (
    DATA_DIR,
    MANIFEST,
    REGULAR_ONLY,
    REJECTED_DIR,
    footer_mismatches,
)
from kibble.schemas.parquet import read_schema_version
from kibble.schemas.validate import validate_file

SAMPLE_ITEMS = 8
"""A list in a sample row shows this many items, then how many there are."""
SAMPLE_CHARS = 60
"""A string in a sample row shows this many characters."""


@dataclass
class TaskSummary:
    task: str
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    tokens: int = 0
    return_mean: float | None = None
    return_min: float | None = None
    return_max: float | None = None
    bytes: int = 0

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0


@dataclass
class Inspection:
    root: str
    schema_versions: set[str]
    tasks: dict[str, TaskSummary]
    problems: list[str]
    manifest: dict | None
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """``data``/``rejected`` -> (name, type) of each column of its first valid file."""
    samples: dict[str, tuple[str, dict]] = field(default_factory=dict)
    """task -> (file, its first row) of the task's first valid data file."""


def inspect_dataset(root: str | os.PathLike, quick: bool = False) -> Inspection:
    """Summarise every task, validate every file and verify it against the manifest.

    Problems are listed, not raised. ``quick`` skips hashing (rows, bytes and counts are
    still compared). ``root`` is a local path or a URL (``gs://``, ``s3://``, ``file:///``).
    """
    root = os.fspath(root)
    fs, base = layout.resolve(root)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise KibbleError(f"{root} is not a dataset directory (it does not exist)")
    # Regular files only: links (and what they point to), FIFOs and devices are not read.
    files = [rel for rel in layout.list_files(root) if rel.endswith(".parquet")]
    others = layout.list_entries(fs, base, pafs.FileType.Unknown)
    if not files and not others:
        raise KibbleError(f"{root} holds no Parquet files; is it a kibble dataset?")
    problems = [
        f"{layout.not_regular(fs, base, rel) or rel + ' is not a regular file'}: {REGULAR_ONLY}"
        for rel in others
    ]
    try:
        manifest = layout.read_manifest(root)
    except KibbleError as e:
        manifest = None
        problems.append(str(e))
    tasks: dict[str, TaskSummary] = {}
    versions: set[str] = set()
    valid: list[str] = []
    for rel in files:
        path = layout.join(root, rel)
        try:
            mismatches = validate_file(path)
        except KibbleError as e:
            problems.append(str(e))
            continue
        problems += [f"{rel}: {m}" for m in mismatches]
        versions.add(read_schema_version(path) or "none")
        if mismatches:
            continue
        valid.append(rel)
        try:
            if rel.startswith(DATA_DIR + "/"):
                _add_data_file(fs, f"{base.rstrip('/')}/{rel}", tasks)
                continue
            if not rel.startswith(REJECTED_DIR + "/"):
                continue
            rejected = pq.read_table(
                f"{base.rstrip('/')}/{rel}", columns=["task", "reason"], filesystem=fs
            )
        except (OSError, pa.ArrowException) as e:
            # A footer that still parses over damaged pages: the pages fail to decode.
            problems.append(f"{rel}: its data cannot be read ({e}): the file is damaged")
            continue
        for task, reason in zip(
            rejected["task"].to_pylist(), rejected["reason"].to_pylist(), strict=True
        ):
            summary = tasks.setdefault(task, TaskSummary(task))
            summary.rejected[reason] = summary.rejected.get(reason, 0) + 1
    columns, samples = _columns_and_samples(fs, base, valid, problems)
    if manifest is not None:
        problems += verify_files(root, manifest, files, quick)
        problems += verify_counts(manifest, tasks)
        data = [rel for rel in valid if rel.startswith(DATA_DIR + "/")]
        problems += raw_value_problems(fs, base, manifest, data)
    return Inspection(root, versions, tasks, problems, manifest, columns, samples)


def _columns_and_samples(
    fs: pafs.FileSystem, base: str, valid: list[str], problems: list[str]
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, tuple[str, dict]]]:
    """The columns of data/ and rejected/ and the first row of each task's first data file.

    ``valid``: files that match their schema, sorted; a row that cannot be read is a problem.
    """
    columns: dict[str, list[tuple[str, str]]] = {}
    samples: dict[str, tuple[str, dict]] = {}
    folders: set[str] = set()
    for rel in valid:
        top, _, rest = rel.partition("/")
        with fs.open_input_file(f"{base.rstrip('/')}/{rel}") as f:
            parquet = pq.ParquetFile(f)
            schema = parquet.schema_arrow
            columns.setdefault(top, [(c.name, type_name(c.type)) for c in schema])
            folder = rest.split("/", 1)[0]  # data/<task_dir>/part-...: one task a folder
            if top != DATA_DIR or folder in folders or parquet.metadata.num_rows == 0:
                continue
            folders.add(folder)
            try:
                batch = next(parquet.iter_batches(batch_size=1))
            except (OSError, pa.ArrowException) as e:
                problems.append(f"{rel}: its first row cannot be read ({e}): the file is damaged")
                continue
        row = {name: values[0] for name, values in batch.to_pydict().items()}
        samples.setdefault(row["task"], (rel, row))
    return columns, samples


def _short(value: object) -> str:
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    if isinstance(value, str):
        cut = value[:SAMPLE_CHARS] + ("..." if len(value) > SAMPLE_CHARS else "")
        return repr(cut)
    if isinstance(value, float):  # 1.0, not 1: the column holds floats
        return f"{value:.1f}" if value.is_integer() else f"{value:.6g}"
    if isinstance(value, list):
        shown = ", ".join(_short(v) for v in value[:SAMPLE_ITEMS])
        more = f", ... ({len(value)} items)" if len(value) > SAMPLE_ITEMS else ""
        return f"[{shown}{more}]"
    return repr(value)


def sample_values(row: dict) -> list[tuple[str, str]]:
    """(column, value as short text) of a data row: lists cut after :data:`SAMPLE_ITEMS`
    items with their length, strings cut, each image as its shape and size, not its bytes."""
    out = []
    for name, value in row.items():
        if name == "images" and isinstance(value, list):
            shapes = row.get("image_shapes") or [None] * len(value)
            parts = [
                ("x".join(map(str, shape)) + " " if shape else "") + f"uint8 ({len(b):,} bytes)"
                for b, shape in zip(value, shapes, strict=False)
            ]
            text = f"{len(value)} image(s): " + ", ".join(parts) if value else "[] (no images)"
        else:
            text = _short(value)
        out.append((name, text))
    return out


def verify_files(root: str, manifest: dict, present: list[str], quick: bool = False) -> list[str]:
    """Each file the manifest lists exists with its rows, bytes and sha256; none unlisted.

    The manifest's paths are checked first, by the rule every reader applies
    (:func:`kibble.schemas.layout.file_entries`); a manifest that breaks it is one problem,
    and none of the files it lists is opened."""
    try:
        entries = layout.file_entries(manifest, MANIFEST)
    except KibbleError as e:
        return [str(e)]
    problems, listed = [], set()
    for entry in entries:
        rel = entry["path"]
        listed.add(rel)
        if rel not in present:
            problems.append(f"{rel} is in the manifest but missing")
            continue
        try:
            fs, path = layout.dataset_file(root, rel)
        except KibbleError as e:
            problems.append(str(e))
            continue
        size = fs.get_file_info(path).size
        try:
            with fs.open_input_file(path) as f:
                rows = pq.ParquetFile(f).metadata.num_rows
        except (OSError, pa.ArrowException) as e:
            problems += footer_mismatches(entry, size, entry["rows"])  # the size alone
            problems.append(f"{rel}: not a readable Parquet file ({e})")
            continue
        problems += footer_mismatches(entry, size, rows)  # the trainer's check at open
        if not quick and layout.sha256(layout.join(root, rel)) != entry["sha256"]:
            problems.append(
                f"{rel}: its sha256 differs from the manifest's: the file changed after it "
                "was written (corrupted or edited); curate the dataset again"
            )
    problems += [f"{rel} is not in the manifest" for rel in present if rel not in listed]
    return problems


def verify_counts(manifest: dict, tasks: dict[str, TaskSummary]) -> list[str]:
    """The manifest's per-task counts equal what the files hold."""
    try:
        entries = layout.task_entries(manifest, MANIFEST)
    except KibbleError as e:
        return [str(e)]
    problems = []
    for task in sorted(set(entries) | set(tasks)):
        entry, found = entries.get(task), tasks.get(task)
        if entry is None:
            problems.append(f"{task}: in the files but not in the manifest")
            continue
        found = found or TaskSummary(task)
        for what, said, seen in (
            ("kept episodes", entry.kept, found.kept),
            ("steps", entry.steps, found.steps),
            ("tokens", entry.tokens, found.tokens),
            ("rejected episodes by reason", entry.rejected, found.rejected),
        ):
            if said != seen:
                problems.append(f"{task}: the manifest says {said} {what}, the files hold {seen}")
        if entry.kept + sum(entry.rejected.values()) != entry.planned:
            problems.append(f"{task}: kept + rejected != planned ({entry.planned}) in the manifest")
    return problems


def _add_data_file(fs: pafs.FileSystem, path: str, tasks: dict[str, TaskSummary]) -> None:
    table = pq.read_table(
        path,
        columns=["task", "episode_id", "episode_return", "n_observation_tokens", "n_action_tokens"],
        filesystem=fs,
    )
    per_task = table.group_by(["task", "episode_id"]).aggregate([("episode_return", "max")])
    for task in set(table["task"].to_pylist()):
        rows = table.filter(pc.equal(table["task"], task))
        episodes = per_task.filter(pc.equal(per_task["task"], task))
        returns = episodes["episode_return_max"]
        s = tasks.setdefault(task, TaskSummary(task))
        s.kept += episodes.num_rows
        s.steps += rows.num_rows
        s.tokens += int(
            pc.sum(rows["n_observation_tokens"]).as_py()
            + rows.num_rows
            + pc.sum(rows["n_action_tokens"]).as_py()
        )
        s.return_mean = pc.mean(returns).as_py()
        s.return_min = pc.min(returns).as_py()
        s.return_max = pc.max(returns).as_py()
        s.bytes += fs.get_file_info(path).size
