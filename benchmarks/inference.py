"""Expert inference + environment stepping: batched vs one environment at a time.

    python benchmarks/inference.py [--steps 2000] [--num-envs 8]

For one task per family, in one run on this machine: steps/s of a random-policy
loop (one environment), of the expert one environment at a time, and of the
expert stepping ``--num-envs`` environments together with one batched inference
call per step; each expert figure also as a ratio to the random loop. Experts:
the RLModule `kibble expert train` builds for the task (weights do not change the
cost) and Meta-World's scripted policy. All loops go through kibble's rollout code
(``run_episodes``), so recording is included.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from kibble.envs import get_task
from kibble.experts.random import RandomPolicy
from kibble.experts.rllib_policy import RLlibPolicy
from kibble.experts.rllib_train import default_module
from kibble.experts.rollout import EpisodeJob, run_episodes
from kibble.experts.scripted import ScriptedPolicy

TASKS = [
    ("gym/CartPole-v1", "rllib"),
    ("atari/Pong", "rllib"),
    ("dmc/cartpole-swingup", "rllib"),
    ("metaworld/reach-v3", "scripted"),
    ("procgen/coinrun", "rllib"),
]


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
    episodes = run_episodes(make, policy, jobs, task_id, num_envs=num_envs, max_steps=per_episode)
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
    parser.add_argument("--num-envs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)

    header = f"{'task':24} {'expert':9} {'random 1':>9} {'expert 1':>9} {'ratio':>6} "
    header += f"{'batched ' + str(args.num_envs):>10} {'ratio':>6} {'batched/1':>9}"
    print(f"steps/s, {args.steps} steps each, one process, torch threads 1")
    print(header)
    for task_id, kind in TASKS:
        obs_space, act_space = get_task(task_id).spaces()
        if kind == "scripted":
            expert = ScriptedPolicy(task_id.split("/", 1)[1], act_space)
        else:
            expert = RLlibPolicy(default_module(task_id), obs_space, act_space, "rllib")
        rand = steps_per_second(task_id, RandomPolicy(act_space), 1, args.steps)
        one = steps_per_second(task_id, expert, 1, args.steps)
        batched = steps_per_second(task_id, expert, args.num_envs, args.steps)
        print(
            f"{task_id:24} {kind:9} {rand:9.0f} {one:9.0f} {one / rand:6.2f} "
            f"{batched:10.0f} {batched / rand:6.2f} {batched / one:9.2f}"
        )


if __name__ == "__main__":
    main()
