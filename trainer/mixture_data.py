"""The mixture loader: random timestep-aligned windows streamed from curated Parquet.

Memory stays bounded whatever the dataset size: opening a mixture reads only four small
columns (task, step, token counts) to index episodes as (file, first row, length), and
windows are cut from Parquet row groups read on demand and kept in a small LRU cache.
Datasets and their files are opened through the dataset reader,
:class:`kibble.schemas.reader.CuratedDataset` (the one reader ``kibble.open_dataset`` uses
too), which checks the manifest, schema versions and each file against its entry.

Sampling (docs/format.md §12): a dataset by its weight, then a timestep uniformly within it (an
episode with probability proportional to its length, then a start inside it). A quarter
of sequences (``prompt_fraction``) get a prompt from another episode of the same task
prepended, half of them from that episode's end and half from a uniform position.
All randomness comes from one numpy Generator whose state is saved in checkpoints, so a
resumed run draws the same batches.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa

from kibble.errors import KibbleError
from kibble.schemas.arrow import list_column_to_numpy
from kibble.schemas.layout import TaskEntry
from kibble.schemas.raw_values import table_images
from kibble.schemas.reader import CuratedDataset, DataFile, damaged, ragged_rows, ragged_slice
from kibble.tokenize.episode import TokenizedSteps
from kibble.trainer.config import MixtureConfig
from kibble.trainer.integrity import check_group
from kibble.trainer.sequences import (
    Batch,
    TokenWindow,
    build_sequence,
    collate,
    concat_sequences,
    concat_steps,
)

log = logging.getLogger(__name__)

_INDEX_COLUMNS = ["task", "step", "n_observation_tokens", "n_action_tokens"]
_WINDOW_COLUMNS = ["observation_tokens", "action_tokens", "images", "image_shapes"]
# Read with each row group to check it (kibble.trainer.integrity): two small int columns.
_CHECK_COLUMNS = ["n_observation_tokens", "n_action_tokens"]


@dataclass(kw_only=True)
class TaskInfo:
    """One task of the mixture, with what its manifest says about its expert; a run's
    ``tasks.json`` holds one per task (``to_dict``), which evaluation reads back."""

    task: str
    """The task id, e.g. ``metaworld/reach-v3``."""
    dataset: str
    """The dataset (its path as the mixture gives it) the task was first indexed from."""
    n_observation_tokens: int
    """Observation tokens per timestep (text observations: the most of any episode)."""
    n_action_tokens: int
    expert_return: float | None
    random_return: float | None
    text_model: dict | None = None
    """The manifest's record of the SentencePiece model of its text observations."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "tasks.json") -> TaskInfo:
        required = [f.name for f in fields(cls) if f.name != "text_model"]
        if not isinstance(d, dict) or not set(required) <= set(d):
            missing = ", ".join(n for n in required if not isinstance(d, dict) or n not in d)
            raise KibbleError(f"{where}: a task's entry lacks {missing}; train the run again")
        return cls(**{n: d[n] for n in required}, text_model=d.get("text_model"))

    @property
    def family(self) -> str:
        return self.task.split("/", 1)[0]

    @property
    def tokens_per_step(self) -> int:
        return self.n_observation_tokens + 1 + self.n_action_tokens


@dataclass(kw_only=True)
class EpisodeIndex:
    """One dataset's episodes, indexed for sampling: an array per episode, and what is
    derived from them once (not per sample)."""

    file: np.ndarray
    """Index into :attr:`MixtureData.files` of the file holding the episode."""
    first_row: np.ndarray
    """The episode's first row in that file."""
    length: np.ndarray
    """Timesteps of the episode."""
    task: np.ndarray
    """Index into :attr:`MixtureData.tasks`."""
    cumulative_length: np.ndarray
    """Running sum of ``length``: draws a uniform timestep."""
    episodes_of_task: dict[int, np.ndarray]
    """Each task's episodes (positions in these arrays): draws prompts."""
    task_cumulative: dict[int, np.ndarray]
    """Each task's episodes' running lengths: draws a timestep of one task."""
    task_keys: list[int]
    """The tasks drawn from, in order."""
    task_p: np.ndarray | None = None
    """``task_weights`` and ``sampling: tasks``: each task's probability (None: equal)."""
    weighted_cumulative: np.ndarray | None = None
    """``task_weights`` with timestep sampling: running sum of length x its task's weight
    (None: no weights, ``cumulative_length`` is used)."""

    @property
    def num_episodes(self) -> int:
        return len(self.length)


class MixtureData:
    """Indexes a mixture's datasets and samples batches of sequences from them."""

    def __init__(self, config: MixtureConfig, max_observation_tokens: int = 1 << 30) -> None:
        self.config = config
        self.tasks: list[TaskInfo] = []
        self.files: list[DataFile] = []
        task_ids: dict[str, int] = {}
        # Per dataset: per-episode arrays (file index, first row, length, task index),
        # and the derived cumulative lengths and episodes per task.
        self.episodes: list[EpisodeIndex] = []
        for spec in config.datasets:
            self.episodes.append(self._index_dataset(spec.path, task_ids))
        weights = np.array([d.weight for d in config.datasets], np.float64)
        self.dataset_p = weights / weights.sum()
        self._weigh_tasks(config.task_weights)
        too_long = [t for t in self.tasks if t.n_observation_tokens > max_observation_tokens]
        if too_long:
            t = too_long[0]
            raise KibbleError(
                f"{t.task} (in {t.dataset}) has {t.n_observation_tokens} observation tokens "
                f"per timestep; the model gives local positions to at most "
                f"{max_observation_tokens}. Use a model with a larger max_observation_tokens"
            )
        for t in self.tasks:
            if t.tokens_per_step > config.context:
                raise KibbleError(
                    f"{t.task} (in {t.dataset}) has {t.tokens_per_step} tokens per timestep, "
                    f"more than the context of {config.context}; raise context in the mixture"
                )
        self._cache: OrderedDict[tuple[int, int], tuple] = OrderedDict()
        self.rng = np.random.default_rng(config.seed)

    # -- indexing ---------------------------------------------------------------------------

    def _index_dataset(self, path: str, task_ids: dict[str, int]) -> EpisodeIndex:
        dataset = CuratedDataset(path)  # the manifest, its files and version checked
        data_files = dataset.data_files()
        if not any(f["rows"] for f in data_files):
            raise KibbleError(f"{path} has no kept episodes: nothing to train on")
        columns: dict[str, list] = {"file": [], "first_row": [], "length": [], "task": []}
        for entry in data_files:
            opened = dataset.open_file(entry)  # every listed file: its size and rows checked
            if not entry["rows"]:
                continue
            file_index = len(self.files)
            self.files.append(opened)
            table = opened.read(_INDEX_COLUMNS)
            steps = table["step"].to_numpy()
            starts = np.flatnonzero(steps == 0)
            if len(starts) == 0 or starts[0] != 0:
                raise KibbleError(f"{opened.url}: rows do not start at an episode's first step")
            lengths = np.diff(np.append(starts, len(steps)))
            n_obs = table["n_observation_tokens"].to_numpy()
            n_act = table["n_action_tokens"].to_numpy()
            names = table["task"].to_pylist()
            for s in starts:
                entry_of_task = dataset.tasks.get(names[s])
                task = self._task(
                    names[s], int(n_obs[s]), int(n_act[s]), entry_of_task, path, task_ids
                )
                columns["task"].append(task)
            columns["file"].append(np.full(len(starts), file_index))
            columns["first_row"].append(starts)
            columns["length"].append(lengths)
        length = np.concatenate(columns["length"]).astype(np.int64)
        task = np.asarray(columns["task"], np.int64)
        return EpisodeIndex(
            file=np.concatenate(columns["file"]).astype(np.int64),
            first_row=np.concatenate(columns["first_row"]).astype(np.int64),
            length=length,
            task=task,
            cumulative_length=np.cumsum(length),
            episodes_of_task={int(t): np.flatnonzero(task == t) for t in np.unique(task)},
            task_cumulative={int(t): np.cumsum(length[task == t]) for t in np.unique(task)},
            task_keys=[int(t) for t in np.unique(task)],
        )

    def _task(
        self,
        name: str,
        n_obs: int,
        n_act: int,
        entry: TaskEntry | None,
        path: str,
        ids: dict[str, int],
    ) -> int:
        text_model = entry.extra.get("text_model") if entry is not None else None
        if name in ids:
            known = self.tasks[ids[name]]
            if text_model is not None and known.n_action_tokens == n_act:
                # Text observations (a mission) give each episode its own count; windows
                # are sized by the longest.
                known.n_observation_tokens = max(known.n_observation_tokens, n_obs)
                return ids[name]
            if (known.n_observation_tokens, known.n_action_tokens) != (n_obs, n_act):
                raise KibbleError(
                    f"{name}: its spaces disagree between datasets: {known.dataset} has "
                    f"{known.n_observation_tokens} observation and {known.n_action_tokens} "
                    f"action tokens per timestep, {path} has {n_obs} and {n_act}. Curate both "
                    "with the same environment version, or leave one out of the mixture"
                )
            return ids[name]
        ids[name] = len(self.tasks)
        self.tasks.append(
            TaskInfo(
                task=name,
                dataset=path,
                n_observation_tokens=n_obs,
                n_action_tokens=n_act,
                expert_return=entry.expert_return if entry is not None else None,
                random_return=entry.random_return if entry is not None else None,
                text_model=text_model,
            )
        )
        return ids[name]

    def _weigh_tasks(self, task_weights: dict[str, float]) -> None:
        """Per dataset, the task probabilities (or weighted cumulative lengths) they give."""
        if not task_weights:
            return  # without weights the draws stay as they were (runs reproduce)
        names = {info.task for info in self.tasks}
        unknown = sorted(set(task_weights) - names)
        if unknown:
            raise KibbleError(
                f"{self.config.source}: task_weights: {', '.join(unknown)} is not in the "
                f"mixture's datasets; its tasks are: {', '.join(sorted(names))}"
            )
        weight = np.array([task_weights.get(info.task, 1.0) for info in self.tasks])
        for ep in self.episodes:  # only what the mixture's sampling draws from
            if self.config.sampling == "tasks":
                p = weight[ep.task_keys]
                ep.task_p = p / p.sum()
            else:
                ep.weighted_cumulative = np.cumsum(ep.length * weight[ep.task])

    @property
    def num_episodes(self) -> int:
        return sum(d.num_episodes for d in self.episodes)

    @property
    def num_steps(self) -> int:
        return int(sum(d.length.sum() for d in self.episodes))

    # -- reading ------------------------------------------------------------------------------

    def _group(self, file_index: int, group: int) -> tuple:
        key = (file_index, group)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        file = self.files[file_index]
        table = file.read_group(group, _WINDOW_COLUMNS + _CHECK_COLUMNS)
        try:
            # Observation rows may differ in length between episodes (text observations):
            # kept flat with offsets, made 2-D per episode window in `read_steps`.
            obs = ragged_rows(table["observation_tokens"])
            act = list_column_to_numpy(table["action_tokens"], np.int32)
            images = table_images(table)
        except (ValueError, IndexError, pa.ArrowException) as e:
            raise damaged(file.url, group, str(e)) from e
        check_group(file.url, group, int(file.group_starts[group]), table, obs, act)
        value = (obs, act, images)
        self._cache[key] = value
        while len(self._cache) > self.config.cache_row_groups:
            self._cache.popitem(last=False)
        return value

    def read_steps(self, file_index: int, start: int, stop: int) -> TokenizedSteps:
        """Rows ``[start, stop)`` of one file as TokenizedSteps (crossing row groups if needed)."""
        starts = self.files[file_index].group_starts
        parts = []
        g = int(np.searchsorted(starts, start, side="right")) - 1
        row = start
        while row < stop:
            obs, act, images = self._group(file_index, g)
            lo, hi = row - starts[g], min(stop, starts[g + 1]) - starts[g]
            parts.append(
                TokenizedSteps(
                    ragged_slice(obs, lo, hi), act[lo:hi], [img[lo:hi] for img in images]
                )
            )
            row = starts[g] + hi
            g += 1
        return parts[0] if len(parts) == 1 else concat_steps(parts)

    def episode_steps(self, dataset: int, episode: int, start: int, stop: int) -> TokenizedSteps:
        ep = self.episodes[dataset]
        first = int(ep.first_row[episode])
        return self.read_steps(int(ep.file[episode]), first + start, first + stop)

    # -- sampling -----------------------------------------------------------------------------

    def sample_sequence(self) -> tuple[TokenWindow, int, str | None]:
        """One training sequence, its task index and its prompt ("end", "uniform" or None)."""
        rng = self.rng
        d = int(rng.choice(len(self.episodes), p=self.dataset_p))
        ep = self.episodes[d]
        lengths = ep.length
        if self.config.sampling == "tasks":
            # Each task of the dataset an equal share (or its task_weights share), whatever
            # its number of timesteps; inside it, a uniform timestep.
            keys = ep.task_keys
            t = int(rng.choice(keys) if ep.task_p is None else rng.choice(keys, p=ep.task_p))
            cumulative, members = ep.task_cumulative[t], ep.episodes_of_task[t]
            e = int(members[np.searchsorted(cumulative, rng.integers(cumulative[-1]), "right")])
        elif ep.weighted_cumulative is not None:
            # A timestep with probability proportional to its task's weight.
            cumulative = ep.weighted_cumulative
            e = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        else:
            # An episode with probability proportional to its length = a uniform timestep.
            cumulative = ep.cumulative_length
            e = int(np.searchsorted(cumulative, rng.integers(cumulative[-1]), side="right"))
        task = self.tasks[int(ep.task[e])]
        n_steps = max(1, self.config.context // task.tokens_per_step)
        parts, prompt = [], None
        if n_steps >= 2 and rng.random() < self.config.prompt_fraction:
            p_steps = n_steps // 2
            n_steps -= p_steps
            prompt = "end" if rng.random() < 0.5 else "uniform"
            parts.append(build_sequence(self._prompt(d, e, p_steps, from_end=prompt == "end")))
        length = int(lengths[e])
        start = int(rng.integers(max(1, length - n_steps + 1)))
        parts.append(build_sequence(self.episode_steps(d, e, start, min(length, start + n_steps))))
        seq = parts[0] if len(parts) == 1 else concat_sequences(parts)
        return seq, int(ep.task[e]), prompt

    def _prompt(self, dataset: int, episode: int, n_steps: int, from_end: bool) -> TokenizedSteps:
        """``n_steps`` of another episode of the same task (itself if it is the only one)."""
        ep = self.episodes[dataset]
        same = ep.episodes_of_task[int(ep.task[episode])]
        others = same[same != episode]
        other = int(self.rng.choice(others)) if len(others) else episode
        length = int(ep.length[other])
        n = min(n_steps, length)
        start = length - n if from_end else int(self.rng.integers(length - n + 1))
        return self.episode_steps(dataset, other, start, start + n)

    def demonstration(self, task: str, n_steps: int, seed: int = 0) -> TokenizedSteps:
        """The last ``n_steps`` of one of ``task``'s episodes: an evaluation prompt."""
        rng = np.random.default_rng(seed)
        t = next((i for i, info in enumerate(self.tasks) if info.task == task), None)
        if t is None:
            raise KibbleError(
                f"{task} is not in this run's training data; its tasks are: "
                + ", ".join(info.task for info in self.tasks)
            )
        for d, ep in enumerate(self.episodes):
            candidates = ep.episodes_of_task.get(t, [])
            if len(candidates):
                e = int(rng.choice(candidates))
                length = int(ep.length[e])
                n = min(n_steps, length)
                return self.episode_steps(d, e, length - n, length)
        raise AssertionError("unreachable: every task has an episode")

    def sample_batch(self, batch_size: int) -> Batch:
        sequences, tasks, _ = zip(*(self.sample_sequence() for _ in range(batch_size)), strict=True)
        return collate(list(sequences), self.config.context, list(tasks))

    def rng_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
