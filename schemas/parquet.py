"""Writing and reading kibble Parquet files: compressed, sized row groups, atomic.

Files are written under a temporary name next to the destination and moved into
place when complete, so a killed job never leaves a partial file under the final
name. Paths may be local or any URL pyarrow's filesystems reach (``gs://``, ``s3://``);
on object stores the final move is a copy, which still never exposes a partial
object under the final name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import uuid
from types import TracebackType

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kibble.errors import KibbleError
from kibble.schemas.arrow import METADATA_VERSION, SCHEMA_VERSION

log = logging.getLogger(__name__)

COMPRESSION = "zstd"
# About 1 MiB of uncompressed data per row group: small enough that reading one
# training window decodes little, large enough that per-group overhead is noise.
TARGET_ROW_GROUP_BYTES = 1 << 20
# Never fewer rows than one training window spans, so a window never needs more
# than two row groups.
WINDOW_TOKENS = 1024  # Gato's context length (docs/format.md section 12)
MAX_ROW_GROUP_ROWS = 1 << 16
# Columns whose values rarely repeat: dictionary encoding would only cost time.
_NO_DICTIONARY = {"images", "observation", "action", "reward", "texts"}
# Raw value columns (docs/format.md section 8) whose encoding each file picks from its
# first rows: byte-stream-split for float state (float32 values in float64 leave four
# zero byte streams that zstd removes; dmc, CartPole), dictionary for small integers
# (BabyAI's grid), plain where whole values repeat at a distance (Meta-World's
# observation repeats the previous frame's). Measured in benchmarks/raw_values_size.py.
RAW_FLOAT_COLUMNS = ("observation", "action")
ENCODINGS = ("plain", "byte_stream_split", "dictionary")
_SAMPLE_ROWS = 2048
# Texts (a mission on every step of an episode) repeat: always a dictionary.
_TEXT_COLUMNS = ("texts",)


def leaf_column(name: str) -> str:
    """The Parquet path of a list column's values (``observation.list.element``): where
    per-column encodings of list columns apply (the top-level name does not reach them)."""
    return f"{name}.list.element"


def _encoded_size(column: pa.ChunkedArray | pa.Array, encoding: str) -> int:
    buffer = io.BytesIO()
    pq.write_table(
        pa.table({"c": column}),
        buffer,
        compression=COMPRESSION,
        use_dictionary=encoding == "dictionary",
        use_byte_stream_split=encoding == "byte_stream_split",
    )
    return buffer.tell()


def choose_encodings(table: pa.Table) -> dict[str, str]:
    """Per raw value column of ``table``: the smallest of :data:`ENCODINGS` on its first
    rows (``plain`` for a column without values, e.g. written with ``raw_values: false``)."""
    sample = table.slice(0, _SAMPLE_ROWS)
    out = {}
    for name in RAW_FLOAT_COLUMNS:
        if name not in sample.column_names:
            continue
        column = sample[name]
        if not pc.sum(pc.list_value_length(column)).as_py():
            out[name] = "plain"
            continue
        out[name] = min(ENCODINGS, key=lambda e: _encoded_size(column, e))
    return out


def rows_per_group(bytes_per_row: float, tokens_per_row: int = 1) -> int:
    """Rows per row group for rows of this (uncompressed, in-memory) size.

    >>> rows_per_group(60, tokens_per_row=6)  # CartPole: 4 obs + separator + 1 action
    17476
    >>> rows_per_group(27_700, tokens_per_row=38)  # 96x96 RGB Atari: 36 patches + 2
    37
    """
    window_rows = -(-WINDOW_TOKENS // max(tokens_per_row, 1))
    rows = int(TARGET_ROW_GROUP_BYTES / max(bytes_per_row, 1.0))
    return max(window_rows, min(MAX_ROW_GROUP_ROWS, rows))


def _tokens_per_row(table: pa.Table) -> int:
    """Sequence positions per timestep row; 1 for tables without token counts (raw)."""
    if "n_observation_tokens" not in table.column_names or not table.num_rows:
        return 1
    return (
        int(table["n_observation_tokens"][0].as_py()) + 1 + int(table["n_action_tokens"][0].as_py())
    )


GCS_RETRY_SECONDS = 20
"""How long a gs:// request is retried before its error is reported (pyarrow: 15 min)."""


def filesystem_and_path(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of a local path or URL, and the path on it.

    An unknown scheme, or a filesystem pyarrow cannot set up here (no libhdfs, a
    malformed URL), is a KibbleError naming the URL.
    """
    path = os.fspath(path)
    if "://" not in path:
        return pafs.LocalFileSystem(), os.path.abspath(path)
    uri = path
    if uri.split("://", 1)[0] in ("gs", "gcs") and "retry_limit_seconds=" not in uri:
        # Google Cloud Storage retries a failing request for 15 minutes by default: with
        # no network, a command would print nothing for that long. A URL may set its own.
        uri += ("&" if "?" in uri else "?") + f"retry_limit_seconds={GCS_RETRY_SECONDS}"
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as e:  # pyarrow.ArrowInvalid is a ValueError
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise KibbleError(
            f"cannot use {path}: {reason}. kibble reads and writes local paths and the URLs "
            "pyarrow's filesystems reach: gs://BUCKET/..., s3://BUCKET/..., abfs://..., "
            "hdfs://... (with libhdfs), file:///ABSOLUTE/PATH"
        ) from e


class EpisodeFileWriter:
    """Streams episode tables into one Parquet file; row groups of whole target size.

    Episodes are buffered until a row group's worth of rows is there, so many short
    episodes share a row group and a long one spans several. Use as a context
    manager: the file appears under its final name only on a clean exit.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema) -> None:
        self.fs, self.path = filesystem_and_path(path)
        parent = os.path.dirname(self.path)
        self.fs.create_dir(parent, recursive=True)
        self._tmp = os.path.join(parent, f".{os.path.basename(self.path)}.{uuid.uuid4().hex}.tmp")
        self.schema = schema
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._group_rows: int | None = None
        self.num_rows = 0

    def __enter__(self) -> EpisodeFileWriter:
        return self

    def _open(self, first_rows: pa.Table) -> None:
        """Start the file, its raw value columns' encodings chosen from its first rows."""
        dictionary = [f.name for f in self.schema if f.name not in _NO_DICTIONARY]
        dictionary += [leaf_column(n) for n in _TEXT_COLUMNS if n in self.schema.names]
        self.encodings = choose_encodings(first_rows)
        split = []
        for name, encoding in self.encodings.items():
            if encoding == "dictionary":
                dictionary.append(leaf_column(name))
            elif encoding == "byte_stream_split":
                split.append(leaf_column(name))
        self._writer = pq.ParquetWriter(
            self._tmp,
            self.schema,
            filesystem=self.fs,
            compression=COMPRESSION,
            use_dictionary=dictionary,
            use_byte_stream_split=split or False,
            write_statistics=True,
        )

    def write(self, table: pa.Table) -> None:
        """Append one episode's rows (a table of this writer's schema)."""
        if not table.schema.equals(self.schema, check_metadata=False):
            raise ValueError(f"table schema does not match the file's:\n{table.schema}")
        if self._group_rows is None and table.num_rows:
            self._group_rows = rows_per_group(table.nbytes / table.num_rows, _tokens_per_row(table))
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.num_rows += table.num_rows
        if self._group_rows and self._pending_rows >= self._group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        if self._writer is None:
            self._open(table)
        n = self._group_rows or MAX_ROW_GROUP_ROWS
        full = table.num_rows if final else (table.num_rows // n) * n
        if full:
            self._writer.write_table(table.slice(0, full), row_group_size=n)
        rest = table.slice(full)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            try:
                if exc_type is None:
                    self._flush(final=True)
                    if self._writer is None:  # no rows: an empty file of the schema
                        self._open(self.schema.empty_table())
            finally:
                if self._writer is not None:
                    self._writer.close()
            if exc_type is None:
                self.fs.move(self._tmp, self.path)
                log.debug("wrote %s (%d rows)", self.path, self.num_rows)
                return
        except BaseException:
            self._delete_tmp()
            raise
        self._delete_tmp()

    def _delete_tmp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self._tmp)


def write_episode_tables(
    path: str | os.PathLike, tables: list[pa.Table] | pa.Table, schema: pa.Schema
) -> int:
    """Write episode tables to one Parquet file atomically; returns the row count."""
    with EpisodeFileWriter(path, schema) as writer:
        for table in [tables] if isinstance(tables, pa.Table) else tables:
            writer.write(table)
    return writer.num_rows


def read_schema_version(path: str | os.PathLike) -> str | None:
    """The ``kibble.schema_version`` in a Parquet file's metadata (footer only)."""
    fs, p = filesystem_and_path(path)
    metadata = pq.read_schema(p, filesystem=fs).metadata or {}
    version = metadata.get(METADATA_VERSION)
    return version.decode() if version is not None else None


__all__ = [
    "COMPRESSION",
    "ENCODINGS",
    "SCHEMA_VERSION",
    "EpisodeFileWriter",
    "choose_encodings",
    "filesystem_and_path",
    "leaf_column",
    "read_schema_version",
    "rows_per_group",
    "write_episode_tables",
]
