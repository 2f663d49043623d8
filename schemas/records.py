"""The typed records that cross stage boundaries: a raw episode and a tokenized one.

Arrays have a leading time axis T (one entry per step). Observations and actions are
nested like their Gymnasium spaces (a dict of arrays for a Dict space, a tuple for a
Tuple space, else one array). Step t pairs the observation the agent saw with the
action it took and the reward that followed; the observation after the last action
is not kept (imitation never trains on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kibble.tokenize.episode import TokenizedSteps


@dataclass
class Episode:
    """One rolled-out episode, as collected, before validation.

    task: task id ``family/name``.
    episode_id: unique in a dataset and stable across reruns.
    observations, actions: nested like the spaces, leading axis T.
    rewards: (T,) float64. terminated, truncated: (T,) bool, kept separate as in
    Gymnasium (an episode can end by either, or by neither if the rollout was cut).
    seed: the reset seed that reproduces it. expert: where the actions came from.
    success: whether the environment ever reported ``info["success"]`` (None if it
    reports no success, as most non-robotics tasks).
    """

    task: str
    episode_id: str
    observations: Any
    actions: Any
    rewards: NDArray[np.float64]
    terminated: NDArray[np.bool_]
    truncated: NDArray[np.bool_]
    seed: int | None = None
    expert: str = ""
    success: bool | None = None

    @property
    def length(self) -> int:
        return len(self.rewards)

    @property
    def episode_return(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))


@dataclass
class RawSteps:
    """The raw values of T timesteps, as the tokenized schema stores them beside the tokens
    (docs/format.md section 8; ``kibble.schemas.raw_values.flatten`` makes them).

    observation: (T, n) float64, the non-image, non-text observation leaves flattened
    row-major in token order. action: (T, m) float64, likewise. texts: (T, k) str, the
    text leaves. Images are the tokens' ``TokenizedSteps.images``.
    """

    observation: NDArray[np.float64]
    action: NDArray[np.float64]
    texts: NDArray[np.object_]


@dataclass
class TokenizedEpisode:
    """One episode in Gato's tokens, ready to write as rows of the tokenized schema.

    raw: the raw values written beside the tokens; None writes empty lists (a dataset
    curated with ``raw_values: false``).
    """

    task: str
    episode_id: str
    episode_return: float
    steps: TokenizedSteps
    rewards: NDArray[np.float64]
    terminated: NDArray[np.bool_]
    truncated: NDArray[np.bool_]
    raw: RawSteps | None = None

    @property
    def length(self) -> int:
        return len(self.steps)
