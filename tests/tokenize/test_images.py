import numpy as np
import pytest

from kibble.errors import TokenizeError
from kibble.tokenize.images import (
    image_to_patches,
    num_patches,
    pad_to_patch_multiple,
    patch_position_intervals,
)


def test_patches_are_in_raster_order():
    # Each pixel holds its patch's raster index: patch p must be all p.
    rows, cols = 3, 5
    idx = np.arange(rows * cols, dtype=np.uint8).reshape(rows, cols)
    image = np.kron(idx, np.ones((16, 16), np.uint8))[None, :, :, None]  # (1, 48, 80, 1)
    patches = image_to_patches(image)
    assert patches.shape == (1, 15, 16, 16, 1)
    for p in range(15):
        assert np.all(patches[0, p] == p)


def test_sizes_not_divisible_by_16_are_zero_padded_bottom_right():
    image = np.full((84, 84, 3), 7, np.uint8)
    padded = pad_to_patch_multiple(image)
    assert padded.shape == (96, 96, 3)
    assert np.all(padded[:84, :84] == 7)
    assert np.all(padded[84:] == 0) and np.all(padded[:, 84:] == 0)
    assert num_patches(84, 84) == 36


def test_grayscale_image_gets_a_channel_axis():
    assert pad_to_patch_multiple(np.zeros((16, 32), np.uint8)).shape == (16, 32, 1)


def test_float_images_are_refused():
    with pytest.raises(TokenizeError, match="uint8"):
        pad_to_patch_multiple(np.zeros((16, 16, 3), np.float32))


def test_patch_position_intervals_cover_128_levels_in_raster_order():
    rows, cols = patch_position_intervals(32, 64)  # 2 x 4 patches
    assert rows.tolist() == [[0, 64]] * 4 + [[64, 128]] * 4
    assert cols.tolist() == [[0, 32], [32, 64], [64, 96], [96, 128]] * 2
