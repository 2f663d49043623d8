"""The curation stages' work as plain functions, which the steps of
``kibble.pipelines.curation`` call (whatever executor runs them).

1. ``rollout_shard``: roll out a shard of a task's episodes, validate each, tokenize
   the valid ones (``tokenize_episode``) into a staging Parquet file; returns one
   ``EpisodeOutcome`` each.
2. ``task_threshold``: from all outcomes of a task, the expert return (Gato's
   windowed rule over valid episodes in collection order, or the expert card's)
   and the threshold.
3. ``finalize_shard``: copy a staging file's kept episodes into the dataset, a row
   group at a time (bounded memory).

The rejected table and the manifest entry are ``kibble.pipelines.task_results``'.

Episode seeds derive from (base seed, task, episode index) only, so any sharding,
any runner and any number of workers give the same episodes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import KW_ONLY, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.card import ExpertCard, read_card
from kibble.experts.policy import Policy
from kibble.experts.rollout import (
    ActionNoise,
    EpisodeJob,
    episode_seed,
    make_episode_id,
    run_episodes,
)
from kibble.experts.sources import load_expert
from kibble.pipelines import filtering
from kibble.pipelines.episode_validation import validate_episode
from kibble.schemas.arrow import TOKENIZED_EPISODE_SCHEMA, tokenized_episode_to_table
from kibble.schemas.layout import join, task_dir_name
from kibble.schemas.parquet import EpisodeFileWriter, filesystem_and_path
from kibble.schemas.raw_values import as_native, flatten
from kibble.schemas.records import Episode, RawSteps, TokenizedEpisode
from kibble.tokenize.episode import EpisodeTokenizer


@dataclass
class TaskJob:
    """One task of a dataset: what to roll out and how to judge it."""

    task: str
    """Task id, e.g. gym/CartPole-v1."""
    expert: str
    """Checkpoint path, ``scripted`` or ``random``."""
    episodes: int
    """Episodes to roll out (planned)."""
    _: KW_ONLY
    card: str | None = None
    """Expert card: its expert return replaces the windowed rule; its random return
    serves the threshold when the expert return is not positive."""
    sample: bool = False
    """Sample an RLlib expert's actions instead of acting greedily."""
    max_steps: int | None = None
    """Cut episodes at this many steps (neither terminated nor truncated then)."""
    text_model: str | None = None
    """SentencePiece model file for text observations (None: kibble's BabyAI model)."""
    noise: ActionNoise | None = None
    """Recovery data: execute perturbed actions on some steps, record the expert's."""
    raw_values: bool = True
    """Store each step's raw observation and action beside its tokens (docs/format.md
    section 8); False leaves the raw value columns empty (a smaller dataset)."""


@dataclass(frozen=True)
class Shard:
    """Episodes ``[start, stop)`` of one task."""

    job: TaskJob
    _: KW_ONLY
    index: int
    start: int
    stop: int


@dataclass(frozen=True, kw_only=True)
class EpisodeOutcome:
    """What became of one episode before filtering (small: crosses Beam stages)."""

    task: str
    episode_id: str
    index: int
    episode_return: float
    episode_length: int
    reason: str | None  # None: valid, a candidate in the shard's staging file
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Threshold:
    expert_return: float | None
    source: str
    random_return: float | None
    fraction: float
    threshold: float | None
    rule: str
    defining: tuple[int, ...] = ()
    """Episode indexes of the best window (windowed rule): they define the expert
    return, so they are kept whatever the threshold."""


def tokenize_episode(
    episode: Episode, tokenizer: EpisodeTokenizer, raw_values: bool = True
) -> TokenizedEpisode:
    """Tokenize every timestep of ``episode`` with its task's tokenizer; with
    ``raw_values``, keep its raw observations and actions beside the tokens.

    Each leaf is cast to its space's dtype first (a policy's float64 action for a float32
    Box), so the tokens and the raw values come from the same numbers and re-tokenizing
    the raw values gives the same tokens bit for bit.
    """
    obs_space, act_space = tokenizer.observation.space, tokenizer.action.space
    observations = as_native(episode.observations, obs_space)
    actions = as_native(episode.actions, act_space)
    raw = None
    if raw_values:
        obs_flat, texts = flatten(observations, obs_space, "observation")
        act_flat, _ = flatten(actions, act_space, "action")
        raw = RawSteps(obs_flat, act_flat, texts)
    return TokenizedEpisode(
        task=episode.task,
        episode_id=episode.episode_id,
        episode_return=episode.episode_return,
        steps=tokenizer.tokenize(observations, actions),
        rewards=episode.rewards,
        terminated=episode.terminated,
        truncated=episode.truncated,
        raw=raw,
    )


def plan_shards(job: TaskJob, episodes_per_shard: int) -> Iterator[Shard]:
    """The shards of ``job``, made one at a time (a plan of any size takes no memory)."""
    if job.episodes < 1:
        raise KibbleError(f"{job.task}: episodes must be at least 1, got {job.episodes}")
    size = max(1, episodes_per_shard)
    for i, start in enumerate(range(0, job.episodes, size)):
        yield Shard(job, index=i, start=start, stop=min(start + size, job.episodes))


def count_shards(job: TaskJob, episodes_per_shard: int) -> int:
    """How many shards :func:`plan_shards` makes, without making them."""
    return -(-job.episodes // max(1, episodes_per_shard))


def shard_name(directory: str, task: str, shard: int) -> str:
    """``directory/<task>/part-NNNNN.parquet``, relative to the dataset."""
    return f"{directory}/{task_dir_name(task)}/part-{shard:05d}.parquet"


def shard_file(root: str | os.PathLike, directory: str, task: str, shard: int) -> str:
    """``root/directory/<task>/part-NNNNN.parquet``; ``root`` a local path or a URL."""
    return join(root, *shard_name(directory, task, shard).split("/"))


def rollout_shard(
    shard: Shard,
    staging: str | os.PathLike,
    *,
    base_seed: int,
    num_envs: int = 4,
    on_episode: Callable[[Episode], None] | None = None,
    policy: Policy | None = None,
    env_pool: list | None = None,
) -> list[EpisodeOutcome]:
    """Roll a shard out; valid episodes' tokens go to ``staging`` (written atomically).

    ``policy`` and ``env_pool`` let a worker reuse its expert and environments.
    """
    job = shard.job
    task = get_task(job.task)
    obs_space, act_space = task.spaces()
    if policy is None:
        policy = load_expert(task, job.expert, obs_space, act_space, sample=job.sample)
    tokenizer = EpisodeTokenizer(obs_space, act_space, job.text_model)
    # Episode jobs are made as environments free up, so a shard of any size (a whole
    # task, in `kibble rollout`) holds only the running ones: id -> index while running.
    index: dict[str, int] = {}

    def episode_jobs() -> Iterator[EpisodeJob]:
        for i in range(shard.start, shard.stop):
            episode_id = make_episode_id(job.task, base_seed, i)
            index[episode_id] = i
            yield EpisodeJob(episode_id, episode_seed(base_seed, job.task, i))

    outcomes: list[EpisodeOutcome] = []
    # Episodes finish out of order with several environments; the staging file is
    # written in index order (so it does not depend on how many ran together), holding
    # back only the tables of episodes that finished before an earlier one.
    held: dict[int, object] = {}  # index -> table, or None for an invalid episode
    next_index = shard.start
    episodes = run_episodes(
        task.make,
        policy,
        episode_jobs(),
        task=job.task,
        num_envs=num_envs,
        max_steps=job.max_steps,
        env_pool=env_pool,
        noise=job.noise,
    )
    with EpisodeFileWriter(staging, TOKENIZED_EPISODE_SCHEMA) as writer:
        for episode in episodes:
            if on_episode:
                on_episode(episode)
            problem = validate_episode(episode, obs_space, act_space)
            ret = episode.episode_return
            i = index.pop(episode.episode_id)
            outcomes.append(
                EpisodeOutcome(
                    task=job.task,
                    episode_id=episode.episode_id,
                    index=i,
                    episode_return=ret if np.isfinite(ret) else float("nan"),
                    episode_length=episode.length,
                    reason=problem.reason if problem else None,
                    detail=problem.detail if problem else "",
                )
            )
            held[i] = (
                None
                if problem
                else tokenized_episode_to_table(
                    tokenize_episode(episode, tokenizer, job.raw_values)
                )
            )
            while next_index in held:
                table = held.pop(next_index)
                if table is not None:
                    writer.write(table)
                next_index += 1
    return sorted(outcomes, key=lambda o: o.index)


def task_threshold(
    job: TaskJob,
    outcomes: Iterable[EpisodeOutcome],
    fraction: float,
    *,
    card: ExpertCard | None = None,
) -> Threshold:
    """Expert return and threshold of a task from all its outcomes.

    ``card``: the job's expert card, already read (Beam reads it on the launcher,
    whose files workers may not see); by default it is read from ``job.card``.
    """
    valid = sorted((o for o in outcomes if o.reason is None), key=lambda o: o.index)
    if card is None and job.card:
        card = read_card(job.card, task=job.task)
    returns = [o.episode_return for o in valid]
    defining: tuple[int, ...] = ()
    if card is not None:
        expert, source = card.expert_return.mean, "card"
    elif valid:
        window = filtering.best_window(returns)
        expert, source = filtering.windowed_expert_return(returns), "windowed"
        defining = tuple(valid[i].index for i in window)
    else:
        return Threshold(
            expert_return=None,
            source="none",
            random_return=None,
            fraction=fraction,
            threshold=None,
            rule="no_valid_episodes",
        )
    random_return = card.random_return.mean if card is not None else None
    lowest = min(returns) if returns else None
    value, rule = filtering.threshold(expert, random_return, fraction, lowest)
    return Threshold(
        expert_return=expert,
        source=source,
        random_return=random_return,
        fraction=fraction,
        threshold=value,
        rule=rule,
        defining=defining,
    )


def is_kept(outcome: EpisodeOutcome, threshold: Threshold) -> bool:
    return (
        outcome.reason is None
        and threshold.threshold is not None
        and (outcome.episode_return >= threshold.threshold or outcome.index in threshold.defining)
    )


def finalize_shard(
    staging: str | os.PathLike, kept_ids: list[str], out_file: str | os.PathLike
) -> int:
    """Copy the kept episodes of a staging file to ``out_file``; returns rows written."""
    if not kept_ids:
        return 0
    keep = pa.array(kept_ids, pa.string())
    fs, path = filesystem_and_path(staging)
    with (
        fs.open_input_file(path) as f,
        EpisodeFileWriter(out_file, TOKENIZED_EPISODE_SCHEMA) as writer,
    ):
        source = pq.ParquetFile(f)
        for group in range(source.num_row_groups):
            rows = source.read_row_group(group)
            writer.write(rows.filter(pc.is_in(rows["episode_id"], value_set=keep)))
    return writer.num_rows
