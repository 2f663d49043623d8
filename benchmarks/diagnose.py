"""Teacher-forced diagnosis of a trained run (kibble.trainer.diagnose), per task.

    python benchmarks/diagnose.py RUN_DIR --task metaworld/reach-v3 --expert scripted \
        [--episodes 5] [--max-steps 100] [--seed 1000]

The expert plays; the model, prompted and fed exactly as in `kibble eval`, picks its
greedy action tokens at every step beside it. Prints, per action token, how often the
model's token is the expert's, the mean distance in bins and the decoded action error
against the tokenizer's own round-trip error.
"""

from __future__ import annotations

import argparse

import torch

from kibble.trainer.diagnose import teacher_forced
from kibble.trainer.evaluate import LoadedRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--task", action="append", required=True)
    parser.add_argument("--expert", action="append", required=True, help="one per --task")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = LoadedRun.load(args.run_dir)
    for task, expert in zip(args.task, args.expert, strict=True):
        result = teacher_forced(
            run, task, expert, episodes=args.episodes, seed=args.seed, max_steps=args.max_steps
        )
        print("\n".join(result.lines()), flush=True)


if __name__ == "__main__":
    main()
