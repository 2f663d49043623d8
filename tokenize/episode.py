"""Whole episodes -> Gato's timestep layout, and action tokens -> environment actions.

One timestep is its observation tokens, then the separator, then its action tokens::

    [obs_0 ... obs_{n-1}] [SEPARATOR] [act_0 ... act_{m-1}]

Image patches sit in the observation part as ``IMAGE_PATCH`` placeholders, in the
order of their key. Everything is vectorised over the whole episode: per leaf, one
numpy call encodes all T timesteps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from kibble.errors import TokenizeError
from kibble.tokenize.codecs import ImageCodec, LeafCodec, Role, TextCodec, get_leaf, leaf_codecs
from kibble.tokenize.vocab import SEPARATOR


@dataclass
class TokenizedSteps:
    """The tokens of T timesteps.

    observation_tokens: (T, n_obs) int32, image patches as ``IMAGE_PATCH``.
    action_tokens: (T, n_act) int32.
    images: one (T, H, W, C) uint8 array per image leaf, padded to multiples of 16.
    """

    observation_tokens: NDArray[np.int32]
    action_tokens: NDArray[np.int32]
    images: list[NDArray[np.uint8]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.observation_tokens)


class SpaceTokenizer:
    """Tokenizes batches of one space's values, leaf by leaf in token order.

    ``text_model``: the SentencePiece model file of Text leaves (default: the shipped
    BabyAI model). ``n_tokens`` is None when a Text leaf makes the count depend on the
    text; each episode then has its own count (constant over its steps).
    """

    def __init__(self, space: spaces.Space, role: Role, text_model: str | None = None) -> None:
        self.space = space
        self.role = role
        self.leaves: list[LeafCodec] = leaf_codecs(space, role)
        if text_model is not None:
            self.leaves = [
                replace(leaf, model_file=str(text_model)) if isinstance(leaf, TextCodec) else leaf
                for leaf in self.leaves
            ]
        counts = [leaf.n_tokens for leaf in self.leaves]
        self.n_tokens: int | None = None if None in counts else sum(counts)

    @property
    def text_leaves(self) -> list[TextCodec]:
        return [leaf for leaf in self.leaves if isinstance(leaf, TextCodec)]

    @property
    def image_leaves(self) -> list[ImageCodec]:
        return [leaf for leaf in self.leaves if isinstance(leaf, ImageCodec)]

    def encode(self, batch: Any) -> NDArray[np.int32]:
        """A batched value (arrays with a leading T axis, nested like the space) -> (T, n)."""
        parts = [leaf.encode(get_leaf(batch, leaf.path)) for leaf in self.leaves]
        lengths = {len(p) for p in parts}
        if len(lengths) > 1:
            raise TokenizeError(f"{self.role}: the parts have different lengths {sorted(lengths)}")
        return np.concatenate(parts, axis=1) if parts else np.zeros((0, 0), np.int32)

    def images(self, batch: Any) -> list[NDArray[np.uint8]]:
        return [leaf.pixels(get_leaf(batch, leaf.path)) for leaf in self.image_leaves]

    def decode(self, tokens: NDArray[np.integer]) -> Any:
        """``(n,)`` tokens -> one value of the space; ``(B, n)`` -> a batch of B values."""
        t = np.asarray(tokens)
        single = t.ndim == 1
        t = t.reshape(-1, t.shape[-1])
        if t.shape[1] != self.n_tokens:
            raise TokenizeError(
                f"{self.role}: expected {self.n_tokens} tokens per step, got {t.shape[1]}"
            )
        bounds = np.cumsum([0] + [leaf.n_tokens for leaf in self.leaves])
        values = [
            leaf.decode(t[:, lo:hi])
            for leaf, lo, hi in zip(self.leaves, bounds[:-1], bounds[1:], strict=True)
        ]
        if single:
            values = [v[0] for v in values]
        return _assemble(
            self.space, dict(zip([leaf.path for leaf in self.leaves], values, strict=True))
        )


def _assemble(space: spaces.Space, by_path: dict, path: tuple = ()) -> Any:
    """Rebuild a nested value from its leaves."""
    if isinstance(space, spaces.Dict):
        return {k: _assemble(space[k], by_path, (*path, k)) for k in space.spaces}
    if isinstance(space, spaces.Tuple):
        return tuple(_assemble(s, by_path, (*path, i)) for i, s in enumerate(space.spaces))
    return by_path[path]


class EpisodeTokenizer:
    """Gato's tokenization of (observation, action) timesteps for one task's spaces.

    >>> import gymnasium as gym
    >>> tok = EpisodeTokenizer(gym.spaces.Box(-5, 5, (2,)), gym.spaces.Discrete(3))
    >>> steps = tok.tokenize(np.array([[0.0, 1.0]]), np.array([2]))
    >>> timestep_sequence(steps).tolist()
    [32512, 32744, 33024, 2]
    >>> int(tok.decode_action(steps.action_tokens[0]))
    2
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        text_model: str | None = None,
    ) -> None:
        self.observation = SpaceTokenizer(observation_space, "observation", text_model)
        self.action = SpaceTokenizer(action_space, "action")

    @property
    def n_observation_tokens(self) -> int | None:
        """None when text observations make it vary from episode to episode."""
        return self.observation.n_tokens

    @property
    def n_action_tokens(self) -> int:
        return self.action.n_tokens

    @property
    def tokens_per_timestep(self) -> int | None:
        n_obs = self.n_observation_tokens
        return None if n_obs is None else n_obs + 1 + self.n_action_tokens

    def tokenize(self, observations: Any, actions: Any) -> TokenizedSteps:
        """Batched observations and actions (leading axis T) -> their tokens."""
        obs = self.observation.encode(observations)
        act = self.action.encode(actions)
        if len(obs) != len(act):
            raise TokenizeError(f"{len(obs)} observations but {len(act)} actions")
        return TokenizedSteps(obs, act, self.observation.images(observations))

    def decode_action(self, action_tokens: NDArray[np.integer]) -> Any:
        """Action tokens of one step ``(n_act,)`` (or ``(B, n_act)``) -> environment action(s)."""
        return self.action.decode(action_tokens)


def timestep_layout(n_obs: int, n_act: int) -> tuple[NDArray, NDArray, NDArray]:
    """Per-position arrays of one timestep ``obs, SEPARATOR, act`` (docs/format.md §7):
    (loss mask: True on action tokens, observation position, action position), where a
    position is 1 + the token's index inside its part and 0 elsewhere."""
    k = n_obs + 1 + n_act
    mask = np.zeros(k, bool)
    mask[n_obs + 1 :] = True
    obs_pos = np.zeros(k, np.int64)
    obs_pos[:n_obs] = np.arange(1, n_obs + 1)
    act_pos = np.zeros(k, np.int64)
    act_pos[n_obs + 1 :] = np.arange(1, n_act + 1)
    return mask, obs_pos, act_pos


def timestep_sequence(steps: TokenizedSteps) -> NDArray[np.int32]:
    """The flat token stream ``obs, SEPARATOR, act`` per timestep, in order: (T * k,)."""
    sep = np.full((len(steps), 1), SEPARATOR, dtype=np.int32)
    return np.concatenate([steps.observation_tokens, sep, steps.action_tokens], axis=1).reshape(-1)


def loss_mask(steps: TokenizedSteps) -> NDArray[np.bool_]:
    """True on action tokens (the only ones trained on), aligned with the sequence."""
    t, n_obs = steps.observation_tokens.shape
    return np.tile(timestep_layout(n_obs, steps.action_tokens.shape[1])[0], t)
