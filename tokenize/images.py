"""Images -> 16x16 patches in raster order, and the patches' position intervals.

Images are uint8 ``H x W x C`` (a 2-D ``H x W`` image is treated as ``C = 1``).
Patches are never turned into ids: in the token stream each patch is one
``IMAGE_PATCH`` placeholder, and the trainer embeds the pixels with a ResNet block.

Sizes not divisible by 16: the image is zero-padded at the bottom and on the right
to the next multiple of 16. Padding keeps every pixel (no interpolation, no crop),
and the padded strip is constant, so the model can learn to ignore it. Environments
that can render at a multiple of 16 (Atari resized to 80x80 or 96x96, say) avoid it.

>>> pad_to_patch_multiple(np.zeros((84, 84), np.uint8)).shape
(96, 96, 1)
>>> image_to_patches(np.zeros((2, 32, 48, 3), np.uint8)).shape
(2, 6, 16, 16, 3)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from kibble.errors import TokenizeError
from kibble.tokenize.vocab import PATCH_POSITION_LEVELS, PATCH_SIZE


def padded_shape(height: int, width: int) -> tuple[int, int]:
    """The (height, width) after padding up to multiples of ``PATCH_SIZE``."""
    return -(-height // PATCH_SIZE) * PATCH_SIZE, -(-width // PATCH_SIZE) * PATCH_SIZE


def num_patches(height: int, width: int) -> int:
    """How many patches an image of this size becomes (after padding)."""
    h, w = padded_shape(height, width)
    return (h // PATCH_SIZE) * (w // PATCH_SIZE)


def pad_to_patch_multiple(images: np.ndarray) -> NDArray[np.uint8]:
    """Zero-pad uint8 images ``(..., H, W, C)`` to ``(..., H', W', C)``, multiples of 16.

    A single 2-D image ``(H, W)`` gets a channel axis; with 3 or more axes the last
    is channels and any in front are batch axes (so a batch of grayscale frames must
    be given as ``(T, H, W, 1)``). Pixels stay uint8: they are stored as bytes.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise TokenizeError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim < 2:
        raise TokenizeError(f"an image needs at least 2 axes (H, W), got shape {arr.shape}")
    return _pad(arr)


def _pad(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w = arr.shape[-3], arr.shape[-2]
    ph, pw = padded_shape(h, w)
    if (ph, pw) == (h, w):
        return arr
    pad = [(0, 0)] * (arr.ndim - 3) + [(0, ph - h), (0, pw - w), (0, 0)]
    return np.pad(arr, pad)


def image_to_patches(images: np.ndarray) -> NDArray[np.uint8]:
    """``(T, H, W, C)`` uint8 -> ``(T, P, 16, 16, C)`` patches in raster order (padded first)."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise TokenizeError(f"expected a batch of images (T, H, W, C), got shape {arr.shape}")
    arr = pad_to_patch_multiple(arr)
    t, h, w, c = arr.shape
    nh, nw = h // PATCH_SIZE, w // PATCH_SIZE
    patches = arr.reshape(t, nh, PATCH_SIZE, nw, PATCH_SIZE, c)  # (T, nh, 16, nw, 16, C)
    patches = patches.transpose(0, 1, 3, 2, 4, 5)  # (T, nh, nw, 16, 16, C)
    return patches.reshape(t, nh * nw, PATCH_SIZE, PATCH_SIZE, c)  # (T, P, 16, 16, C)


def patch_position_intervals(
    height: int, width: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Quantised row and column intervals ``[from, to)`` of each patch, in raster order.

    Gato normalises each patch's pixel interval by the image size and quantises it to
    128 levels; training samples a position uniformly in ``[from, to)``, evaluation
    uses the rounded mean. Returns two ``(P, 2)`` int arrays (rows, columns).
    """
    h, w = padded_shape(height, width)
    nh, nw = h // PATCH_SIZE, w // PATCH_SIZE

    def intervals(n: int) -> np.ndarray:
        lo = (np.arange(n) * PATCH_POSITION_LEVELS) // n
        hi = np.maximum((np.arange(1, n + 1) * PATCH_POSITION_LEVELS) // n, lo + 1)
        return np.stack([lo, hi], axis=1)  # (n, 2)

    rows = np.repeat(intervals(nh), nw, axis=0)  # (P, 2): row index varies slowest
    cols = np.tile(intervals(nw), (nh, 1))  # (P, 2)
    return rows, cols
