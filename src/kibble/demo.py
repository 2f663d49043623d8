"""``kibble demo``: the main job, end to end on embedded defaults.

Until the expert, pipeline and trainer stages land, the demo runs the path that
exists: random-expert CartPole episodes are rolled out, tokenized with Gato's
tokenizer, written as raw and tokenized Parquet, read back with plain pyarrow,
validated against the schemas, checked (the actions decoded from the stored tokens
must be the actions taken), and summarised in ``summary.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

import kibble
from kibble.envs import make_env
from kibble.errors import KibbleError
from kibble.experts.random import RandomPolicy
from kibble.pipelines.rollout import EpisodeJob, make_episode_id, run_episodes
from kibble.pipelines.tokenizing import tokenize_episode
from kibble.schemas import (
    RAW_EPISODE_SCHEMA,
    SCHEMA_VERSION,
    TOKENIZED_EPISODE_SCHEMA,
    EpisodeFileWriter,
    check_file,
    raw_episode_to_table,
    tokenized_episode_to_table,
)
from kibble.schemas.arrow import list_column_to_numpy
from kibble.tokenize.episode import EpisodeTokenizer

log = logging.getLogger(__name__)

DEMO_TASK = "gym/CartPole-v1"


@dataclass
class DemoConfig:
    """What ``kibble demo`` runs."""

    out: Path = Path("kibble-out/demo")
    """Output directory (created; files in it are replaced)."""
    episodes: int = 20
    """Random CartPole episodes to roll out."""
    seed: int = 0
    """Base seed: episode i resets with seed + i."""


@dataclass
class DemoSummary:
    task: str
    episodes: int
    steps: int
    tokens: int
    tokens_per_step: float
    return_mean: float
    return_min: float
    return_max: float
    tokenized_bytes: int
    raw_bytes: int
    row_groups: int
    schema_version: str
    kibble_version: str


def _no_progress(items: Iterable, total: int) -> Iterable:
    return items


def run_demo(config: DemoConfig, progress: Callable[..., Iterable] = _no_progress) -> DemoSummary:
    """Roll out, tokenize, write, read back, validate and summarise.

    ``progress(items, total=n)`` wraps the episode loop (a progress bar in the CLI).
    """
    if config.episodes < 1:
        raise KibbleError(f"--episodes must be at least 1, got {config.episodes}")
    env = make_env(DEMO_TASK)
    tokenizer = EpisodeTokenizer(env.observation_space, env.action_space)
    policy = RandomPolicy(env.action_space)
    jobs = [
        EpisodeJob(make_episode_id(DEMO_TASK, config.seed, i), config.seed + i)
        for i in range(config.episodes)
    ]
    episodes = run_episodes(lambda: make_env(DEMO_TASK), policy, jobs, DEMO_TASK)
    tokenized_path = config.out / "data" / "part-00000.parquet"
    raw_path = config.out / "raw" / "part-00000.parquet"
    actions_taken = {}
    with (
        EpisodeFileWriter(tokenized_path, TOKENIZED_EPISODE_SCHEMA) as tokenized,
        EpisodeFileWriter(raw_path, RAW_EPISODE_SCHEMA) as raw,
    ):
        for episode in progress(episodes, total=len(jobs)):
            actions_taken[episode.episode_id] = episode.actions
            raw.write(raw_episode_to_table(episode, env.observation_space, env.action_space))
            tokenized.write(tokenized_episode_to_table(tokenize_episode(episode, tokenizer)))
    env.close()

    for path in (tokenized_path, raw_path):
        check_file(path)
    table = pq.read_table(tokenized_path)
    _check_actions_round_trip(table, tokenizer, actions_taken)
    per_episode = table.group_by("episode_id").aggregate([("episode_return", "max")])
    returns = per_episode["episode_return_max"].to_numpy()
    # Sequence positions as stored: observation tokens, the separator, action tokens.
    tokens = int(
        pc.sum(table["n_observation_tokens"]).as_py()
        + len(table)
        + pc.sum(table["n_action_tokens"]).as_py()
    )
    summary = DemoSummary(
        task=DEMO_TASK,
        episodes=len(per_episode),
        steps=len(table),
        tokens=tokens,
        tokens_per_step=tokens / len(table),
        return_mean=float(returns.mean()),
        return_min=float(returns.min()),
        return_max=float(returns.max()),
        tokenized_bytes=tokenized_path.stat().st_size,
        raw_bytes=raw_path.stat().st_size,
        row_groups=pq.ParquetFile(tokenized_path).num_row_groups,
        schema_version=SCHEMA_VERSION,
        kibble_version=kibble.__version__,
    )
    (config.out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def _check_actions_round_trip(table, tokenizer: EpisodeTokenizer, actions_taken: dict) -> None:
    """The actions decoded from the stored tokens must be exactly the actions taken."""
    decoded = tokenizer.decode_action(list_column_to_numpy(table["action_tokens"]))
    ids = table["episode_id"].to_numpy(zero_copy_only=False)
    expected = np.concatenate([np.asarray(actions_taken[i]) for i in dict.fromkeys(ids)])
    if not np.array_equal(decoded, expected):
        raise RuntimeError("actions decoded from the written tokens differ from those taken")
