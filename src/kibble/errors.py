"""Errors that mean "the input was wrong", as opposed to a bug in kibble.

The command line prints these as one paragraph and exits non-zero, without a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class KibbleError(Exception):
    """A user-facing error: the message says what was wrong and what to do."""


class TokenizeError(KibbleError, ValueError):
    """A value cannot be tokenized (NaN, out of range, unsupported space)."""


class SchemaError(KibbleError, ValueError):
    """A Parquet file or table does not match a kibble schema."""
