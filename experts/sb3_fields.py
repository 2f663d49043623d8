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
from kibble.limits import SPACE_VALUES, check_limit, check_memory

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
    declared = f"{path}: its {kind} {what} space"
    try:
        if kind == "Box":
            shape, dtype = shape_and_dtype(entry)
            for d in shape:
                _count(d, f"{declared}'s shape {list(shape)}", 0)
            values = int(np.prod(shape, dtype=object))
            _space_size(values, declared, path)
            # The bounds are built as float64, then converted: four arrays of the shape.
            check_memory(32 * values, f"{declared} Box{shape}", _FIX)
            low = _array(entry.get("low_repr", entry.get("low")), shape)
            high = _array(entry.get("high_repr", entry.get("high")), shape)
            if low is None or high is None:
                return None, (
                    f"Box{shape} {dtype}: its bounds were saved as a shortened text and "
                    "cannot be read back"
                )
            return spaces.Box(low.astype(dtype), high.astype(dtype), shape, np.dtype(dtype)), ""
        if kind == "Discrete":
            n = _space_size(_count(entry["n"], f"{declared}'s n", 1), declared, path)
            start = _count(entry.get("start", 0), f"{declared}'s start", -_INT_RANGE)
            return spaces.Discrete(n, start=start), ""
        if kind == "MultiDiscrete":
            nvec = _array(entry["nvec"], None)
            start = _array(entry.get("start", "0"), None)
            if nvec is not None:
                _space_size(nvec.size, declared, path)
                for v in nvec:
                    _space_size(_count(v, f"{declared}'s nvec", 1), declared, path)
                for v in () if start is None else start:
                    _count(v, f"{declared}'s start", -_INT_RANGE)
                start = None if start is None else np.broadcast_to(start, nvec.shape)
                return spaces.MultiDiscrete(nvec.astype(np.int64), start=start), ""
        if kind == "MultiBinary":
            n = entry["n"]
            dims = [n] if not isinstance(n, list) else n
            dims = [_count(k, f"{declared}'s n", 0) for k in dims]
            _space_size(int(np.prod(dims, dtype=object)), declared, path)
            return spaces.MultiBinary(dims[0] if not isinstance(n, list) else dims), ""
        if kind in ("Dict", "Tuple"):
            raise KibbleError(
                f"{path}: {kind} {what}s are not supported (kibble's sb3 source loads agents "
                "on array observations: Box, Discrete, MultiDiscrete, MultiBinary)"
            )
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise KibbleError(f"{path}: its {kind} {what} space has unreadable fields ({e})") from e
    raise KibbleError(f"{path}: {kind} {what} spaces are not supported")


_INT_RANGE = 1 << 62
_FIX = "free memory, or load it on a machine with more"


def _count(value: Any, what: str, low: int) -> int:
    """A whole number a space declares (a dimension, ``n``, ``start``), refused unless it
    lies in [``low``, 2**62]: JSON may hold 1e30, "1e30" or 3.5."""
    number = value
    if isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            number = value
    if isinstance(number, float | np.floating) and np.isfinite(number) and number == int(number):
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int | np.integer):
        raise KibbleError(f"{what} is {value!r}, not a whole number; not an SB3 checkpoint")
    if not low <= number <= _INT_RANGE:
        raise KibbleError(
            f"{what} is {value!r}, outside [{low}, 2**62]: no space of a real agent is that "
            "large; the zip's data is damaged or was written by hand"
        )
    return int(number)


def _space_size(values: int, declared: str, path: Path) -> int:
    """``values`` (a shape's product, ``n``) within :data:`kibble.limits.SPACE_VALUES`."""
    check_limit(
        values,
        SPACE_VALUES,
        declared,
        "the zip's data is damaged or was written by hand (a real agent's spaces are far smaller)",
        unit="values",
    )
    return values


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
