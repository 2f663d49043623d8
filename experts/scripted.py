"""Scripted experts: Meta-World's hand-written policy for each v3 task."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from kibble.errors import KibbleError
from kibble.experts.sources import SCRIPTED


class ScriptedPolicy:
    """``metaworld.policies.ENV_POLICY_MAP[task]``, actions clipped to the action space.

    The scripted policies may ask for actions beyond [-1, 1]; the environment would
    clip them anyway, and clipping here keeps recorded actions inside the space.
    """

    name = SCRIPTED

    def __init__(self, task_name: str, action_space: spaces.Box) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        if task_name not in ENV_POLICY_MAP:
            raise KibbleError(f"Meta-World has no scripted policy for {task_name!r}")
        self._policy = ENV_POLICY_MAP[task_name]()
        self.action_space = action_space

    def start_episode(self, slot: int, seed: int) -> None:
        """The scripted policies are memoryless."""

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        low, high = self.action_space.low, self.action_space.high
        with warnings.catch_warnings():
            # "Constant(s) may be too high": the policies know, and we clip below.
            warnings.simplefilter("ignore", UserWarning)
            actions = [self._policy.get_action(obs) for obs in observations]
        return [np.clip(a, low, high).astype(self.action_space.dtype) for a in actions]
