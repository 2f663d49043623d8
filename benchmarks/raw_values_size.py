"""What storing raw values beside the tokens costs on disk, per environment family.

    python benchmarks/raw_values_size.py [--episodes 4] [--max-steps 250] [--tasks ...]

For one task of each family it rolls out the same episodes once (random expert, seeded),
tokenizes them with raw values on and off (``tokenize_episode(..., raw_values)``), writes
each version with kibble's Parquet writer (zstd; the raw value columns' encodings chosen
per file, ``kibble.schemas.parquet.choose_encodings``) and prints bytes per step of both
files, the extra bytes per step, their ratio, and the encodings chosen. It also prints
what each raw column would take with each single encoding, which is how the choice was
tuned. Nothing is downloaded; every environment runs here.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyarrow.parquet as pq

from kibble.envs import get_task
from kibble.pipelines.stages import Shard, TaskJob, rollout_shard, tokenize_episode
from kibble.schemas.arrow import TOKENIZED_EPISODE_SCHEMA, tokenized_episode_to_table
from kibble.schemas.parquet import ENCODINGS, RAW_FLOAT_COLUMNS, EpisodeFileWriter
from kibble.schemas.records import Episode
from kibble.tokenize.episode import EpisodeTokenizer

TASKS = (
    "gym/CartPole-v1",
    "atari/Pong",
    "dmc/cartpole-swingup",
    "metaworld/reach-v3",
    "procgen/coinrun",
    "babyai/GoToRedBall-v0",
)


def rollout(task: str, episodes: int, max_steps: int, scratch: str) -> list[Episode]:
    """``episodes`` random-expert episodes of ``task`` (seeded: the same every run)."""
    collected: list[Episode] = []
    job = TaskJob(task, "random", episodes, max_steps=max_steps)
    rollout_shard(
        Shard(job, index=0, start=0, stop=episodes),
        os.path.join(scratch, "rollout.parquet"),
        base_seed=0,
        num_envs=2,
        on_episode=collected.append,
    )
    return sorted(collected, key=lambda e: e.episode_id)


def write(path: str, episodes: list[Episode], tokenizer: EpisodeTokenizer, raw: bool) -> dict:
    with EpisodeFileWriter(path, TOKENIZED_EPISODE_SCHEMA) as writer:
        for episode in episodes:
            writer.write(tokenized_episode_to_table(tokenize_episode(episode, tokenizer, raw)))
    return writer.encodings


def single_encoding_sizes(path: str) -> dict[str, dict[str, int]]:
    """Each raw column of the file alone, zstd, under each single encoding: bytes."""
    table = pq.read_table(path, columns=list(RAW_FLOAT_COLUMNS))
    out: dict[str, dict[str, int]] = {}
    for name in RAW_FLOAT_COLUMNS:
        out[name] = {}
        for encoding in ENCODINGS:
            buffer = io.BytesIO()
            pq.write_table(
                table.select([name]),
                buffer,
                compression="zstd",
                use_dictionary=encoding == "dictionary",
                use_byte_stream_split=encoding == "byte_stream_split",
            )
            out[name][encoding] = buffer.tell()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=250)
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for task in args.tasks:
            t0 = time.perf_counter()
            episodes = rollout(task, args.episodes, args.max_steps, scratch)
            tokenizer = EpisodeTokenizer(*get_task(task).spaces())
            steps = sum(e.length for e in episodes)
            on, off = os.path.join(scratch, "on.parquet"), os.path.join(scratch, "off.parquet")
            encodings = write(on, episodes, tokenizer, raw=True)
            write(off, episodes, tokenizer, raw=False)
            b_on, b_off = os.path.getsize(on) / steps, os.path.getsize(off) / steps
            singles = single_encoding_sizes(on)
            rows.append((task, steps, b_off, b_on, encodings, singles))
            print(f"{task}: {steps} steps in {time.perf_counter() - t0:.1f} s", flush=True)

    print()
    print("| task | steps | bytes/step, raw off | bytes/step, raw on | extra | on / off |")
    print("|---|---|---|---|---|---|")
    for task, steps, b_off, b_on, _, _ in rows:
        print(
            f"| {task} | {steps:,} | {b_off:,.1f} | {b_on:,.1f} | {b_on - b_off:+,.1f} "
            f"| {b_on / b_off:.2f} |"
        )
    print()
    print("Raw columns alone (bytes/step) under each encoding; * = the one the writer chose:")
    for task, steps, _, _, encodings, singles in rows:
        parts = []
        for name, sizes in singles.items():
            cells = [
                f"{e}{'*' if encodings.get(name) == e else ''} {size / steps:.1f}"
                for e, size in sizes.items()
            ]
            parts.append(f"{name}: " + ", ".join(cells))
        print(f"  {task}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
