"""The BabyAI bot through kibble on every BabyAI level: success rate, return, speed.

    python benchmarks/babyai_bot.py [--episodes 10] [--max-steps 1000] [--out babyai_bot.json]

Each level runs ``--episodes`` episodes (seeds 0..N-1) with the bot expert, via the same
``evaluate`` that `kibble expert eval` uses, cut at ``--max-steps`` steps (a cut episode
counts as a failure; most levels end far sooner, the largest allow thousands of steps),
and prints a markdown table. The success rates below 0.8 feed ``BOT_SUCCESS`` in
``kibble/envs/family_babyai.py``, which marks weak experts in `kibble tasks`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np

from kibble.envs import list_tasks
from kibble.envs.family_babyai import WEAK_BOT_SUCCESS
from kibble.experts.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the bot's planning failures count as failures
    results = {}
    started = time.perf_counter()
    print("| level | success | return mean | mean length | steps/s |")
    print("|---|---|---|---|---|")
    for task in list_tasks("babyai"):
        t0 = time.perf_counter()
        episodes = evaluate(
            task.id, "bot", args.episodes, seed=0, num_envs=1, max_steps=args.max_steps
        )
        seconds = time.perf_counter() - t0
        returns = np.array([e.episode_return for e in episodes])
        success = float(np.mean([bool(e.success) for e in episodes]))
        steps = sum(e.length for e in episodes)
        results[task.name] = {
            "success_rate": success,
            "return_mean": float(returns.mean()),
            "mean_length": steps / len(episodes),
            "steps_per_s": steps / seconds,
            "seconds": seconds,
        }
        weak = " (weak)" if success < WEAK_BOT_SUCCESS else ""
        print(
            f"| {task.name} | {success:.1f}{weak} | {returns.mean():.3f} "
            f"| {steps / len(episodes):.0f} | {steps / seconds:.0f} |",
            flush=True,
        )
    seconds = time.perf_counter() - started
    print(f"\n{len(results)} levels, {args.episodes} episodes each, {seconds:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
