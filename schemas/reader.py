"""Reading a curated dataset: its manifest facts and its kept episodes, one at a time.

:class:`CuratedDataset` is the one reader of a dataset's kept data. The trainer's mixture
loader (``kibble.trainer.data``) opens every dataset and data file through it, and the
public API (``kibble.open_dataset``, :mod:`kibble.api`) adds a torch view on top::

    ds = CuratedDataset("kibble-out/example/dataset")   # a local path or a URL
    ds.task("gym/CartPole-v1").counts()                 # the manifest's facts
    for ep in ds.episodes("gym/CartPole-v1"):           # EpisodeRecord, one at a time
        ep.episode_return, ep.rewards, ep.observation_tokens

Opening reads only ``manifest.json``; data files are opened when read, each checked
against its manifest entry (size and footer row count, no hashing), its schema version
and its columns (docs/format.md sections 8, 9 and 11). ``episodes()`` reads one Parquet
row group at a time and holds at most that group and the episode being assembled, so
memory stays bounded whatever the dataset's size.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from kibble.errors import KibbleError
from kibble.schemas.arrow import (
    METADATA_VERSION,
    RAW_VALUE_COLUMNS,
    TOKENIZED_EPISODE_SCHEMA,
    list_column_to_numpy,
)
from kibble.schemas.layout import (
    DATA_DIR,
    MANIFEST,
    TaskEntry,
    check_schema_version,
    file_entries,
    footer_mismatches,
    join,
    read_manifest,
    task_dir_name,
    task_entries,
)
from kibble.schemas.parquet import filesystem_and_path
from kibble.schemas.raw_values import space_from_description, table_images, unflatten
from kibble.schemas.validate import validate_schema

DAMAGED_ADVICE = (
    "the file was damaged or changed after it was curated; `kibble inspect` on its "
    "dataset checks every file against the manifest. Curate the dataset again, or "
    "restore the file"
)
"""What to do about a data file that is not what its manifest says."""

_EPISODE_COLUMNS = [
    "task",
    "episode_id",
    "episode_return",
    "episode_length",
    "step",
    "observation_tokens",
    "action_tokens",
    "reward",
    "terminated",
    "truncated",
    "images",
    "image_shapes",
]


def check_footer(url: str, entry: dict, size: int, rows: int) -> None:
    """The file's size and footer row count equal its manifest entry, else a KibbleError."""
    problems = footer_mismatches(entry, size, rows)
    if problems:
        listing = "; ".join(problems)
        raise KibbleError(f"{url} does not match its manifest ({listing}): {DAMAGED_ADVICE}")


def damaged(url: str, group: int, detail: str) -> KibbleError:
    """The error for a row group that decodes to something kibble never writes."""
    return KibbleError(f"{url}: row group {group} is damaged ({detail}): {DAMAGED_ADVICE}")


# -- decoding columns -----------------------------------------------------------------------


def ragged_rows(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A list<int32> column -> (flat int32 values, (rows + 1,) offsets)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return values, np.concatenate([[0], np.cumsum(lengths)])


def ragged_slice(ragged: tuple[np.ndarray, np.ndarray], lo: int, hi: int) -> np.ndarray:
    """Rows ``[lo, hi)`` of a ragged column as a (hi - lo, n) array: one episode's rows.

    Observation rows may differ in length between episodes (text observations), never
    inside one.
    """
    values, offsets = ragged
    lengths = np.diff(offsets[lo : hi + 1])
    n = int(lengths[0]) if len(lengths) else 0
    if not np.all(lengths == n):
        raise KibbleError(
            "an episode's timesteps have different numbers of observation tokens; the "
            "data file is damaged or was not written by kibble (curate it again)"
        )
    return values[offsets[lo] : offsets[hi]].reshape(hi - lo, n)


# -- one data file --------------------------------------------------------------------------


class DataFile:
    """One kept-episode Parquet file, opened once: its schema version and columns checked,
    its row-group boundaries known, and (given its manifest ``entry``) its size and footer
    row count compared with the manifest."""

    def __init__(self, url: str, entry: dict | None = None) -> None:
        self.url = url
        fs, path = filesystem_and_path(url)
        try:
            source = fs.open_input_file(path)
            if entry is not None and source.size() != entry["bytes"]:
                # A truncated file: say so before its footer fails to parse.
                check_footer(url, entry, source.size(), entry["rows"])
            self.file = pq.ParquetFile(source)
        except (OSError, pa.ArrowException) as e:
            raise KibbleError(f"{url} is not a readable Parquet file: {e}") from e
        if entry is not None:
            check_footer(url, entry, source.size(), self.file.metadata.num_rows)
        schema = self.file.schema_arrow
        version = (schema.metadata or {}).get(METADATA_VERSION, b"").decode() or None
        check_schema_version(version, url)
        mismatches = validate_schema(schema, TOKENIZED_EPISODE_SCHEMA)
        if mismatches:
            listing = "; ".join(str(m) for m in mismatches)
            raise KibbleError(f"{url} is not a tokenized kibble episode file: {listing}")
        self.columns: list[str] = schema.names
        meta = self.file.metadata
        rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.group_starts = np.cumsum([0, *rows])  # (groups + 1,) first row of each group

    @property
    def num_rows(self) -> int:
        return int(self.group_starts[-1])

    @property
    def num_groups(self) -> int:
        return len(self.group_starts) - 1

    def read(self, columns: list[str]) -> pa.Table:
        """Whole columns of the file (the small ones: an index)."""
        try:
            return self.file.read(columns=columns)
        except (OSError, pa.ArrowException) as e:
            raise KibbleError(f"{self.url} is not a readable Parquet file: {e}") from e

    def read_group(self, i: int, columns: list[str]) -> pa.Table:
        """Row group ``i``, only ``columns``."""
        try:
            return self.file.read_row_group(i, columns=columns)
        except (OSError, pa.ArrowException) as e:
            raise damaged(self.url, i, f"it cannot be read: {e}") from e

    def episodes(self, spaces: SpacesOf | None = None) -> Iterator[EpisodeRecord]:
        """Every episode of the file in order, reading one row group at a time.

        ``spaces``: task id -> its (observation, action) space descriptions from the
        manifest, attached to each record (and used to crop images to their own size).
        """
        columns = [*_EPISODE_COLUMNS, *RAW_VALUE_COLUMNS]
        pending: list[pa.Table] = []  # the rows of the episode being assembled
        for g in range(self.num_groups):
            table = self.read_group(g, columns)
            steps = table["step"].to_numpy()
            starts = np.flatnonzero(steps == 0)
            if g == 0 and (len(starts) == 0 or starts[0] != 0):
                raise KibbleError(
                    f"{self.url}: rows do not start at an episode's first step: {DAMAGED_ADVICE}"
                )
            cuts = [0, *(int(s) for s in starts if s), len(table)]
            for lo, hi in itertools.pairwise(cuts):
                if steps[lo] == 0 and pending:
                    yield self._record(pending, g, spaces)
                    pending = []
                pending.append(table.slice(lo, hi - lo))
        if pending:
            yield self._record(pending, self.num_groups - 1, spaces)

    def _record(self, parts: list[pa.Table], group: int, spaces: SpacesOf | None) -> EpisodeRecord:
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        try:
            task = table["task"][0].as_py()
            observation_space, action_space = (spaces or {}).get(task, (None, None))
            return EpisodeRecord.from_table(table, observation_space, action_space)
        except (ValueError, IndexError, KibbleError, pa.ArrowException) as e:
            raise damaged(self.url, group, str(e)) from e


SpacesOf = dict[str, tuple[dict | None, dict | None]]
"""Task id -> its observation and action space descriptions (``kibble.schemas.raw_values``)."""


# -- one episode ----------------------------------------------------------------------------


@dataclass(repr=False)
class EpisodeRecord:
    """One kept episode: its identity, rewards, raw values and Gato tokens (T steps).

    ``observation`` and ``action`` hold the raw values as stored (docs/format.md section
    8): the numeric leaves flattened in token order, as float64. :meth:`native_observation`
    and :meth:`native_action` give them back their leaves, dtypes and shapes. A dataset
    curated with ``raw_values: false`` has them empty: (T, 0), and ``texts`` T empty lists.
    """

    task: str
    episode_id: str
    episode_return: float
    length: int
    rewards: NDArray[np.float64]  # (T,)
    terminated: NDArray[np.bool_]  # (T,)
    truncated: NDArray[np.bool_]  # (T,)
    observation: NDArray[np.float64]  # (T, D) numeric observation leaves, flattened
    action: NDArray[np.float64]  # (T, A) action leaves, flattened
    texts: list[list[str]]  # per step, one string per text leaf
    images: list[NDArray[np.uint8]]  # one (T, H, W, C) array per image leaf
    observation_tokens: list[NDArray[np.int32]]  # per step, (n,) each
    action_tokens: list[NDArray[np.int32]]  # per step, (m,) each
    observation_space: dict | None = field(default=None, repr=False)
    """The manifest's description of the task's observation space (None if it has none)."""
    action_space: dict | None = field(default=None, repr=False)

    @classmethod
    def from_table(
        cls,
        table: pa.Table,
        observation_space: dict | None = None,
        action_space: dict | None = None,
    ) -> EpisodeRecord:
        """The T rows of one episode (tokenized schema, docs/format.md section 8); with
        the observation space's description, images are cropped to their own size."""
        t = len(table)
        episode_id = table["episode_id"][0].as_py()
        steps = table["step"].to_numpy()
        length = int(table["episode_length"][0].as_py())
        if length != t or not np.array_equal(steps, np.arange(t)):
            raise KibbleError(
                f"episode {episode_id} has {t} rows with steps {steps[:3].tolist()}..., its "
                f"episode_length says {length}"
            )
        obs_tokens = ragged_slice(ragged_rows(table["observation_tokens"]), 0, t)  # (T, n)
        act_tokens = list_column_to_numpy(table["action_tokens"], np.int32)  # (T, m)
        images = table_images(table)  # as stored: padded to multiples of 16
        if observation_space is not None:
            images = _crop(images, observation_space)
        return cls(
            task=table["task"][0].as_py(),
            episode_id=episode_id,
            episode_return=float(table["episode_return"][0].as_py()),
            length=t,
            rewards=table["reward"].to_numpy().astype(np.float64),
            terminated=table["terminated"].to_numpy(zero_copy_only=False).astype(bool),
            truncated=table["truncated"].to_numpy(zero_copy_only=False).astype(bool),
            observation=list_column_to_numpy(table["observation"], np.float64),
            action=list_column_to_numpy(table["action"], np.float64),
            texts=table["texts"].to_pylist(),
            # Copies: a record must not keep its row group's memory alive.
            images=[img.copy() for img in images],
            observation_tokens=list(obs_tokens.copy()),
            action_tokens=list(act_tokens.copy()),
            observation_space=observation_space,
            action_space=action_space,
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(img.shape)}" for img in self.images)
        return (
            f"EpisodeRecord({self.episode_id!r}, length={self.length}, "
            f"return={self.episode_return:g}, observation={tuple(self.observation.shape)}, "
            f"action={tuple(self.action.shape)}, images=[{shapes}])"
        )

    @property
    def has_raw_values(self) -> bool:
        """False for a dataset curated with ``raw_values: false`` (its columns are empty)."""
        if self.observation_space is None or self.action_space is None:
            return bool(self.observation.shape[1] or self.action.shape[1])
        return (
            self.observation.shape[1] == self.observation_space["size"]
            and self.action.shape[1] == self.action_space["size"]
        )

    def native_observation(self) -> Any:
        """The observations nested like the task's observation space (a dict for a Dict
        space, a tuple for a Tuple, else one array), each leaf with its own dtype and shape
        and a leading T axis: images (T, H, W[, C]) uint8, texts (T,) str."""
        description = self._description(self.observation_space, "observation")
        k = len(self.texts[0]) if self.texts else 0
        texts = [[step[j] for step in self.texts] for j in range(k)]  # per leaf, (T,)
        return unflatten(self.observation, description, self.images, texts)

    def native_action(self) -> Any:
        """The actions nested like the task's action space, native dtypes, leading T axis."""
        return unflatten(self.action, self._description(self.action_space, "action"))

    def _description(self, description: dict | None, role: str) -> dict:
        if description is None:
            raise KibbleError(
                f"{self.task}: the dataset's manifest does not describe its {role} space, so "
                f"its raw values cannot be given back their leaves; rebuild the dataset with "
                "this kibble (`kibble pipeline run CONFIG`)"
            )
        if not self.has_raw_values:
            raise KibbleError(
                f"{self.task}: the dataset was curated without raw values (raw_values: "
                "false); only its tokens are stored. Curate it again with raw values on"
            )
        return description


def _crop(images: list[np.ndarray], observation_space: dict) -> list[np.ndarray]:
    """Stored (T, H', W', C) images cut to each image leaf's own (H, W), keeping C."""
    shapes = {
        leaf["index"]: leaf["shape"]
        for leaf in observation_space.get("leaves", [])
        if leaf.get("column") == "images"
    }
    return [
        img[:, : shapes[i][0], : shapes[i][1], :] if i in shapes else img
        for i, img in enumerate(images)
    ]


# -- a dataset ------------------------------------------------------------------------------


class CuratedDataset:
    """A curated dataset at a local path or URL: its manifest's facts and its episodes.

    Raises a KibbleError when ``location`` holds no complete dataset (no manifest), when
    the manifest is damaged, or when its schema version is not the one this kibble reads.
    """

    def __init__(self, location: str | os.PathLike) -> None:
        self.location = os.fspath(location)
        where = join(self.location, MANIFEST)
        self.manifest: dict = read_manifest(self.location)
        self.files: list[dict] = file_entries(self.manifest, where)
        """The manifest's file entries (``path``, ``rows``, ``bytes``, ``sha256``)."""
        # read_manifest checks a version it finds; a manifest without one is refused too.
        check_schema_version(self.manifest.get("schema_version"), where)
        self.tasks: dict[str, TaskEntry] = task_entries(self.manifest, where)
        """Per task id, its manifest entry: counts, expert and random returns, threshold."""

    # -- manifest facts -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", ""))

    @property
    def schema_version(self) -> str:
        return str(self.manifest["schema_version"])

    @property
    def kibble_version(self) -> str | None:
        """The version of kibble that wrote the dataset."""
        return self.manifest.get("kibble_version")

    @property
    def config(self) -> dict:
        """The dataset config as run (docs/format.md section 9)."""
        return self.manifest.get("config") or {}

    @property
    def task_ids(self) -> list[str]:
        return list(self.tasks)

    def task(self, task_id: str) -> TaskEntry:
        """The manifest entry of ``task_id``; a KibbleError naming the tasks if absent."""
        if task_id not in self.tasks:
            raise KibbleError(
                f"{task_id} is not a task of the dataset at {self.location}; its tasks are: "
                + (", ".join(self.tasks) or "none")
            )
        return self.tasks[task_id]

    @property
    def cards(self) -> dict[str, str | None]:
        """Per task, the expert card the curation used (its path as configured), or None.

        A card's expert and random returns are in the task's entry (``expert_return`` with
        ``expert_return_source == "card"``, ``random_return``)."""
        configured = {
            t.get("task"): t.get("card")
            for t in self.config.get("tasks") or []
            if isinstance(t, dict)
        }
        return {task: configured.get(task) for task in self.tasks}

    def space_descriptions(self, task_id: str) -> tuple[dict | None, dict | None]:
        """The manifest's (observation, action) space descriptions of a task
        (``kibble.schemas.raw_values.describe_space``); None where the manifest has none."""
        extra = self.task(task_id).extra
        return extra.get("observation_space"), extra.get("action_space")

    def observation_space(self, task_id: str) -> gymnasium.Space:
        """The task's observation space, rebuilt from the manifest (no environment needed)."""
        return space_from_description(self._described(task_id, 0, "observation"))

    def action_space(self, task_id: str) -> gymnasium.Space:
        """The task's action space, rebuilt from the manifest (no environment needed)."""
        return space_from_description(self._described(task_id, 1, "action"))

    def _described(self, task_id: str, i: int, role: str) -> dict:
        description = self.space_descriptions(task_id)[i]
        if description is None:
            raise KibbleError(
                f"{task_id}: the manifest of {self.location} does not describe its {role} "
                "space; rebuild the dataset with this kibble (`kibble pipeline run CONFIG`)"
            )
        return description

    @property
    def num_episodes(self) -> int:
        """Kept episodes, all tasks."""
        return sum(t.kept for t in self.tasks.values())

    @property
    def num_steps(self) -> int:
        return sum(t.steps for t in self.tasks.values())

    @property
    def num_tokens(self) -> int:
        return sum(t.tokens for t in self.tasks.values())

    def summary(self) -> str:
        """One line per task: ``gym/CartPole-v1: kept 10 of 16 (...); 714 steps, ...``."""
        head = f"{self.name or self.location}: schema version {self.schema_version}"
        return "\n".join([head, *(f"  {k}: {t.counts()}" for k, t in self.tasks.items())])

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.location!r}: {len(self.tasks)} task(s), "
            f"{self.num_episodes} episodes, {self.num_steps} steps>"
        )

    # -- data -----------------------------------------------------------------------------------

    def data_files(self, task: str | None = None) -> list[dict]:
        """The manifest entries of the kept-episode files (of one task), in path order."""
        prefix = DATA_DIR + "/"
        if task is not None:
            self.task(task)  # an unknown task is an error, not an empty list
            prefix += task_dir_name(task) + "/"
        return [f for f in self.files if str(f["path"]).startswith(prefix)]

    def open_file(self, entry: dict) -> DataFile:
        """One of :meth:`data_files`, opened and checked against its entry."""
        return DataFile(join(self.location, entry["path"]), entry)

    def episodes(self, task: str | None = None) -> Iterator[EpisodeRecord]:
        """Every kept episode (of ``task``), one at a time, in file and then episode order.

        An unknown ``task`` is a KibbleError here, before anything is read.
        """
        files = self.data_files(task)
        return self._episodes(files, task)

    def _episodes(self, files: list[dict], task: str | None) -> Iterator[EpisodeRecord]:
        spaces = {t: self.space_descriptions(t) for t in self.tasks}
        for entry in files:
            if not entry["rows"]:
                continue
            for record in self.open_file(entry).episodes(spaces):
                if task is None or record.task == task:
                    yield record
