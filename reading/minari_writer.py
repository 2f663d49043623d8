"""Writing the Minari datasets that :func:`kibble.reading.export_minari.plan` decided.

Each task's episodes go through Minari's own storage API (``MinariStorage``, the
``arrow`` data format), each as its first T - 1 steps and T observations, the last
step kept in the episode's metadata; Minari then reads back what was written
(:mod:`kibble.reading.export_minari` says why and what a user of the export gets).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from kibble.errors import KibbleError
from kibble.experts.rollout import episode_seed
from kibble.reading.export import ExportedTask
from kibble.reading.export_minari import (
    DATA_FORMAT,
    TaskPlan,
    minari_module,
    minari_space,
    minari_value,
)
from kibble.schemas.reader import CuratedDataset, EpisodeRecord


def _tree(fn: Any, value: Any) -> Any:
    """``fn`` applied to every leaf of a nested observation or action."""
    if isinstance(value, dict):
        return {k: _tree(fn, v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_tree(fn, v) for v in value)
    return fn(value)


def _jsonable(value: Any) -> Any:
    """One step's native value as JSON: arrays as (nested) lists, numpy scalars as Python."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return np.asarray(value).tolist()


def reset_seed(episode_id: str) -> int | None:
    """The reset seed of a kibble episode id ``TASK#sSEED#INDEX`` (docs/format.md section 1)."""
    task, _, rest = episode_id.partition("#s")
    base, _, index = rest.partition("#")
    if not (task and base.isdigit() and index.isdigit()):
        return None
    return episode_seed(int(base), task, int(index))


def episode_buffer(
    record: EpisodeRecord, index: int, observation_space: gym.Space
) -> tuple[Any, dict]:
    """A Minari ``EpisodeBuffer`` of the record's first T - 1 steps and T observations,
    and the episode metadata that keeps what Minari's arrays cannot (module docstring)."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    t = record.length
    observations = minari_value(observation_space, record.native_observation())  # (T, ...)
    actions = record.native_action()  # leaves (T, ...)
    seed = reset_seed(record.episode_id)
    buffer = EpisodeBuffer(
        id=index,
        seed=seed,
        observations=observations,
        actions=_tree(lambda a: a[: t - 1], actions),
        rewards=record.rewards[: t - 1].tolist(),
        terminations=record.terminated[: t - 1].tolist(),
        truncations=record.truncated[: t - 1].tolist(),
    )
    last = {
        "action": _jsonable(_tree(lambda a: a[t - 1], actions)),
        "reward": float(record.rewards[-1]),
        "terminated": bool(record.terminated[-1]),
        "truncated": bool(record.truncated[-1]),
    }
    metadata = {
        "kibble_episode_id": record.episode_id,
        "kibble_episode_return": float(record.episode_return),
        "kibble_episode_length": t,
        "kibble_last_step": last,
    }
    return buffer, metadata


def _write_namespaces(root: Path, dataset_id: str, location: str) -> None:
    """Minari's ``namespace_metadata.json`` in each namespace folder (``minari list``)."""
    parts = dataset_id.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        folder = root.joinpath(*parts[:i])
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"description": f"exported by kibble from {location}"} if i == 1 else {}
        (folder / "namespace_metadata.json").write_text(json.dumps(meta))


def write_task(
    ds: CuratedDataset, p: TaskPlan, wanted: set[str] | None, root: Path
) -> ExportedTask:
    """Write one task's Minari dataset under ``root`` (the staging folder)."""
    minari = minari_module()
    from minari.dataset.minari_storage import MinariStorage

    _write_namespaces(root, p.dataset_id, ds.location)
    data_path = root / p.dataset_id / "data"
    data_path.parent.mkdir(parents=True)
    storage = MinariStorage.new(
        data_path,
        minari_space(p.observation_space),
        p.action_space,
        p.env_spec,
        data_format=DATA_FORMAT,
    )
    storage.update_metadata(p.metadata)
    # Minari's arrow storage re-measures the whole dataset (a walk of every file) after
    # each episode it writes, which makes an export quadratic in its episodes (1000
    # CartPole episodes took 23 minutes on a busy machine, 12 s with this). Measure once,
    # at the end, instead.
    measure = storage.get_size
    storage.get_size = lambda: 0.0
    episodes = steps = one_step = 0
    dropped = total = 0.0
    for record in ds.episodes(p.task):
        if wanted is not None and record.episode_id not in wanted:
            continue
        if not record.has_raw_values:
            raise KibbleError(
                f"{p.task}: episode {record.episode_id} has no raw values (its rows were "
                "written without them); curate the dataset again with raw values on"
            )
        total += record.episode_return
        if record.length < 2:
            one_step += 1
            continue
        buffer, metadata = episode_buffer(record, episodes, p.observation_space)
        storage.update_episodes([buffer])
        storage.update_episode_metadata([metadata], [episodes])
        episodes += 1
        steps += record.length - 1
        dropped += float(record.rewards[-1])
    del storage.get_size
    storage.update_metadata({"dataset_size": measure()})
    notes = list(p.notes)
    notes.append(
        f"each episode lacks its last step (kibble records no observation after the last "
        f"action): reward {dropped:g} of {total:g} is in the episode metadata only"
    )
    if one_step:
        notes.append(f"{one_step} one-step episode(s) left out (no step to export)")
    # Minari itself reads back what was written: the metadata, the spaces, the counts.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check = minari.MinariDataset(data_path)
    if (check.total_episodes, check.total_steps) != (episodes, steps):
        raise RuntimeError(  # a bug, not a user's mistake: keep the traceback
            f"{p.task}: Minari reads {check.total_episodes} episodes and {check.total_steps} "
            f"steps where {episodes} and {steps} were written (a bug; please report it)"
        )
    return ExportedTask(
        p.task, p.dataset_id, data_path, episodes, steps, p.ref_min_score, p.ref_max_score, notes
    )


def write(
    ds: CuratedDataset,
    plans: list[TaskPlan | None],
    selection: dict[str, set[str] | None],
    root: Path,
) -> list[ExportedTask]:
    """Every planned task's Minari dataset under ``root``, which must not exist."""
    todo = [p for p in plans if p is not None]
    if not todo:
        raise KibbleError(
            f"nothing to export: {', '.join(selection)} kept no episode in {ds.location}"
        )
    ids = [p.dataset_id for p in todo]
    if len(set(ids)) != len(ids):
        raise KibbleError(f"two tasks map to one Minari id: {sorted(ids)}; export them apart")
    root.mkdir()
    return [write_task(ds, p, selection[p.task], root) for p in todo]
