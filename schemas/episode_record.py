"""One kept episode read back: :class:`EpisodeRecord`, and the decoding of its columns.

:meth:`EpisodeRecord.from_table` turns the T rows of one episode (the tokenized schema,
docs/format.md section 8) into arrays: identity, rewards and flags, raw values (given
back their leaves, dtypes and shapes by :meth:`~EpisodeRecord.native_observation` and
:meth:`~EpisodeRecord.native_action`), images and Gato tokens. :mod:`kibble.schemas.data_file`
cuts a file's rows into episodes; the trainer decodes token columns with :func:`ragged_rows`
and :func:`ragged_slice` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from kibble.errors import KibbleError
from kibble.schemas.arrow import list_column_to_numpy
from kibble.schemas.raw_values import table_images, unflatten

# -- decoding columns -----------------------------------------------------------------------


def ragged_rows(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A list<int32> column -> (flat int32 values, (rows + 1,) offsets)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return values, np.concatenate([[0], np.cumsum(lengths)])


def ragged_slice(ragged: tuple[np.ndarray, np.ndarray], lo: int, hi: int) -> np.ndarray:
    """Rows ``[lo, hi)`` of a ragged column as a (hi - lo, n) array: one episode's rows.

    Observation rows may differ in length between episodes (text observations), never
    inside one.
    """
    values, offsets = ragged
    lengths = np.diff(offsets[lo : hi + 1])
    n = int(lengths[0]) if len(lengths) else 0
    if not np.all(lengths == n):
        raise KibbleError(
            "an episode's timesteps have different numbers of observation tokens; the "
            "data file is damaged or was not written by kibble (curate it again)"
        )
    return values[offsets[lo] : offsets[hi]].reshape(hi - lo, n)


# -- one episode ----------------------------------------------------------------------------


@dataclass(repr=False)
class EpisodeRecord:
    """One kept episode: its identity, rewards, raw values and Gato tokens (T steps).

    ``observation`` and ``action`` hold the raw values as stored (docs/format.md section
    8): the numeric leaves flattened in token order, as float64. :meth:`native_observation`
    and :meth:`native_action` give them back their leaves, dtypes and shapes. A dataset
    curated with ``raw_values: false`` has them empty: (T, 0), and ``texts`` T empty lists.
    """

    task: str
    episode_id: str
    episode_return: float
    length: int
    rewards: NDArray[np.float64]  # (T,)
    terminated: NDArray[np.bool_]  # (T,)
    truncated: NDArray[np.bool_]  # (T,)
    observation: NDArray[np.float64]  # (T, D) numeric observation leaves, flattened
    action: NDArray[np.float64]  # (T, A) action leaves, flattened
    texts: list[list[str]]  # per step, one string per text leaf
    images: list[NDArray[np.uint8]]  # one (T, H, W, C) array per image leaf
    observation_tokens: list[NDArray[np.int32]]  # per step, (n,) each
    action_tokens: list[NDArray[np.int32]]  # per step, (m,) each
    observation_space: dict | None = field(default=None, repr=False)
    """The manifest's description of the task's observation space (None if it has none)."""
    action_space: dict | None = field(default=None, repr=False)

    @classmethod
    def from_table(
        cls,
        table: pa.Table,
        observation_space: dict | None = None,
        action_space: dict | None = None,
    ) -> EpisodeRecord:
        """The T rows of one episode (tokenized schema, docs/format.md section 8); with
        the observation space's description, images are cropped to their own size."""
        t = len(table)
        episode_id = table["episode_id"][0].as_py()
        steps = table["step"].to_numpy()
        length = int(table["episode_length"][0].as_py())
        if length != t or not np.array_equal(steps, np.arange(t)):
            raise KibbleError(
                f"episode {episode_id} has {t} rows with steps {steps[:3].tolist()}..., its "
                f"episode_length says {length}"
            )
        obs_tokens = ragged_slice(ragged_rows(table["observation_tokens"]), 0, t)  # (T, n)
        act_tokens = list_column_to_numpy(table["action_tokens"], np.int32)  # (T, m)
        images = table_images(table)  # as stored: padded to multiples of 16
        if observation_space is not None:
            images = _crop(images, observation_space)
        return cls(
            task=table["task"][0].as_py(),
            episode_id=episode_id,
            episode_return=float(table["episode_return"][0].as_py()),
            length=t,
            rewards=table["reward"].to_numpy().astype(np.float64),
            terminated=table["terminated"].to_numpy(zero_copy_only=False).astype(bool),
            truncated=table["truncated"].to_numpy(zero_copy_only=False).astype(bool),
            observation=list_column_to_numpy(table["observation"], np.float64),
            action=list_column_to_numpy(table["action"], np.float64),
            texts=table["texts"].to_pylist(),
            # Copies: a record must not keep its row group's memory alive.
            images=[img.copy() for img in images],
            observation_tokens=list(obs_tokens.copy()),
            action_tokens=list(act_tokens.copy()),
            observation_space=observation_space,
            action_space=action_space,
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(img.shape)}" for img in self.images)
        return (
            f"EpisodeRecord({self.episode_id!r}, length={self.length}, "
            f"return={self.episode_return:g}, observation={tuple(self.observation.shape)}, "
            f"action={tuple(self.action.shape)}, images=[{shapes}])"
        )

    @property
    def has_raw_values(self) -> bool:
        """False for a dataset curated with ``raw_values: false`` (its columns are empty)."""
        if self.observation_space is None or self.action_space is None:
            return bool(self.observation.shape[1] or self.action.shape[1])
        return (
            self.observation.shape[1] == self.observation_space["size"]
            and self.action.shape[1] == self.action_space["size"]
        )

    def native_observation(self) -> Any:
        """The observations nested like the task's observation space (a dict for a Dict
        space, a tuple for a Tuple, else one array), each leaf with its own dtype and shape
        and a leading T axis: images (T, H, W[, C]) uint8, texts (T,) str."""
        description = self._description(self.observation_space, "observation")
        k = len(self.texts[0]) if self.texts else 0
        texts = [[step[j] for step in self.texts] for j in range(k)]  # per leaf, (T,)
        return unflatten(self.observation, description, self.images, texts)

    def native_action(self) -> Any:
        """The actions nested like the task's action space, native dtypes, leading T axis."""
        return unflatten(self.action, self._description(self.action_space, "action"))

    def _description(self, description: dict | None, role: str) -> dict:
        if description is None:
            raise KibbleError(
                f"{self.task}: the dataset's manifest does not describe its {role} space, so "
                f"its raw values cannot be given back their leaves; rebuild the dataset with "
                "this kibble (`kibble pipeline run CONFIG`)"
            )
        if not self.has_raw_values:
            raise KibbleError(
                f"{self.task}: the dataset was curated without raw values (raw_values: "
                "false); only its tokens are stored. Curate it again with raw values on"
            )
        return description


def _crop(images: list[np.ndarray], observation_space: dict) -> list[np.ndarray]:
    """Stored (T, H', W', C) images cut to each image leaf's own (H, W), keeping C."""
    shapes = {
        leaf["index"]: leaf["shape"]
        for leaf in observation_space.get("leaves", [])
        if leaf.get("column") == "images"
    }
    return [
        img[:, : shapes[i][0], : shapes[i][1], :] if i in shapes else img
        for i, img in enumerate(images)
    ]
