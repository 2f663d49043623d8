"""Check a Parquet file (or a table's schema) against a kibble schema, exactly.

``validate_file`` reads only the footer and returns every mismatch, each naming
the column (or metadata key), the expected type and the type found; an empty list
means the file matches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from kibble.errors import SchemaError
from kibble.schemas.arrow import METADATA_SCHEMA, METADATA_VERSION, SCHEMA_VERSION, SCHEMAS
from kibble.schemas.parquet import filesystem_and_path


@dataclass(frozen=True)
class Mismatch:
    """One way a file differs from its schema."""

    column: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.column}: expected {self.expected}, found {self.found}"


def _canonical(t: pa.DataType) -> pa.DataType:
    """The type with list item fields named alike: Parquet writers call them "item",
    "element" or "array", and the name carries no meaning."""
    if pa.types.is_list(t):
        return pa.list_(_canonical(t.value_type))
    if pa.types.is_large_list(t):
        return pa.large_list(_canonical(t.value_type))
    return t


def validate_schema(found: pa.Schema, expected: pa.Schema) -> list[Mismatch]:
    """Every column (and schema metadata) of ``found`` that does not match ``expected``."""
    out: list[Mismatch] = []
    meta = found.metadata or {}
    for key, want in (expected.metadata or {}).items():
        got = meta.get(key)
        if got != want:
            out.append(
                Mismatch(
                    f"metadata {key.decode()}",
                    want.decode(),
                    got.decode() if got is not None else "nothing",
                )
            )
    for field in expected:
        if field.name not in found.names:
            out.append(Mismatch(field.name, str(field.type), "no such column"))
            continue
        got = _canonical(found.field(field.name).type)
        if not got.equals(field.type):
            out.append(Mismatch(field.name, str(field.type), str(got)))
    for name in found.names:
        if name not in expected.names:
            out.append(Mismatch(name, "no such column", str(_canonical(found.field(name).type))))
    return out


def validate_file(path: str | os.PathLike, schema: pa.Schema | None = None) -> list[Mismatch]:
    """Compare a Parquet file's schema with ``schema`` (default: the one its metadata names).

    Raises :class:`~kibble.errors.SchemaError` when the file cannot be read as Parquet
    or names no kibble schema and none is given.
    """
    fs, p = filesystem_and_path(path)
    try:
        found = pq.read_schema(p, filesystem=fs)
    except (OSError, pa.ArrowInvalid) as e:
        raise SchemaError(f"{os.fspath(path)} is not a readable Parquet file: {e}") from e
    if schema is None:
        name = (found.metadata or {}).get(METADATA_SCHEMA, b"").decode()
        if name not in SCHEMAS:
            raise SchemaError(
                f"{os.fspath(path)} names no kibble schema in its metadata "
                f"({METADATA_SCHEMA.decode()}={name!r}); kibble writes "
                f"{', '.join(sorted(SCHEMAS))}, version {SCHEMA_VERSION}"
            )
        schema = SCHEMAS[name]
    return validate_schema(found, schema)


def check_file(path: str | os.PathLike, schema: pa.Schema | None = None) -> None:
    """Like :func:`validate_file`, raising one :class:`SchemaError` listing every mismatch."""
    mismatches = validate_file(path, schema)
    if mismatches:
        listing = "; ".join(str(m) for m in mismatches)
        raise SchemaError(
            f"{os.fspath(path)} does not match kibble schema version {SCHEMA_VERSION}: {listing}"
        )


__all__ = ["METADATA_VERSION", "Mismatch", "check_file", "validate_file", "validate_schema"]
