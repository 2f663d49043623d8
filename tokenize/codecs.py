"""Per-space tokenization: one codec per array-valued leaf of a Gymnasium space.

``leaf_codecs(space, role)`` walks a (possibly nested) space with
``functools.singledispatch`` and returns the leaves in token order: Dict keys
sorted lexicographically, Tuple entries in order. Each leaf codec turns a batch of
values ``(T, *shape)`` into ``(T, n_tokens)`` int32 tokens and back. Rules (docs/format.md §3-5):

- Box, observation: mu-law, 1024 bins, offset 32000.
- Box, action: bounded on both sides, with a finite width ``high - low`` -> rescaled
  linearly to [-1, 1], binned without mu-law (a zero-width element: the middle bin);
  otherwise mu-law like observations.
- Discrete / MultiDiscrete / MultiBinary: ints in [0, 1024) (``start`` subtracted).
- uint8 Box shaped (H, W) or (H, W, C), C in {1, 3, 4}, as an observation: an image.
  Its tokens are ``IMAGE_PATCH`` placeholders, one per 16x16 patch; the pixels travel
  separately (see ``kibble.tokenize.images``).
- Text, as an observation: SentencePiece ids in [0, 32000) from a model file (by default
  the shipped BabyAI model). Its token count depends on the text (``n_tokens`` is None):
  every value of one batch (one episode) must give the same count, e.g. one mission.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from kibble.errors import TokenizeError
from kibble.tokenize.continuous import (
    bounded_to_tokens,
    continuous_to_tokens,
    finite_width,
    tokens_to_bounded,
    tokens_to_continuous,
)
from kibble.tokenize.discrete import discrete_to_tokens, tokens_to_discrete
from kibble.tokenize.images import num_patches, pad_to_patch_multiple
from kibble.tokenize.text import DEFAULT_TEXT_MODEL, TextTokenizer
from kibble.tokenize.vocab import DISCRETE_VOCAB_SIZE, IMAGE_PATCH

Role = Literal["observation", "action"]
KeyPath = tuple[str | int, ...]  # keys/indexes from the space's root to a leaf

_SUPPORTED = "Box, Discrete, MultiDiscrete, MultiBinary, Text (observations), Dict and Tuple"


def path_name(role: str, path: KeyPath) -> str:
    """``observation['pixels'][0]``: how errors name a leaf."""
    return role + "".join(f"[{p!r}]" for p in path)


def get_leaf(value: Any, path: KeyPath) -> Any:
    """Follow a key path into a nested (Dict/Tuple) value."""
    for p in path:
        value = value[p]
    return value


def is_image_space(space: spaces.Space) -> bool:
    """uint8 Box shaped (H, W) or (H, W, C) with C in {1, 3, 4}."""
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
        return False
    shape = space.shape
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))


@dataclass(frozen=True)
class LeafCodec:
    """Tokenizes one array-valued leaf of a space. Subclasses set the encoding."""

    path: KeyPath
    space: spaces.Space
    role: Role

    @property
    def name(self) -> str:
        return path_name(self.role, self.path)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.space.shape)

    @property
    def n_tokens(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def _batch(self, values: Any) -> np.ndarray:
        arr = np.asarray(values)
        if arr.shape[1:] != self.shape:
            raise TokenizeError(
                f"{self.name}: expected a batch of shape (T, {', '.join(map(str, self.shape))}), "
                f"got {arr.shape}"
            )
        return arr

    def _batch_without_nan(self, values: Any) -> np.ndarray:
        """``_batch``, and a NaN is an error naming the leaf, timestep and element."""
        arr = self._batch(values)
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise _nan_error(self.name, arr)
        return arr

    def encode(self, values: Any) -> NDArray[np.int32]:
        """``(T, *shape)`` values -> ``(T, n_tokens)`` int32 tokens."""
        raise NotImplementedError

    def decode(self, tokens: NDArray[np.integer]) -> np.ndarray:
        """``(B, n_tokens)`` tokens -> ``(B, *shape)`` values the space accepts."""
        raise NotImplementedError


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float values to the space's dtype, rounding (not truncating) for integer Boxes."""
    if np.issubdtype(dtype, np.integer):
        values = np.rint(values)
    return values.astype(dtype)


def _nan_error(name: str, arr: np.ndarray) -> TokenizeError:
    flat = arr.reshape(len(arr), -1)
    t, j = np.argwhere(np.isnan(flat))[0]
    element = np.unravel_index(int(j), arr.shape[1:]) if arr.ndim > 1 else ()
    return TokenizeError(
        f"{name} is NaN at timestep {int(t)}, element {tuple(int(i) for i in element)}; "
        "validation must reject such episodes before tokenization"
    )


@dataclass(frozen=True)
class ContinuousCodec(LeafCodec):
    """Box values, mu-law encoded (observations; actions of an unbounded Box)."""

    def encode(self, values: Any) -> NDArray[np.int32]:
        arr = self._batch_without_nan(values)
        return continuous_to_tokens(arr, mu_law=True).reshape(len(arr), -1)

    def decode(self, tokens: NDArray[np.integer]) -> np.ndarray:
        values = tokens_to_continuous(tokens, mu_law=True).reshape(-1, *self.shape)
        # A half-bounded Box still has a bound the environment enforces.
        values = np.clip(values, self.space.low, self.space.high)
        return _cast(values, self.space.dtype)


@dataclass(frozen=True)
class BoundedCodec(LeafCodec):
    """Actions of a Box bounded on both sides: linear to [-1, 1], then binned."""

    def encode(self, values: Any) -> NDArray[np.int32]:
        arr = self._batch_without_nan(values)
        return bounded_to_tokens(arr, self.space.low, self.space.high).reshape(len(arr), -1)

    def decode(self, tokens: NDArray[np.integer]) -> np.ndarray:
        t = np.asarray(tokens).reshape(-1, *self.shape)
        values = tokens_to_bounded(t, self.space.low, self.space.high)
        return _cast(np.clip(values, self.space.low, self.space.high), self.space.dtype)


@dataclass(frozen=True)
class DiscreteCodec(LeafCodec):
    """Discrete, MultiDiscrete and MultiBinary values: ints in [0, 1024)."""

    @property
    def start(self) -> np.ndarray:
        return np.asarray(getattr(self.space, "start", 0))

    def encode(self, values: Any) -> NDArray[np.int32]:
        arr = self._batch(values)
        tokens = discrete_to_tokens(arr - self.start, what=self.name)
        return tokens.reshape(len(arr), -1)

    @property
    def sizes(self) -> np.ndarray:
        """How many values each element takes (n, nvec, or 2 for MultiBinary)."""
        if isinstance(self.space, spaces.MultiBinary):
            return np.asarray(2)
        return np.asarray(getattr(self.space, "nvec", getattr(self.space, "n", 0)))

    def decode(self, tokens: NDArray[np.integer]) -> np.ndarray:
        values = tokens_to_discrete(tokens, what=self.name).reshape(-1, *self.shape)
        # A model can emit any discrete id; the environment accepts only [0, n).
        values = np.clip(values, 0, self.sizes - 1)
        return (values + self.start).astype(self.space.dtype)


@dataclass(frozen=True)
class ImageCodec(LeafCodec):
    """A uint8 image observation: one ``IMAGE_PATCH`` placeholder per 16x16 patch."""

    @property
    def n_tokens(self) -> int:
        return num_patches(self.shape[0], self.shape[1])

    def encode(self, values: Any) -> NDArray[np.int32]:
        arr = self._batch(values)
        return np.full((len(arr), self.n_tokens), IMAGE_PATCH, dtype=np.int32)

    def pixels(self, values: Any) -> NDArray[np.uint8]:
        """``(T, H, W[, C])`` -> ``(T, H', W', C)`` uint8, padded to multiples of 16."""
        arr = self._batch(values)
        if arr.ndim == 3:  # (T, H, W): grayscale without a channel axis
            arr = arr[..., None]
        return pad_to_patch_multiple(arr)

    def decode(self, tokens: NDArray[np.integer]) -> np.ndarray:
        raise TokenizeError(f"{self.name}: images are observations; they are never decoded")


@functools.cache
def text_tokenizer(model_file: str) -> TextTokenizer:
    """One loaded SentencePiece model per file (codecs are rebuilt per episode)."""
    return TextTokenizer(model_file)


@dataclass(frozen=True)
class TextCodec(LeafCodec):
    """A text observation: SentencePiece ids in [0, 32000), as many as the text needs."""

    model_file: str = str(DEFAULT_TEXT_MODEL)

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def n_tokens(self) -> int | None:  # type: ignore[override]
        return None  # depends on the text

    def encode(self, values: Any) -> NDArray[np.int32]:
        texts = np.asarray(values, dtype=object).reshape(-1)
        tokenizer = text_tokenizer(self.model_file)
        # Missions repeat on every step of an episode: encode each distinct text once.
        ids = {text: tokenizer.encode(str(text)) for text in dict.fromkeys(texts)}
        lengths = {len(v) for v in ids.values()}
        if len(lengths) > 1:
            raise TokenizeError(
                f"{self.name}: texts of one episode give different numbers of tokens "
                f"({sorted(lengths)}); kibble tokenizes text that is the same for every step "
                "of an episode (a mission). Keep such text constant within an episode"
            )
        n = lengths.pop() if lengths else 0
        out = np.empty((len(texts), n), np.int32)
        for i, text in enumerate(texts):
            out[i] = ids[text]
        return out

    def decode(self, tokens: NDArray[np.integer]) -> np.ndarray:
        raise TokenizeError(f"{self.name}: text observations are never decoded")


@functools.singledispatch
def leaf_codecs(space: spaces.Space, role: Role, path: KeyPath = ()) -> list[LeafCodec]:
    """The leaves of ``space`` in token order, each with its codec."""
    raise TokenizeError(
        f"cannot tokenize {path_name(role, path)} of space {space!r}: "
        f"kibble tokenizes {_SUPPORTED} spaces"
    )


@leaf_codecs.register
def _box(space: spaces.Box, role: Role, path: KeyPath = ()) -> list[LeafCodec]:
    if is_image_space(space):
        if role == "action":
            raise TokenizeError(f"{path_name(role, path)}: an image cannot be an action")
        return [ImageCodec(path, space, role)]
    # Bounded means a finite width too: bounds like +-1e308 are finite, but high - low
    # overflows float64 and the linear rescale cannot bin them, so they get mu-law.
    if role == "action" and space.is_bounded("both") and finite_width(space.low, space.high).all():
        return [BoundedCodec(path, space, role)]
    return [ContinuousCodec(path, space, role)]


def _check_discrete_range(space: spaces.Space, role: Role, path: KeyPath, n: Any) -> None:
    if np.max(n) > DISCRETE_VOCAB_SIZE:
        raise TokenizeError(
            f"{path_name(role, path)}: space {space!r} has values up to {np.max(n) - 1}; "
            f"Gato's discrete tokens hold [0, {DISCRETE_VOCAB_SIZE})"
        )


@leaf_codecs.register
def _discrete(space: spaces.Discrete, role: Role, path: KeyPath = ()) -> list[LeafCodec]:
    _check_discrete_range(space, role, path, space.n)
    return [DiscreteCodec(path, space, role)]


@leaf_codecs.register
def _multi_discrete(space: spaces.MultiDiscrete, role: Role, path: KeyPath = ()) -> list[LeafCodec]:
    _check_discrete_range(space, role, path, space.nvec)
    return [DiscreteCodec(path, space, role)]


@leaf_codecs.register
def _multi_binary(space: spaces.MultiBinary, role: Role, path: KeyPath = ()) -> list[LeafCodec]:
    return [DiscreteCodec(path, space, role)]


@leaf_codecs.register
def _text(space: spaces.Text, role: Role, path: KeyPath = ()) -> list[LeafCodec]:
    if role == "action":
        raise TokenizeError(f"{path_name(role, path)}: kibble tokenizes text observations only")
    return [TextCodec(path, space, role)]


@leaf_codecs.register
def _dict(space: spaces.Dict, role: Role, path: KeyPath = ()) -> list[LeafCodec]:
    return [c for key in sorted(space.spaces) for c in leaf_codecs(space[key], role, (*path, key))]


@leaf_codecs.register
def _tuple(space: spaces.Tuple, role: Role, path: KeyPath = ()) -> list[LeafCodec]:
    return [c for i, sub in enumerate(space.spaces) for c in leaf_codecs(sub, role, (*path, i))]
