"""Curation overhead and memory: pipeline steps/s vs a bare rollout loop, in one run.

    python benchmarks/pipeline.py [--episodes 40] [--at-scale] [--dask]

For gym/CartPole-v1 (random expert) and metaworld/reach-v3 (scripted expert):

- one process: ``kibble rollout``'s curation (record, validate, tokenize, filter,
  write Parquet) vs a bare loop of the same policy and environment (reset, act,
  step, nothing kept); the ratio of environment steps per second.
- two processes: the Beam job on the local runner with 2 workers vs two bare
  loops in two processes, same episodes.
- peak memory (max RSS of a fresh process) of the one-process curation at 1x and
  4x the episodes.

``--at-scale`` runs the sizes where start-up no longer dominates (issue 24): 400
reach-v3 episodes cut at 200 steps (80K steps) and 4,000 random CartPole episodes (about
89K steps), and prints where the Beam job's launcher spent its time (the curation's
phases: ``steps`` is Beam's start-up and the workers' rollouts, then assembling the
dataset and publishing it); it leaves out the memory measurement (4x these sizes would
take minutes).

``--dask`` also runs the Beam job on Beam's DaskRunner, on a local ``dask.distributed``
cluster of 2 worker processes (``kibble[dask]``), against the local runner on the same
cores.

Target: ratio >= 0.9 (>= 0.95 at scale); peak memory flat within 10% from 1x to 4x.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

TASKS = [("gym/CartPole-v1", "random", None), ("metaworld/reach-v3", "scripted", 200)]
AT_SCALE = {"gym/CartPole-v1": 4000, "metaworld/reach-v3": 400}
"""Episodes per task with --at-scale."""


class Phases(logging.Handler):
    """Collects the curation's ``phase NAME: SECONDS s`` debug lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("phase "):
            name, seconds = record.args
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds


def bare_loop(task_id: str, expert: str, max_steps: int | None, indices: list[int]) -> int:
    """Reset, act, step; nothing recorded. Returns the number of steps."""
    from kibble.envs import get_task
    from kibble.experts.rollout import episode_seed
    from kibble.experts.sources import load_expert

    task = get_task(task_id)
    env = task.make()
    policy = load_expert(task, expert, env.observation_space, env.action_space)
    steps = 0
    for i in indices:
        seed = episode_seed(0, task_id, i)
        obs, _ = env.reset(seed=seed)
        policy.start_episode(0, seed)
        t = 0
        while True:
            obs, _, terminated, truncated, _ = env.step(policy.act([obs], [0])[0])
            t += 1
            if terminated or truncated or (max_steps and t >= max_steps):
                break
        steps += t
    return steps


def _bare_worker(args) -> int:
    return bare_loop(*args)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def curate_once(task_id: str, expert: str, max_steps: int | None, episodes: int, out: Path):
    from kibble.pipelines.in_process import curate_tasks
    from kibble.pipelines.stages import TaskJob

    manifest = curate_tasks(
        "bench", [TaskJob(task_id, expert, episodes, max_steps=max_steps)], out, num_envs=1
    )
    return manifest


def planned_steps(task_id: str, expert: str, max_steps: int | None, episodes: int) -> int:
    return bare_loop(task_id, expert, max_steps, list(range(episodes)))


PEAK_SNIPPET = """
import resource, sys, tempfile
from pathlib import Path
sys.path.insert(0, {here!r})
from pipeline import curate_once
with tempfile.TemporaryDirectory() as d:
    curate_once({task!r}, {expert!r}, {max_steps!r}, {episodes}, Path(d) / "ds")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mib(task_id: str, expert: str, max_steps: int | None, episodes: int) -> float:
    code = PEAK_SNIPPET.format(
        here=str(Path(__file__).parent), task=task_id, expert=expert, max_steps=max_steps,
        episodes=episodes,
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def beam_once(
    task_id: str, expert: str, max_steps: int | None, episodes: int, out: Path, runner=()
) -> dict:
    from kibble.pipelines.beam_job import run
    from kibble.pipelines.config import DatasetConfig
    from kibble.pipelines.stages import TaskJob

    config = DatasetConfig(
        "bench", str(out), [TaskJob(task_id, expert, episodes, max_steps=max_steps)],
        episodes_per_shard=max(1, episodes // 2), num_envs=1,
    )  # fmt: skip
    phases = Phases()
    logger = logging.getLogger("kibble.pipelines.curation")
    logger.addHandler(phases)
    logger.setLevel(logging.DEBUG)
    try:
        run(config, list(runner) or ["--direct_num_workers=2"])
    finally:
        logger.removeHandler(phases)
    return phases.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--at-scale", action="store_true", help="the sizes of AT_SCALE")
    parser.add_argument("--dask", action="store_true", help="also the Beam job on DaskRunner")
    args = parser.parse_args()
    print("steps/s; ratio = pipeline / bare loop on the same processes")
    for task_id, expert, max_steps in TASKS:
        n = AT_SCALE[task_id] if args.at_scale else args.episodes
        print(f"{task_id}: {n} episodes")
        report(task_id, expert, max_steps, n, memory=not args.at_scale, dask=args.dask)


def report(
    task_id: str, expert: str, max_steps: int | None, n: int, *, memory: bool, dask: bool
) -> None:
    steps, t_bare = timed(lambda: bare_loop(task_id, expert, max_steps, list(range(n))))
    with tempfile.TemporaryDirectory() as d:
        _, t_pipe = timed(lambda: curate_once(task_id, expert, max_steps, n, Path(d) / "ds"))
    print(f"{task_id} ({expert}), 1 process: bare {steps / t_bare:,.0f}, "
          f"kibble rollout {steps / t_pipe:,.0f}, ratio {t_bare / t_pipe:.2f}")  # fmt: skip
    halves = [list(range(0, n, 2)), list(range(1, n, 2))]
    with mp.get_context("spawn").Pool(2) as pool:
        jobs = [(task_id, expert, max_steps, h) for h in halves]
        _, t_bare2 = timed(lambda: sum(pool.map(_bare_worker, jobs)))
    with tempfile.TemporaryDirectory() as d:
        phases, t_beam = timed(lambda: beam_once(task_id, expert, max_steps, n, Path(d) / "ds"))
    print(f"{task_id} ({expert}), 2 processes: bare {steps / t_bare2:,.0f}, "
          f"Beam job {steps / t_beam:,.0f}, ratio {t_bare2 / t_beam:.2f} "
          f"(Beam start-up included)")  # fmt: skip
    print("  Beam job's phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
    if dask:
        import distributed

        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster),
            tempfile.TemporaryDirectory() as d,
        ):
            runner = [
                "--runner",
                "DaskRunner",
                f"--dask_client_address={cluster.scheduler_address}",
            ]
            _, t_dask = timed(
                lambda: beam_once(task_id, expert, max_steps, n, Path(d) / "ds", runner)
            )
        print(f"{task_id} ({expert}), DaskRunner on 2 worker processes: {steps / t_dask:,.0f} "
              f"steps/s, {t_beam / t_dask:.2f}x the local runner's")  # fmt: skip
    if not memory:  # at scale, 4x the episodes takes minutes: memory is the default run's
        return
    one, four = (peak_rss_mib(task_id, expert, max_steps, k * n) for k in (1, 4))
    print(f"{task_id}: peak memory {one:.0f} MiB at {n} episodes, {four:.0f} MiB at "
          f"{4 * n} ({(four / one - 1) * 100:+.1f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
