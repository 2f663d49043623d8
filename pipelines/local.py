"""Curate a dataset in this process, one environment pool, no Beam (`kibble rollout`).

For each task: roll the expert out (``run_episodes``), validate every episode,
tokenize the valid ones into a staging file, compute the expert return (Gato's
windowed rule, or the expert card's) and the threshold, then copy the kept
episodes into the dataset and record every other one in ``rejected/`` with its
reason. Memory stays bounded: episodes stream to disk as they finish, and the
filter pass reads the staging file a row group at a time. Kept + rejected =
planned, per task, always.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.card import read_card
from kibble.experts.sources import load_expert
from kibble.pipelines import dataset, filtering
from kibble.pipelines.rollout import EpisodeJob, make_episode_id, run_episodes
from kibble.pipelines.tokenizing import tokenize_episode
from kibble.pipelines.validate import BELOW_THRESHOLD, validate_episode
from kibble.schemas.arrow import (
    REJECTED_EPISODE_SCHEMA,
    TOKENIZED_EPISODE_SCHEMA,
    tokenized_episode_to_table,
)
from kibble.schemas.parquet import EpisodeFileWriter
from kibble.schemas.records import Episode
from kibble.tokenize.episode import EpisodeTokenizer

log = logging.getLogger(__name__)


@dataclass
class TaskJob:
    """One task of a dataset: what to roll out and how to judge it."""

    task: str
    """Task id, e.g. gym/CartPole-v1."""
    expert: str
    """Checkpoint path, ``scripted`` or ``random``."""
    episodes: int
    """Episodes to roll out (planned)."""
    card: str | None = None
    """Expert card: its expert return replaces the windowed rule; its random return
    serves the threshold when the expert return is not positive."""
    sample: bool = False
    """Sample an RLlib expert's actions instead of acting greedily."""
    max_steps: int | None = None
    """Cut episodes at this many steps (neither terminated nor truncated then)."""


def episode_seed(base_seed: int, task: str, index: int) -> int:
    """The reset seed of episode ``index`` of ``task``: from (base seed, task, index) only."""
    seq = np.random.SeedSequence([base_seed, zlib.crc32(task.encode()), index])
    return int(seq.generate_state(1)[0] & 0x7FFFFFFF)


def _rejected_row(episode: Episode, reason: str, detail: str) -> dict:
    ret = episode.episode_return
    return {
        "task": episode.task,
        "episode_id": episode.episode_id,
        "episode_return": ret if np.isfinite(ret) else float("nan"),
        "episode_length": episode.length,
        "reason": reason,
        "detail": detail,
    }


def curate_task(
    job: TaskJob,
    root: Path,
    base_seed: int,
    fraction: float,
    num_envs: int = 4,
    on_episode: Callable[[Episode], None] | None = None,
) -> tuple[dict, list[dict]]:
    """Roll out, validate, tokenize and filter one task into ``root``.

    Returns the task's manifest entry and its rejected rows.
    """
    if job.episodes < 1:
        raise KibbleError(f"{job.task}: episodes must be at least 1, got {job.episodes}")
    task = get_task(job.task)
    obs_space, act_space = task.spaces()
    policy = load_expert(task, job.expert, obs_space, act_space, sample=job.sample)
    card = read_card(job.card) if job.card else None
    tokenizer = EpisodeTokenizer(obs_space, act_space)
    jobs = [
        EpisodeJob(make_episode_id(job.task, base_seed, i), episode_seed(base_seed, job.task, i))
        for i in range(job.episodes)
    ]
    order = {j.episode_id: i for i, j in enumerate(jobs)}
    rejected: list[dict] = []
    valid: dict[str, float] = {}  # episode_id -> return, for the valid episodes
    staging = root / ".staging" / f"{dataset.task_dir_name(job.task)}.parquet"
    with EpisodeFileWriter(staging, TOKENIZED_EPISODE_SCHEMA) as candidates:
        episodes = run_episodes(
            task.make, policy, jobs, job.task, num_envs=num_envs, max_steps=job.max_steps
        )
        for episode in episodes:
            if on_episode:
                on_episode(episode)
            problem = validate_episode(episode, obs_space, act_space)
            if problem is not None:
                rejected.append(_rejected_row(episode, problem.reason, problem.detail))
                continue
            candidates.write(tokenized_episode_to_table(tokenize_episode(episode, tokenizer)))
            valid[episode.episode_id] = episode.episode_return

    in_order = sorted(valid, key=order.__getitem__)  # collection order = episode index
    if card is not None:
        expert_return, source = card.expert_return.mean, "card"
    elif in_order:
        expert_return = filtering.windowed_expert_return([valid[i] for i in in_order])
        source = "windowed"
    else:
        expert_return, source = float("nan"), "none"
    random_return = card.random_return.mean if card is not None else None
    thr, rule = filtering.threshold(expert_return, random_return, fraction)
    kept_ids = {i for i in in_order if valid[i] >= thr}
    for episode_id in in_order:
        if episode_id not in kept_ids:
            rejected.append(
                {
                    "task": job.task,
                    "episode_id": episode_id,
                    "episode_return": valid[episode_id],
                    "episode_length": 0,  # filled from the staging rows below
                    "reason": BELOW_THRESHOLD,
                    "detail": f"return {valid[episode_id]:.6g} < threshold {thr:.6g} ({rule})",
                }
            )

    steps = tokens = 0
    lengths: dict[str, int] = {}
    out_file = root / dataset.DATA_DIR / dataset.task_dir_name(job.task) / "part-00000.parquet"
    if kept_ids:
        keep = pa.array(sorted(kept_ids, key=order.__getitem__))
        with EpisodeFileWriter(out_file, TOKENIZED_EPISODE_SCHEMA) as writer:
            source_file = pq.ParquetFile(staging)
            for group in range(source_file.num_row_groups):
                rows = source_file.read_row_group(group)
                mask = pc.is_in(rows["episode_id"], value_set=keep)
                writer.write(rows.filter(mask))
        kept_rows = pq.read_table(out_file, columns=["n_observation_tokens", "n_action_tokens"])
        steps = kept_rows.num_rows
        tokens = int(
            pc.sum(kept_rows["n_observation_tokens"]).as_py()
            + steps
            + pc.sum(kept_rows["n_action_tokens"]).as_py()
        )
    if valid:
        per_episode = pq.read_table(staging, columns=["episode_id", "episode_length"])
        ids = per_episode["episode_id"].to_pylist()
        lens = per_episode["episode_length"].to_pylist()
        lengths = dict(zip(ids, lens, strict=True))
    for row in rejected:
        if row["reason"] == BELOW_THRESHOLD:
            row["episode_length"] = lengths[row["episode_id"]]
    staging.unlink(missing_ok=True)

    reasons = Counter(row["reason"] for row in rejected)

    def finite(x: float | None) -> float | None:  # JSON has no NaN
        return None if x is None or not np.isfinite(x) else float(x)

    entry = {
        "expert": job.expert,
        "planned": job.episodes,
        "kept": len(kept_ids),
        "rejected": dict(sorted(reasons.items())),
        "steps": steps,
        "tokens": tokens,
        "expert_return": finite(expert_return),
        "expert_return_source": source,
        "random_return": finite(random_return),
        "fraction": fraction,
        "threshold": finite(thr),
        "rule": rule,
    }
    if entry["kept"] + sum(reasons.values()) != job.episodes:
        raise RuntimeError(f"{job.task}: kept + rejected != planned")  # a kibble bug
    return entry, rejected


def curate(
    name: str,
    jobs: list[TaskJob],
    out: Path,
    base_seed: int = 0,
    fraction: float = filtering.DEFAULT_FRACTION,
    num_envs: int = 4,
    on_episode: Callable[[Episode], None] | None = None,
) -> dict:
    """Curate every task into a dataset at ``out`` (replaced atomically); returns the manifest."""
    if not 0.0 < fraction <= 1.0:
        raise KibbleError(f"the filter fraction must be in (0, 1], got {fraction}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise KibbleError(f"--out {out} is a file; give a directory for the dataset")
    root = dataset.staging_dir(out)
    try:
        tasks, rejected = {}, []
        for job in jobs:
            tasks[job.task], rows = curate_task(
                job, root, base_seed, fraction, num_envs, on_episode
            )
            rejected += rows
        (root / ".staging").rmdir()
        rejected_table = pa.Table.from_pylist(rejected, schema=REJECTED_EPISODE_SCHEMA)
        with EpisodeFileWriter(
            root / dataset.REJECTED_DIR / "part-00000.parquet", REJECTED_EPISODE_SCHEMA
        ) as writer:
            writer.write(rejected_table)
        config = {
            "name": name,
            "seed": base_seed,
            "filter": {"fraction": fraction},
            "tasks": [asdict(j) for j in jobs],
        }
        manifest = dataset.write_manifest(root, name, config, tasks)
        dataset.write_dataset_card(root, manifest)
    except BaseException:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        raise
    dataset.publish(root, out)
    return manifest
