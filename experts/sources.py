"""Expert sources by name: an RLlib checkpoint path, ``scripted`` or ``random``."""

from __future__ import annotations

from gymnasium import spaces

from kibble.envs.registry import Task
from kibble.errors import KibbleError
from kibble.experts.policy import Policy
from kibble.experts.random import RANDOM, RandomPolicy
from kibble.experts.scripted import SCRIPTED, ScriptedPolicy


def load_expert(
    task: Task,
    source: str,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    sample: bool = False,
) -> Policy:
    """The policy named by ``source`` for ``task``; ``sample``: draw RLlib experts' actions."""
    if source == RANDOM:
        return RandomPolicy(action_space)
    if source == SCRIPTED:
        if SCRIPTED not in task.expert_sources:
            raise KibbleError(
                f"{task.id} has no scripted expert (scripted experts exist for Meta-World tasks); "
                f"its expert sources are: {', '.join(task.expert_sources)}"
            )
        return ScriptedPolicy(task.name, action_space)
    from kibble.experts.rllib_policy import load_rllib_policy

    return load_rllib_policy(source, observation_space, action_space, task.id, sample=sample)
