"""The plain-text fields of an SB3 zip's ``data``, read back without unpickling.

SB3 writes every value JSON cannot hold as a cloudpickle under ``:serialized:`` and,
next to it, plain-text descriptions: a space's type, dtype, shape, bounds (numpy's
``str()``), ``n``/``nvec``; a class as ``<class 'module.Name'>``. This module turns
those descriptions back into gymnasium spaces and ``policy_kwargs`` (plain JSON values,
and classes only from a short whitelist: torch.nn activations, SB3's FlattenExtractor
and NatureCNN). Anything else is a :class:`~kibble.errors.KibbleError` naming it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from kibble.errors import KibbleError

_ACTIVATIONS = (
    "ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Softplus", "SELU", "Mish",
    "Identity", "ReLU6", "Hardtanh", "Hardswish", "CELU", "PReLU",
)  # fmt: skip
_EXTRACTORS = ("FlattenExtractor", "NatureCNN")
_TRAINING_ONLY_KWARGS = ("optimizer_class", "optimizer_kwargs")
_CLASS_TEXT = re.compile(r"^<class '([\w.]+)'>$")


def jsonable(value: Any) -> Any:
    """A policy_kwargs value as JSON can hold it (a class as its qualified name)."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def shape_and_dtype(entry: Any) -> tuple[tuple[int, ...], str]:
    """A space entry's shape and dtype text ((), "?" when absent)."""
    if not isinstance(entry, dict):
        return (), "?"
    shape = entry.get("_shape", entry.get("shape"))
    dims = tuple(int(s) for s in shape) if isinstance(shape, list) else ()
    return dims, str(entry.get("dtype"))


def read_space(entry: Any, what: str, path: Path) -> tuple[spaces.Space | None, str]:
    """A space from its plain description.

    (None, why) only for a Box whose bounds were saved shortened (see :func:`_array`);
    any other space that cannot be read back is an error.
    """
    if not isinstance(entry, dict):
        raise KibbleError(f"{path}: its data has no {what}_space entry; not an SB3 checkpoint")
    kind_text = str(entry.get(":type:", ""))
    m = re.match(r"^<class '(?:gymnasium|gym)\.spaces\.[\w.]+\.(\w+)'>$", kind_text)
    if not m:
        raise KibbleError(f"{path}: its {what} space is of an unknown type {kind_text!r}")
    kind = m.group(1)
    try:
        if kind == "Box":
            shape, dtype = shape_and_dtype(entry)
            low = _array(entry.get("low_repr", entry.get("low")), shape)
            high = _array(entry.get("high_repr", entry.get("high")), shape)
            if low is None or high is None:
                return None, (
                    f"Box{shape} {dtype}: its bounds were saved as a shortened text and "
                    "cannot be read back"
                )
            return spaces.Box(low.astype(dtype), high.astype(dtype), shape, np.dtype(dtype)), ""
        if kind == "Discrete":
            return spaces.Discrete(int(entry["n"]), start=int(entry.get("start", 0))), ""
        if kind == "MultiDiscrete":
            nvec = _array(entry["nvec"], None)
            start = _array(entry.get("start", "0"), None)
            if nvec is not None:
                start = None if start is None else np.broadcast_to(start, nvec.shape)
                return spaces.MultiDiscrete(nvec.astype(np.int64), start=start), ""
        if kind == "MultiBinary":
            n = entry["n"]
            return spaces.MultiBinary(n if isinstance(n, int) else [int(k) for k in n]), ""
        if kind in ("Dict", "Tuple"):
            raise KibbleError(
                f"{path}: {kind} {what}s are not supported (kibble's sb3 source loads agents "
                "on array observations: Box, Discrete, MultiDiscrete, MultiBinary)"
            )
    except (KeyError, TypeError, ValueError) as e:
        raise KibbleError(f"{path}: its {kind} {what} space has unreadable fields ({e})") from e
    raise KibbleError(f"{path}: {kind} {what} spaces are not supported")


def _array(text: Any, shape: tuple[int, ...] | None) -> np.ndarray | None:
    """A numpy array from its ``str()``; a scalar broadcasts to ``shape``.

    numpy shortens arrays of over 1,000 values with ``...``: when every value shown is
    the same (an image's 0 and 255), that value is taken for all; otherwise None.
    """
    if isinstance(text, int | float):
        values = np.array([float(text)])
        truncated = False
    elif isinstance(text, list):
        values = np.asarray(text, np.float64).ravel()
        truncated = False
    elif isinstance(text, str):
        truncated = "..." in text
        tokens = text.replace("[", " ").replace("]", " ").replace("...", " ").replace(",", " ")
        try:
            values = np.array([float(t) for t in tokens.split()], np.float64)
        except ValueError:
            return None
    else:
        return None
    if values.size == 0:
        return None
    if truncated:
        if not np.all(values == values[0]):
            return None
        values = values[:1]
    if shape is None:
        return values
    if values.size == 1:
        return np.full(shape, values[0])
    if values.size != int(np.prod(shape)):
        return None
    return values.reshape(shape)


def read_policy_kwargs(entry: Any, path: Path) -> tuple[dict[str, Any], list[str]]:
    """policy_kwargs from plain JSON and whitelisted class names; training-only keys dropped."""
    import torch

    if entry is None:
        return {}, []
    if not isinstance(entry, dict):
        raise KibbleError(f"{path}: policy_kwargs is {entry!r}, not a mapping")
    out: dict[str, Any] = {}
    dropped = []
    for key, value in entry.items():
        if key in (":type:", ":serialized:"):
            continue
        if key in _TRAINING_ONLY_KWARGS:
            dropped.append(key)  # the optimizer: only training uses it
            continue
        if isinstance(value, str) and (m := _CLASS_TEXT.match(value)):
            qualified = m.group(1)
            module, _, name = qualified.rpartition(".")
            if key == "activation_fn" and module.startswith("torch.nn") and name in _ACTIVATIONS:
                out[key] = getattr(torch.nn, name)
                continue
            if (
                key == "features_extractor_class"
                and module == "stable_baselines3.common.torch_layers"
                and name in _EXTRACTORS
            ):
                from stable_baselines3.common import torch_layers

                out[key] = getattr(torch_layers, name)
                continue
            raise KibbleError(
                f"{path}: policy_kwargs[{key!r}] is the class {qualified}, which kibble does "
                "not rebuild without running the checkpoint's pickles (it accepts torch.nn "
                "activation functions and SB3's FlattenExtractor and NatureCNN)"
            )
        if isinstance(value, str) and value.startswith("<"):
            raise KibbleError(
                f"{path}: policy_kwargs[{key!r}] is a Python object ({value[:80]}) that only "
                "unpickling could rebuild; kibble does not unpickle checkpoints"
            )
        out[key] = value
    return out, dropped
