"""Cheap checks that a data file is what its manifest and the token vocabulary say.

The dataset reader (:mod:`kibble.schemas.reader`) calls its ``check_footer`` when the
loader opens a file (its size and the row count in
its Parquet footer against the manifest: no hashing, so opening stays fast) and
:func:`check_group` once per row group it decodes (token ids inside the vocabulary, token
counts matching the ``n_*_tokens`` columns, one image placeholder per patch). A file
damaged after curation then stops training with an error naming the file and row group,
instead of an IndexError deep in the model or, worse, training on garbage. Only
``kibble inspect`` hashes files, so a flip that keeps every token legal is found there.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# The damaged-group error is the dataset reader's, so every reader words it alike.
from kibble.schemas.reader import damaged
from kibble.tokenize.images import num_patches
from kibble.tokenize.vocab import IMAGE_PATCH, SEPARATOR


def check_group(
    url: str,
    group: int,
    first_row: int,
    table: pa.Table,
    observations: tuple[np.ndarray, np.ndarray],
    actions: np.ndarray,
) -> None:
    """One decoded row group holds only legal tokens, in the counts its columns state.

    ``observations`` is (flat values, row offsets), ``actions`` (rows, n); ``table`` has
    the ``n_observation_tokens``, ``n_action_tokens`` and ``image_shapes`` columns. Row
    numbers in errors count from the start of the file (``first_row`` is the group's).
    """
    values, offsets = observations
    n_obs = table["n_observation_tokens"].to_numpy()
    lengths = np.diff(offsets)
    wrong = np.flatnonzero(lengths != n_obs)
    if len(wrong):
        r = int(wrong[0])
        raise damaged(
            url,
            group,
            f"row {first_row + r} has {lengths[r]} observation tokens, its "
            f"n_observation_tokens says {n_obs[r]}",
        )
    n_act = table["n_action_tokens"].to_numpy()
    wrong = np.flatnonzero(n_act != actions.shape[1])
    if len(wrong):
        r = int(wrong[0])
        raise damaged(
            url,
            group,
            f"row {first_row + r} has {actions.shape[1]} action tokens, its "
            f"n_action_tokens says {n_act[r]}",
        )
    # Observation ids: text, discrete and continuous values, or an image placeholder;
    # never the separator. Action ids: values only.
    bad = (values < 0) | ((values >= SEPARATOR) & (values != IMAGE_PATCH))
    if bad.any():
        i = int(np.argmax(bad))
        row = first_row + int(np.searchsorted(offsets, i, side="right")) - 1
        raise damaged(
            url, group, f"row {row} has observation token {values[i]}, outside the vocabulary"
        )
    bad = (actions < 0) | (actions >= SEPARATOR)
    if bad.any():
        r, c = np.unravel_index(int(np.argmax(bad)), bad.shape)
        detail = f"row {first_row + r} has action token {actions[r, c]}, outside [0, {SEPARATOR})"
        raise damaged(url, group, detail)
    shapes = table["image_shapes"].combine_chunks()
    per_row = sum(num_patches(s[0], s[1]) for s in shapes[0].as_py()) if len(shapes) else 0
    placeholders = int(np.count_nonzero(values == IMAGE_PATCH))
    if placeholders != per_row * len(table):
        raise damaged(
            url,
            group,
            f"{placeholders} image placeholders where its images have "
            f"{per_row * len(table)} patches",
        )
