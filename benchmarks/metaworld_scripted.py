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

from expert_sweep import sweep

from kibble.envs.family_metaworld import WEAK_SCRIPTED_SUCCESS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    sweep("metaworld", "scripted", args.episodes, WEAK_SCRIPTED_SUCCESS, out=args.out)


if __name__ == "__main__":
    main()
