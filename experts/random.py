"""The random expert: uniform actions from the task's action space, seeded per episode."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from kibble.experts.sources import RANDOM


class RandomPolicy:
    """Samples actions uniformly; an episode's actions depend only on its seed."""

    name = RANDOM

    def __init__(self, action_space: spaces.Space) -> None:
        self.action_space = action_space
        self._spaces: dict[int, spaces.Space] = {}

    def start_episode(self, slot: int, seed: int) -> None:
        # A copy of the space per slot carries that slot's generator, seeded from the
        # episode's seed (mixed, so it is not the environment's own seed stream).
        if slot not in self._spaces:
            self._spaces[slot] = copy.deepcopy(self.action_space)
        mixed = np.random.SeedSequence([seed, 0x52414E44]).generate_state(1)[0]
        self._spaces[slot].seed(int(mixed))

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        for slot in slots:
            if slot not in self._spaces:
                self.start_episode(slot, slot)
        return [self._spaces[slot].sample() for slot in slots]
