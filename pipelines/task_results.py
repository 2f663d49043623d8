"""What curating a task produced: its summary (threshold, outcomes, data files), the
rejected table's rows and the manifest's task entry (docs/format.md section 9)."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from gymnasium import spaces

from kibble.envs import get_task
from kibble.pipelines.episode_validation import BELOW_THRESHOLD
from kibble.pipelines.stages import EpisodeOutcome, TaskJob, Threshold, is_kept
from kibble.schemas.layout import TaskEntry
from kibble.schemas.parquet import filesystem_and_path
from kibble.schemas.raw_values import describe_space
from kibble.tokenize.codecs import text_tokenizer
from kibble.tokenize.episode import SpaceTokenizer


@dataclass(frozen=True)
class TaskSummary:
    """A task's curation, the last step's output: what the launcher assembles the
    dataset from (small: a Beam worker writes it as JSON for the launcher)."""

    threshold: Threshold
    outcomes: tuple[EpisodeOutcome, ...]
    """Every episode's outcome, in index order."""
    files: tuple[dict, ...]
    """Manifest entries of the task's data files (path, rows, bytes, sha256), in shard
    order, made where they were written."""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TaskSummary:
        threshold = dict(d["threshold"], defining=tuple(d["threshold"]["defining"]))
        return cls(
            threshold=Threshold(**threshold),
            outcomes=tuple(EpisodeOutcome(**o) for o in d["outcomes"]),
            files=tuple(d["files"]),
        )


def space_records(observation_space: spaces.Space, action_space: spaces.Space) -> dict:
    """The manifest's description of a task's spaces (docs/format.md section 9): enough to
    give the raw value columns back their leaves, dtypes and shapes."""
    return {
        "observation_space": describe_space(observation_space, "observation"),
        "action_space": describe_space(action_space, "action"),
    }


def text_model_record(observation_space: spaces.Space, text_model: str | None) -> dict:
    """``{"text_model": {file, sha256, pieces}}`` for a task with text observations, else {}.

    The manifest names the SentencePiece model that tokenized a task's text (by content:
    the same ids need the same model), so a trainer or evaluator can check it has it.
    """
    leaves = SpaceTokenizer(observation_space, "observation", text_model).text_leaves
    if not leaves:
        return {}
    path = Path(leaves[0].model_file)
    return {
        "text_model": {
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "pieces": text_tokenizer(str(path)).vocab_size,
        }
    }


def rejected_rows(outcomes: Iterable[EpisodeOutcome], threshold: Threshold) -> list[dict]:
    rows = []
    for o in outcomes:
        if is_kept(o, threshold):
            continue
        reason, detail = o.reason, o.detail
        if reason is None:
            reason = BELOW_THRESHOLD
            thr = threshold.threshold
            detail = (
                f"return {o.episode_return:.6g} < threshold {thr:.6g} ({threshold.rule})"
                if thr is not None
                else "no valid episode of the task to set a threshold"
            )
        rows.append(
            {
                "task": o.task,
                "episode_id": o.episode_id,
                "episode_return": o.episode_return,
                "episode_length": o.episode_length,
                "reason": reason,
                "detail": detail,
            }
        )
    return rows


def task_entry(
    job: TaskJob,
    outcomes: list[EpisodeOutcome],
    threshold: Threshold,
    data_files: list[str | os.PathLike],
) -> TaskEntry:
    """The task's manifest entry; checks that kept + rejected = planned."""
    kept = [o for o in outcomes if is_kept(o, threshold)]
    reasons = Counter(r["reason"] for r in rejected_rows(outcomes, threshold))
    steps = tokens = 0
    for data_file in data_files:
        fs, path = filesystem_and_path(data_file)
        t = pq.read_table(path, columns=["n_observation_tokens", "n_action_tokens"], filesystem=fs)
        steps += t.num_rows
        tokens += int(
            pc.sum(t["n_observation_tokens"]).as_py()
            + t.num_rows
            + pc.sum(t["n_action_tokens"]).as_py()
        )
    if len(outcomes) != job.episodes or len(kept) + sum(reasons.values()) != job.episodes:
        raise RuntimeError(f"{job.task}: kept + rejected != planned")  # a kibble bug
    obs_space, act_space = get_task(job.task).spaces()
    return TaskEntry(
        expert=job.expert,
        planned=job.episodes,
        kept=len(kept),
        rejected=dict(sorted(reasons.items())),
        steps=steps,
        tokens=tokens,
        expert_return=threshold.expert_return,
        expert_return_source=threshold.source,
        random_return=threshold.random_return,
        fraction=threshold.fraction,
        threshold=threshold.threshold,
        rule=threshold.rule,
        extra={
            "raw_values": job.raw_values,
            **space_records(obs_space, act_space),
            **text_model_record(obs_space, job.text_model),
        },
    )
