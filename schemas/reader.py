"""Reading a curated dataset: its manifest facts and its kept episodes, one at a time.

:class:`CuratedDataset` is the one reader of a dataset's kept data. The trainer's mixture
loader (``kibble.trainer.mixture_data``) opens every dataset and data file through it, and the
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

One job per module: this one the dataset (its manifest and its files); one data file,
opened and checked, is :class:`~kibble.schemas.data_file.DataFile`; one episode, decoded,
an :class:`~kibble.schemas.episode_record.EpisodeRecord`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import gymnasium

from kibble.errors import KibbleError
from kibble.schemas.data_file import DataFile, damaged
from kibble.schemas.episode_record import EpisodeRecord, ragged_rows, ragged_slice
from kibble.schemas.layout import (
    DATA_DIR,
    MANIFEST,
    TaskEntry,
    check_schema_version,
    dataset_file,
    file_entries,
    join,
    read_manifest,
    task_dir_name,
    task_entries,
)
from kibble.schemas.raw_values import space_from_description

__all__ = ["CuratedDataset", "DataFile", "EpisodeRecord", "damaged", "ragged_rows", "ragged_slice"]
"""The reading API: a data file (:mod:`kibble.schemas.data_file`) and an episode
(:mod:`kibble.schemas.episode_record`) are read through here, as the trainer's loader does."""


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
        """One of :meth:`data_files`, opened and checked against its entry.

        Only the manifest's own entries are opened (their paths obey the manifest's path
        rule, :func:`~kibble.schemas.layout.file_entries`), and only a regular file reached
        through real folders (:func:`~kibble.schemas.layout.dataset_file`, checked before
        ``open()``: a FIFO would block it, a link lead out of the dataset).
        """
        if not isinstance(entry, dict) or entry not in self.files:
            raise KibbleError(
                f"{entry!r:.120} is not a file entry of the manifest of {self.location}; "
                "open one of its data_files()"
            )
        dataset_file(self.location, entry["path"])
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
