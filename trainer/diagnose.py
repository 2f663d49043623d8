"""Teacher-forced diagnosis: the generalist's actions next to the expert's, on the expert's path.

An evaluation score mixes two causes: an evaluation path that feeds the model something
other than what it trained on (signs, bin offsets, prompt alignment, observations that
differ between collection and evaluation), and a model that has not learned enough
(behaviour cloning's compounding error). This check separates them. The expert plays
each episode (so the states are the data's states); at every step the model sees the
same prompt, context and observation as in ``kibble eval`` and picks its greedy action
tokens, and its history is then given the expert's action, as in training. Per action
dimension it reports how often the model's token equals the expert's, the mean distance
in bins, and the error of the decoded action against the expert's raw action (next to
the tokenizer's own round-trip error, the floor).

A model that agrees with the expert here but scores low in ``kibble eval`` drifts in
closed loop; one that disagrees here either learned too little or is fed differently.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np

from kibble.envs import get_task
from kibble.experts.evaluation import RolloutSettings, evaluate_policy
from kibble.experts.policy import EnvironmentAware, Policy
from kibble.experts.rollout import stack_values
from kibble.experts.sources import load_expert
from kibble.tokenize.episode import TokenizedSteps
from kibble.trainer.evaluate import GatoPolicy, LoadedRun
from kibble.trainer.sequences import build_sequence


@dataclass
class Agreement:
    """Per action token (dimension) of one task, over every teacher-forced step."""

    task: str
    _: KW_ONLY  # the counts by name (Agreement(task) starts them at zero)
    steps: int = 0
    same_token: list[int] = field(default_factory=list)
    bin_distance: list[float] = field(default_factory=list)
    decoded_error: list[float] = field(default_factory=list)
    """Mean |decoded model action - expert's raw action| per action value."""
    round_trip_error: list[float] = field(default_factory=list)
    """Mean |decode(encode(expert action)) - expert action|: the tokenizer's floor."""
    expert_return: float = 0.0

    def lines(self) -> list[str]:
        out = [
            f"{self.task}: {self.steps} teacher-forced steps, "
            f"expert return {self.expert_return:.1f}"
        ]
        for d in range(len(self.same_token)):
            line = (
                f"  action token {d}: same token {self.same_token[d] / max(1, self.steps):.1%}, "
                f"mean distance {self.bin_distance[d] / max(1, self.steps):.1f} bins"
            )
            if d < len(self.decoded_error):
                line += (
                    f", decoded error {self.decoded_error[d] / max(1, self.steps):.4g} "
                    f"(tokenizer floor {self.round_trip_error[d] / max(1, self.steps):.4g})"
                )
            out.append(line)
        return out


class TeacherForced:
    """A Policy that acts as the expert and records what the model would have done."""

    def __init__(self, student: GatoPolicy, expert: Policy, agreement: Agreement) -> None:
        self.student, self.expert, self.agreement = student, expert, agreement
        self.name = f"teacher-forced {expert.name}"
        self.tokenizer = student.tokenizer

    def start_episode(self, slot: int, seed: int) -> None:
        self.student.start_episode(slot, seed)
        self.expert.start_episode(slot, seed)

    def bind_environment(self, slot: int, env: Any) -> None:
        if isinstance(self.expert, EnvironmentAware):
            self.expert.bind_environment(slot, env)

    def act(self, observations: list[Any], slots: list[int]) -> list[Any]:
        ours = self.student.act(observations, slots)
        theirs = self.expert.act(observations, slots)
        a = self.agreement
        for obs, slot, mine, expert in zip(observations, slots, ours, theirs, strict=True):
            mine_t = self.tokenizer.action.encode(stack_values([mine]))[0].astype(np.int64)
            expert_t = self.tokenizer.action.encode(stack_values([expert]))[0].astype(np.int64)
            if not a.same_token:
                n = len(expert_t)
                a.same_token, a.bin_distance = [0] * n, [0.0] * n
            a.steps += 1
            for d in range(len(expert_t)):
                a.same_token[d] += int(mine_t[d] == expert_t[d])
                a.bin_distance[d] += abs(int(mine_t[d]) - int(expert_t[d]))
            raw = np.asarray(expert, np.float64).reshape(-1)
            if raw.dtype.kind == "f" and np.issubdtype(np.asarray(mine).dtype, np.floating):
                decoded = np.asarray(self.tokenizer.decode_action(mine_t), np.float64).reshape(-1)
                floor = np.asarray(self.tokenizer.decode_action(expert_t), np.float64).reshape(-1)
                if not a.decoded_error:
                    a.decoded_error, a.round_trip_error = [0.0] * raw.size, [0.0] * raw.size
                for d in range(raw.size):
                    a.decoded_error[d] += abs(decoded[d] - raw[d])
                    a.round_trip_error[d] += abs(floor[d] - raw[d])
            # The model's context continues with the expert's action, as in training.
            current = self.student._current(obs)
            current = TokenizedSteps(current.observation_tokens, expert_t[None], current.images)
            self.student.history[slot][-1] = build_sequence(current)
        return theirs


def teacher_forced(
    run: LoadedRun,
    task: str,
    expert_source: str,
    *,
    episodes: int,
    seed: int = 0,
    max_steps: int | None = None,
) -> Agreement:
    """Play ``episodes`` expert episodes (seeds ``seed..``, cut at ``max_steps``), the
    model teacher-forced beside, one environment at a time."""
    settings = RolloutSettings(episodes=episodes, seed=seed, max_steps=max_steps, num_envs=1)
    t = get_task(task)
    expert = load_expert(t, expert_source, *t.spaces())
    agreement = Agreement(task)
    policy = TeacherForced(GatoPolicy(run, task), expert, agreement)
    played = evaluate_policy(task, policy, settings)
    agreement.expert_return = float(np.mean([e.episode_return for e in played]))
    return agreement
