"""Run a trained generalist in the real environments and score it against the experts.

The model acts as it trained. A run trained with prompts (``prompt_fraction`` above 0)
gets, as in Gato, a demonstration in the first half of its context: the last timesteps of
one episode of the same task from the training data, drawn by the episode's seed; a run
trained without prompts gets none. Then comes the episode so far (as many timesteps as
fit, or ``past_steps``). Each action token is decoded greedily, one at a time, among the
ids that are legal at that position (discrete values below n, or the 1024 continuous
bins), and the tokens become an environment action through the task's tokenizer
(docs/format.md §3-4). Environments run in lockstep, one batched forward pass per action
token, through the same rollout code as the experts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.card import read_card
from kibble.experts.evaluation import RolloutSettings, evaluate, evaluate_policy
from kibble.experts.rollout import stack_values
from kibble.schemas.records import Episode
from kibble.tokenize.codecs import DiscreteCodec
from kibble.tokenize.episode import EpisodeTokenizer, TokenizedSteps
from kibble.tokenize.vocab import CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS
from kibble.trainer.checkpoint import (
    CHECKPOINT,
    STATE,
    load_model,
    model_config_of,
    read_state,
)
from kibble.trainer.config import MixtureConfig
from kibble.trainer.mixture_data import MixtureData, TaskInfo
from kibble.trainer.model import Gato
from kibble.trainer.scores import EvalRow, normalized_score, read_scores, scores_file, write_scores
from kibble.trainer.sequences import TokenWindow, build_sequence, collate, concat_sequences
from kibble.trainer.summary import TASKS

log = logging.getLogger(__name__)


def action_token_ranges(tokenizer: EpisodeTokenizer) -> list[tuple[int, int]]:
    """The legal ids ``[lo, hi)`` of each action token of one timestep, in order."""
    ranges = []
    for leaf in tokenizer.action.leaves:
        if isinstance(leaf, DiscreteCodec):
            sizes = np.broadcast_to(leaf.sizes, leaf.shape).reshape(-1)
            ranges += [(0, int(n)) for n in sizes]
        else:
            ranges += [(CONTINUOUS_OFFSET, CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS)] * leaf.n_tokens
    return ranges


@dataclass(kw_only=True)
class LoadedRun:
    """A trained run, ready to act: its model, config and training data."""

    run_dir: Path
    config: MixtureConfig
    model: Gato
    data: MixtureData
    tasks: list[TaskInfo]
    """The tasks it trained on (``RUN_DIR/tasks.json``): token layout, expert returns."""
    step: int

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> LoadedRun:
        run_dir = Path(run_dir)
        state = read_state(run_dir)
        config = MixtureConfig.from_dict(state["config"], str(run_dir / "checkpoint/state.json"))
        model = Gato(model_config_of(state))
        load_model(run_dir, model)
        model.to(device).eval()
        try:
            data = MixtureData(config, config.model.max_observation_tokens)
        except KibbleError as e:
            raise KibbleError(
                f"the run's training data is needed for the demonstration prompts: {e}"
            ) from e
        path = run_dir / TASKS
        listed = json.loads(path.read_text())
        if not isinstance(listed, list):
            raise KibbleError(f"{path} is not a list of tasks; train the run again")
        tasks = [TaskInfo.from_dict(t, str(path)) for t in listed]
        step = state["progress"]["step"]
        return cls(run_dir=run_dir, config=config, model=model, data=data, tasks=tasks, step=step)

    def task_entry(self, task: str) -> TaskInfo:
        """What the run recorded about ``task``; an error if it did not train on it."""
        for t in self.tasks:
            if t.task == task:
                return t
        raise KibbleError(
            f"{task} was not in {self.run_dir}'s training mixture; it was trained on "
            + ", ".join(t.task for t in self.tasks)
        )


class GatoPolicy:
    """The model as a batched :class:`~kibble.experts.policy.Policy` for one task."""

    def __init__(
        self, run: LoadedRun, task: str, *, device: str = "cpu", past_steps: int | None = None
    ) -> None:
        self.name = f"gato:{run.run_dir}"
        self.run = run
        self.device = device
        entry = run.task_entry(task)
        _check_text_model(task, entry.text_model)
        self.tokenizer = EpisodeTokenizer(*get_task(task).spaces())
        found = (self.tokenizer.n_observation_tokens, self.tokenizer.n_action_tokens)
        trained = (entry.n_observation_tokens, entry.n_action_tokens)
        if found[0] is None:  # text observations: the count varies with the text
            found = (trained[0], found[1])
        if found != trained:
            raise KibbleError(
                f"{task}: the environment's spaces give {found[0]} observation and {found[1]} "
                f"action tokens per timestep, but the run was trained on {trained[0]} and "
                f"{trained[1]}; the installed environment differs from the one curated"
            )
        self.task = task
        self.k = trained[0] + 1 + trained[1]  # the longest timestep, for text observations
        steps = max(1, run.config.context // self.k)
        # As in training: half the context is the prompt, the rest the episode so far; a
        # run trained without prompts (prompt_fraction 0) is evaluated without one.
        prompted = steps >= 2 and run.config.prompt_fraction > 0
        self.prompt_steps = steps // 2 if prompted else 0
        self.history_steps = steps - self.prompt_steps
        if past_steps is not None:
            # Fewer past timesteps than fit: a policy that sees its own earlier actions can
            # keep repeating them through the observation that should change its course
            # (the "copycat" problem of behaviour cloning with histories; docs/learning.md).
            if past_steps < 0:
                raise KibbleError(f"past_steps: expected 0 or more, got {past_steps}")
            self.history_steps = min(self.history_steps, past_steps + 1)
        self.ranges = action_token_ranges(self.tokenizer)
        self.prompts: dict[int, TokenizedSteps | None] = {}
        # Per slot, as built sequences so each timestep is turned into arrays once: the
        # prompt, and the last timesteps of the episode (observation and action).
        self._prompt_sequences: dict[int, list[TokenWindow]] = {}
        self.history: dict[int, list[TokenWindow]] = {}

    def start_episode(self, slot: int, seed: int) -> None:
        prompt = (
            self.run.data.demonstration(self.task, self.prompt_steps, seed)
            if self.prompt_steps
            else None
        )
        self.prompts[slot] = prompt
        self._prompt_sequences[slot] = [build_sequence(prompt)] if prompt is not None else []
        self.history[slot] = []

    def _current(self, observation: Any) -> TokenizedSteps:
        batch = stack_values([observation])
        obs = self.tokenizer.observation.encode(batch)
        act = np.zeros((1, self.tokenizer.n_action_tokens), np.int32)
        return TokenizedSteps(obs, act, self.tokenizer.observation.images(batch))

    def _context(self, slot: int, current: TokenizedSteps) -> TokenWindow:
        """Prompt, the last timesteps of the episode, then the current observation."""
        keep = self.history_steps - 1
        past = self.history[slot][len(self.history[slot]) - keep :] if keep else []
        return concat_sequences([*self._prompt_sequences[slot], *past, build_sequence(current)])

    @torch.no_grad()
    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        current = [self._current(o) for o in observations]
        n_act = self.tokenizer.n_action_tokens
        contexts = [self._context(slot, cur) for slot, cur in zip(slots, current, strict=True)]
        # Sequences of one length run together (no padding, so a key/value cache serves the
        # action tokens after the first); slots that started their episodes together match.
        by_length: dict[int, list[int]] = {}
        for i, seq in enumerate(contexts):
            by_length.setdefault(len(seq), []).append(i)
        for length, members in by_length.items():
            cut = length - n_act  # up to the separator: the input that predicts action 0
            batch = collate([contexts[i] for i in members], cut, [0] * len(members))
            h, cache = self.run.model.prefill(batch.to_torch(self.device))
            h = h[:, -1]  # (B, D)
            for j, (lo, hi) in enumerate(self.ranges):
                logits = self.run.model.logits(h)  # (B, V)
                choice = logits[:, lo:hi].argmax(-1) + lo  # (B,) the legal id most likely
                for i, token in zip(members, choice.tolist(), strict=True):
                    current[i].action_tokens[0, j] = token
                if j + 1 < n_act:  # feed action token j (local action position j + 1)
                    position = torch.full((len(members), 1), j + 1, device=self.device)
                    out, cache = self.run.model.extend(choice[:, None], position, cache)
                    h = out[:, -1]
        actions = []
        for slot, cur in zip(slots, current, strict=True):
            self.history[slot].append(build_sequence(cur))
            del self.history[slot][: -self.history_steps]
            actions.append(self.tokenizer.decode_action(cur.action_tokens[0]))
        return actions


def _check_text_model(task: str, record: dict | None) -> None:
    """The run's text ids must come from the model this evaluator tokenizes with."""
    if not record:
        return
    from hashlib import sha256

    from kibble.tokenize.text import DEFAULT_TEXT_MODEL

    ours = sha256(DEFAULT_TEXT_MODEL.read_bytes()).hexdigest()
    if record.get("sha256") != ours:
        raise KibbleError(
            f"{task}: its dataset's text was tokenized with {record.get('file')} (sha256 "
            f"{record.get('sha256')}), but evaluation tokenizes missions with kibble's "
            f"{DEFAULT_TEXT_MODEL.name} (sha256 {ours}); evaluate tasks curated with the "
            "default text model"
        )


def _baselines(run: LoadedRun, task: str, settings: RolloutSettings, card: Path | None) -> tuple:
    """(expert return, random return, where they came from) for the score."""
    if card is not None:
        c = read_card(card, task=task)
        return c.expert_return.mean, c.random_return.mean, str(card)
    entry = run.task_entry(task)
    expert, rand = entry.expert_return, entry.random_return
    if expert is None:
        raise KibbleError(
            f"{task}: the dataset's manifest records no expert return; pass --card CARD.json"
        )
    source = "manifest"
    if rand is None:
        # The manifest used Gato's windowed rule, which needs no random policy; measure it
        # on the evaluation's own seeds.
        randoms = evaluate(task, "random", settings)
        returns = [e.episode_return for e in randoms]
        rand, source = float(np.mean(returns)), "manifest expert; random measured on eval seeds"
    return float(expert), float(rand), source


def evaluation_plan(
    tasks: Sequence[str], cards: Sequence[str | Path] = ()
) -> list[tuple[str, Path | None]]:
    """The tasks to play, in order, each with its expert card (None: the manifest's
    returns): the one place an evaluation's tasks and cards are matched. A task given
    twice (it would be played and counted twice), a card for a task not played, and two
    cards for one task are refused, naming them."""
    seen: set[str] = set()
    for t in tasks:
        if t in seen:
            raise KibbleError(
                f"--task {t} is given more than once; each task is played and scored once, "
                "give it once (--episodes sets how many episodes it plays)"
            )
        seen.add(t)
    by_task: dict[str, Path] = {}
    for card in cards:
        c = read_card(card)
        if c.task not in seen:
            raise KibbleError(
                f"expert card {card} is the card of {c.task}, which is not evaluated here "
                f"(--task {', --task '.join(tasks)}); give cards of the tasks played only"
            )
        if c.task in by_task:
            raise KibbleError(
                f"expert cards {by_task[c.task]} and {card} are both cards of {c.task}; "
                "give one card per task"
            )
        by_task[c.task] = Path(card)
    return [(t, by_task.get(t)) for t in tasks]


def evaluate_task(
    run: LoadedRun,
    task: str,
    settings: RolloutSettings,
    *,
    card: Path | None = None,
    on_episode: Callable[[Episode], None] | None = None,
    past_steps: int | None = None,
) -> EvalRow:
    """Roll the model out on ``task`` as ``settings`` say and score it; returns one row of
    the score table.

    ``settings.max_steps`` cuts episodes as the expert card's were cut (e.g. long Atari
    games). ``card``: the expert card to score against (default: the returns the training
    dataset's manifest records). ``past_steps``: earlier timesteps of the episode in the
    model's context when it acts (0: the current observation only); default as many as
    the training context holds.
    """
    policy = GatoPolicy(run, task, past_steps=past_steps)
    expert, rand, source = _baselines(run, task, settings, card)
    result = evaluate_policy(task, policy, settings, on_episode=on_episode)
    returns = np.array([e.episode_return for e in result])
    success = [e.success for e in result if e.success is not None]
    return EvalRow(
        task=task,
        episodes=settings.episodes,
        seeds=[e.seed for e in result],
        return_mean=float(returns.mean()),
        return_std=float(returns.std()),
        success_rate=float(np.mean(success)) if success else None,
        expert_return=expert,
        random_return=rand,
        baseline_source=source,
        score=normalized_score(float(returns.mean()), expert, rand),
        step=run.step,
        max_steps=settings.max_steps,
        past_steps=past_steps,
    )


def write_report(run_dir: Path, rows: list[EvalRow]) -> dict:
    """``RUN_DIR/eval/``: one JSON per task, summary.json, scores.md and scores.png."""
    return write_scores(run_dir, rows)


@dataclass(frozen=True, kw_only=True)
class EvalRequest:
    """What one task's evaluation plays: episodes from a seed, cut at ``max_steps``, the
    model seeing ``past_steps`` earlier timesteps (None: all that fit)."""

    task: str
    episodes: int
    seed: int
    max_steps: int | None = None
    past_steps: int | None = None


def current_scores(run_dir: str | Path, wanted: Sequence[EvalRequest]) -> list[EvalRow] | None:
    """The stored evaluation of ``run_dir`` if it played exactly ``wanted`` (tasks in order,
    episodes, first seed, cut) on the run's last checkpoint; None when it must be redone.

    A checkpoint written after the scores (training resumed or redone) makes them stale.
    """
    rows = read_scores(run_dir)
    state = Path(run_dir) / CHECKPOINT / STATE
    if rows is None or not state.is_file():
        return None
    played = [
        EvalRequest(
            task=r.task,
            episodes=r.episodes,
            seed=r.seeds[0] if r.seeds else -1,
            max_steps=r.max_steps,
            past_steps=r.past_steps,
        )
        for r in rows
    ]
    if played != list(wanted):
        return None
    if scores_file(run_dir).stat().st_mtime <= state.stat().st_mtime:
        return None
    return rows
