"""Expert sources by name, parsed once: ``random``, ``scripted``, ``bot``, ``sb3:PATH.zip``
or an RLlib checkpoint path.

Every layer that needs to know what a source string means (the CLI, the pipelines'
config checks and shipping of checkpoints to remote workers, cards, the demo) asks
:func:`parse_source` instead of comparing strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from gymnasium import spaces

from kibble.envs.registry import Task
from kibble.errors import KibbleError
from kibble.experts.policy import Policy

RANDOM = "random"
SCRIPTED = "scripted"
BOT = "bot"
SB3_PREFIX = "sb3:"
BUILTIN = (RANDOM, SCRIPTED, BOT)
"""Sources that are code shipped with kibble or its environments: nothing to load."""


@dataclass(frozen=True)
class ExpertSource:
    """A parsed expert source.

    ``kind`` is one of ``random``, ``scripted``, ``bot``, ``rllib``, ``sb3``; ``location``
    is the checkpoint path or URL for ``rllib`` and ``sb3`` (None for built-in sources).
    """

    kind: str
    location: str | None = None

    @property
    def text(self) -> str:
        """The source as a user writes it (round-trips through :func:`parse_source`)."""
        if self.kind == "sb3":
            return f"{SB3_PREFIX}{self.location}"
        return self.location if self.kind == "rllib" else self.kind

    @property
    def is_random(self) -> bool:
        return self.kind == RANDOM

    @property
    def has_checkpoint(self) -> bool:
        """True when the source is a file or directory (to ship to remote workers)."""
        return self.location is not None

    @property
    def can_sample(self) -> bool:
        """Learned policies have a distribution to sample from; built-in ones do not."""
        return self.kind in ("rllib", "sb3")

    @property
    def uses_ray(self) -> bool:
        return self.kind == "rllib"


def parse_source(source: str | ExpertSource) -> ExpertSource:
    """``"random"`` -> ExpertSource("random"); ``"sb3:a.zip"`` -> ("sb3", "a.zip"); a path -> rllib.

    >>> parse_source("sb3:agents/ppo.zip")
    ExpertSource(kind='sb3', location='agents/ppo.zip')
    >>> parse_source("kibble-out/experts/cartpole").kind
    'rllib'
    """
    if isinstance(source, ExpertSource):
        return source
    text = str(source).strip()
    if not text:
        raise KibbleError(
            "an empty expert source; give a checkpoint path, sb3:PATH.zip, 'scripted', "
            "'bot' or 'random'"
        )
    if text in BUILTIN:
        return ExpertSource(text)
    if text.startswith(SB3_PREFIX):
        location = text[len(SB3_PREFIX) :]
        if not location:
            raise KibbleError("expert source 'sb3:' names no file; write sb3:PATH.zip")
        return ExpertSource("sb3", location)
    return ExpertSource("rllib", text)


def load_expert(
    task: Task,
    source: str | ExpertSource,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    *,
    sample: bool = False,
) -> Policy:
    """The policy named by ``source`` for ``task``; ``sample``: draw a learned expert's actions."""
    src = parse_source(source)
    if src.kind in (SCRIPTED, BOT) and src.kind not in task.expert_sources:
        raise KibbleError(
            f"{task.id} has no {src.kind} expert; its expert sources are: "
            f"{', '.join(task.expert_sources)}"
        )
    if src.kind == RANDOM:
        from kibble.experts.random import RandomPolicy

        return RandomPolicy(action_space)
    if src.kind == SCRIPTED:
        from kibble.experts.scripted import ScriptedPolicy

        return ScriptedPolicy(task.name, action_space)
    if src.kind == BOT:
        from kibble.experts.bot import BotPolicy

        return BotPolicy(task)
    if src.kind == "sb3":
        from kibble.experts.sb3 import load_sb3_policy

        return load_sb3_policy(src.location, task, observation_space, action_space, sample=sample)
    from kibble.experts.rllib_policy import load_rllib_policy

    return load_rllib_policy(
        src.location, observation_space, action_space, task=task.id, sample=sample
    )
