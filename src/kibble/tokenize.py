"""Gato's tokenizer, exactly (docs/format.md §2-7): the public API of ``kibble.tokenize``.

This module is the package's ``__init__``. The code lives in the repository's
``tokenize/`` folder, which must not hold an ``__init__.py``: from the repository
root, a ``tokenize/__init__.py`` would be imported as the standard library's
``tokenize`` (which ``inspect``, ``linecache`` and so pytest rely on). Setting
``__path__`` below makes this module a package whose submodules are found in that
folder once installed (``kibble/tokenize/`` in site-packages or the strict editable
tree).
"""

import os as _os

__path__ = [_os.path.join(_os.path.dirname(__file__), "tokenize")]

from kibble.tokenize.continuous import (
    bounded_to_tokens,
    continuous_to_tokens,
    tokens_to_bounded,
    tokens_to_continuous,
)
from kibble.tokenize.discrete import discrete_to_tokens, tokens_to_discrete
from kibble.tokenize.episode import EpisodeTokenizer, SpaceTokenizer, TokenizedSteps
from kibble.tokenize.images import image_to_patches, pad_to_patch_multiple
from kibble.tokenize.text import TextTokenizer
from kibble.tokenize.vocab import (
    CONTINUOUS_OFFSET,
    IMAGE_PATCH,
    SEPARATOR,
    VOCAB_SIZE,
)

__all__ = [
    "CONTINUOUS_OFFSET",
    "IMAGE_PATCH",
    "SEPARATOR",
    "VOCAB_SIZE",
    "EpisodeTokenizer",
    "SpaceTokenizer",
    "TextTokenizer",
    "TokenizedSteps",
    "bounded_to_tokens",
    "continuous_to_tokens",
    "discrete_to_tokens",
    "image_to_patches",
    "pad_to_patch_multiple",
    "tokens_to_bounded",
    "tokens_to_continuous",
    "tokens_to_discrete",
]
