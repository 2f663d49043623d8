"""Continuous tokenization throughput vs a plain ``np.digitize`` baseline, in one run.

    python benchmarks/tokenizer.py [--values 10000000] [--repeats 5]

Prints values/s for kibble's ``continuous_to_tokens`` (mu-law, observations) and for
the same mu-law followed by ``np.digitize`` over the 1023 inner bin edges, both on
the same 10M float32 values on one core, and their ratio. Checks that kibble's tokens
are bit-exact to the formula of docs/format.md §3 evaluated literally in float64 (and that the
digitize baseline agrees). Target: >= 50M values/s.
"""

from __future__ import annotations

import argparse
import os
import time

# One core: keep any threaded BLAS/OpenMP out of the measurement.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from kibble.tokenize import continuous_to_tokens
from kibble.tokenize.continuous import reference_continuous_to_tokens as formula
from kibble.tokenize.vocab import (
    CONTINUOUS_OFFSET,
    MU_LAW_DENOMINATOR,
    MU_LAW_MU,
    NUM_CONTINUOUS_BINS,
)

TARGET = 50e6


_EDGES = -1.0 + np.arange(1, NUM_CONTINUOUS_BINS) * (2.0 / NUM_CONTINUOUS_BINS)


def digitize_baseline(x: np.ndarray) -> np.ndarray:
    """The obvious implementation: mu-law, then ``np.digitize`` over the bin edges."""
    x = x.astype(np.float64)
    v = np.sign(x) * np.log(1 + MU_LAW_MU * np.abs(x)) / MU_LAW_DENOMINATOR
    return CONTINUOUS_OFFSET + np.digitize(v, _EDGES)


def best_time(fn, x: np.ndarray, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # Observation-like values over the whole mu-law range, plus exact bin edges and
    # values on both sides of the clip, where rounding would show first.
    x = (rng.standard_normal(args.values) * np.exp(rng.uniform(-6, 6, args.values))).astype(
        np.float32
    )
    x[:7] = [0.0, -0.0, 1.0, -3.0, 256.0, -256.0, 1e6]

    t_kibble = best_time(continuous_to_tokens, x, args.repeats)
    t_digitize = best_time(digitize_baseline, x, args.repeats)

    ours = continuous_to_tokens(x)
    reference = formula(x)
    exact = bool(np.array_equal(ours, reference))
    baseline_agrees = bool(np.array_equal(digitize_baseline(x), reference))
    edges = np.linspace(-1, 1, NUM_CONTINUOUS_BINS + 1)  # exact bin edges, no mu-law
    exact_edges = bool(
        np.array_equal(continuous_to_tokens(edges, mu_law=False), formula(edges, mu_law=False))
    )

    n = args.values
    print(f"values: {n:,} float32, best of {args.repeats}, one core")
    print(f"kibble continuous_to_tokens : {n / t_kibble / 1e6:8.1f} M values/s")
    print(f"np.digitize baseline        : {n / t_digitize / 1e6:8.1f} M values/s")
    print(f"ratio kibble / digitize     : {t_digitize / t_kibble:8.2f}x")
    print(f"bit-exact to the formula    : {exact} (at exact bin edges: {exact_edges})")
    print(f"digitize agrees with formula: {baseline_agrees}")
    verdict = "met" if n / t_kibble >= TARGET else "NOT met"
    print(f"target >= {TARGET / 1e6:.0f}M values/s      : {verdict}")
    if not (exact and exact_edges):
        raise SystemExit("kibble's tokens differ from the formula")


if __name__ == "__main__":
    main()
