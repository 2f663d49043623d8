"""The SB3 policy network rebuilt from a checkpoint read without unpickling.

Only the whitelisted SB3 / sb3-contrib classes of
:data:`kibble.experts.sb3_zip.POLICY_CLASSES` are instantiated, with the zip's plain
``policy_kwargs``, then given the weights (``strict``: every tensor must fit).
"""

from __future__ import annotations

import importlib
import math
from itertools import pairwise
from typing import Any

from gymnasium import spaces
from gymnasium.spaces.utils import flatdim

from kibble.errors import KibbleError
from kibble.experts.sb3_fields import jsonable
from kibble.experts.sb3_zip import POLICY_CLASSES, Sb3Checkpoint
from kibble.limits import TooLarge


def policy_class(module: str, name: str) -> type:
    """The class ``module.name`` (callers pass only whitelisted names)."""
    return getattr(importlib.import_module(module), name)


def build_policy(ckpt: Sb3Checkpoint, observation_space: spaces.Space) -> Any:
    """The SB3 policy network, rebuilt from the checkpoint and given its weights."""
    cls = policy_class(ckpt.policy_module, ckpt.policy_class)
    kwargs = dict(ckpt.policy_kwargs)
    check_declared_sizes(ckpt, observation_space)
    if POLICY_CLASSES[(ckpt.policy_module, ckpt.policy_class)] == "actor-critic":
        kwargs["use_sde"] = ckpt.use_sde  # on-policy algorithms pass it outside policy_kwargs
    try:
        policy = cls(observation_space, ckpt.action_space, lambda _: 0.0, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        raise KibbleError(
            f"{ckpt.path}: cannot rebuild {ckpt.policy_class} from its policy_kwargs "
            f"{ {k: jsonable(v) for k, v in kwargs.items()} }: {e}"
        ) from e
    try:
        policy.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as e:
        raise KibbleError(
            f"{ckpt.path}: policy.pth does not fit the {ckpt.algorithm} network rebuilt from "
            f"the zip's data: {str(e).splitlines()[0][:300]}"
        ) from e
    policy.set_training_mode(False)
    return policy


def check_declared_sizes(ckpt: Sb3Checkpoint, observation_space: spaces.Space) -> None:
    """Refuse, before building anything, a network the zip's data declares larger than the
    weights its policy.pth holds (which :mod:`kibble.limits` bounded when it was read).

    The rebuilt network must hold exactly policy.pth's tensors (``strict`` loading), so
    every width, count and layer the data declares is bounded by them: a layer of width
    ``w`` after one of width ``v`` holds ``v * w`` weights, and the first layer of an Mlp
    policy takes the whole flattened observation.
    """
    held = sum(t.numel() for t in ckpt.state_dict.values())
    need, named = 0, ""
    for key, value in _declared_widths(ckpt.policy_kwargs):
        widths = [value] if isinstance(value, int) else value
        if "Cnn" not in ckpt.policy_class and key.startswith("net_arch") and widths:
            widths = [flatdim(observation_space), *widths]
        weights = max(widths) if len(widths) < 2 else sum(a * b for a, b in pairwise(widths))
        if weights > need:
            need, named = weights, f"{key} {value}"
    n_actions = flatdim(ckpt.action_space)
    if n_actions > need:
        need, named = n_actions, f"its action space {ckpt.describe()['action_space']}"
    if need > held:
        raise TooLarge(
            f"{ckpt.path}: its data declares a network of at least {need:,} weights "
            f"({named}), but its policy.pth holds {held:,}: they cannot be one network, and "
            "kibble refuses to build it (the zip's data is damaged or was written by hand). "
            "Give the .zip that model.save() wrote"
        )


def _declared_widths(kwargs: dict, key: str = "") -> list[tuple[str, Any]]:
    """(key, a whole number or a list of them) for every size policy_kwargs declares."""
    found: list[tuple[str, Any]] = []
    for k, v in kwargs.items():
        name = f"{key}.{k}" if key else str(k)
        if isinstance(v, dict):
            found += _declared_widths(v, name)
        elif isinstance(v, list | tuple):
            numbers = [_whole(x) for x in v]
            if all(isinstance(x, int) for x in numbers):
                found.append((name, numbers))
            else:
                found += _declared_widths({str(i): x for i, x in enumerate(v)}, name)
        elif isinstance(_whole(v), int):
            found.append((name, _whole(v)))
    return found


def _whole(value: Any) -> Any:
    """An int for an int or a whole float (JSON's 1e6), else ``value``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value
