"""What each column of kibble's Parquet files means, and a schema as a table of columns.

The dataset card (a dataset's README.md) and ``kibble inspect`` take column names and
types from the Arrow schemas in ``kibble.schemas.arrow`` and the meaning from
:data:`COLUMN_DOCS`, so what they print cannot drift from the files. A column added to
a schema without an entry here fails tests/schemas/test_columns.py.
docs/format.md section 8 is the reference these sentences summarise.
"""

from __future__ import annotations

import pyarrow as pa

COLUMN_DOCS: dict[str, str] = {
    "task": "task id, `family/name` (e.g. `gym/CartPole-v1`)",
    "episode_id": "`<task>#s<seed>#<index>`: unique in the dataset, the same on every rerun",
    "episode_return": "the episode's return (sum of rewards); in `rejected`, NaN when not finite",
    "episode_length": "the episode's number of timesteps",
    "step": "0-based index of this timestep in its episode (rows of an episode are in order)",
    "observation": (
        "the raw observation the agent saw: every leaf that is neither an image nor text, "
        "flattened row-major, leaf after leaf in token order, as float64 (the manifest's "
        "`observation_space` says where each leaf is)"
    ),
    "action": "the raw action taken, flattened like `observation` (see `action_space`)",
    "texts": "the observation's text leaves (e.g. a BabyAI mission), in leaf order",
    "observation_tokens": "the step's `n` observation tokens, one placeholder per image patch",
    "action_tokens": "the step's `m` action tokens",
    "n_observation_tokens": "`n`, the same on every row of a task",
    "n_action_tokens": "`m`, the same on every row of a task",
    "token_offset": (
        "position of this step's first token in the episode's token stream: "
        "`step * (n + 1 + m)` (one separator token between observation and action)"
    ),
    "reward": "reward after this step's action, raw (not a token)",
    "terminated": "the episode ended here, as Gymnasium reports it",
    "truncated": "the episode was cut here by a time limit, as Gymnasium reports it",
    "images": (
        "one entry per image leaf: uint8 pixels, row-major H x W x C, padded to "
        "multiples of 16; empty list without images"
    ),
    "image_shapes": "`[H, W, C]` of each entry of `images` (padded sizes)",
    "reason": "why the episode was not kept: `below_threshold` or a validation code",
    "detail": "where or why, for people (e.g. `return 11 < threshold 28.8`)",
}
"""Column name -> one sentence on its meaning, for every column of every schema."""


def type_name(data_type: pa.DataType) -> str:
    """An Arrow type as docs/format.md writes it: ``list<list<int32>>``, ``string``."""
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return f"list<{type_name(data_type.value_type)}>"
    if pa.types.is_boolean(data_type):
        return "bool"
    if pa.types.is_floating(data_type):  # Arrow prints float64 as "double"
        return f"float{data_type.bit_width}"
    return str(data_type)


def describe(schema: pa.Schema) -> list[tuple[str, str, str]]:
    """``(name, type, meaning)`` of each column of ``schema``, in the schema's order."""
    return [(f.name, type_name(f.type), COLUMN_DOCS.get(f.name, "(not described)")) for f in schema]


def markdown_table(schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` as the lines of a Markdown table."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for name, kind, doc in describe(schema):
        lines.append(f"| `{name}` | `{kind}` | {doc} |")
    return lines
