"""The trainer's window sampler as a ``torch.utils.data.IterableDataset``.

``kibble.open_dataset(path).to_torch(context=...)`` returns a :class:`WindowDataset`. Each
item is one training sequence drawn exactly as the trainer draws it
(:meth:`kibble.trainer.mixture_data.MixtureData.sample_sequence`: timestep-aligned windows,
prompts from other episodes of the task, docs/format.md section 12), as a dict of tensors:

- ``tokens``, ``loss_mask``, ``observation_position``, ``action_position``: (L,), L <= context;
- ``patch_index`` (P,): positions of the image placeholders in ``tokens``; ``patches``
  (P, 16, 16, C) uint8; ``patch_rows``, ``patch_cols`` (P, 2);
- ``task_index`` (): index into :attr:`WindowDataset.tasks`.

Windows differ in length and in number of patches, so batch them with
:meth:`WindowDataset.collate` (``DataLoader(ds, batch_size=B, collate_fn=ds.collate)``, or
``ds.loader(B)``): it pads to the context and packs the patches exactly as the trainer's
batches are (:class:`kibble.trainer.sequences.Batch`), so a batch feeds
:class:`kibble.trainer.model.Gato` as it is.

Randomness: in the main process the first pass draws what ``MixtureData`` seeded with
``seed`` draws (so the trainer and this dataset give the same windows); a DataLoader
worker ``w`` draws from the seed ``[seed, epoch, w]``. Passes repeat unless
:meth:`WindowDataset.set_epoch` is called between them, as with torch's
``DistributedSampler``. Each process (the main one or a worker) opens the dataset
itself, so ``num_workers > 0`` works whatever the start method.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from kibble.trainer.config import MixtureConfig
from kibble.trainer.mixture_data import MixtureData
from kibble.trainer.sequences import TokenWindow, collate

WINDOW_FIELDS = tuple(f.name for f in fields(TokenWindow))
"""The tensors of one item, besides ``task_index``: the fields of a TokenWindow."""


class WindowDataset(IterableDataset):
    """Training sequences of a mixture (one dataset or several), endless or ``num_samples``."""

    def __init__(
        self,
        config: MixtureConfig,
        max_observation_tokens: int = 1 << 30,
        num_samples: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.context = config.context
        self.max_observation_tokens = max_observation_tokens
        self.num_samples = num_samples
        self.epoch = 0
        # Opened here so that a mistake (a context shorter than a timestep, a damaged file)
        # is an error now, not in a DataLoader worker.
        self._data: MixtureData | None = MixtureData(config, max_observation_tokens)
        self._pid = os.getpid()
        self.tasks: list[str] = [t.task for t in self._data.tasks]
        """Task ids; an item's ``task_index`` indexes this list."""

    def set_epoch(self, epoch: int) -> None:
        """Draw other windows on the next pass (every pass of one epoch draws the same)."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.num_samples is None:
            raise TypeError("an endless WindowDataset has no length; give num_samples")
        return self.num_samples

    def __getstate__(self) -> dict[str, Any]:
        # A worker started by "spawn" gets a copy without the open files; it reopens them.
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    def _sampler(self) -> MixtureData:
        if self._data is None or self._pid != os.getpid():
            # A forked worker: its own file handles and cache, not the parent's.
            self._data = MixtureData(self.config, self.max_observation_tokens)
            self._pid = os.getpid()
        return self._data

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        data = self._sampler()
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is None and self.epoch == 0:
            data.rng = np.random.default_rng(self.config.seed)  # the trainer's first draws
        else:
            data.rng = np.random.default_rng([self.config.seed, self.epoch, worker])
        # With num_samples, workers share them out; endless otherwise.
        count = None if self.num_samples is None else len(range(worker, self.num_samples, workers))
        n = 0
        while count is None or n < count:
            window, task, _ = data.sample_sequence()
            yield window_tensors(window, task)
            n += 1

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Items -> one batch as the trainer's (padded to the context; patches packed):
        tokens, loss_mask, observation_position, action_position (B, L); patch_index (P,)
        into B * L; patches (P, 16, 16, C); patch_rows, patch_cols (P, 2); task_index (B,);
        lengths (B,)."""
        windows = [TokenWindow(**{k: item[k].numpy() for k in WINDOW_FIELDS}) for item in items]
        tasks = [int(item["task_index"]) for item in items]
        return collate(windows, self.context, tasks).to_torch()

    def loader(self, batch_size: int, **kwargs: Any) -> DataLoader:
        """A DataLoader of this dataset's batches (``kwargs``: num_workers, pin_memory...)."""
        return DataLoader(self, batch_size=batch_size, collate_fn=self.collate, **kwargs)


def window_tensors(window: TokenWindow, task_index: int) -> dict[str, torch.Tensor]:
    """One window as tensors sharing its arrays' memory (see the module docstring)."""
    item = {k: torch.from_numpy(np.ascontiguousarray(getattr(window, k))) for k in WINDOW_FIELDS}
    item["task_index"] = torch.tensor(task_index, dtype=torch.int64)
    return item
