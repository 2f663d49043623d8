"""Pick torch's CPU thread count by measuring, not by rule.

On a quiet 2-core machine two threads trained the tiny model 1.4-1.8x faster than one;
on a machine another job keeps busy, one thread was 3.4x faster than two (issue 12's
measurements). So the demo times a few training steps of its own mixture with each
candidate and keeps the fastest.
"""

from __future__ import annotations

import logging
import os
import time

import torch

from kibble.trainer.config import MixtureConfig
from kibble.trainer.mixture_data import MixtureData
from kibble.trainer.model import Gato

log = logging.getLogger(__name__)


def fastest_threads(
    config: MixtureConfig, candidates: list[int] | None = None, steps: int = 3
) -> tuple[int, dict[int, float]]:
    """(the fastest thread count, tokens/s per candidate) over ``steps`` timed
    forward + backward passes each, after one warm-up; the model is thrown away."""
    candidates = candidates or sorted({1, os.cpu_count() or 1})
    if len(candidates) == 1:
        return candidates[0], {}
    data = MixtureData(config)
    model = Gato(config.model)
    legal = config.action_logits == "legal"
    batches = [data.sample_batch(config.batch_size).to_torch() for _ in range(steps + 1)]
    rates: dict[int, float] = {}
    before = torch.get_num_threads()
    try:
        for n in candidates:
            torch.set_num_threads(n)
            tokens, start = 0, 0.0
            for i, batch in enumerate(batches):
                if i == 1:  # the first pass warms up
                    start = time.perf_counter()
                loss, _ = model(batch, legal_actions=legal)
                loss.backward()
                model.zero_grad(set_to_none=True)
                tokens += int(batch["lengths"].sum()) if i else 0
            rates[n] = tokens / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    best = max(rates, key=rates.get)
    log.info("torch threads: %s tokens/s -> %d", rates, best)
    return best, rates
