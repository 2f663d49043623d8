"""Continuous values <-> tokens: mu-law companding, 1024 uniform bins, offset 32000.

Encoding (docs/format.md section 3), in float64, elementwise over any array shape::

    v = sign(x) * ln(1 + mu*|x|) / ln(1 + M*mu)       (mu-law; skipped when mu_law=False)
    v = clip(v, -1, 1)
    i = clip(floor((v + 1) / 2 * 1024), 0, 1023)
    token = 32000 + i

Decoding takes the bin centre ``c = (i + 0.5) / 512 - 1`` and, with mu-law, inverts it:
``sign(c) * ((1 + M*mu)**|c| - 1) / mu``.

The encoder is the hot path of every pipeline, so it works in cache-sized chunks
with in-place ufuncs (no temporaries), and uses only transformations that leave
the float64 result bit-identical to the formula above: ``(v + 1) / 2 * 1024`` is
``(v + 1) * 512`` exactly (power-of-two scaling), ``sign(x) * y`` is
``copysign(y, x)`` for ``y >= 0``, and clipping ``v`` before the floor gives the
same bin as clipping the bin index after it. ``benchmarks/tokenizer.py`` checks
the result against the literal formula.

>>> continuous_to_tokens([0.0, 1.0, -3.0, 256.0]).tolist()
[32512, 32744, 32224, 33023]
>>> continuous_to_tokens([0.3, -1.0, 1.0], mu_law=False).tolist()
[32665, 32000, 33023]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kibble.errors import TokenizeError
from kibble.tokenize.vocab import (
    CONTINUOUS_OFFSET,
    MU_LAW_DENOMINATOR,
    MU_LAW_M,
    MU_LAW_MU,
    NUM_CONTINUOUS_BINS,
)

# 64K float64 values (512 KiB) a chunk: measured on the 2-core dev machine, 1 << 15
# gave 82-86M values/s and 1 << 16 .. 1 << 18 gave 110-115M/s; smaller chunks pay
# per-ufunc-call overhead, much larger ones stream every pass through memory.
_CHUNK = 1 << 16
_HALF_BINS = NUM_CONTINUOUS_BINS / 2  # 512.0


def _as_numeric(x: ArrayLike) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TokenizeError(f"expected a numeric array to tokenize, got dtype {arr.dtype}")
    return arr


def _raise_on_nan(x: np.ndarray, what: str) -> None:
    nan = np.isnan(x)
    if nan.any():
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(nan)), x.shape))
        raise TokenizeError(
            f"cannot tokenize NaN: {what} has NaN at index {where} (shape {x.shape}); "
            "NaN must be rejected by validation before tokenization"
        )


def continuous_to_tokens(x: ArrayLike, mu_law: bool = True) -> NDArray[np.int32]:
    """Tokenize continuous values; returns int32 tokens in ``[32000, 33024)``, same shape.

    ``mu_law=True`` is the observation encoding; ``mu_law=False`` bins values that are
    already in ``[-1, 1]`` (bounded actions after rescaling). NaN raises
    :class:`~kibble.errors.TokenizeError` naming the first NaN's index; +-inf go to the
    end bins, as the clip in the formula implies.
    """
    arr = _as_numeric(x)
    flat = np.ascontiguousarray(arr).reshape(-1)  # row-major
    out = np.empty(flat.shape, dtype=np.int32)
    n = flat.size
    buf = np.empty(min(n, _CHUNK), dtype=np.float64)
    sign_src = np.empty_like(buf) if mu_law else None
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            a = buf[: stop - start]
            np.copyto(a, flat[start:stop], casting="unsafe")  # float64, as the formula
            if mu_law:
                s = sign_src[: stop - start]
                np.copyto(s, a)
                np.abs(a, out=a)
                np.multiply(a, MU_LAW_MU, out=a)
                np.add(a, 1.0, out=a)
                np.log(a, out=a)
                np.divide(a, MU_LAW_DENOMINATOR, out=a)
                np.copysign(a, s, out=a)
            np.add(a, 1.0, out=a)
            np.multiply(a, _HALF_BINS, out=a)
            np.floor(a, out=a)
            np.minimum(a, NUM_CONTINUOUS_BINS - 1, out=a)  # NaN propagates through both
            np.maximum(a, 0.0, out=a)
            np.add(a, CONTINUOUS_OFFSET, out=a)
            np.copyto(out[start:stop], a, casting="unsafe")
    # A NaN casts to INT_MIN (x86) or 0 (ARM): either way below the offset.
    if n and out.min() < CONTINUOUS_OFFSET:
        _raise_on_nan(arr.astype(np.float64, copy=False), "the input")
    return out.reshape(arr.shape)


def reference_continuous_to_tokens(x: ArrayLike, mu_law: bool = True) -> NDArray[np.int64]:
    """docs/format.md section 3 transcribed literally in float64: slow, for tests and benchmarks.

    :func:`continuous_to_tokens` must agree with it bit for bit on every input.
    """
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):  # |x| near float64 max: mu*|x| is inf, F(x) is 1
        v = np.sign(x) * np.log(1 + MU_LAW_MU * np.abs(x)) / MU_LAW_DENOMINATOR if mu_law else x
    v = np.clip(v, -1, 1)
    i = np.clip(np.floor((v + 1) / 2 * NUM_CONTINUOUS_BINS), 0, NUM_CONTINUOUS_BINS - 1)
    return CONTINUOUS_OFFSET + i.astype(np.int64)


def tokens_to_continuous(tokens: ArrayLike, mu_law: bool = True) -> NDArray[np.float64]:
    """Inverse of :func:`continuous_to_tokens`: each token becomes its bin centre (float64)."""
    t = np.asarray(tokens)
    if t.dtype.kind not in "iu":
        raise TokenizeError(f"expected integer tokens, got dtype {t.dtype}")
    if t.size and (
        t.min() < CONTINUOUS_OFFSET or t.max() >= CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS
    ):
        bad = t[(t < CONTINUOUS_OFFSET) | (t >= CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS)]
        raise TokenizeError(
            f"continuous tokens must be in [{CONTINUOUS_OFFSET}, "
            f"{CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS}), got {int(bad.flat[0])}"
        )
    c = (t.astype(np.float64) - CONTINUOUS_OFFSET + 0.5) / _HALF_BINS - 1.0
    if not mu_law:
        return c
    return np.sign(c) * ((1.0 + MU_LAW_M * MU_LAW_MU) ** np.abs(c) - 1.0) / MU_LAW_MU


def finite_width(low: ArrayLike, high: ArrayLike) -> NDArray[np.bool_]:
    """Per element: are both bounds finite and ``high - low`` finite in float64?

    Bounds such as +-1e308 are finite but their width overflows; the linear rescale
    cannot bin them, so :mod:`kibble.tokenize.codecs` treats such a Box as unbounded.
    """
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.isfinite(hi - lo) & np.isfinite(lo) & np.isfinite(hi)


def bounded_to_tokens(x: ArrayLike, low: ArrayLike, high: ArrayLike) -> NDArray[np.int32]:
    """Tokenize values of a bounded Box: rescale ``[low, high] -> [-1, 1]``, bin, no mu-law.

    A zero-width element (``low == high``, which Gymnasium allows) has one legal value:
    it always gets the middle bin (token 32512, the bin of ``v = 0``, the interval's
    centre) and decodes to that constant. Bounds must have a finite width
    (:func:`finite_width`); others raise :class:`~kibble.errors.TokenizeError`.
    """
    arr = _as_numeric(x).astype(np.float64, copy=False)
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    ok = finite_width(lo, hi)
    if not ok.all():
        j = tuple(int(i) for i in np.argwhere(~ok)[0]) if ok.ndim else ()
        lo_j, hi_j = (b[j] for b in np.broadcast_arrays(lo, hi))
        raise TokenizeError(
            f"cannot rescale to bounds [{lo_j}, {hi_j}] at element {j}: the bounds must be "
            "finite and their width high - low finite in float64; tokenize such values as "
            "unbounded (mu-law), as the per-space codecs do"
        )
    width = hi - lo
    zero = width == 0
    if not zero.any():  # the formula of docs/format.md section 3, untouched
        return continuous_to_tokens(2.0 * (arr - lo) / width - 1.0, mu_law=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = 2.0 * (arr - lo) / width - 1.0
    # 0/0 would be NaN: the one value of a zero-width element is the middle bin. A NaN
    # input stays NaN, so continuous_to_tokens still refuses it.
    v = np.where(zero & ~np.isnan(arr), 0.0, v)
    return continuous_to_tokens(v, mu_law=False)


def tokens_to_bounded(tokens: ArrayLike, low: ArrayLike, high: ArrayLike) -> NDArray[np.float64]:
    """Inverse of :func:`bounded_to_tokens`: within half a bin, ``(high - low) / 2048``.

    A zero-width element decodes to its constant whatever the token."""
    c = tokens_to_continuous(tokens, mu_law=False)
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    return lo + (c + 1.0) / 2.0 * (hi - lo)
