"""Train a per-task expert with RLlib (new API stack): defaults per family, resumable.

An expert directory holds ``checkpoint/`` (an RLlib Algorithm checkpoint, replaced
atomically each time), ``kibble_expert.json`` (task, algorithm, spaces, settings, the
Ray nodes it ran on, progress) and ``progress.jsonl`` (one line per training iteration).
Running the command again on the same directory resumes from the checkpoint.

Defaults: PPO for discrete actions and for image observations (with a CNN sized for
the family's frames), PPO for continuous control too (SAC with ``--algorithm SAC``).
Any AlgorithmConfig field can be overridden (``--set lr=1e-4``).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gymnasium import spaces

import kibble
from kibble.atomic import recover, swap_in
from kibble.envs import describe_space, get_task
from kibble.errors import KibbleError
from kibble.experts.rllib_policy import (
    CHECKPOINT_SUBDIR,
    EXPERT_METADATA,
    UnitFloatImages,
    module_observation_space,
    read_expert_metadata,
)
from kibble.tokenize.spaces import is_image_space

log = logging.getLogger(__name__)

ALGORITHMS = ("PPO", "SAC")


@dataclass
class ExpertTrainConfig:
    """What `kibble expert train` does."""

    task: str
    """Task id, e.g. gym/CartPole-v1."""
    out: Path
    """Expert directory: checkpoint, metadata, progress. Resumed when it exists."""
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
            f"SAC needs continuous actions; {cfg.task} has {describe_space(act_space)}"
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


@dataclass
class IterationReport:
    iteration: int
    env_steps: int
    return_mean: float | None
    seconds: float


def _training_env(task_id: str):
    """The task's environment as RLlib trains on it (image observations as floats)."""
    env = get_task(task_id).make()
    return UnitFloatImages(env) if is_image_space(env.observation_space) else env


def _save_checkpoint(algo: Any, out: Path) -> None:
    """Write the checkpoint beside the old one, then swap, so one always exists whole."""
    tmp = out / f".{CHECKPOINT_SUBDIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp.resolve()))
    swap_in(tmp, out / CHECKPOINT_SUBDIR)


def train_expert(
    cfg: ExpertTrainConfig, on_iteration: Callable[[IterationReport], None] | None = None
) -> dict:
    """Train (or resume) an expert; returns the metadata written to ``kibble_expert.json``."""
    task = get_task(cfg.task)
    obs_space, act_space = task.spaces()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise KibbleError(f"--out {out} is a file; give a directory for the expert")
    previous = read_expert_metadata(out)
    if previous is not None and previous.get("task") != cfg.task:
        raise KibbleError(
            f"{out} holds an expert for {previous.get('task')}, not {cfg.task}; "
            "choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)

    import ray
    from ray.tune.registry import register_env

    env_name = f"kibble:{cfg.task}"
    task_id = cfg.task
    register_env(env_name, lambda _env_config: _training_env(task_id))
    algorithm, config = build_algorithm_config(cfg, env_name, obs_space, act_space)
    import torch

    torch.set_num_threads(cfg.torch_threads)
    if not ray.is_initialized():
        _init_ray(cfg.ray_address)
    _warn_if_too_few_cpus(cfg.num_env_runners)
    try:
        algo = config.build_algo()
    except ValueError as e:  # RLlib's validation of the settings (e.g. a bad --set value)
        raise KibbleError(f"RLlib refused the {algorithm} settings for {cfg.task}: {e}") from e
    checkpoint = out / CHECKPOINT_SUBDIR
    recover(checkpoint)  # a swap killed on a filesystem without exchange
    if checkpoint.exists():
        algo.restore_from_path(str(checkpoint.resolve()))
        log.info("resumed %s from %s", cfg.task, checkpoint)

    metadata = {
        "task": cfg.task,
        "algorithm": algorithm,
        "observation_space": describe_space(obs_space),
        "action_space": describe_space(act_space),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "kibble_version": kibble.__version__,
        "ray": _ray_placement(algo, cfg),
        "progress": previous.get("progress") if previous else None,
    }
    # Written before training too, so an interrupted run is recognised when resumed.
    (out / EXPERT_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    started = time.monotonic()
    report = None
    try:
        with (out / "progress.jsonl").open("a") as progress:
            while True:
                result = algo.train()
                runners = result.get("env_runners", {})
                report = IterationReport(
                    iteration=int(result["training_iteration"]),
                    env_steps=int(result.get("num_env_steps_sampled_lifetime", 0)),
                    return_mean=_finite(runners.get("episode_return_mean")),
                    seconds=time.monotonic() - started,
                )
                progress.write(json.dumps(asdict(report)) + "\n")
                progress.flush()
                if on_iteration:
                    on_iteration(report)
                done = stop_rule_met(report, cfg)
                if done or report.iteration % cfg.checkpoint_every == 0:
                    _save_checkpoint(algo, out)
                if done:
                    break
    finally:
        algo.stop()
    metadata["progress"] = asdict(report) if report else None
    (out / EXPERT_METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def stop_rule_met(report: IterationReport, cfg: ExpertTrainConfig) -> bool:
    """The rule `train_expert` stops on: the step budget spent, the target mean training
    return reached, or this run's time limit (``max_minutes``) used up."""
    return (
        report.env_steps >= cfg.timesteps
        or (
            cfg.target_return is not None
            and report.return_mean is not None
            and report.return_mean >= cfg.target_return
        )
        or (cfg.max_minutes is not None and report.seconds >= 60 * cfg.max_minutes)
    )


def training_finished(out: str | Path, cfg: ExpertTrainConfig) -> bool:
    """True when the expert directory ``out`` holds a checkpoint for ``cfg.task`` whose
    last completed `train_expert` run met ``cfg``'s stop rule (:func:`stop_rule_met`), so
    running `train_expert` with ``cfg`` again would not train further.

    Reads ``kibble_expert.json``, whose progress is written when a run ends (with its
    final checkpoint), not the per-iteration ``progress.jsonl`` (which can run ahead of
    the checkpoint after an interruption). A run that stopped at its ``max_minutes``
    counts as finished when ``cfg`` has a time limit too; give ``max_minutes=None`` to
    ask only about the step budget and the target return.
    """
    out = Path(out)
    meta = read_expert_metadata(out)
    if meta is None or meta.get("task") != cfg.task or not (out / CHECKPOINT_SUBDIR).is_dir():
        return False
    progress = meta.get("progress") or {}
    if not progress:
        return False
    report = IterationReport(
        iteration=int(progress.get("iteration", 0)),
        env_steps=int(progress.get("env_steps", 0)),
        return_mean=_finite(progress.get("return_mean")),
        seconds=float(progress.get("seconds", 0.0)),
    )
    return stop_rule_met(report, cfg)


# How long to wait for a Ray head's port to answer before calling it unreachable:
# ray.init itself retries an unreachable GCS forever (seen: still retrying after 5 min).
CONNECT_TIMEOUT_S = 10.0


def _init_ray(address: str | None) -> None:
    """Start a local Ray, or join the cluster at ``address`` (checked first, so an
    unreachable address is a clear error, not a hang)."""
    import ray

    # Ray's own INFO and WARNING lines at start-up (local instance started, token
    # authentication, ...) are not about the expert; errors still show.
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if not address:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
        return
    hostport = address.removeprefix("ray://")
    if hostport != "auto":
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise KibbleError(
                f"--ray-address {address!r} is not HOST:PORT; give the Ray head's address "
                "as `ray start --head` printed it (e.g. 10.0.0.5:6379), or auto on a machine "
                "that joined the cluster"
            )
        try:
            with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S):
                pass
        except OSError as e:
            raise KibbleError(
                f"cannot reach a Ray cluster at --ray-address {address} ({e}); start one with "
                f"`ray start --head --port {port}` on {host} (and `ray start --address "
                f"{host}:{port}` on the other machines), check the host, port and firewall, "
                "or leave out --ray-address to train on a local Ray"
            ) from e
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise KibbleError(
            f"cannot join the Ray cluster at --ray-address {address}: {e} Run kibble on a "
            "machine that joined the cluster (`ray start --address HEAD:6379`), or leave out "
            "--ray-address to train on a local Ray"
        ) from e
    log.info("joined the Ray cluster at %s: %d node(s)", address, _alive_nodes())


def _alive_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def _warn_if_too_few_cpus(num_env_runners: int) -> None:
    """RLlib waits, without a word, for env runners the cluster has no CPUs for."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    if num_env_runners > cpus:
        log.warning(
            "%d env runners need %d CPUs (one each) but the Ray cluster has %g: training "
            "waits until nodes with more CPUs join; lower --num-env-runners otherwise",
            num_env_runners,
            num_env_runners,
            cpus,
        )


def _ray_placement(algo: Any, cfg: ExpertTrainConfig) -> dict:
    """Where this run's Ray work ran: the cluster joined, its nodes, the env runners' nodes
    (recorded so a run on a cluster can be told from one on a local Ray)."""
    import ray

    context = ray.get_runtime_context()
    runner_nodes: list[str] = []
    if cfg.num_env_runners > 0:
        runner_nodes = algo.env_runner_group.foreach_env_runner(
            lambda _runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
        )
    return {
        "address": cfg.ray_address or "local",
        "gcs_address": context.gcs_address,
        "nodes": _alive_nodes(),
        "driver_node": context.get_node_id(),
        "env_runner_nodes": list(runner_nodes),
    }


def _finite(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None
