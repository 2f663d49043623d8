"""Timesteps -> the arrays one training (or acting) sequence is made of.

The loader and the evaluator both turn stretches of timesteps (``TokenizedSteps``: a prompt,
a window of an episode, or the live history of an environment) into the same thing, a
:class:`TokenWindow`:

- ``tokens``: ids (docs/format.md §2), image patches as ``IMAGE_PATCH`` placeholders;
- ``loss_mask``: True on action tokens, the only ones trained on (docs/format.md §12);
- ``observation_position`` / ``action_position``: 1 + the token's index inside its
  timestep's observation (or action) part, 0 elsewhere: the local position encodings;
- ``patches`` and their quantised row/column intervals, one per placeholder, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from kibble.tokenize.episode import TokenizedSteps, timestep_layout, timestep_sequence
from kibble.tokenize.images import image_to_patches, patch_position_intervals
from kibble.tokenize.vocab import IMAGE_PATCH


def concat_steps(parts: list[TokenizedSteps]) -> TokenizedSteps:
    """Stretches of timesteps of one task, one after another."""
    return TokenizedSteps(
        np.concatenate([p.observation_tokens for p in parts]),
        np.concatenate([p.action_tokens for p in parts]),
        [np.concatenate(imgs) for imgs in zip(*(p.images for p in parts), strict=True)],
    )


@dataclass(kw_only=True)
class TokenWindow:
    """One sequence of L tokens and its P image patches (see the module docstring)."""

    tokens: NDArray[np.int64]  # (L,)
    loss_mask: NDArray[np.bool_]  # (L,)
    observation_position: NDArray[np.int64]  # (L,)
    action_position: NDArray[np.int64]  # (L,)
    patch_index: NDArray[np.int64]  # (P,) positions of the placeholders in ``tokens``
    patches: NDArray[np.uint8]  # (P, 16, 16, C)
    patch_rows: NDArray[np.int64]  # (P, 2) quantised [from, to)
    patch_cols: NDArray[np.int64]  # (P, 2)

    def __len__(self) -> int:
        return len(self.tokens)


def build_sequence(steps: TokenizedSteps) -> TokenWindow:
    """T timesteps -> a TokenWindow of T * (n_obs + 1 + n_act) tokens."""
    t, n_obs = steps.observation_tokens.shape
    n_act = steps.action_tokens.shape[1]
    tokens = timestep_sequence(steps).astype(np.int64)  # (T * k,)
    mask, obs_pos, act_pos = (np.tile(a, t) for a in timestep_layout(n_obs, n_act))
    if steps.images:
        # Placeholders come leaf by leaf inside each observation, so the patches of every
        # leaf, concatenated per timestep, line up with the placeholders in order.
        per_leaf = [image_to_patches(img) for img in steps.images]  # each (T, P_i, 16, 16, C)
        channels = max(p.shape[-1] for p in per_leaf)
        per_leaf = [_pad_channels(p, channels) for p in per_leaf]
        patches = np.concatenate(per_leaf, axis=1).reshape(-1, 16, 16, channels)  # (T*P, ...)
        intervals = [patch_position_intervals(img.shape[1], img.shape[2]) for img in steps.images]
        rows = np.tile(np.concatenate([r for r, _ in intervals]), (t, 1))  # (T*P, 2)
        cols = np.tile(np.concatenate([c for _, c in intervals]), (t, 1))
        patch_index = np.flatnonzero(tokens == IMAGE_PATCH)
        if len(patch_index) != len(patches):
            raise ValueError(
                f"{len(patch_index)} image placeholders but {len(patches)} patches; "
                "the images do not match the observation tokens"
            )
    else:
        patches = np.zeros((0, 16, 16, 1), np.uint8)
        rows = cols = np.zeros((0, 2), np.int64)
        patch_index = np.zeros(0, np.int64)
    return TokenWindow(
        tokens=tokens,
        loss_mask=mask,
        observation_position=obs_pos,
        action_position=act_pos,
        patch_index=patch_index,
        patches=patches,
        patch_rows=rows,
        patch_cols=cols,
    )


def _pad_channels(patches: np.ndarray, channels: int) -> np.ndarray:
    c = patches.shape[-1]
    if c == channels:
        return patches
    pad = [(0, 0)] * (patches.ndim - 1) + [(0, channels - c)]
    return np.pad(patches, pad)


def concat_sequences(parts: list[TokenWindow]) -> TokenWindow:
    """Sequences one after another (a prompt, then a window)."""
    offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
    channels = max(p.patches.shape[-1] for p in parts)
    return TokenWindow(
        tokens=np.concatenate([p.tokens for p in parts]),
        loss_mask=np.concatenate([p.loss_mask for p in parts]),
        observation_position=np.concatenate([p.observation_position for p in parts]),
        action_position=np.concatenate([p.action_position for p in parts]),
        patch_index=np.concatenate(
            [p.patch_index + o for p, o in zip(parts, offsets, strict=True)]
        ),
        patches=np.concatenate([_pad_channels(p.patches, channels) for p in parts]),
        patch_rows=np.concatenate([p.patch_rows for p in parts]),
        patch_cols=np.concatenate([p.patch_cols for p in parts]),
    )


@dataclass(kw_only=True)
class Batch:
    """B sequences padded to length L, and their patches packed together (numpy).

    tokens, loss_mask, observation_position, action_position: (B, L);
    patch_index: (P,) flat indices into B * L; patches: (P, 16, 16, C) uint8;
    patch_rows, patch_cols: (P, 2); task_index: (B,) index into the mixture's tasks;
    lengths: (B,) tokens before the padding.
    """

    tokens: NDArray[np.int64]
    loss_mask: NDArray[np.bool_]
    observation_position: NDArray[np.int64]
    action_position: NDArray[np.int64]
    patch_index: NDArray[np.int64]
    patches: NDArray[np.uint8]
    patch_rows: NDArray[np.int64]
    patch_cols: NDArray[np.int64]
    task_index: NDArray[np.int64]
    lengths: NDArray[np.int64]  # (B,) tokens before the padding

    def to_torch(self, device: str = "cpu") -> dict:
        import torch

        return {k: torch.from_numpy(v).to(device) for k, v in self.__dict__.items()}


def collate(sequences: list[TokenWindow], length: int, task_index: list[int]) -> Batch:
    """Right-pad each sequence to ``length`` (pads are id 0 and never trained on)."""
    b = len(sequences)
    tokens = np.zeros((b, length), np.int64)
    mask = np.zeros((b, length), bool)
    obs_pos = np.zeros((b, length), np.int64)
    act_pos = np.zeros((b, length), np.int64)
    channels = max([s.patches.shape[-1] for s in sequences] + [1])
    patch_index, patches, rows, cols = [], [], [], []
    for i, s in enumerate(sequences):
        n = min(len(s), length)
        tokens[i, :n] = s.tokens[:n]
        mask[i, :n] = s.loss_mask[:n]
        obs_pos[i, :n] = s.observation_position[:n]
        act_pos[i, :n] = s.action_position[:n]
        keep = s.patch_index < n
        patch_index.append(s.patch_index[keep] + i * length)
        patches.append(_pad_channels(s.patches[keep], channels))
        rows.append(s.patch_rows[keep])
        cols.append(s.patch_cols[keep])
    return Batch(
        tokens=tokens,
        loss_mask=mask,
        observation_position=obs_pos,
        action_position=act_pos,
        patch_index=np.concatenate(patch_index),
        patches=np.concatenate(patches),
        patch_rows=np.concatenate(rows),
        patch_cols=np.concatenate(cols),
        task_index=np.asarray(task_index, np.int64),
        lengths=np.asarray([min(len(s), length) for s in sequences], np.int64),
    )
