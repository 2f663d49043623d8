"""Episode validation (docs/format.md section 10): every episode is kept or rejected with a reason.

Checks, in order: non-empty; observations, actions and rewards have one entry per
step; observations and rewards finite; every action inside the action space.
``validate_episode`` returns ``None`` for a valid episode, else a ``Rejection``
naming the reason (a short stable code) and where it was found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from kibble.schemas.records import Episode
from kibble.tokenize.codecs import get_leaf, leaf_codecs

EMPTY = "empty"
LENGTH_MISMATCH = "length_mismatch"
NON_FINITE_OBSERVATION = "non_finite_observation"
NON_FINITE_REWARD = "non_finite_reward"
ACTION_OUT_OF_SPACE = "action_out_of_space"
BELOW_THRESHOLD = "below_threshold"  # set by the filter, not here
REASONS = (
    EMPTY,
    LENGTH_MISMATCH,
    NON_FINITE_OBSERVATION,
    NON_FINITE_REWARD,
    ACTION_OUT_OF_SPACE,
    BELOW_THRESHOLD,
)


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


def _first_bad(mask: np.ndarray) -> int:
    return int(np.argmax(mask.reshape(len(mask), -1).any(axis=1)))


def validate_episode(
    episode: Episode, observation_space: spaces.Space, action_space: spaces.Space
) -> Rejection | None:
    """``None`` if the episode is valid, else why not (the first problem found)."""
    t = len(episode.rewards)
    if t == 0:
        return Rejection(EMPTY, "the episode has no steps")
    obs_leaves = leaf_codecs(observation_space, "observation")
    act_leaves = leaf_codecs(action_space, "action")
    for leaf, value in [(x, get_leaf(episode.observations, x.path)) for x in obs_leaves] + [
        (x, get_leaf(episode.actions, x.path)) for x in act_leaves
    ]:
        if len(value) != t:
            return Rejection(LENGTH_MISMATCH, f"{leaf.name} has {len(value)} steps, rewards {t}")
    for leaf in obs_leaves:
        value = np.asarray(get_leaf(episode.observations, leaf.path))
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            step = _first_bad(~np.isfinite(value))
            return Rejection(NON_FINITE_OBSERVATION, f"{leaf.name} at step {step}")
    rewards = np.asarray(episode.rewards, np.float64)
    if not np.isfinite(rewards).all():
        return Rejection(NON_FINITE_REWARD, f"reward at step {_first_bad(~np.isfinite(rewards))}")
    for leaf in act_leaves:
        value = np.asarray(get_leaf(episode.actions, leaf.path))
        inside = _inside(leaf.space, value)
        if not inside.all():
            step = int(np.argmin(inside))
            return Rejection(ACTION_OUT_OF_SPACE, f"{leaf.name} at step {step}: {value[step]!r}")
    return None


def _inside(space: spaces.Space, batch: np.ndarray) -> np.ndarray:
    """Per step: is the value inside the (leaf) space? Vectorised over T."""
    if isinstance(space, spaces.Box):
        flat = batch.reshape(len(batch), -1).astype(np.float64)
        low, high = space.low.reshape(-1), space.high.reshape(-1)
        return (
            np.isfinite(flat).all(axis=1) & (flat >= low).all(axis=1) & (flat <= high).all(axis=1)
        )
    if isinstance(space, spaces.Discrete):
        return (batch >= space.start) & (batch < space.start + space.n)
    if isinstance(space, spaces.MultiDiscrete):
        flat = batch.reshape(len(batch), -1)
        lo = np.asarray(space.start).reshape(-1)
        return ((flat >= lo) & (flat < lo + space.nvec.reshape(-1))).all(axis=1)
    if isinstance(space, spaces.MultiBinary):
        return np.isin(batch.reshape(len(batch), -1), (0, 1)).all(axis=1)
    return np.array([space.contains(v) for v in batch])
