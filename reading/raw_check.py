"""`kibble inspect`'s cross-check of raw values against tokens: in every data file, the
first episode's raw observations and actions are tokenized again and must give its
stored tokens bit for bit (kibble writes them from the same numbers, docs/format.md
section 8). A file whose raw values or tokens were edited, and the manifest re-hashed to
match, passes every checksum; this finds it at the cost of one episode per file."""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kibble.errors import KibbleError
from kibble.schemas.raw_values import space_from_description, table_values
from kibble.tokenize.episode import EpisodeTokenizer
from kibble.tokenize.text import DEFAULT_TEXT_MODEL

EDITED = (
    "the file was changed after kibble wrote it (its checksum in the manifest too); curate "
    "the dataset again"
)


@functools.cache
def _default_model_sha() -> str:
    return hashlib.sha256(DEFAULT_TEXT_MODEL.read_bytes()).hexdigest()


def raw_value_problems(
    fs: pafs.FileSystem, base: str, manifest: dict, files: list[str]
) -> list[str]:
    """One line per data file whose first episode's raw values do not re-tokenize to its
    tokens. Tasks without raw values, or tokenized with a text model other than kibble's
    own (not at hand here), are not checked."""
    tasks = manifest.get("tasks") if isinstance(manifest, dict) else None
    if not isinstance(tasks, dict):
        return []
    tokenizers: dict[str, EpisodeTokenizer | None] = {}
    problems = []
    for rel in files:
        with fs.open_input_file(f"{base.rstrip('/')}/{rel}") as f:
            source = pq.ParquetFile(f)
            if source.num_row_groups == 0:
                continue
            rows = source.read_row_group(0)
        if rows.num_rows == 0:
            continue
        task = rows["task"][0].as_py()
        if task not in tokenizers:
            tokenizers[task] = _tokenizer(tasks.get(task))
        tokenizer = tokenizers[task]
        if tokenizer is None:
            continue
        first = rows["episode_id"][0]
        episode = rows.filter(pc.equal(rows["episode_id"], first))
        entry = tasks[task]
        try:
            obs, act = table_values(episode, entry["observation_space"], entry["action_space"])
            again = tokenizer.tokenize(obs, act)
        except (KibbleError, ValueError, KeyError, TypeError) as e:
            problems.append(
                f"{rel}: the raw values of {first.as_py()} cannot be read ({e}); {EDITED}"
            )
            continue
        stored_obs = np.array(episode["observation_tokens"].to_pylist(), np.int32)
        stored_act = np.array(episode["action_tokens"].to_pylist(), np.int32)
        same = np.array_equal(again.observation_tokens, stored_obs) and np.array_equal(
            again.action_tokens, stored_act
        )
        if not same:
            problems.append(
                f"{rel}: the raw values of {first.as_py()} do not tokenize to its stored tokens: "
                f"{EDITED}"
            )
    return problems


def _tokenizer(entry: object) -> EpisodeTokenizer | None:
    if not isinstance(entry, dict) or entry.get("raw_values") is not True:
        return None
    text_model = entry.get("text_model")
    if isinstance(text_model, dict) and text_model.get("sha256") != _default_model_sha():
        return None
    try:
        obs = space_from_description(entry["observation_space"])
        act = space_from_description(entry["action_space"])
    except (KibbleError, ValueError, KeyError, TypeError):
        return None  # the manifest's own checks report a damaged description
    return EpisodeTokenizer(obs, act)
