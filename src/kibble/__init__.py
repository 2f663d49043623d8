"""kibble: training data for Gato-style generalist agents.

Parts (each a top-level folder of the repository):

- ``kibble.experts``: per-task expert policies (RLlib, scripted, random) and expert cards.
- ``kibble.pipelines``: Beam jobs that roll experts out, validate, filter, tokenize, write.
- ``kibble.schemas``: the Arrow/Parquet contracts and the records that cross stages.
- ``kibble.tokenize``: Gato's tokenizer.
- ``kibble.trainer``: the Gato-style model, its training loop and evaluation.

The public Python API is :func:`open_dataset` (:mod:`kibble.api`): a curated dataset's
manifest facts, its episodes, and the trainer's window sampler as a torch dataset.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("kibble")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


if TYPE_CHECKING:
    from kibble.api import Dataset


def open_dataset(location: str | os.PathLike) -> Dataset:
    """The curated dataset at ``location`` (a local path or a URL): see :mod:`kibble.api`.

    Imported on call, so ``import kibble`` stays light (no pyarrow, no torch).
    """
    from kibble.api import open_dataset as _open_dataset

    return _open_dataset(location)
