"""The steps of an SB3 expert's view: observation adapters, one chain per episode slot.

Each adapter reproduces one SB3 wrapper exactly: grayscale and resize (``WarpFrame``),
frame stack (``VecFrameStack``), channels-first (``VecTransposeImage``) and
observation normalization from ``VecNormalize``'s statistics, read from their safe
JSON form (never ``vec_normalize.pkl``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kibble.errors import KibbleError
from kibble.limits import read_text


class Adapter:
    """One step of a view: a function of the observation, maybe with per-episode state."""

    def reset(self) -> None:
        """A new episode starts."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Grayscale(Adapter):
    """RGB -> luma with OpenCV's RGB2GRAY, as SB3's WarpFrame does."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)

    def describe(self) -> str:
        return "grayscale (OpenCV COLOR_RGB2GRAY)"


class Resize(Adapter):
    """(H, W) -> (size, size) with OpenCV's INTER_AREA, then a channel axis (WarpFrame)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.resize(x, (self.size, self.size), interpolation=cv2.INTER_AREA)[:, :, None]

    def describe(self) -> str:
        return f"resize to {self.size}x{self.size}x1 (OpenCV INTER_AREA)"


class FrameStack(Adapter):
    """The last ``n`` frames on the channel axis, newest last; zeros at episode start
    (SB3's VecFrameStack with channels last)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.stack: np.ndarray | None = None

    def reset(self) -> None:
        self.stack = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.stack is None:
            self.stack = np.zeros((*x.shape[:-1], x.shape[-1] * self.n), x.dtype)
        c = x.shape[-1]
        self.stack = np.roll(self.stack, -c, axis=-1)
        self.stack[..., -c:] = x
        return self.stack

    def describe(self) -> str:
        return f"stack the last {self.n} frames (zeros at episode start, newest last)"


class ChannelsFirst(Adapter):
    """(H, W, C) -> (C, H, W), as SB3's VecTransposeImage."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(x, -1, 0))

    def describe(self) -> str:
        return "channels first (HWC -> CHW)"


class Normalize(Adapter):
    """VecNormalize's observation normalization from its statistics (read from JSON)."""

    def __init__(self, mean: np.ndarray, var: np.ndarray, clip: float, epsilon: float, path: Path):
        self.mean, self.var, self.clip, self.epsilon, self.path = mean, var, clip, epsilon, path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def describe(self) -> str:
        return f"VecNormalize statistics from {self.path} (clip {self.clip})"


def read_vec_normalize(path: Path, shape: tuple[int, ...]) -> Normalize | None:
    """The safe form: JSON with obs_mean, obs_var, clip_obs, epsilon (and norm_obs)."""
    try:
        raw = json.loads(read_text(path, "VecNormalize statistics"))
    except FileNotFoundError as e:
        raise KibbleError(f"VecNormalize statistics {path} do not exist") from e
    except (OSError, ValueError) as e:
        raise KibbleError(
            f"VecNormalize statistics {path} are not JSON ({e}); kibble reads only the safe "
            "JSON form (obs_mean, obs_var, clip_obs, epsilon), never vec_normalize.pkl"
        ) from e
    if not isinstance(raw, dict):
        raise KibbleError(f"{path}: VecNormalize statistics must be a JSON object")
    if raw.get("norm_obs", True) is False:
        return None
    try:
        mean = np.asarray(raw["obs_mean"], np.float64)
        var = np.asarray(raw["obs_var"], np.float64)
        clip = float(raw.get("clip_obs", 10.0))
        eps = float(raw.get("epsilon", 1e-8))
    except (KeyError, TypeError, ValueError) as e:
        raise KibbleError(
            f"{path}: VecNormalize statistics need obs_mean and obs_var (lists), and may "
            f"give clip_obs and epsilon: {e}"
        ) from e
    if mean.shape != shape or var.shape != shape:
        raise KibbleError(
            f"{path}: VecNormalize statistics of shape {mean.shape} / {var.shape} do not fit "
            f"observations of shape {shape}"
        )
    return Normalize(mean, var, clip, eps, path)
