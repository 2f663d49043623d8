"""Raw values beside tokens: describing a space in JSON, flattening values, rebuilding them.

Kept rows carry their step's raw observation and action (docs/format.md section 8):
``observation`` and ``action`` (list<float64>: every leaf that is neither an image nor
text, flattened row-major, leaf after leaf in the tokenizer's order), ``texts``
(list<string>: the text leaves) and the ``images`` column the tokens already need. The
manifest describes each task's spaces (:func:`describe_space`, docs/format.md section 9),
which is enough to rebuild every leaf with its native dtype and shape
(:func:`unflatten`; :func:`table_values` for rows read from a file) and the Gymnasium
space itself (:func:`space_from_description`).

float64 holds every float32 value and every integer below 2**53 exactly, so the round
trip native -> float64 -> native is exact; :func:`flatten` refuses an integer it could not
hold. The pipeline casts each leaf to its space's dtype (:func:`as_native`) before it
tokenizes, so tokens and raw values come from the same numbers and re-tokenizing the
rebuilt values gives the stored tokens bit for bit.

A description (JSON; ``describe_space(Box(-1, 1, (2,)), "action")``)::

    {"role": "action", "size": 2,
     "space": {"type": "Box", "dtype": "float32", "shape": [2], "low": -1.0, "high": 1.0},
     "leaves": [{"path": [], "kind": "bounded", "dtype": "float32", "shape": [2],
                 "column": "action", "offset": 0, "size": 2}]}

Bounds that are not finite are the strings ``"inf"`` and ``"-inf"`` (JSON has no
infinity); bounds, ``nvec`` and ``start`` equal for every element are one scalar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from gymnasium import spaces

from kibble.errors import SchemaError
from kibble.schemas.arrow import list_column_to_numpy
from kibble.tokenize.codecs import (
    BoundedCodec,
    ContinuousCodec,
    DiscreteCodec,
    ImageCodec,
    LeafCodec,
    Role,
    TextCodec,
    get_leaf,
    is_image_space,
    leaf_codecs,
)

DESCRIPTION_KEYS = ("role", "size", "space", "leaves")
"""The keys of a description: :func:`describe_space`'s result."""

_KINDS = {
    ImageCodec: "image",
    TextCodec: "text",
    BoundedCodec: "bounded",
    ContinuousCodec: "continuous",
    DiscreteCodec: "discrete",
}
# Largest integer magnitude a float64 holds exactly: beyond it the round trip is not exact.
_EXACT_INT = 2**53


# -- describing a space -------------------------------------------------------------------


def _number(x: Any) -> float | int | str:
    """A JSON number; non-finite floats as the strings "inf", "-inf", "nan"."""
    if isinstance(x, np.integer | int):
        return int(x)
    x = float(x)
    return x if np.isfinite(x) else str(x)


def _array(a: np.ndarray) -> Any:
    """One scalar when every element is equal, else nested lists (``shape`` says which)."""
    a = np.asarray(a)
    flat = a.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return _number(flat[0])
    return np.vectorize(_number, otypes=[object])(a).tolist() if a.size else []


def _space_tree(space: spaces.Space) -> dict:
    if isinstance(space, spaces.Box):
        out = {
            "type": "Box",
            "dtype": str(space.dtype),
            "shape": list(space.shape),
            "low": _array(space.low),
            "high": _array(space.high),
        }
        if is_image_space(space):
            out["image"] = True
        return out
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "dtype": str(space.dtype), "n": int(space.n),
                "start": int(space.start)}  # fmt: skip
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "dtype": str(space.dtype), "shape": list(space.shape),
                "nvec": _array(space.nvec), "start": _array(space.start)}  # fmt: skip
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "dtype": str(space.dtype), "shape": list(space.shape)}
    if isinstance(space, spaces.Text):
        return {"type": "Text", "min_length": int(space.min_length),
                "max_length": int(space.max_length), "charset": space.characters}  # fmt: skip
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: _space_tree(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [_space_tree(s) for s in space.spaces]}
    raise SchemaError(f"cannot describe space {space!r}: kibble describes the spaces it tokenizes")


def _leaf_record(leaf: LeafCodec, role: Role, offsets: dict[str, int]) -> dict:
    kind = _KINDS[type(leaf)]
    record: dict[str, Any] = {"path": list(leaf.path), "kind": kind}
    if kind == "text":
        record.update(dtype="str", shape=[], column="texts", index=offsets["texts"])
        offsets["texts"] += 1
        return record
    record.update(dtype=str(leaf.space.dtype), shape=list(leaf.space.shape))
    if kind == "image":
        record.update(column="images", index=offsets["images"])
        offsets["images"] += 1
        return record
    size = int(np.prod(leaf.space.shape, dtype=np.int64))
    record.update(column=role, offset=offsets[role], size=size)
    offsets[role] += size
    return record


def describe_space(space: spaces.Space, role: Role = "observation") -> dict:
    """The JSON description of ``space`` (see the module docstring): the space's tree
    (Dict/Tuple structure; Box shape, dtype, bounds, ``image`` for image leaves; Discrete
    n and start; MultiDiscrete nvec and start; MultiBinary shape; Text lengths and
    charset), its leaves in token order with where each one's values are stored, and
    ``size``, the length of the flat ``observation``/``action`` list of one step."""
    offsets = {role: 0, "images": 0, "texts": 0}
    leaves = [_leaf_record(leaf, role, offsets) for leaf in leaf_codecs(space, role)]
    return {"role": role, "size": offsets[role], "space": _space_tree(space), "leaves": leaves}


def _values(x: Any, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A scalar or nested lists from :func:`_array` -> an array of ``shape``."""
    dtype = np.dtype(dtype)
    # Integers stay Python ints (int64 bounds such as 2**63 - 1 do not survive float64).
    kind = (int, object) if dtype.kind in "iub" else (float, np.float64)
    arr = np.vectorize(kind[0], otypes=[kind[1]])(np.asarray(x, dtype=object))
    return np.broadcast_to(arr, tuple(shape)).astype(dtype)


def space_from_description(description: dict) -> spaces.Space:
    """The Gymnasium space a description (or its ``space`` tree) describes."""
    tree = description.get("space", description) if isinstance(description, dict) else None
    if not isinstance(tree, dict) or "type" not in tree:
        raise SchemaError(f"not a kibble space description: {description!r:.100}")
    kind = tree["type"]
    try:
        if kind == "Box":
            dtype, shape = np.dtype(tree["dtype"]), tuple(tree["shape"])
            return spaces.Box(_values(tree["low"], shape, dtype),
                              _values(tree["high"], shape, dtype), shape, dtype)  # fmt: skip
        if kind == "Discrete":
            return spaces.Discrete(tree["n"], start=tree.get("start", 0))
        if kind == "MultiDiscrete":
            dtype, shape = np.dtype(tree["dtype"]), tuple(tree["shape"])
            return spaces.MultiDiscrete(
                _values(tree["nvec"], shape, np.int64),
                dtype=dtype,
                start=_values(tree.get("start", 0), shape, np.int64),
            )
        if kind == "MultiBinary":
            shape = tuple(tree["shape"])
            return spaces.MultiBinary(list(shape) if len(shape) > 1 else shape[0])
        if kind == "Text":
            return spaces.Text(tree["max_length"], min_length=tree["min_length"],
                               charset=tree["charset"])  # fmt: skip
        if kind == "Dict":
            return spaces.Dict({k: space_from_description(s) for k, s in tree["spaces"].items()})
        if kind == "Tuple":
            return spaces.Tuple([space_from_description(s) for s in tree["spaces"]])
    except (KeyError, TypeError, ValueError) as e:
        raise SchemaError(f"a damaged {kind} space description: {e}: {tree!r:.200}") from e
    raise SchemaError(f"unknown space type {kind!r} in a space description")


# -- values -------------------------------------------------------------------------------


def _conform(values: Any, dtype: np.dtype) -> Any:
    """``values`` cast to ``dtype`` when that is a float rounding or loses nothing."""
    arr = np.asarray(values)
    if arr.dtype == dtype:
        return arr
    cast = arr.astype(dtype)
    if arr.dtype.kind == "f" and dtype.kind == "f":
        return cast  # float64 -> float32: the space's precision, what the tokens see
    # An integer leaf given as floats: cast only when nothing changes (the tokenizer
    # refuses non-integers with a clear error, so leave those for it).
    with np.errstate(invalid="ignore"):
        return cast if np.array_equal(cast.astype(arr.dtype), arr) else arr


def as_native(value: Any, space: spaces.Space) -> Any:
    """A batched value (leading T axis, nested like ``space``) with each array leaf cast
    to its space's dtype; Text leaves unchanged. A Dict/Tuple value is rebuilt, not
    changed in place."""
    if isinstance(space, spaces.Dict):
        return {k: as_native(v, space[k]) if k in space.spaces else v for k, v in value.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(as_native(v, s) for v, s in zip(value, space.spaces, strict=True))
    if isinstance(space, spaces.Text) or getattr(space, "dtype", None) is None:
        return value
    return _conform(value, np.dtype(space.dtype))


def flatten(value: Any, space: spaces.Space, role: Role) -> tuple[np.ndarray, np.ndarray]:
    """A batched value (leading T axis) -> ``(T, size)`` float64 of its non-image, non-text
    leaves in token order, and ``(T, k)`` str of its k text leaves (images are stored by
    the tokens' ``images`` column). An integer of magnitude 2**53 or more is an error:
    float64 could not hold it exactly."""
    flat, texts = [], []
    for leaf in leaf_codecs(space, role):
        if isinstance(leaf, ImageCodec):
            continue
        arr = np.asarray(get_leaf(value, leaf.path))
        if isinstance(leaf, TextCodec):
            texts.append(np.asarray([str(x) for x in arr.reshape(-1)], dtype=object))
            continue
        if arr.dtype.kind in "iu" and arr.size and np.abs(arr).max() >= _EXACT_INT:
            raise SchemaError(
                f"{leaf.name} holds {np.abs(arr).max()}, beyond what float64 holds exactly "
                f"(2**53): kibble cannot store it as a raw value; turn raw values off "
                "(raw_values: false)"
            )
        flat.append(arr.reshape(len(arr), -1).astype(np.float64))
    t = len(flat[0]) if flat else (len(texts[0]) if texts else _steps(value, space, role))
    obs = np.concatenate(flat, axis=1) if flat else np.zeros((t, 0), np.float64)
    txt = np.stack(texts, axis=1) if texts else np.empty((t, 0), object)
    return obs, txt


def _steps(value: Any, space: spaces.Space, role: Role) -> int:
    """T of a value whose only leaves are images."""
    leaves = leaf_codecs(space, role)
    return len(np.asarray(get_leaf(value, leaves[0].path))) if leaves else 0


def crop_image(pixels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Stored (padded) pixels ``(..., H', W', C)`` -> the leaf's own ``shape`` (H, W[, C]):
    the zero padding at the bottom and right (docs/format.md section 5) cut off."""
    h, w = shape[0], shape[1]
    out = np.asarray(pixels)[..., :h, :w, :]
    return out[..., 0] if len(shape) == 2 else out


def _assemble(tree: dict, by_path: dict, path: tuple = ()) -> Any:
    if tree["type"] == "Dict":
        return {k: _assemble(s, by_path, (*path, k)) for k, s in tree["spaces"].items()}
    if tree["type"] == "Tuple":
        return tuple(_assemble(s, by_path, (*path, i)) for i, s in enumerate(tree["spaces"]))
    return by_path.get(path)


def unflatten(
    flat: Any,
    description: dict,
    images: Sequence[np.ndarray] | None = None,
    texts: Sequence[Any] | None = None,
) -> Any:
    """Raw values -> a value nested like the space, every leaf with its native dtype and shape.

    ``flat``: one step's ``observation`` (or ``action``) list, ``(size,)``, or a batch
    ``(T, size)`` (then every leaf gets a leading T axis). ``images``: the image leaves'
    pixels in leaf order, each ``(H', W', C)`` (or ``(T, H', W', C)``) as stored, padded
    (cropped here); ``texts``: the text leaves' strings in leaf order (each a str, or a
    ``(T,)`` sequence). Image and text leaves not given are None.
    """
    arr = np.asarray(flat, np.float64)
    size = description["size"]
    if arr.shape[-1:] != (size,) or arr.ndim > 2:
        raise SchemaError(
            f"expected {size} raw {description['role']} values per step, got an array of shape "
            f"{arr.shape}; an empty list means the dataset was written without raw values"
        )
    batch = arr.shape[:-1]  # () or (T,)
    by_path: dict[tuple, Any] = {}
    for leaf in description["leaves"]:
        path, shape, column = tuple(leaf["path"]), tuple(leaf["shape"]), leaf["column"]
        if column == "images":
            if images is not None:
                by_path[path] = crop_image(images[leaf["index"]], shape)
        elif column == "texts":
            if texts is not None:
                text = texts[leaf["index"]]
                by_path[path] = text if isinstance(text, str) else np.asarray(text, dtype=object)
        else:
            part = arr[..., leaf["offset"] : leaf["offset"] + leaf["size"]]
            by_path[path] = part.reshape((*batch, *shape)).astype(np.dtype(leaf["dtype"]))
    return _assemble(description["space"], by_path)


def table_images(table: pa.Table) -> list[np.ndarray]:
    """The ``images`` column of rows with the same image shapes (one episode's) -> one
    ``(rows, H', W', C)`` uint8 array per image leaf, as stored (padded)."""
    if not table.num_rows:
        return []
    shapes = table["image_shapes"][0].as_py()
    flat = table["images"].combine_chunks().flatten()  # (rows * K,) binary, row-major
    if not len(flat):
        return []
    offsets = np.frombuffer(flat.buffers()[1], np.int32)[flat.offset : flat.offset + len(flat) + 1]
    data = np.frombuffer(flat.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    sizes = [int(np.prod(s)) for s in shapes]
    per_row = data.reshape(table.num_rows, sum(sizes))
    bounds = np.cumsum([0, *sizes])
    return [
        per_row[:, lo:hi].reshape(-1, *shape)
        for lo, hi, shape in zip(bounds[:-1], bounds[1:], shapes, strict=True)
    ]


def table_values(table: pa.Table, observation_space: dict, action_space: dict) -> tuple[Any, Any]:
    """Rows of kept data (one episode's, or any rows of one task) -> their observations and
    actions, nested like the spaces, each leaf ``(rows, *shape)`` with its native dtype.

    ``observation_space``, ``action_space``: the task's descriptions from the manifest
    (``manifest["tasks"][task]["observation_space"]``). Rows written without raw values
    (``raw_values: false``) are a SchemaError.
    """
    t = table.num_rows
    obs = list_column_to_numpy(table["observation"], np.float64) if t else np.zeros((0, 0))
    act = list_column_to_numpy(table["action"], np.float64) if t else np.zeros((0, 0))
    texts = list_column_to_numpy(table["texts"]) if t else np.zeros((0, 0), object)
    n_text = sum(leaf["column"] == "texts" for leaf in observation_space["leaves"])
    missing = (obs.shape[1] != observation_space["size"] or act.shape[1] != action_space["size"]
               or texts.shape[1] != n_text)  # fmt: skip
    if t and missing:
        raise SchemaError(
            f"these rows hold {obs.shape[1]} raw observation values, {act.shape[1]} action "
            f"values and {texts.shape[1]} texts, the task's spaces {observation_space['size']}, "
            f"{action_space['size']} and {n_text}: the dataset was curated without raw values "
            "(raw_values: false); curate it again with them to read observations and actions"
        )
    images = table_images(table)
    observations = unflatten(obs, observation_space, images, list(texts.T))
    return observations, unflatten(act, action_space)


__all__ = [
    "DESCRIPTION_KEYS",
    "as_native",
    "crop_image",
    "describe_space",
    "flatten",
    "space_from_description",
    "table_images",
    "table_values",
    "unflatten",
]
