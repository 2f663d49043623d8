"""What `kibble expert train` trains: its settings and the RLlib AlgorithmConfig per task.

Defaults: PPO for discrete actions and for image observations (with a CNN sized for
the family's frames), PPO for continuous control too (SAC with ``--algorithm SAC``).
Any AlgorithmConfig field can be overridden (``--set lr=1e-4``).
"""

from __future__ import annotations

import difflib
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from gymnasium import spaces

from kibble.envs import get_task, space_summary
from kibble.errors import KibbleError
from kibble.experts.rllib_policy import module_observation_space
from kibble.tokenize.codecs import is_image_space

ALGORITHMS = ("PPO", "SAC")


@dataclass
class ExpertTrainConfig:
    """What `kibble expert train` does."""

    task: str
    """Task id, e.g. gym/CartPole-v1."""
    out: Path
    """Expert directory: checkpoint, metadata, progress. Resumed when it exists."""
    _: KW_ONLY  # the settings by name: ExpertTrainConfig(task, out, timesteps=...)
    algorithm: str | None = None
    """PPO or SAC; default: PPO (SAC is an option for continuous actions)."""
    timesteps: int = 200_000
    """Stop after this many environment steps (in total, across resumes)."""
    target_return: float | None = None
    """Stop as soon as the mean training return reaches this."""
    max_minutes: float | None = None
    """Stop after this much wall time in this run."""
    num_env_runners: int = 0
    """RLlib env-runner processes; 0 samples in the driver (best on 2 cores)."""
    num_envs_per_env_runner: int = 8
    """Environments each env runner steps together (batched inference)."""
    torch_threads: int = 1
    """Torch threads in this process. 1 is fastest on 2 shared cores (measured: CartPole
    solved in 22 s with 1 thread, 61 s with 2 while another process was busy)."""
    checkpoint_every: int = 5
    """Checkpoint every this many iterations (and at the end)."""
    seed: int = 0
    """RLlib's seed."""
    ray_address: str | None = None
    """An existing Ray cluster: its head's HOST:PORT (6379 unless ``ray start --head``
    was given another ``--port``) from a machine that joined the cluster, or ``auto`` for
    the cluster this machine belongs to; default: a local Ray."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """AlgorithmConfig fields to override, e.g. {"lr": 1e-4}."""


# Conv stack for image observations, strides 4, 2, 2 ("same" padding): 80x80 -> 5x5,
# 64x64 -> 4x4. RLlib has no default for 80x80 (Atari here).
CNN_FILTERS = [[32, [8, 8], 4], [64, [4, 4], 2], [64, [3, 3], 2]]


def build_algorithm_config(cfg: ExpertTrainConfig, env_name: str, obs_space, act_space):
    """The RLlib AlgorithmConfig for this task: family defaults, then overrides."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.algorithms.sac import SACConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    algorithm = (cfg.algorithm or "PPO").upper()
    if algorithm not in ALGORITHMS:
        raise KibbleError(
            f"--algorithm must be one of {', '.join(ALGORITHMS)}, got {cfg.algorithm!r}"
        )
    continuous = isinstance(act_space, spaces.Box)
    if algorithm == "SAC" and not continuous:
        raise KibbleError(
            f"SAC needs continuous actions; {cfg.task} has {space_summary(act_space)}"
        )
    image = is_image_space(obs_space)
    if algorithm == "SAC":
        config = SACConfig().training(
            num_steps_sampled_before_learning_starts=1000,
            train_batch_size_per_learner=256,
            replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer", "capacity": 200_000},
        )
        config = config.reporting(min_sample_timesteps_per_iteration=1000)
        model = DefaultModelConfig(fcnet_hiddens=[256, 256])
    elif image:
        config = PPOConfig().training(
            train_batch_size_per_learner=2048,
            minibatch_size=256,
            num_epochs=4,
            lr=2.5e-4,
            entropy_coeff=0.01,
            vf_loss_coeff=0.5,
            clip_param=0.1,
            grad_clip=0.5,
        )
        model = DefaultModelConfig(
            conv_filters=CNN_FILTERS, fcnet_hiddens=[256], vf_share_layers=True
        )
    else:
        # Measured on CartPole-v1 (2 cores): mean training return 500 after 72K steps
        # (33 s of training; 100 evaluation episodes all 500).
        # RLlib's default vf_clip_param (10) clips the value loss on tasks whose returns
        # reach hundreds and stalls learning; it is effectively off here.
        config = PPOConfig().training(
            train_batch_size_per_learner=4000,
            minibatch_size=256,
            num_epochs=10,
            lr=3e-4,
            gamma=0.99,
            lambda_=0.95,
            vf_loss_coeff=0.5,
            vf_clip_param=1e6,
        )
        model = DefaultModelConfig(fcnet_hiddens=[64, 64], vf_share_layers=False)
    config = (
        config.environment(env_name)
        .env_runners(
            num_env_runners=cfg.num_env_runners,
            num_envs_per_env_runner=cfg.num_envs_per_env_runner,
        )
        .rl_module(model_config=model)
        .debugging(seed=cfg.seed)
    )
    if cfg.overrides:
        unknown = [key for key in cfg.overrides if not hasattr(config, key)]
        if unknown:
            known = [k for k in vars(config) if not k.startswith("_")]
            hints = {k: difflib.get_close_matches(k, known, n=2) for k in unknown}
            listing = "; ".join(
                f"{k} (did you mean {', '.join(h)}?)" if h else k for k, h in hints.items()
            )
            raise KibbleError(f"--set names no RLlib {algorithm} setting: {listing}")
        try:
            config = config.update_from_dict(cfg.overrides)
        except (AttributeError, TypeError, ValueError, KeyError) as e:
            raise KibbleError(f"cannot apply --set {cfg.overrides}: {e}") from e
    return algorithm, config


def default_module(task_id: str, algorithm: str | None = None) -> Any:
    """The untrained RLModule `kibble expert train` would train for this task (benchmarks)."""
    obs_space, act_space = get_task(task_id).spaces()
    cfg = ExpertTrainConfig(task=task_id, out=Path("."), algorithm=algorithm)
    _, config = build_algorithm_config(cfg, f"kibble:{task_id}", obs_space, act_space)
    module_space = module_observation_space(obs_space)
    spaces_by_module = {
        "__env__": (module_space, act_space),
        "default_policy": (module_space, act_space),
    }
    return config.get_rl_module_spec(spaces=spaces_by_module, inference_only=True).build()
