"""The random expert: uniform actions from the task's action space, seeded."""

from __future__ import annotations

from typing import Any

from gymnasium import spaces


class RandomPolicy:
    """Samples actions uniformly from ``action_space``; reproducible for a given seed."""

    name = "random"

    def __init__(self, action_space: spaces.Space, seed: int | None = None) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def act(self, observation: Any) -> Any:
        """One action for one observation (the observation is ignored)."""
        return self.action_space.sample()
