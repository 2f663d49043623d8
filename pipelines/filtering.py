"""Gato's episode filter (docs/format.md section 10): the expert return and the keep threshold.

The expert return of a task is the maximum, over windows of W consecutive collected
episodes, of the window's mean return, with W = max(1, min(1000, floor(0.1 * N)))
for N collected episodes. Episodes whose return is at least ``fraction`` (0.8) of
it are kept. When the expert return is not positive, a fraction of it would be a
meaningless bar, so the threshold is ``base + fraction * (expert - base)``, where the
base is the random policy's return from the expert card, or without a card the lowest
valid return of the task (never 0: with base 0 a negative expert return would set the
bar above the expert's own episodes). The episodes of the best window define the
expert return, so they are always kept (:func:`best_window`).

>>> window_size(25), window_size(5), window_size(20_000)
(2, 1, 1000)
>>> windowed_expert_return([1.0, 3.0, 5.0, 1.0] * 5)
4.0
>>> threshold(100.0, random_return=10.0, fraction=0.8)
(80.0, 'fraction_of_expert')
>>> threshold(-50.0, random_return=-200.0, fraction=0.8)
(-80.0, 'random_plus_fraction_of_gap')
>>> threshold(-500.0, random_return=None, fraction=0.8, lowest_return=-500.0)
(-500.0, 'lowest_plus_fraction_of_gap')
>>> best_window([1.0, 3.0, 5.0, 1.0] * 5)
range(1, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_WINDOW = 1000
WINDOW_FRACTION = 0.1
DEFAULT_FRACTION = 0.8

FRACTION_OF_EXPERT = "fraction_of_expert"
RANDOM_PLUS_GAP = "random_plus_fraction_of_gap"
LOWEST_PLUS_GAP = "lowest_plus_fraction_of_gap"
RULES = {
    FRACTION_OF_EXPERT: "{f} x expert return",
    RANDOM_PLUS_GAP: "random + {f} x (expert - random)",
    LOWEST_PLUS_GAP: "lowest return + {f} x (expert - lowest)",
}
"""Each threshold rule's name (stored in manifests) in words, for people."""


def rule_text(rule: str, fraction: float) -> str:
    """``fraction_of_expert: 0.8 x expert return``: a rule's name and what it computes."""
    words = RULES.get(rule)
    return f"{rule}: {words.format(f=f'{fraction:g}')}" if words else rule


def window_size(num_episodes: int) -> int:
    """W = max(1, min(1000, floor(0.1 * N)))."""
    return max(1, min(MAX_WINDOW, int(np.floor(WINDOW_FRACTION * num_episodes))))


def best_window(returns_in_collection_order: Sequence[float]) -> range:
    """Positions of the W consecutive episodes with the highest mean return (the first such)."""
    r = np.asarray(returns_in_collection_order, np.float64)
    if r.size == 0:
        raise ValueError("no episodes to compute an expert return from")
    w = window_size(r.size)
    sums = np.convolve(r, np.ones(w), mode="valid")  # (N - W + 1,) window sums
    start = int(np.argmax(sums))
    return range(start, start + w)


def windowed_expert_return(returns_in_collection_order: Sequence[float]) -> float:
    """Max over windows of W consecutive episodes of the window's mean return."""
    window = best_window(returns_in_collection_order)
    return float(
        np.mean(np.asarray(returns_in_collection_order, np.float64)[window.start : window.stop])
    )


def threshold(
    expert_return: float,
    random_return: float | None,
    fraction: float = DEFAULT_FRACTION,
    lowest_return: float | None = None,
) -> tuple[float, str]:
    """(threshold, rule): ``fraction * expert``, or, when the expert return is not
    positive, ``base + fraction * (expert - base)`` with the random return as the base,
    else the task's lowest valid return (0 only when neither is known)."""
    if expert_return > 0:
        return fraction * expert_return, FRACTION_OF_EXPERT
    if random_return is not None:
        base, rule = random_return, RANDOM_PLUS_GAP
    elif lowest_return is not None:
        base, rule = min(lowest_return, expert_return), LOWEST_PLUS_GAP
    else:
        base, rule = 0.0, RANDOM_PLUS_GAP
    return base + fraction * (expert_return - base), rule
