"""Explicit pyarrow schemas (versioned) and record <-> Arrow table conversions.

Row layout: one row per timestep
--------------------------------
Both schemas store one row per step, rows of an episode contiguous and in step
order, and an episode never split across files. Per-episode columns (``task``,
``episode_id``, ``episode_return``, ``episode_length``) repeat on every row; Parquet's
dictionary and run-length encoding store each run once, so repetition costs almost
nothing on disk, and every row stands alone for DuckDB, polars or ``datasets``.

Why not one row per episode with list columns: Parquet cannot read part of a value,
so a trainer sampling a 1024-token window from an Atari episode of thousands of
frames would decode the whole episode. With a row per timestep the trainer reads
the small columns ``episode_id``, ``step``, ``token_offset`` of a file once (an index),
picks a window at a timestep boundary, and reads only the row groups that hold it
(``ParquetFile.read_row_groups``), only the columns it needs.

Tokenized rows carry ``n_observation_tokens``, ``n_action_tokens`` and
``token_offset`` (the position of the step's first token in the episode's stream,
``sum over earlier steps of n_obs + 1 + n_act``) so windows can be cut at timestep
boundaries without reading tokens. Observation tokens include one ``IMAGE_PATCH``
placeholder per 16x16 patch; the pixels are in ``images`` (uint8 bytes, one entry per
image leaf, ``image_shapes`` gives each H, W, C, padded to multiples of 16).

Raw values: kept rows also store the step's raw observation and action
(``observation``, ``action``: list<float64>, the non-image, non-text leaves flattened in
token order; ``texts``: list<string>, the text leaves), so tokens can be recomputed
from them bit for bit; the manifest describes the spaces that give them back their
dtypes and shapes (``kibble.schemas.raw_values``). Written without raw values
(``raw_values: false``) the three columns hold empty lists: one schema for every file.

Row-group sizing: see ``kibble.schemas.parquet.rows_per_group``: row groups hold
about 1 MiB of uncompressed data, so a window touches at most a couple of them
(CartPole: tens of thousands of rows a group; RGB Atari: tens of frames), never
less than a full window's worth of rows.

Schema version
--------------
``SCHEMA_VERSION`` is written into every file's metadata (``kibble.schema_version``)
with the schema's name (``kibble.schema``). Change it whenever a column changes.
Version 2 added the raw value columns (``observation``, ``action``, ``texts``) to the
tokenized schema; files of version 1 are refused (docs/format.md section 11).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from gymnasium import spaces

from kibble.errors import SchemaError
from kibble.schemas.records import Episode, RawSteps, TokenizedEpisode
from kibble.tokenize.codecs import ImageCodec, get_leaf, leaf_codecs

SCHEMA_VERSION = "2"
METADATA_SCHEMA = b"kibble.schema"
METADATA_VERSION = b"kibble.schema_version"

RAW_EPISODE = "raw_episode"
TOKENIZED_EPISODE = "tokenized_episode"

_EPISODE_FIELDS = [
    pa.field("task", pa.string(), nullable=False),
    pa.field("episode_id", pa.string(), nullable=False),
    pa.field("episode_return", pa.float64(), nullable=False),
    pa.field("episode_length", pa.int32(), nullable=False),
    pa.field("step", pa.int32(), nullable=False),
]
_STEP_FIELDS = [
    pa.field("reward", pa.float64(), nullable=False),
    pa.field("terminated", pa.bool_(), nullable=False),
    pa.field("truncated", pa.bool_(), nullable=False),
    pa.field("images", pa.list_(pa.binary()), nullable=False),
    pa.field("image_shapes", pa.list_(pa.list_(pa.int32())), nullable=False),
]


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={METADATA_SCHEMA: name, METADATA_VERSION: SCHEMA_VERSION})


RAW_EPISODE_SCHEMA = _schema(
    RAW_EPISODE,
    [
        *_EPISODE_FIELDS,
        # Non-image observation leaves, flattened row-major, in token order.
        pa.field("observation", pa.list_(pa.float64()), nullable=False),
        pa.field("action", pa.list_(pa.float64()), nullable=False),
        *_STEP_FIELDS,
    ],
)

TOKENIZED_EPISODE_SCHEMA = _schema(
    TOKENIZED_EPISODE,
    [
        *_EPISODE_FIELDS,
        pa.field("observation_tokens", pa.list_(pa.int32()), nullable=False),
        pa.field("action_tokens", pa.list_(pa.int32()), nullable=False),
        pa.field("n_observation_tokens", pa.int32(), nullable=False),
        pa.field("n_action_tokens", pa.int32(), nullable=False),
        pa.field("token_offset", pa.int64(), nullable=False),
        *_STEP_FIELDS,
        # Raw values (docs/format.md section 8): empty lists when written without them.
        pa.field("observation", pa.list_(pa.float64()), nullable=False),
        pa.field("action", pa.list_(pa.float64()), nullable=False),
        pa.field("texts", pa.list_(pa.string()), nullable=False),
    ],
)

RAW_VALUE_COLUMNS = ("observation", "action", "texts")
"""The tokenized schema's raw value columns (with ``images``, which the tokens need too)."""

REJECTED_EPISODE = "rejected_episode"

# One row per episode that was not kept: invalid (validation) or below the threshold.
REJECTED_EPISODE_SCHEMA = _schema(
    REJECTED_EPISODE,
    [
        pa.field("task", pa.string(), nullable=False),
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("episode_return", pa.float64(), nullable=False),  # NaN if not finite
        pa.field("episode_length", pa.int32(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
    ],
)

SCHEMAS = {
    RAW_EPISODE: RAW_EPISODE_SCHEMA,
    TOKENIZED_EPISODE: TOKENIZED_EPISODE_SCHEMA,
    REJECTED_EPISODE: REJECTED_EPISODE_SCHEMA,
}


# -- building columns from numpy without a Python loop per value ---------------------


def _list_column(values: np.ndarray, item: pa.DataType) -> pa.ListArray:
    """(T, n) array -> list<item> column of T rows of n values."""
    t, n = values.shape
    offsets = pa.array(np.arange(t + 1, dtype=np.int32) * n)
    return pa.ListArray.from_arrays(
        offsets, pa.array(np.ascontiguousarray(values).reshape(-1), item)
    )


def _images_columns(images: Sequence[np.ndarray], t: int) -> tuple[pa.Array, pa.Array]:
    """K arrays (T, H, W, C) uint8 -> ``images`` (list<binary>) and ``image_shapes`` columns."""
    k = len(images)
    # Row-major bytes of step 0's K images, then step 1's, ...: (T, K) binary values.
    frames = [np.ascontiguousarray(img).reshape(t, -1) for img in images]
    sizes = np.array([f.shape[1] for f in frames], dtype=np.int64)
    data = np.concatenate(frames, axis=1).reshape(-1) if k else np.zeros(0, np.uint8)
    if data.size >= 2**31:  # binary offsets are int32
        raise SchemaError(
            f"an episode of {t} steps holds {data.size / 2**30:.1f} GiB of pixels; kibble's "
            "image column takes up to 2 GiB per episode: downscale frames or cut episodes"
        )
    value_offsets = np.concatenate([[0], np.cumsum(np.tile(sizes, t))]).astype(np.int32)
    binaries = pa.BinaryArray.from_buffers(
        pa.binary(), t * k, [None, pa.py_buffer(value_offsets), pa.py_buffer(data)]
    )
    row_offsets = pa.array(np.arange(t + 1, dtype=np.int32) * k)
    # Every image is (H, W, C): 3 ints per image, the K shapes repeated for each step.
    shape_values = np.tile(np.array([img.shape[1:] for img in images], np.int32).reshape(-1), t)
    shapes = pa.ListArray.from_arrays(
        pa.array(np.arange(t * k + 1, dtype=np.int32) * 3), pa.array(shape_values, pa.int32())
    )
    return (
        pa.ListArray.from_arrays(row_offsets, binaries),
        pa.ListArray.from_arrays(row_offsets, shapes),
    )


def _episode_columns(task: str, episode_id: str, episode_return: float, t: int) -> dict:
    return {
        "task": pa.repeat(pa.scalar(task, pa.string()), t),
        "episode_id": pa.repeat(pa.scalar(episode_id, pa.string()), t),
        "episode_return": pa.array(np.full(t, episode_return, np.float64)),
        "episode_length": pa.array(np.full(t, t, np.int32)),
        "step": pa.array(np.arange(t, dtype=np.int32)),
    }


def _step_columns(rewards: Any, terminated: Any, truncated: Any, images: list, t: int) -> dict:
    images_col, shapes_col = _images_columns(images, t)
    return {
        "reward": pa.array(np.asarray(rewards, np.float64)),
        "terminated": pa.array(np.asarray(terminated, bool)),
        "truncated": pa.array(np.asarray(truncated, bool)),
        "images": images_col,
        "image_shapes": shapes_col,
    }


def _raw_columns(raw: RawSteps | None, t: int) -> dict:
    """The raw value columns: T rows of the values, or T empty lists without them."""
    if raw is None:
        empty = np.zeros((t, 0), np.float64)
        return {
            "observation": _list_column(empty, pa.float64()),
            "action": _list_column(empty, pa.float64()),
            "texts": _list_column(np.empty((t, 0), object), pa.string()),
        }
    if not len(raw.observation) == len(raw.action) == len(raw.texts) == t:
        raise ValueError(f"raw values of {len(raw.observation)} steps for {t} steps of tokens")
    return {
        "observation": _list_column(raw.observation, pa.float64()),
        "action": _list_column(raw.action, pa.float64()),
        "texts": _list_column(raw.texts, pa.string()),
    }


def tokenized_episode_to_table(episode: TokenizedEpisode) -> pa.Table:
    """A tokenized episode -> T rows of ``TOKENIZED_EPISODE_SCHEMA``."""
    s = episode.steps
    t = len(s)
    n_obs, n_act = s.observation_tokens.shape[1], s.action_tokens.shape[1]
    columns = {
        **_episode_columns(episode.task, episode.episode_id, episode.episode_return, t),
        "observation_tokens": _list_column(s.observation_tokens, pa.int32()),
        "action_tokens": _list_column(s.action_tokens, pa.int32()),
        "n_observation_tokens": pa.array(np.full(t, n_obs, np.int32)),
        "n_action_tokens": pa.array(np.full(t, n_act, np.int32)),
        "token_offset": pa.array(np.arange(t, dtype=np.int64) * (n_obs + 1 + n_act)),
        **_step_columns(episode.rewards, episode.terminated, episode.truncated, s.images, t),
        **_raw_columns(episode.raw, t),
    }
    return pa.Table.from_pydict(columns, schema=TOKENIZED_EPISODE_SCHEMA)


def _flat_leaves(value: Any, space: spaces.Space, role: str) -> tuple[np.ndarray, list]:
    """Non-image leaves flattened to (T, n) float64 in token order, and the image leaves."""
    flat, images = [], []
    for leaf in leaf_codecs(space, role):
        arr = np.asarray(get_leaf(value, leaf.path))
        if isinstance(leaf, ImageCodec):
            images.append(arr if arr.ndim == 4 else arr[..., None])
        else:
            flat.append(arr.reshape(len(arr), -1).astype(np.float64))
    return (np.concatenate(flat, axis=1) if flat else None), images


def raw_episode_to_table(
    episode: Episode, observation_space: spaces.Space, action_space: spaces.Space
) -> pa.Table:
    """A raw episode -> T rows of ``RAW_EPISODE_SCHEMA`` (images unpadded)."""
    t = episode.length
    obs, images = _flat_leaves(episode.observations, observation_space, "observation")
    act, _ = _flat_leaves(episode.actions, action_space, "action")
    obs = obs if obs is not None else np.zeros((t, 0))
    act = act if act is not None else np.zeros((t, 0))
    columns = {
        **_episode_columns(episode.task, episode.episode_id, episode.episode_return, t),
        "observation": _list_column(obs, pa.float64()),
        "action": _list_column(act, pa.float64()),
        **_step_columns(episode.rewards, episode.terminated, episode.truncated, images, t),
    }
    return pa.Table.from_pydict(columns, schema=RAW_EPISODE_SCHEMA)


def list_column_to_numpy(column: pa.ChunkedArray | pa.Array, dtype: Any = None) -> np.ndarray:
    """A list column whose rows all have n values -> (rows, n) numpy array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
    n = int(lengths[0]) if len(lengths) else 0
    if len(lengths) and not np.all(lengths == n):
        raise ValueError("rows have different numbers of values; cannot make a 2-D array")
    values = arr.flatten().to_numpy(zero_copy_only=False)
    if dtype is not None:
        values = values.astype(dtype, copy=False)
    return values.reshape(len(arr), n)
