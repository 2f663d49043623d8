"""The SB3 policy network rebuilt from a checkpoint read without unpickling.

Only the whitelisted SB3 / sb3-contrib classes of
:data:`kibble.experts.sb3_zip.POLICY_CLASSES` are instantiated, with the zip's plain
``policy_kwargs``, then given the weights (``strict``: every tensor must fit).
"""

from __future__ import annotations

import importlib
from typing import Any

from gymnasium import spaces

from kibble.errors import KibbleError
from kibble.experts.sb3_fields import jsonable
from kibble.experts.sb3_zip import POLICY_CLASSES, Sb3Checkpoint


def policy_class(module: str, name: str) -> type:
    """The class ``module.name`` (callers pass only whitelisted names)."""
    return getattr(importlib.import_module(module), name)


def build_policy(ckpt: Sb3Checkpoint, observation_space: spaces.Space) -> Any:
    """The SB3 policy network, rebuilt from the checkpoint and given its weights."""
    cls = policy_class(ckpt.policy_module, ckpt.policy_class)
    kwargs = dict(ckpt.policy_kwargs)
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
