"""kibble's public Python API: open a curated dataset, read its episodes, train on it.

::

    import kibble

    ds = kibble.open_dataset("kibble-out/dataset")   # a local path or a URL (gs://, s3://)
    print(ds.summary())                              # the manifest: tasks, counts, thresholds
    for ep in ds.episodes("gym/CartPole-v1"):        # one EpisodeRecord at a time
        ep.episode_return, ep.observation, ep.action, ep.observation_tokens
    windows = ds.to_torch(context=1024)              # a torch IterableDataset (needs torch)
    for batch in windows.loader(batch_size=16):      # the trainer's batches
        ...

Reading is :class:`kibble.schemas.reader.CuratedDataset`, the reader the trainer uses too;
this module adds the torch view, which needs the trainer (and PyTorch, the ``train``
extra). Importing ``kibble`` or this module does not import torch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kibble.errors import KibbleError
from kibble.schemas.layout import TaskEntry
from kibble.schemas.reader import CuratedDataset, EpisodeRecord

if TYPE_CHECKING:
    from kibble.trainer.windows import WindowDataset

__all__ = ["Dataset", "EpisodeRecord", "TaskEntry", "open_dataset"]


class Dataset(CuratedDataset):
    """A curated dataset: its manifest's facts (:attr:`tasks`, :meth:`task`, :attr:`cards`,
    :meth:`summary`), its episodes (:meth:`episodes`) and a torch view (:meth:`to_torch`)."""

    def to_torch(
        self,
        context: int = 1024,
        *,
        prompt_fraction: float = 0.25,
        sampling: str = "timesteps",
        seed: int = 0,
        num_samples: int | None = None,
        cache_row_groups: int = 64,
        max_observation_tokens: int | None = None,
    ) -> WindowDataset:
        """The trainer's window sampler over this dataset, as a torch ``IterableDataset``.

        context: tokens per sequence (Gato: 1024). prompt_fraction: sequences that start
        with a prompt from another episode of the task. sampling: ``"timesteps"`` (a
        uniform timestep) or ``"tasks"`` (each task an equal share). seed: the windows'
        random seed. num_samples: items per pass (None: endless). cache_row_groups:
        Parquet row groups kept decoded. max_observation_tokens: refuse tasks with more
        observation tokens per timestep (a model's limit; None: no limit).
        Batch it with ``ds.loader(batch_size)`` or ``DataLoader(ds, batch_size,
        collate_fn=ds.collate)``; see :mod:`kibble.trainer.windows`.
        """
        try:
            from kibble.trainer.windows import WindowDataset
        except ModuleNotFoundError as e:
            if e.name != "torch":
                raise
            raise KibbleError(
                "to_torch needs PyTorch, which is not installed: install kibble's train "
                "extra (pip install 'kibble[train]'; see the README for the CPU build)"
            ) from e
        from kibble.trainer.config import parse_mixture

        raw = {
            "datasets": [{"path": self.location}],
            "context": context,
            "prompt_fraction": prompt_fraction,
            "sampling": sampling,
            "seed": seed,
            "cache_row_groups": cache_row_groups,
        }
        config = parse_mixture(raw, "to_torch", schedule=False)
        limits = {"num_samples": num_samples, "max_observation_tokens": max_observation_tokens}
        for name, value in limits.items():
            if value is not None and (type(value) is not int or value < 1):
                raise KibbleError(f"to_torch: {name}: expected a positive integer, got {value!r}")
        return WindowDataset(config, max_observation_tokens or (1 << 30), num_samples)


def open_dataset(location: str | os.PathLike) -> Dataset:
    """The curated dataset at ``location``: a local path or a URL pyarrow reaches.

    Reads only ``manifest.json``; a location without one (an unfinished or foreign
    directory), a dataset of another schema version, or a manifest whose file paths are
    not relative paths inside the dataset, each listed once
    (:func:`kibble.schemas.layout.file_entries`), is a KibbleError. A data file is read
    only if it is a regular file in real folders: never through a link, nor a FIFO.
    """
    return Dataset(location)
