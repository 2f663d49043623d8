"""Discrete values <-> tokens: flattened row-major ints in ``[0, 1024)``, not shifted.

>>> discrete_to_tokens([[3, 0], [1023, 7]]).tolist()
[[3, 0], [1023, 7]]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kibble.errors import TokenizeError
from kibble.tokenize.vocab import DISCRETE_VOCAB_SIZE


def discrete_to_tokens(x: ArrayLike, what: str = "discrete values") -> NDArray[np.int32]:
    """Check that integer values lie in ``[0, 1024)`` and return them as int32 tokens."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.floor(arr)):
            raise TokenizeError(f"{what}: expected integers, got non-integer floats")
    elif arr.dtype.kind not in "iub":
        raise TokenizeError(f"{what}: expected integers, got dtype {arr.dtype}")
    _check_range(arr, what, "values")
    return arr.astype(np.int32)


def _check_range(arr: np.ndarray, what: str, noun: str) -> None:
    if arr.size and (arr.min() < 0 or arr.max() >= DISCRETE_VOCAB_SIZE):
        bad = arr[(arr < 0) | (arr >= DISCRETE_VOCAB_SIZE)].flat[0]
        raise TokenizeError(f"{what}: {noun} must be in [0, {DISCRETE_VOCAB_SIZE}), got {bad}")


def tokens_to_discrete(tokens: ArrayLike, what: str = "discrete tokens") -> NDArray[np.int64]:
    """Inverse of :func:`discrete_to_tokens` (exact)."""
    t = np.asarray(tokens)
    if t.dtype.kind not in "iu":
        raise TokenizeError(f"{what}: expected integer tokens, got dtype {t.dtype}")
    _check_range(t, what, "tokens")
    return t.astype(np.int64)
