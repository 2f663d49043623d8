"""An SB3 expert's own view: which observations it must see on a task, and from what.

A community agent was trained on its own environment stack, which is rarely the
task's: an RL Zoo Atari agent sees 84x84 grayscale frames stacked 4 deep where
kibble records single 80x80 frames; a MuJoCo agent may have been trained behind
``VecNormalize``. :func:`make_view` checks the agent's spaces against the task's and
picks its :class:`View`:

- the task's observation as it is, or channels-first, or normalized with
  ``VecNormalize``'s statistics (a vector agent, or one trained on kibble's own
  environment);
- for Atari, a Zoo-style view (:mod:`kibble.experts.sb3_adapters`: grayscale, resize,
  frame stack, channels-first) fed from the environment's raw frames, after the
  agent's training dynamics (:mod:`kibble.experts.sb3_setup`,
  :mod:`kibble.experts.sb3_dynamics`) were found to be the task's, or their
  differences accepted by name in the sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from kibble.envs.registry import Task, space_summary
from kibble.errors import KibbleError
from kibble.experts.sb3_adapters import (
    Adapter,
    ChannelsFirst,
    FrameStack,
    Grayscale,
    Resize,
    read_vec_normalize,
)
from kibble.experts.sb3_dynamics import dynamics_differences, expert_atari_dynamics
from kibble.experts.sb3_setup import (
    VEC_NORMALIZE_HOWTO,
    TrainingSetup,
    sidecar_path,
    zoo_atari_default,
)
from kibble.experts.sb3_zip import Sb3Checkpoint


@dataclass(kw_only=True)
class View:
    """What an expert sees: a source and a chain of adapters, one chain per slot.

    ``source`` is ``"observation"`` (the task's observation) or ``"raw_frames"`` (the
    Atari environment's max-pooled RGB screen, from ``RawFrames.raw_frame``).
    """

    source: str
    make_chain: Callable[[], list[Adapter]]
    setup: dict[str, Any] | None = None
    dynamics: dict[str, Any] | None = None
    accepted_differences: dict[str, tuple] = field(default_factory=dict)
    pool: bool = True
    """Raw frames: max-pool the last two emulator frames of a step (AtariWrapper's
    MaxAndSkipEnv does) or take the last one."""

    def describe(self) -> dict[str, Any]:
        """JSON-able, for the expert card."""
        out: dict[str, Any] = {
            "source": {
                "observation": "the task's observation",
                "raw_frames": "the emulator's RGB screen"
                + (", max-pooled over the last two skipped frames" if self.pool else "")
                + " (kibble.envs.family_atari.RawFrames)",
            }[self.source],
            "adapters": [a.describe() for a in self.make_chain()],
        }
        if self.setup is not None:
            out["training_setup"] = self.setup
        if self.dynamics is not None:
            out["dynamics"] = self.dynamics
        if self.accepted_differences:
            out["accepted_differences"] = {
                k: {"expert": a, "task": b} for k, (a, b) in self.accepted_differences.items()
            }
        return out


def _transposed(space: spaces.Space) -> spaces.Space | None:
    """An image Box (H, W, C) as channels-first (C, H, W), as VecTransposeImage shows it."""
    if isinstance(space, spaces.Box) and len(space.shape) == 3:
        return spaces.Box(
            np.moveaxis(space.low, -1, 0), np.moveaxis(space.high, -1, 0), dtype=space.dtype
        )
    return None


def _same(a: spaces.Space, b: spaces.Space, bounds: bool = True) -> bool:
    """Same kind, shape and (with ``bounds``) bounds; float32/float64 differences allowed."""
    if type(a) is not type(b):
        return False
    if isinstance(a, spaces.Box):
        return a.shape == b.shape and (
            not bounds
            or (
                np.allclose(a.low, b.low, rtol=1e-6, atol=1e-6, equal_nan=True)
                and np.allclose(a.high, b.high, rtol=1e-6, atol=1e-6, equal_nan=True)
            )
        )
    if isinstance(a, spaces.Discrete):
        return a.n == b.n and a.start == b.start
    if isinstance(a, spaces.MultiDiscrete):
        return np.array_equal(a.nvec, b.nvec) and np.array_equal(a.start, b.start)
    return a == b


def _spaces_error(ckpt: Sb3Checkpoint, setup: TrainingSetup, task: Task, obs, act, why=""):
    trained = f" (trained on {setup.env_id})" if setup.env_id else ""
    return KibbleError(
        f"sb3:{ckpt.path} cannot act in {task.id}: the {ckpt.algorithm} agent{trained} takes "
        f"observations {ckpt.describe_observations()} and gives actions "
        f"{space_summary(ckpt.action_space)}, but {task.id} has observations "
        f"{space_summary(obs)} and actions {space_summary(act)}{why}. An SB3 agent acts "
        "only on the spaces it was trained on: load it on that task, or use an agent "
        f"trained for {task.id}."
    )


def make_view(
    ckpt: Sb3Checkpoint,
    setup: TrainingSetup,
    task: Task,
    observation_space: spaces.Space,
    action_space: spaces.Space,
) -> tuple[View, spaces.Space]:
    """The expert's view for ``task`` and the observation space its network takes."""
    if not _same(ckpt.action_space, action_space):
        raise _spaces_error(ckpt, setup, task, observation_space, action_space)
    zip_obs = ckpt.observation_space
    flipped = _transposed(observation_space)
    plain = zip_obs is not None and _same(zip_obs, observation_space)
    channels_first = zip_obs is not None and flipped is not None and _same(zip_obs, flipped)
    if zip_obs is None:  # bounds unreadable: shapes and dtype decide, the task gives bounds
        shape = ckpt.observation_shape
        dtype_ok = np.dtype(ckpt.observation_dtype) == getattr(observation_space, "dtype", None)
        plain = dtype_ok and shape == observation_space.shape
        channels_first = dtype_ok and flipped is not None and shape == flipped.shape
        zip_obs = observation_space if plain else flipped if channels_first else None
    if plain or channels_first:
        if task.family == "atari" and setup.known and setup.atari_wrapper is not None:
            raise KibbleError(
                f"sb3:{ckpt.path}: {setup.source} says the agent was trained behind "
                "AtariWrapper, but its observations are the task's own frames"
            )
        normalize = _normalization(ckpt, setup, observation_space)
        chain = ([normalize] if normalize else []) + ([ChannelsFirst()] if channels_first else [])
        view = View(
            source="observation",
            make_chain=lambda: list(chain),
            setup=setup.describe() if setup.known else None,
        )
        return view, zip_obs
    if task.family == "atari":
        return _atari_view(ckpt, setup, task, observation_space, action_space)
    raise _spaces_error(ckpt, setup, task, observation_space, action_space)


def _normalization(ckpt: Sb3Checkpoint, setup: TrainingSetup, space: spaces.Space):
    """The VecNormalize adapter, None, or a refusal when only a pickle is at hand."""
    if setup.vec_normalize is not None:
        if not isinstance(space, spaces.Box) or space.dtype == np.uint8:
            raise KibbleError(
                f"sb3:{ckpt.path}: VecNormalize statistics are supported for vector "
                f"observations, not {space_summary(space)}"
            )
        return read_vec_normalize(setup.vec_normalize, space.shape)
    if setup.vec_normalize_none:
        return None
    if setup.pickled_stats is not None or setup.normalize:
        found = (
            f"{setup.pickled_stats} is beside it"
            if setup.pickled_stats is not None
            else f"{setup.source} says normalize"
        )
        raise KibbleError(
            f"sb3:{ckpt.path} was trained on VecNormalize-d observations ({found}); "
            + VEC_NORMALIZE_HOWTO.replace("{sidecar}", str(sidecar_path(ckpt.path)))
            + " (or write 'vec_normalize: none' there if it needs none)"
        )
    return None


def _atari_view(
    ckpt: Sb3Checkpoint,
    setup: TrainingSetup,
    task: Task,
    observation_space: spaces.Space,
    action_space: spaces.Space,
) -> tuple[View, spaces.Space]:
    """A Zoo-style view (AtariWrapper + VecFrameStack) from raw frames, dynamics checked."""
    from kibble.envs import family_atari

    shape = ckpt.observation_shape
    image = ckpt.observation_dtype == "uint8" and len(shape) == 3
    if image and shape[1] == shape[2]:
        channels_first, n, size = True, shape[0], shape[1]
    elif image and shape[0] == shape[1]:
        channels_first, n, size = False, shape[2], shape[0]
    else:
        raise _spaces_error(
            ckpt, setup, task, observation_space, action_space,
            " (an Atari agent's own view must be a stack of square uint8 frames)",
        )  # fmt: skip
    if not setup.known:
        setup = zoo_atari_default(task.name, n)
    if setup.atari_wrapper is None:
        raise KibbleError(
            f"sb3:{ckpt.path}: {setup.source} describes no AtariWrapper, and its observations "
            f"({ckpt.describe_observations()}) are not {task.id}'s frames; kibble's Atari view "
            "reproduces SB3's AtariWrapper + VecFrameStack only"
        )
    if setup.normalize or setup.vec_normalize is not None:
        raise KibbleError(f"sb3:{ckpt.path}: VecNormalize on Atari frames is not supported")
    if setup.frame_stack not in (None, n):
        raise KibbleError(
            f"sb3:{ckpt.path}: {setup.source} says frame_stack {setup.frame_stack}, but the "
            f"agent's observations {ckpt.describe_observations()} hold {n} grayscale frames"
        )
    wrapper_size = int(setup.atari_wrapper.get("screen_size", 84))
    if wrapper_size != size:
        raise KibbleError(
            f"sb3:{ckpt.path}: {setup.source} says screen_size {wrapper_size}, but the agent's "
            f"frames are {size}x{size}"
        )
    expert = expert_atari_dynamics(setup, task.name)
    ours = family_atari.dynamics(task.name)
    differences = dynamics_differences(expert, ours)
    accepted = {k: v for k, v in differences.items() if k in setup.accept_differences}
    refused = {k: v for k, v in differences.items() if k not in setup.accept_differences}
    if refused:
        listed = "; ".join(f"{k}: agent {a!r}, task {b!r}" for k, (a, b) in refused.items())
        raise KibbleError(
            f"sb3:{ckpt.path} was trained in an environment that moves differently from "
            f"{task.id}: {listed}. Its training setup is {setup.source}. kibble's sb3 view "
            "changes what the agent sees, never how the game moves, so these would make its "
            f"actions mean something else. If the agent was trained otherwise, describe its "
            f"training environment in {sidecar_path(ckpt.path)} (env, env_kwargs, "
            "atari_wrapper, frame_stack); to load it anyway, list the differences there "
            f"under accept_differences: [{', '.join(refused)}] (the expert's description "
            "records them)."
        )

    def chain() -> list:
        adapters = [Grayscale(), Resize(size), FrameStack(n)]
        return [*adapters, ChannelsFirst()] if channels_first else adapters

    dynamics = {"agent": expert, "task": ours}
    view = View(
        source="raw_frames",
        make_chain=chain,
        setup=setup.describe(),
        dynamics=dynamics,
        accepted_differences=accepted,
        pool=expert["max_pool"],
    )
    space = spaces.Box(0, 255, shape, np.uint8)
    return view, space
