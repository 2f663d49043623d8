"""kibble: training data for Gato-style generalist agents.

Parts (each a top-level folder of the repository):

- ``kibble.experts``: per-task expert policies (RLlib, scripted, random) and expert cards.
- ``kibble.pipelines``: Beam jobs that roll experts out, validate, filter, tokenize, write.
- ``kibble.schemas``: the Arrow/Parquet contracts and the records that cross stages.
- ``kibble.tokenize``: Gato's tokenizer.
- ``kibble.trainer``: the Gato-style model, its training loop and evaluation.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kibble")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
