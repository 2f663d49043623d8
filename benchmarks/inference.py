"""Expert inference + environment stepping: batched vs one environment at a time.

    python benchmarks/inference.py [--steps 2000] [--num-envs 4]

For one task per family, in one run on this machine: steps/s of a random-policy
loop (one environment), of the expert one environment at a time, and of the
expert stepping ``--num-envs`` environments together with one batched inference
call per step; each expert figure also as a ratio to the random loop. Experts:
the RLModule `kibble expert train` builds for the task (weights do not change the
cost), Meta-World's scripted policy, BabyAI's bot, and two ``sb3:`` zips made at
start in a temporary folder: an SB3 PPO MLP trained briefly on CartPole and an
untrained PPO NatureCNN on MsPacman seen through the RL Zoo's view (grayscale 84x84,
4 frames stacked, computed from the raw frames). All loops go through kibble's
rollout code (``run_episodes``), so recording is included.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from kibble.envs import get_task
from kibble.experts.random import RandomPolicy
from kibble.experts.rllib_config import default_module
from kibble.experts.rllib_policy import RLlibPolicy
from kibble.experts.rollout import EpisodeJob, run_episodes
from kibble.experts.scripted import ScriptedPolicy
from kibble.experts.sources import load_expert

TASKS = [
    ("gym/CartPole-v1", "rllib"),
    ("atari/Pong", "rllib"),
    ("dmc/cartpole-swingup", "rllib"),
    ("metaworld/reach-v3", "scripted"),
    ("procgen/coinrun", "rllib"),
    ("babyai/GoToLocal-v0", "bot"),
    ("gym/CartPole-v1", "sb3"),
    ("atari/MsPacman", "sb3"),
]
# The Zoo's view of an environment that moves as kibble's Atari task does (ALE v5,
# sticky actions 0.25, frame skip 4 in AtariWrapper, whole games as episodes).
ZOO_SIDECAR = """\
env: ALE/MsPacman-v5
env_kwargs: {frameskip: 1, repeat_action_probability: 0.25}
atari_wrapper: {terminal_on_life_loss: false, clip_reward: false}
frame_stack: 4
"""


def make_sb3_zips(folder: Path) -> dict[str, Path]:
    """task id -> an SB3 zip for it, saved in ``folder`` (a few seconds of training)."""
    import ale_py
    import gymnasium as gym
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    mlp = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, n_epochs=2, seed=0)
    mlp.learn(1024)
    mlp.save(folder / "ppo-cartpole.zip")
    gym.register_envs(ale_py)
    kwargs = dict(frameskip=1, repeat_action_probability=0.25, full_action_space=False)
    wrapper = dict(terminal_on_life_loss=False, clip_reward=False)
    venv = make_atari_env("ALE/MsPacman-v5", n_envs=1, env_kwargs=kwargs, wrapper_kwargs=wrapper)
    cnn = sb3.PPO("CnnPolicy", VecFrameStack(venv, 4), n_steps=8, batch_size=8, seed=0)
    cnn.save(folder / "ppo-mspacman.zip")
    venv.close()
    (folder / "ppo-mspacman.kibble.yaml").write_text(ZOO_SIDECAR)
    return {
        "gym/CartPole-v1": folder / "ppo-cartpole.zip",
        "atari/MsPacman": folder / "ppo-mspacman.zip",
    }


def make_expert(task_id: str, kind: str, sb3_zips: dict[str, Path]):
    """The expert of ``kind`` for ``task_id``."""
    task = get_task(task_id)
    obs_space, act_space = task.spaces()
    if kind == "scripted":
        return ScriptedPolicy(task.name, act_space)
    if kind == "rllib":
        return RLlibPolicy(default_module(task_id), obs_space, act_space, name="rllib")
    source = f"sb3:{sb3_zips[task_id]}" if kind == "sb3" else kind
    return load_expert(task, source, obs_space, act_space)


def steps_per_second(task_id: str, policy, num_envs: int, steps: int) -> float:
    """Roll out until about ``steps`` steps are done (whole jobs of bounded length)."""
    task = get_task(task_id)
    per_episode = max(1, steps // (2 * num_envs))
    jobs = [EpisodeJob(f"b{i}", seed=i) for i in range(10_000)]
    made = []

    def make():
        env = task.make()
        made.append(env)
        return env

    done = 0
    episodes = run_episodes(
        make, policy, jobs, task=task_id, num_envs=num_envs, max_steps=per_episode
    )
    start = None
    for episode in episodes:
        if start is None:  # skip environment construction and the first episodes' warm-up
            start, done = time.perf_counter(), 0
            continue
        done += episode.length
        if done >= steps:
            break
    episodes.close()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--num-envs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)

    header = f"{'task':24} {'expert':9} {'random 1':>9} {'expert 1':>9} {'ratio':>6} "
    header += f"{'batched ' + str(args.num_envs):>10} {'ratio':>6} {'batched/1':>9}"
    with tempfile.TemporaryDirectory(prefix="kibble-bench-sb3-") as folder:
        sb3_zips = make_sb3_zips(Path(folder))
        print(f"steps/s, {args.steps} steps each, one process, torch threads 1")
        print(header)
        for task_id, kind in TASKS:
            expert = make_expert(task_id, kind, sb3_zips)
            baseline = RandomPolicy(get_task(task_id).spaces()[1])
            rand = steps_per_second(task_id, baseline, 1, args.steps)
            one = steps_per_second(task_id, expert, 1, args.steps)
            batched = steps_per_second(task_id, expert, args.num_envs, args.steps)
            print(
                f"{task_id:24} {kind:9} {rand:9.0f} {one:9.0f} {one / rand:6.2f} "
                f"{batched:10.0f} {batched / rand:6.2f} {batched / one:9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
