"""A curated dataset as Minari datasets, one per task (docs/format.md section 15).

Minari (https://minari.farama.org, ``kibble[export]``: minari 0.5.3, the last release
that accepts NumPy 1) is imported only here, when an export runs.

Each task becomes the Minari dataset ``kibble/<task>/<name>-v0`` (``<name>``: the kibble
dataset's name; characters Minari ids refuse become ``_``) at
``OUT/kibble/<task>/<name>-v0/data``, written with Minari's own storage API
(``MinariStorage``, the ``arrow`` data format) so that ``minari.load_dataset(ID)`` with
``MINARI_DATASETS_PATH=OUT``, or ``minari.MinariDataset(PATH)``, reads it:

- observation and action spaces: the task's, rebuilt from the manifest's descriptions;
  observations and actions with each leaf's own dtype and shape, from the raw value
  columns (docs/format.md section 8), texts and images included;
- rewards, terminations, truncations: as recorded;
- ``ref_min_score`` / ``ref_max_score``: the random and expert returns of the task's
  expert card (``expert_return_source == "card"``), so ``minari.get_normalized_score``
  gives D4RL-style scores. A task curated without a card has no random-policy return,
  and a card whose expert is not better than random defines no normalized score
  (kibble's own evaluation gives none either): such a dataset has no ref scores;
- the Gymnasium ``env_spec`` for ``gym/`` tasks registered in Gymnasium (so
  ``recover_environment()`` works); other families' environments are kibble's own
  (``kibble.envs``) and are not recorded.

**The final observation.** A Minari episode of N steps holds N + 1 observations: the
last one is the observation after the last action. kibble keeps T observations for T
steps (the observation after the last action is not recorded, docs/format.md section
7), and making one up (repeating the last) would be false data. So an episode of T steps
is exported as its first T - 1 steps, with the T observations it has: the last step's
action, reward, terminated and truncated are not in Minari's arrays. They are kept in
the episode's metadata (``dataset.storage.get_episode_metadata([i])``, key
``kibble_last_step``), with ``kibble_episode_id``, ``kibble_episode_return`` (the
return of all T steps) and ``kibble_episode_length`` (T). Sparse rewards often come on
that last step (BabyAI, success bonuses): each task's note says how much reward the
Minari arrays lack. One-step episodes have no step to export and are left out (counted
in the note).

**Images.** Minari stores an image leaf (uint8 Box, at least 32x32, bounds 0..255) as
JPEG, in both of its formats: pixels come back close to, not equal to, kibble's.
Smaller images are stored exactly. Minari 0.5.3 writes (H, W) and (H, W, 3) images
only (its encoder refuses other channel counts, Minari issue #355): an (H, W, 1) leaf,
such as Atari's grayscale frames, is declared and stored as (H, W) (the same pixels
without the axis of 1; the task's note says so), and a task with another channel count
(RGBA) is refused.

This module decides each task's export and refuses what cannot be exported, before
anything is written (:func:`plan`); :mod:`kibble.reading.minari_writer` writes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from kibble.errors import KibbleError
from kibble.schemas.raw_values import space_from_description
from kibble.schemas.reader import CuratedDataset

NAMESPACE = "kibble"
DATA_FORMAT = "arrow"
"""Minari's data format for the export (pyarrow is a kibble dependency; hdf5 needs h5py)."""
_ID_CHARACTERS = re.compile(r"[^-\w]")


@dataclass
class TaskPlan:
    """One task's export, decided (and checked) before anything is written."""

    task: str
    dataset_id: str
    observation_space: gym.Space
    action_space: gym.Space
    ref_min_score: float | None
    ref_max_score: float | None
    metadata: dict
    """Minari dataset metadata beyond what ``MinariStorage.new`` writes."""
    env_spec: Any = None
    notes: list[str] = field(default_factory=list)


def minari_module() -> Any:
    """``minari``, or a KibbleError saying how to install it."""
    try:
        import minari
        from minari.dataset._storages import arrow_storage  # noqa: F401  (needs Pillow)
    except ImportError as e:
        raise KibbleError(
            f"exporting to Minari needs minari 0.5.3 and Pillow ({e}): pip install "
            "'kibble[export]' (minari 0.5.4 and later need NumPy 2, which kibble's "
            "environments do not accept)"
        ) from e
    return minari


def dataset_id(task: str, name: str) -> str:
    """``kibble/<task>/<name>-v0``; characters a Minari id refuses become ``_``.

    >>> dataset_id("gym/CartPole-v1", "cartpole demo")
    'kibble/gym/CartPole-v1/cartpole_demo-v0'
    """
    parts = [_ID_CHARACTERS.sub("_", p) or "_" for p in task.split("/")]
    return "/".join([NAMESPACE, *parts, f"{_ID_CHARACTERS.sub('_', name) or 'dataset'}-v0"])


def leaves(space: gym.Space, path: str = "") -> list[tuple[str, gym.Space]]:
    """``(path, leaf space)`` of every leaf: Dict keys and Tuple indexes joined by ``.``
    (``""``: the space itself is the leaf)."""
    if isinstance(space, gym.spaces.Dict):
        return [x for k, s in space.spaces.items() for x in leaves(s, f"{path}.{k}")]
    if isinstance(space, gym.spaces.Tuple):
        return [x for i, s in enumerate(space.spaces) for x in leaves(s, f"{path}.{i}")]
    return [(path.lstrip("."), space)]  # "" for a space that is one leaf


def _gray(space: gym.Space) -> bool:
    """An (H, W, 1) image leaf, which Minari stores as an (H, W) one (module docstring)."""
    from minari.dataset.minari_storage import is_image_space

    return is_image_space(space) and len(space.shape) == 3 and space.shape[2] == 1


def unrepresentable(space: gym.Space) -> str | None:
    """Why Minari 0.5.3 cannot write values of ``space``, or None if it can."""
    from minari.dataset.minari_storage import is_image_space

    for path, leaf in leaves(space):
        if is_image_space(leaf) and len(leaf.shape) == 3 and leaf.shape[2] not in (1, 3):
            return (
                f"its image{f' leaf {path}' if path else ''} has shape {leaf.shape}: Minari "
                "stores images of at least 32x32 pixels as JPEG, which holds grayscale and "
                "RGB images only"
            )
    return None


def minari_space(space: gym.Space) -> gym.Space:
    """``space`` as the export declares it: (H, W, 1) image leaves as (H, W)."""
    if isinstance(space, gym.spaces.Dict):
        return gym.spaces.Dict({k: minari_space(s) for k, s in space.spaces.items()})
    if isinstance(space, gym.spaces.Tuple):
        return gym.spaces.Tuple([minari_space(s) for s in space.spaces])
    if _gray(space):
        return gym.spaces.Box(space.low[..., 0], space.high[..., 0], dtype=space.dtype)
    return space


def minari_value(space: gym.Space, value: Any) -> Any:
    """Observations (leading T axis) as :func:`minari_space` declares them."""
    if isinstance(space, gym.spaces.Dict):
        return {k: minari_value(space[k], v) for k, v in value.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(minari_value(s, v) for s, v in zip(space.spaces, value, strict=True))
    return value[..., 0] if _gray(space) else value


def ref_scores(entry: Any) -> tuple[float | None, float | None, str | None]:
    """``(ref_min_score, ref_max_score, note)`` from the task's manifest entry."""
    if entry.expert_return_source != "card" or entry.random_return is None:
        return (
            None,
            None,
            (
                "no ref_min_score/ref_max_score: the task was curated without an expert card, "
                "so there is no random-policy return (curate with a card from `kibble "
                "expert eval`: `kibble rollout --card`, or `card:` in the config)"
            ),
        )
    expert, rand = float(entry.expert_return), float(entry.random_return)
    if expert <= rand:
        return (
            None,
            None,
            (
                f"no ref_min_score/ref_max_score: the card's expert return {expert:g} is not "
                f"above its random return {rand:g}, so a normalized score is undefined"
            ),
        )
    return rand, expert, None


def _env_spec(task: str) -> Any:
    """The Gymnasium EnvSpec of a ``gym/`` task, if registered and serializable."""
    family, _, name = task.partition("/")
    if family != "gym" or name not in gym.registry:
        return None
    spec = gym.spec(name)
    try:
        spec.to_json()
    except (TypeError, ValueError, gym.error.Error):
        return None  # e.g. an entry point that is a class, not a string
    return spec


def plan(ds: CuratedDataset, task: str) -> TaskPlan | None:
    """Check that ``task`` can be exported and decide how; None if it has no kept episode.

    A KibbleError names the task when the dataset has no raw values for it or Minari
    cannot represent its spaces.
    """
    minari = minari_module()
    entry = ds.task(task)
    if not entry.kept:
        return None
    if entry.extra.get("raw_values") is False:
        raise KibbleError(
            f"{task}: {ds.location} was curated without raw values (raw_values: false), so "
            "only Gato tokens are stored and an export would have no observations or actions "
            "to write; curate it again with raw values on (the default)"
        )
    obs_description, act_description = ds.space_descriptions(task)
    if obs_description is None or act_description is None:
        raise KibbleError(
            f"{task}: the manifest of {ds.location} does not describe the task's spaces; "
            "curate the dataset again with this kibble"
        )
    observation_space = space_from_description(obs_description)
    action_space = space_from_description(act_description)
    for role, space in (("observation", observation_space), ("action", action_space)):
        problem = unrepresentable(space)
        if problem:
            raise KibbleError(
                f"{task}: Minari cannot represent the task's {role} space: {problem}. Export "
                "the other tasks with --task"
            )
    gray = [path for path, leaf in leaves(observation_space) if _gray(leaf)]
    ref_min, ref_max, note = ref_scores(entry)
    did = dataset_id(task, ds.name)
    minari.dataset.minari_dataset.parse_dataset_id(did)  # our ids always parse
    max_steps = next(
        (t.get("max_steps") for t in ds.config.get("tasks") or [] if t.get("task") == task),
        None,
    )
    description = (
        f"kibble dataset {ds.name!r}, task {task}: the episodes kibble kept "
        f"({entry.counts()}), expert {entry.expert}. kibble records no observation after "
        "the last action, so each episode of T steps holds its first T - 1 steps here; the "
        "last step's action, reward and flags are in the episode metadata (kibble_last_step)."
        + (f" Episodes were cut at {max_steps} steps." if max_steps else "")
    )
    metadata: dict[str, Any] = {
        "dataset_id": did,
        "minari_version": minari.__version__,
        "algorithm_name": f"kibble expert: {entry.expert}",
        "description": description,
        "kibble_dataset": ds.location,
        "kibble_version": ds.kibble_version,
        "kibble_task": task,
    }
    if ref_max is not None:
        metadata.update(ref_min_score=ref_min, ref_max_score=ref_max)
    result = TaskPlan(
        task, did, observation_space, action_space, ref_min, ref_max, metadata, _env_spec(task)
    )
    if note:
        result.notes.append(note)
    if gray:
        result.notes.append(
            f"the image {'observation' if gray == [''] else 'leaf ' + ', '.join(gray)} is "
            "stored as (H, W), without its channel axis of 1: Minari's JPEG encoding refuses "
            "(H, W, 1) arrays"
        )
    return result
