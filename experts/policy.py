"""What an expert is to the rest of kibble: a batched policy over environment slots.

Rollouts step several environments together; each runs in a *slot*. When an
episode starts in a slot the policy is told (``start_episode``), so policies that
keep per-episode state (a random policy's generator, a recurrent state) stay
reproducible however many environments run side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Policy(Protocol):
    """A policy over one task's observation and action spaces."""

    name: str
    """Where the actions come from: a checkpoint path, ``scripted`` or ``random``."""

    def start_episode(self, slot: int, seed: int) -> None:
        """An episode with reset seed ``seed`` starts in environment slot ``slot``."""

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        """One action per observation; ``slots[i]`` is the slot ``observations[i]`` came from."""


@runtime_checkable
class EnvironmentAware(Protocol):
    """A policy that must see the environment itself, not only its observations.

    The BabyAI bot plans on the grid's full state, and a community checkpoint's own
    view (frame stacks of raw frames) is computed from the environment. Rollouts call
    ``bind_environment`` right after each seeded reset, before the episode's first
    ``act``; the environment stays the rollout's (the policy never closes it).
    """

    def bind_environment(self, slot: int, env: Any) -> None:
        """The episode just reset in ``slot`` runs in ``env``."""
