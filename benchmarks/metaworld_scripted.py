"""Meta-World's scripted experts through kibble, all 50 v3 tasks: success rate and return.

    python benchmarks/metaworld_scripted.py [--episodes 10] [--out metaworld_scripted.json]

Each task runs ``--episodes`` episodes (seeds 0..N-1; the seed picks the task's
goal/object variation) of 500 steps with the scripted policy, via the same
``evaluate`` that `kibble expert eval` uses, and prints a markdown table. The
success rates feed ``SCRIPTED_SUCCESS`` in ``kibble/envs/family_metaworld.py``,
which marks weak experts in `kibble tasks`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from kibble.envs import list_tasks
from kibble.envs.family_metaworld import WEAK_SCRIPTED_SUCCESS
from kibble.experts.evaluation import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = {}
    started = time.perf_counter()
    print("| task | success | return mean | return std | steps/s |")
    print("|---|---|---|---|---|")
    for task in list_tasks("metaworld"):
        t0 = time.perf_counter()
        episodes = evaluate(task.id, "scripted", args.episodes, seed=0, num_envs=1)
        seconds = time.perf_counter() - t0
        returns = np.array([e.episode_return for e in episodes])
        success = float(np.mean([bool(e.success) for e in episodes]))
        steps = sum(e.length for e in episodes)
        results[task.name] = {
            "success_rate": success,
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "steps_per_s": steps / seconds,
        }
        weak = " (weak)" if success < WEAK_SCRIPTED_SUCCESS else ""
        print(
            f"| {task.name} | {success:.1f}{weak} | {returns.mean():.1f} | {returns.std():.1f} "
            f"| {steps / seconds:.0f} |",
            flush=True,
        )
    seconds = time.perf_counter() - started
    print(f"\n{len(results)} tasks, {args.episodes} episodes each, {seconds:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
