"""The episode ``kibble view`` draws: one kept episode read back, with its plot labels.

:func:`load_episode` finds it (the task's first kept episode, or one by id, reading only
the row groups that hold it) and gives a :class:`ViewedEpisode`: what
:mod:`kibble.reading.frames` and :mod:`kibble.reading.view_plots` draw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from kibble.errors import KibbleError
from kibble.schemas.layout import REJECTED_DIR, dataset_file
from kibble.schemas.reader import CuratedDataset, EpisodeRecord


@dataclass
class ViewedEpisode:
    """The parts of one kept episode a view draws (docs/format.md section 8)."""

    task: str
    episode_id: str
    episode_return: float
    length: int
    rewards: np.ndarray  # (T,) float64
    action: np.ndarray  # (T, A) float64: raw action leaves, flattened
    observation: np.ndarray  # (T, D) float64: raw non-image observation leaves, flattened
    images: list[np.ndarray] = field(default_factory=list)  # K x (T, H, W, C) uint8
    texts: list[str] = field(default_factory=list)
    """Per step, the observation's text leaves joined (a BabyAI mission); [] or "" without."""
    observation_leaves: list[tuple[str, int]] | None = None
    """(name, values) of each leaf of ``observation`` in column order, from the manifest's
    space description: ``("direction", 1)``, ``("image", 147)``; ``("observation", 4)``
    for a space that is one unnamed leaf (a Box); None without a description."""
    action_leaves: list[tuple[str, int]] | None = None


def load_episode(
    dataset: str | os.PathLike | CuratedDataset, task: str | None, episode_id: str | None
) -> ViewedEpisode:
    """One kept episode of ``task``, read with kibble's dataset reader.

    ``task`` None: the dataset's one task (a KibbleError naming them if it has several).
    ``episode_id`` None: the task's first kept episode (its lowest kept episode index:
    files and the episodes in them are in index order, docs/format.md section 9).
    """
    ds = dataset if isinstance(dataset, CuratedDataset) else CuratedDataset(dataset)
    task = only_task(ds) if task is None else task
    entry = ds.task(task)  # an unknown task: an error naming the dataset's tasks
    files = [f for f in ds.data_files(task) if f["rows"]]
    if not files:
        raise KibbleError(
            f"{task} kept no episode in {ds.location} ({entry.counts()}): there is nothing to view"
        )
    if episode_id is None:
        record = next(ds.open_file(files[0]).episodes({task: ds.space_descriptions(task)}))
    else:
        record = _find_episode(ds, files, task, episode_id)
    return _viewed(record)


def only_task(ds: CuratedDataset) -> str:
    """The dataset's task when it has one; else a KibbleError naming its tasks."""
    if len(ds.task_ids) == 1:
        return ds.task_ids[0]
    raise KibbleError(
        f"the dataset at {ds.location} has {len(ds.task_ids)} tasks ("
        + (", ".join(ds.task_ids) or "none")
        + "): give the one to view with --task"
    )


def _find_episode(ds: CuratedDataset, files: list[dict], task: str, episode_id: str):
    """The kept episode ``episode_id`` of ``task``, reading only the row groups that hold
    it (an Atari file holds hundreds of frames per episode); a KibbleError if absent."""
    import pyarrow as pa

    for entry in files:
        data = ds.open_file(entry)
        ids = data.read(["episode_id"])["episode_id"].to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(ids == episode_id)
        if not rows.size:
            continue
        lo, hi = int(rows[0]), int(rows[-1]) + 1  # an episode's rows are contiguous
        first = int(np.searchsorted(data.group_starts, lo, side="right")) - 1
        last = int(np.searchsorted(data.group_starts, hi - 1, side="right")) - 1
        groups = [data.read_group(g, data.columns) for g in range(first, last + 1)]
        table = pa.concat_tables(groups).slice(lo - int(data.group_starts[first]), hi - lo)
        return EpisodeRecord.from_table(table, *ds.space_descriptions(task))
    raise KibbleError(_unknown_episode(ds, files, task, episode_id))


def _unknown_episode(ds: CuratedDataset, files: list[dict], task: str, episode_id: str) -> str:
    """Why ``episode_id`` is not viewable: rejected (and why), or not in the dataset."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    message = f"episode {episode_id!r} is not a kept episode of {task} in {ds.location}"
    try:
        fs, path = dataset_file(ds.location, f"{REJECTED_DIR}/part-00000.parquet")
        with fs.open_input_file(path) as f:
            rejected = pq.read_table(f, columns=["task", "episode_id", "reason", "detail"])
    except (OSError, ValueError, KibbleError):  # no rejected file to consult: what we know
        rejected = None
    if rejected is not None:
        hit = rejected.filter(pc.equal(rejected["episode_id"], episode_id)).to_pylist()
        if hit:
            return (
                f"{message}: it was rejected ({hit[0]['reason']}: {hit[0]['detail']}), and "
                "only kept episodes are stored; give a kept one, or leave --episode out to "
                "view the first kept episode"
            )
    first = ds.open_file(files[0]).read(["episode_id"])["episode_id"].unique().to_pylist()
    examples = ", ".join(first[:3]) + (", ..." if len(first) > 3 else "")
    kept = ds.task(task).kept
    return (
        f"{message}: none of its kept episodes ({kept}) has that id (they look like "
        f"{examples}); copy an id from the `episode_id` column, or leave --episode out to "
        "view the first kept episode"
    )


def _viewed(record: EpisodeRecord) -> ViewedEpisode:
    """An EpisodeRecord (its images cropped to their own size by the reader, given the
    space descriptions) -> what a view draws, with plot labels from the manifest's space
    descriptions (docs/format.md section 9) where it has them."""
    return ViewedEpisode(
        task=record.task,
        episode_id=record.episode_id,
        episode_return=float(record.episode_return),
        length=int(record.length),
        rewards=np.asarray(record.rewards, np.float64),
        action=np.asarray(record.action, np.float64),
        observation=np.asarray(record.observation, np.float64),
        images=[img if img.ndim == 4 else img[..., None] for img in record.images],
        texts=[" | ".join(step) for step in record.texts],
        observation_leaves=_leaves(record.observation_space, "observation"),
        action_leaves=_leaves(record.action_space, "action"),
    )


def _leaves(description: object, role: str) -> list[tuple[str, int]] | None:
    """(name, values) of each flat ``role`` leaf of a space description: Dict keys and
    Tuple indexes joined by ``.`` (``position``, ``arm.0``), ``role`` for a space that
    is one leaf; None without a description."""
    if not isinstance(description, dict):
        return None
    return [
        (".".join(str(p) for p in leaf.get("path", [])) or role, int(leaf.get("size", 1)))
        for leaf in description.get("leaves", [])
        if leaf.get("column") == role
    ]
