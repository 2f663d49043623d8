"""Text -> SentencePiece ids in ``[0, 32000)``. The model file is an input.

Imports ``sentencepiece`` only when used (extra ``kibble[text]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from kibble.errors import KibbleError, TokenizeError
from kibble.tokenize.vocab import TEXT_VOCAB_SIZE

# The model shipped with kibble, built from the BabyAI grammar by
# benchmarks/build_babyai_spm.py: the default for text observations. resolve(): a strict
# editable install links this module from elsewhere; the model lies beside the real file.
DEFAULT_TEXT_MODEL = Path(__file__).resolve().parent / "models" / "babyai.model"


class TextTokenizer:
    """A SentencePiece model whose ids fit Gato's text range ``[0, 32000)``."""

    def __init__(self, model_file: str | Path) -> None:
        try:
            import sentencepiece as spm
        except ImportError as e:  # pragma: no cover - depends on the install
            raise KibbleError(
                "text tokenization needs sentencepiece: pip install 'kibble[text]'"
            ) from e
        path = Path(model_file)
        if not path.is_file():
            raise KibbleError(f"SentencePiece model file not found: {path}")
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(path))
        except (OSError, RuntimeError) as e:
            raise KibbleError(f"{path} is not a SentencePiece model file: {e}") from e
        if self._sp.GetPieceSize() > TEXT_VOCAB_SIZE:
            raise TokenizeError(
                f"{path}: the SentencePiece model has {self._sp.GetPieceSize()} pieces; "
                f"Gato's text range holds at most {TEXT_VOCAB_SIZE}"
            )

    @property
    def vocab_size(self) -> int:
        return int(self._sp.GetPieceSize())

    def encode(self, text: str) -> NDArray[np.int32]:
        """Text -> int32 ids in ``[0, vocab_size)``."""
        return np.asarray(self._sp.EncodeAsIds(text), dtype=np.int32)

    def decode(self, ids: NDArray[np.integer] | list[int]) -> str:
        """Ids -> text."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise TokenizeError(f"text ids must be in [0, {self.vocab_size}), got {ids.max()}")
        return self._sp.DecodeIds([int(i) for i in ids])
