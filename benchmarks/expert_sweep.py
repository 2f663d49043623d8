"""One built-in expert on every task of a family: success, return, length, speed.

Shared by ``metaworld_scripted.py`` and ``babyai_bot.py``: each task runs ``episodes``
episodes (seeds 0..N-1) through the same ``evaluate`` that `kibble expert eval` uses,
prints a markdown table row per task and, with ``out``, writes the results as JSON.
"""

from __future__ import annotations

import json
import time

import numpy as np

from kibble.envs import list_tasks
from kibble.experts.evaluation import RolloutSettings, evaluate


def sweep(
    family: str,
    source: str,
    episodes: int,
    weak_below: float,
    max_steps: int | None = None,
    out: str | None = None,
) -> dict[str, dict]:
    """Evaluate ``source`` on every task of ``family``; a success rate below ``weak_below``
    is marked weak."""
    results = {}
    started = time.perf_counter()
    print("| task | success | return mean | return std | mean length | steps/s |")
    print("|---|---|---|---|---|---|")
    for task in list_tasks(family):
        t0 = time.perf_counter()
        run = evaluate(
            task.id,
            source,
            RolloutSettings(episodes=episodes, seed=0, num_envs=1, max_steps=max_steps),
        )
        seconds = time.perf_counter() - t0
        returns = np.array([e.episode_return for e in run])
        success = float(np.mean([bool(e.success) for e in run]))
        steps = sum(e.length for e in run)
        results[task.name] = {
            "success_rate": success,
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "mean_length": steps / len(run),
            "steps_per_s": steps / seconds,
            "seconds": seconds,
        }
        weak = " (weak)" if success < weak_below else ""
        print(
            f"| {task.name} | {success:.1f}{weak} | {returns.mean():.3f} | {returns.std():.3f} "
            f"| {steps / len(run):.0f} | {steps / seconds:.0f} |",
            flush=True,
        )
    seconds = time.perf_counter() - started
    print(f"\n{len(results)} tasks, {episodes} episodes each, {seconds:.0f} s")
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=1)
    return results
