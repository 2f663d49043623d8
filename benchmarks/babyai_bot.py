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
import logging

from expert_sweep import sweep

from kibble.envs.family_babyai import WEAK_BOT_SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the bot's planning failures count as failures
    sweep("babyai", "bot", args.episodes, WEAK_BOT_SUCCESS, args.max_steps, args.out)


if __name__ == "__main__":
    main()
