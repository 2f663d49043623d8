"""One kept-episode data file, opened and checked: :class:`DataFile`, and what a damaged
file's errors say.

Opening checks the file's schema version and columns (docs/format.md sections 8 and 11)
and, given its manifest entry, its size and footer row count (no hashing: opening stays
fast; ``kibble inspect`` hashes). :meth:`DataFile.episodes` reads one row group at a time
and holds at most that group and the episode being assembled.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kibble.errors import KibbleError
from kibble.schemas.arrow import METADATA_VERSION, RAW_VALUE_COLUMNS, TOKENIZED_EPISODE_SCHEMA
from kibble.schemas.episode_record import EpisodeRecord
from kibble.schemas.layout import check_schema_version, footer_mismatches
from kibble.schemas.parquet import filesystem_and_path
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
