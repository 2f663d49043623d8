"""Gato's episode filter (docs/format.md section 10): the expert return and the keep threshold.

The expert return of a task is the maximum, over windows of W consecutive collected
episodes, of the window's mean return, with W = max(1, min(1000, floor(0.1 * N)))
for N collected episodes. Episodes whose return is at least ``fraction`` (0.8) of
it are kept. When the expert return is not positive, a fraction of it would be a
meaningless bar, so the threshold is ``random + fraction * (expert - random)``.

>>> window_size(25), window_size(5), window_size(20_000)
(2, 1, 1000)
>>> windowed_expert_return([1.0, 3.0, 5.0, 1.0] * 5)
4.0
>>> threshold(100.0, random_return=10.0, fraction=0.8)
(80.0, 'fraction_of_expert')
>>> threshold(-50.0, random_return=-200.0, fraction=0.8)
(-80.0, 'random_plus_fraction_of_gap')
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_WINDOW = 1000
WINDOW_FRACTION = 0.1
DEFAULT_FRACTION = 0.8

FRACTION_OF_EXPERT = "fraction_of_expert"
RANDOM_PLUS_GAP = "random_plus_fraction_of_gap"


def window_size(num_episodes: int) -> int:
    """W = max(1, min(1000, floor(0.1 * N)))."""
    return max(1, min(MAX_WINDOW, int(np.floor(WINDOW_FRACTION * num_episodes))))


def windowed_expert_return(returns_in_collection_order: Sequence[float]) -> float:
    """Max over windows of W consecutive episodes of the window's mean return."""
    r = np.asarray(returns_in_collection_order, np.float64)
    if r.size == 0:
        raise ValueError("no episodes to compute an expert return from")
    w = window_size(r.size)
    sums = np.convolve(r, np.ones(w), mode="valid")  # (N - W + 1,) window sums
    return float(sums.max() / w)


def threshold(
    expert_return: float, random_return: float | None, fraction: float = DEFAULT_FRACTION
) -> tuple[float, str]:
    """(threshold, rule): ``fraction * expert``, or the random-relative rule when
    the expert return is not positive (random return 0 if unknown)."""
    if expert_return > 0:
        return fraction * expert_return, FRACTION_OF_EXPERT
    base = 0.0 if random_return is None else random_return
    return base + fraction * (expert_return - base), RANDOM_PLUS_GAP
