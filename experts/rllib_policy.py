"""RLlib experts at rollout time: a checkpoint's RLModule, batched, no Algorithm, no Ray.

``RLModule.from_checkpoint`` loads the policy network alone (about 0.2 s, no
``ray.init``). ``act`` stacks the observations of all environment slots into one
batch and makes one ``forward_inference`` call. Actions are the distribution's
deterministic choice (argmax for discrete, the mean for Gaussian policies), then
mapped to the environment's action space as RLlib's env runners do
(``normalize_actions``: module outputs in [-1, 1] are unsquashed to [low, high]).

Image observations (uint8) reach RLlib modules as float32 in [0, 1], in training
(``UnitFloatImages``) and here alike: RLlib's CNN encoders take float input.

Checkpoints are pickles (RLlib's format): load only checkpoints you trust.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from kibble.envs.registry import space_summary
from kibble.errors import KibbleError
from kibble.tokenize.codecs import is_image_space

log = logging.getLogger(__name__)

MODULE_SUBDIR = Path("learner_group", "learner", "rl_module", "default_policy")
CHECKPOINT_SUBDIR = "checkpoint"  # inside an expert directory written by `kibble expert train`
EXPERT_METADATA = "kibble_expert.json"


def find_module_dir(path: str | Path) -> Path:
    """The RLModule directory inside an expert dir, an Algorithm checkpoint or itself."""
    root = Path(path)
    if not root.exists():
        raise KibbleError(
            f"expert checkpoint {root} does not exist; train one with "
            "`kibble expert train TASK --out DIR`, or use --expert scripted / random"
        )
    for candidate in (root / CHECKPOINT_SUBDIR / MODULE_SUBDIR, root / MODULE_SUBDIR, root):
        if (candidate / "class_and_ctor_args.pkl").is_file():
            return candidate
    raise KibbleError(
        f"{root} is not an RLlib checkpoint: found no RLModule "
        f"(expected {CHECKPOINT_SUBDIR}/{MODULE_SUBDIR}/class_and_ctor_args.pkl); "
        "point --expert at the directory `kibble expert train --out` wrote"
    )


def spaces_match(a: spaces.Space, b: spaces.Space) -> bool:
    """Same kind, shape and bounds (dtype differences such as float32/float64 allowed)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, spaces.Box):
        return (
            a.shape == b.shape
            and np.allclose(a.low, b.low, equal_nan=True)
            and np.allclose(a.high, b.high, equal_nan=True)
        )
    if isinstance(a, spaces.Discrete):
        return a.n == b.n and a.start == b.start
    return a == b


def module_observation_space(space: spaces.Space) -> spaces.Space:
    """The observation space an RLlib module sees for a task's observation space."""
    if is_image_space(space):
        return spaces.Box(0.0, 1.0, space.shape, np.float32)
    return space


class UnitFloatImages(gym.ObservationWrapper):
    """uint8 image observations -> float32 in [0, 1] (for RLlib training only)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = module_observation_space(env.observation_space)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, np.float32) / 255.0


class RLlibPolicy:
    """An RLlib policy network, batched over environment slots.

    Greedy by default (argmax, or the Gaussian mean). ``sample=True`` draws actions
    from the policy's distribution instead, from a generator per episode seeded by
    the episode's seed, so sampled episodes are reproducible too; greedy policies can
    stall (an Atari agent that never presses FIRE), sampled ones rarely do. Sampling
    supports Discrete and Box actions. Build one with :func:`load_rllib_policy`.
    """

    def __init__(
        self,
        module: Any,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        name: str,
        sample: bool = False,
    ) -> None:
        import torch

        if sample and not isinstance(action_space, spaces.Discrete | spaces.Box):
            raise KibbleError(
                f"sampled actions support Discrete and Box action spaces, not "
                f"{space_summary(action_space)}; use the greedy policy"
            )
        # One intra-op thread: an expert network is small and a batch a few observations,
        # so extra threads only add synchronization; with one Beam worker per core they
        # also oversubscribe the cores. Measured on 2 busy cores: CartPole inference 10x
        # faster with 1 thread than with 2. (This sets torch's process-wide count.)
        torch.set_num_threads(1)
        self.sample = sample
        self._rngs: dict[int, np.random.Generator] = {}
        self.module = module
        self.module.eval()
        self._torch = torch
        self.name = name
        self.action_space = action_space
        self._dist_cls = self.module.get_inference_action_dist_cls()
        # The task's uint8 frames were trained on as [0, 1] floats (UnitFloatImages).
        self._image_scale = 1.0 / 255.0 if is_image_space(observation_space) else None
        # SAC's deterministic sample is the Gaussian mean before its tanh squash.
        self._tanh = "SAC" in type(module).__name__

    def start_episode(self, slot: int, seed: int) -> None:
        """Memoryless; a sampling policy reseeds the slot's generator."""
        self._rngs[slot] = np.random.default_rng([seed, 0x524C4C42])

    def _sample(self, inputs: np.ndarray, slots: Sequence[int]) -> np.ndarray:
        """Draw from the action distribution (B, n) with each slot's generator."""
        rngs = [self._rngs.setdefault(s, np.random.default_rng(s)) for s in slots]
        if isinstance(self.action_space, spaces.Discrete):
            logits = inputs - inputs.max(axis=-1, keepdims=True)  # (B, n) logits
            probs = np.exp(logits)
            probs /= probs.sum(axis=-1, keepdims=True)
            return np.array([rng.choice(len(p), p=p) for rng, p in zip(rngs, probs, strict=True)])
        mean, log_std = np.split(inputs, 2, axis=-1)  # (B, d) each: diagonal Gaussian
        noise = np.stack([rng.standard_normal(mean.shape[1:]) for rng in rngs])
        return mean + np.exp(log_std) * noise

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        from ray.rllib.core.columns import Columns
        from ray.rllib.utils.spaces.space_utils import unsquash_action

        batch = np.stack(observations).astype(np.float32, copy=False)  # (B, *obs_shape)
        if self._image_scale is not None:
            batch = batch * self._image_scale  # uint8 frames -> [0, 1], as in training
        obs = self._torch.from_numpy(batch)
        with self._torch.no_grad():
            out = self.module.forward_inference({Columns.OBS: obs})
            inputs = out[Columns.ACTION_DIST_INPUTS]
            if self.sample:
                actions = self._sample(inputs.double().numpy(), slots)
            else:
                actions = self._dist_cls.from_logits(inputs).to_deterministic().sample().numpy()
        if self._tanh:
            actions = np.tanh(actions)  # (B, *act_shape)
        if isinstance(self.action_space, spaces.Box):
            actions = unsquash_action(actions, self.action_space)
            actions = np.clip(actions, self.action_space.low, self.action_space.high)
            return [a.astype(self.action_space.dtype) for a in actions]
        return [a for a in actions]


def load_rllib_policy(
    checkpoint: str | Path,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    *,
    task: str = "",
    sample: bool = False,
) -> RLlibPolicy:
    """Load a checkpoint's RLModule and check it was trained on these spaces."""
    module_dir = find_module_dir(checkpoint)
    from ray.rllib.core.rl_module.rl_module import RLModule

    try:
        module = RLModule.from_checkpoint(str(module_dir.resolve()))  # RLlib wants a URI
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise KibbleError(f"{checkpoint}: could not load the RLModule: {e}") from e
    for what, ours, theirs in (
        ("observation", module_observation_space(observation_space), module.observation_space),
        ("action", action_space, module.action_space),
    ):
        if not spaces_match(ours, theirs):
            raise KibbleError(
                f"the checkpoint {checkpoint} was trained on another {what} space than "
                f"{task or 'this task'} has: checkpoint {space_summary(theirs)}, "
                f"task {space_summary(ours)}"
            )
    return RLlibPolicy(module, observation_space, action_space, name=str(checkpoint), sample=sample)


def read_expert_metadata(path: str | Path) -> dict | None:
    """The ``kibble_expert.json`` that `kibble expert train` writes next to its checkpoint."""
    meta = Path(path) / EXPERT_METADATA
    return json.loads(meta.read_text()) if meta.is_file() else None
