"""Stable-Baselines3 / RL Zoo checkpoints as experts: ``sb3:PATH.zip``, loaded without
unpickling.

``load_sb3_policy`` rebuilds the agent's policy network (PPO, A2C, TRPO, DQN, QR-DQN,
SAC, TQC, TD3, DDPG; Mlp and Cnn policies) and wraps it as a batched kibble
:class:`~kibble.experts.policy.Policy`. Actions are SB3's
``model.predict(obs, deterministic=True)``; with ``sample=True`` they are drawn as
``model.predict(obs, deterministic=False)`` would draw them (the policy's distribution
for PPO/A2C/TRPO/SAC/TQC, epsilon-greedy with the saved final ``exploration_rate``
for DQN/QR-DQN, the deterministic actor for TD3/DDPG, whose ``predict`` never adds
noise), from one generator per slot seeded by the episode's seed.

What an sb3 source trusts
-------------------------
**Nothing from pickle.** An SB3 zip carries cloudpickled objects (the policy class,
spaces, schedules, sometimes custom classes) and ``Algo.load`` unpickles them, so a
zip from an untrusted source can run code on load. kibble never unpickles any part of
it (:mod:`kibble.experts.sb3_zip`): it reads the plain JSON text SB3 writes next to
each pickle (class and module names, space shapes and bounds, plain
``policy_kwargs``), instantiates only whitelisted SB3 / sb3-contrib policy classes,
loads ``policy.pth`` with ``torch.load(..., weights_only=True)`` (tensors only) and
ignores ``policy.optimizer.pth``, ``pytorch_variables.pth`` and every
``:serialized:`` value. Beside the zip it reads YAML with a safe loader (the kibble
sidecar ``PATH.kibble.yaml``, the RL Zoo's ``config.yml``/``args.yml``/
``env_kwargs.yml``) and VecNormalize statistics as JSON.

What it refuses (each with a KibbleError naming what and why)
------------------------------------------------------------
- a missing file, a directory, a corrupt zip, a zip without SB3's ``data`` and
  ``policy.pth``, a ``policy.pth`` that is more than tensors;
- sizes no real agent has, before anything is allocated (:mod:`kibble.limits`): a
  member whose declared size is over its limit (``data`` 64 MiB), over free memory, or
  that inflates over 100 times (a zip bomb); reading stops past the declared size
  whatever the header said; a space of over 16.8 million values or a dimension, ``n``
  or ``nvec`` that is not a whole number; a network the ``data`` declares
  (``net_arch``, widths, the spaces) with more weights than ``policy.pth`` holds;
  sidecar and Zoo YAML over 16 MiB or over a million values with aliases expanded;
- policy classes outside the whitelist (custom classes, recurrent, maskable and ARS
  policies, Dict observations), ``policy_kwargs`` naming classes other than torch.nn
  activations and SB3's FlattenExtractor/NatureCNN (the optimizer settings, used only
  in training, are ignored);
- an agent whose spaces are not the task's (a CartPole agent on Acrobot), in one
  paragraph naming both;
- **VecNormalize statistics as a pickle.** ``vec_normalize.pkl`` is a pickle too:
  kibble never reads it. An agent with a ``vec_normalize.pkl`` beside it (or a Zoo
  config saying ``normalize``) is refused unless the sidecar names the statistics'
  safe JSON form (``vec_normalize: FILE.json``, with ``obs_mean``, ``obs_var``,
  ``clip_obs``, ``epsilon``; the error message gives the one-line conversion to run
  where the pickle is trusted) or says ``vec_normalize: none``;
- ``sampled`` actions of a gSDE policy (its noise matrices are drawn from torch's
  global generator, so they cannot be seeded per episode);
- ``sb3:hub:ORG/REPO``: not implemented (kibble does not download). Fetch the files
  with ``huggingface_sb3.load_from_hub`` or ``huggingface-cli download ORG/REPO`` and
  pass ``sb3:PATH.zip``, keeping the repository's ``config.yml`` etc. beside it.

The expert's own view (Atari)
-----------------------------
A Zoo Atari agent was trained on ``AtariWrapper`` (84x84 grayscale, frame skip 4 with
max-pooling, no-op starts, life loss as episode end, FIRE at reset) plus
``VecFrameStack(4)``; kibble's Atari task records single 80x80 frames of an ALE v5
environment with sticky actions 0.25 and whole games as episodes. On an ``atari/``
task the expert therefore computes its own observation (:mod:`kibble.experts.sb3_view`,
:mod:`kibble.experts.sb3_adapters`): from the environment's raw, max-pooled RGB frames
(``RawFrames.raw_frame``, reached through ``bind_environment``, which rollouts call
after every seeded reset), it applies grayscale, resize to the agent's size, a frame
stack reset every episode and channels-first, exactly as SB3's ``WarpFrame``,
``VecFrameStack`` and ``VecTransposeImage`` do; the recorded observation stays the
task's 80x80 frame.

The view fixes what the agent sees, not how the game moves: frame skip, max-pooling,
sticky actions, no-op starts, life loss as episode end, FIRE at reset, the action set,
mode and difficulty must be the task's (:func:`kibble.envs.family_atari.dynamics`;
compared in :mod:`kibble.experts.sb3_dynamics`). kibble learns the agent's training
setup (:mod:`kibble.experts.sb3_setup`) from, in order: the sidecar
``PATH.kibble.yaml`` (the ``make_atari_env`` arguments: ``env``, ``env_kwargs``,
``atari_wrapper``, ``frame_stack``), the RL Zoo's files beside the zip, or else it
assumes the Zoo's Atari setup (``<Game>NoFrameskip-v4`` + ``AtariWrapper()``). Any
difference refuses the load, naming each difference, unless the sidecar lists it under
``accept_differences``; accepted differences are recorded in the expert's description
(``Sb3Policy.description["view"]``), which an expert card can store. A Zoo agent from
``NoFrameskip-v4`` therefore differs from kibble's task in sticky actions (0 vs 0.25)
and life loss, and for FIRE games in FIRE at reset: load it only by accepting those.
An agent whose observation space already is the task's (trained on kibble's own
environment) needs no view and no sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from kibble.envs.registry import Task
from kibble.errors import KibbleError
from kibble.experts.sb3_network import build_policy
from kibble.experts.sb3_setup import read_setup
from kibble.experts.sb3_view import View, make_view
from kibble.experts.sb3_zip import POLICY_CLASSES, Sb3Checkpoint, read_checkpoint

HUB_PREFIX = "hub:"
HUB_PREFIX = "hub:"


def load_sb3_policy(
    location: str,
    task: Task,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    *,
    sample: bool,
) -> Sb3Policy:
    """The SB3 agent in ``location`` (a ``.zip``) as a batched policy for ``task``."""
    if location.startswith(HUB_PREFIX):
        raise KibbleError(
            f"sb3:{location}: loading from the Hugging Face Hub is not implemented (kibble "
            "does not download checkpoints). Download the repository's files, e.g. "
            f"`huggingface-cli download {location[len(HUB_PREFIX) :]} --local-dir DIR`, and "
            "pass sb3:DIR/NAME.zip (config.yml and the other files stay beside it)"
        )
    path = Path(location).expanduser()
    ckpt = read_checkpoint(path)
    setup = read_setup(path)
    view, policy_obs_space = make_view(ckpt, setup, task, observation_space, action_space)
    network = build_policy(ckpt, policy_obs_space)
    return Sb3Policy(f"sb3:{location}", ckpt, network, view, action_space, sample=sample)


def describe_sb3_source(location: str, task: Task | str) -> dict[str, Any]:
    """What an expert card can store about ``sb3:location`` on ``task`` (JSON-able): the
    file's sha256, algorithm, policy class, SB3 version, spaces, and the expert's view."""
    from kibble.envs import get_task

    task = get_task(task) if isinstance(task, str) else task
    return load_sb3_policy(location, task, *task.spaces(), sample=False).description


class Sb3Policy:
    """An SB3 policy network, batched over environment slots, seeing through its view."""

    def __init__(
        self,
        name: str,
        ckpt: Sb3Checkpoint,
        network: Any,
        view: View,
        action_space: spaces.Space,
        *,
        sample: bool = False,
    ) -> None:
        import torch

        self.family = POLICY_CLASSES[(ckpt.policy_module, ckpt.policy_class)]
        if sample and ckpt.use_sde and self.family in ("actor-critic", "SAC", "TQC"):
            raise KibbleError(
                f"{name}: sampled actions of a gSDE policy (use_sde) cannot be seeded per "
                "episode (SB3 draws its noise from torch's global generator); use greedy actions"
            )
        # One intra-op thread, as for RLlib experts: small networks, small batches, and
        # one worker per core (this sets torch's process-wide count).
        torch.set_num_threads(1)
        self.name = name
        self.network = network
        self.view = view
        self.action_space = action_space
        self.sample = sample
        self.exploration_rate = ckpt.exploration_rate or 0.0
        self.description: dict[str, Any] = {
            "source": name,
            **ckpt.describe(),
            "sampled": sample,
            "view": view.describe(),
        }
        self._chains: dict[int, list] = {}
        self._envs: dict[int, Any] = {}
        self._seen: dict[int, tuple[int, np.ndarray]] = {}
        self._rngs: dict[int, np.random.Generator] = {}

    # --- Policy protocol -------------------------------------------------------------

    def start_episode(self, slot: int, seed: int) -> None:
        self._rngs[slot] = np.random.default_rng([seed, 0x53423300])
        self._reset_slot(slot)

    def bind_environment(self, slot: int, env: Any) -> None:
        """Rollouts call this right after each seeded reset of ``slot``'s environment."""
        if self.view.source == "raw_frames":
            self._envs[slot] = _raw_frames_of(env, self.name)
        self._reset_slot(slot)

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        batch = np.stack([self._see(o, s) for o, s in zip(observations, slots, strict=True)])
        actions = self._sampled(batch, slots) if self.sample else self._greedy(batch)
        return self._to_task(actions)

    # --- the view ----------------------------------------------------------------------

    def _reset_slot(self, slot: int) -> None:
        chain = self._chains.get(slot)
        if chain is None:
            chain = self._chains[slot] = self.view.make_chain()
        for adapter in chain:
            adapter.reset()
        self._seen.pop(slot, None)

    def _see(self, observation: Any, slot: int) -> np.ndarray:
        """The agent's observation in ``slot``: the view applied to the task's or raw frames."""
        chain = self._chains.get(slot)
        if chain is None:
            self._reset_slot(slot)
            chain = self._chains[slot]
        if self.view.source == "observation":
            x = np.asarray(observation)
            for adapter in chain:
                x = adapter(x)
            return x
        env = self._envs.get(slot)
        if env is None:
            raise KibbleError(
                f"{self.name} sees the environment's raw frames, but slot {slot}'s environment "
                "was never bound (kibble's rollouts call bind_environment after each reset)"
            )
        index = env.frame_index
        seen = self._seen.get(slot)
        if seen is not None and seen[0] == index:  # asked twice for one step: same frame
            return seen[1]
        x = env.raw_frame(self.view.pool)
        for adapter in chain:
            x = adapter(x)
        self._seen[slot] = (index, x)
        return x

    # --- actions -----------------------------------------------------------------------

    def _to_task(self, actions: np.ndarray) -> list[Any]:
        space = self.action_space
        if isinstance(space, spaces.Box):
            return [np.asarray(a, space.dtype) for a in actions]
        if isinstance(space, spaces.MultiDiscrete | spaces.MultiBinary):
            return [np.asarray(a, space.dtype) for a in actions]
        return list(actions)

    def _greedy(self, batch: np.ndarray) -> np.ndarray:
        """``policy.predict(batch, deterministic=True)``, step for step, without its
        per-call ``set_training_mode(False)`` (40% of a small network's call; the network
        was put in eval mode once when built)."""
        import torch

        policy = self.network
        obs, _ = policy.obs_to_tensor(batch)
        with torch.no_grad():
            actions = policy._predict(obs, deterministic=True)
        return self._postprocess(actions.cpu().numpy())

    def _postprocess(self, actions: np.ndarray) -> np.ndarray:
        """As ``BasePolicy.predict``: shape, then unscale (squashed) or clip Box actions."""
        space = self.network.action_space
        actions = actions.reshape((-1, *space.shape))
        if isinstance(space, spaces.Box):
            if self.network.squash_output:
                return self.network.unscale_action(actions)
            return np.clip(actions, space.low, space.high)
        return actions

    def _sampled(self, batch: np.ndarray, slots: Sequence[int]) -> np.ndarray:
        """``predict(deterministic=False)``'s draw, from each slot's own generator."""
        import torch

        rngs = [self._rngs.setdefault(s, np.random.default_rng(s)) for s in slots]
        policy = self.network
        if self.family in ("DQN", "QR-DQN"):
            actions = self._greedy(batch)
            for i, rng in enumerate(rngs):
                if rng.random() < self.exploration_rate:
                    actions[i] = rng.integers(policy.action_space.n)
            return actions
        if self.family == "TD3":
            return self._greedy(batch)
        obs, _ = policy.obs_to_tensor(batch)
        with torch.no_grad():
            if self.family in ("SAC", "TQC"):
                mean, log_std, _ = policy.actor.get_action_dist_params(obs)
                mean, std = mean.double().numpy(), log_std.exp().double().numpy()
                noise = np.stack([rng.standard_normal(mean.shape[1:]) for rng in rngs])
                actions = np.tanh(mean + std * noise)
            else:
                actions = _draw(policy.get_distribution(obs), rngs)
        return self._postprocess(actions)


def _draw(dist: Any, rngs: list[np.random.Generator]) -> np.ndarray:
    """A draw from an SB3 action distribution with one numpy generator per row."""
    from stable_baselines3.common import distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        probs = dist.distribution.probs.double().numpy()
        return np.array(
            [rng.choice(len(p), p=p / p.sum()) for rng, p in zip(rngs, probs, strict=True)]
        )
    if isinstance(dist, d.MultiCategoricalDistribution):
        parts = [c.probs.double().numpy() for c in dist.distribution]
        return np.array(
            [
                [rng.choice(len(p[i]), p=p[i] / p[i].sum()) for p in parts]
                for i, rng in enumerate(rngs)
            ]
        )
    if isinstance(dist, d.BernoulliDistribution):
        probs = dist.distribution.probs.double().numpy()
        return np.stack(
            [rng.random(p.shape) < p for rng, p in zip(rngs, probs, strict=True)]
        ).astype(np.int8)
    if isinstance(dist, d.DiagGaussianDistribution):
        mean = dist.distribution.loc.double().numpy()
        std = dist.distribution.scale.double().numpy()
        noise = np.stack([rng.standard_normal(mean.shape[1:]) for rng in rngs])
        return mean + std * noise
    raise KibbleError(f"sampled actions from {type(dist).__name__} are not supported; use greedy")


def _raw_frames_of(env: Any, name: str) -> Any:
    """The task environment's RawFrames wrapper (kibble.envs.family_atari)."""
    from kibble.envs.family_atari import RawFrames

    e = env
    while e is not None:
        if isinstance(e, RawFrames):
            return e
        e = getattr(e, "env", None)
    raise KibbleError(
        f"{name} computes its view from raw Atari frames, but the environment it was bound to "
        "is not a kibble Atari task environment (no RawFrames wrapper)"
    )
