"""Checks of a curation job made on the launcher, before any work (and before any Beam
worker starts): every mistake a worker would otherwise find an hour later, as one
KibbleError.

Used by the dataset config (``kibble pipeline run``) and by ``kibble rollout``:

* the expert source resolves for the task: ``scripted``/``bot`` exist for it, an RLlib
  checkpoint exists and, when `kibble expert train` wrote its metadata, was trained on
  the task's spaces; an SB3 zip loads its description (spaces and training setup
  compared with the task's). Checkpoints given as URLs are checked by the workers.
* the expert card, if any, reads;
* counts are positive integers within what this machine can plan (``max_episodes``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from typing import Any

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.sources import BOT, SCRIPTED, parse_source
from kibble.schemas.layout import is_url

BYTES_PER_EPISODE = 4096
"""Launcher memory an episode costs (its outcome, its summary and rejected rows): the
plan is bounded by physical memory / this."""


def max_episodes() -> int:
    """The most episodes one job may plan on this machine (all tasks together)."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 8 GiB
        memory = 8 << 30
    return max(1, memory // BYTES_PER_EPISODE)


def closest(name: str, known: Iterable[str]) -> str:
    """`` (closest: NAME)`` for a mistyped ``name``, or ``""`` if nothing is close."""
    match = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.5)
    return f" (closest: {match[0]})" if match else ""


def refuse_unknown(where: str, mapping: dict, known: Iterable[str]) -> None:
    """A KibbleError naming the first key of ``mapping`` not in ``known``, and the closest."""
    known = list(known)
    for key in mapping:
        if key not in known:
            raise KibbleError(
                f"{where}: unknown key {key!r}{closest(key, known)}; the known keys are "
                f"{', '.join(known)}"
            )


def positive_int(where: str, value: Any, upper: int | None = None) -> int:
    """``value`` if it is an integer in [1, upper], else a KibbleError saying so."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KibbleError(f"{where}: expected a positive integer, got {value!r}")
    if upper is not None and value > upper:
        raise KibbleError(f"{where}: {value:,} is more than the {upper:,} allowed")
    return value


def check_episodes(total: int) -> None:
    """Refuse a plan larger than this machine's memory allows."""
    limit = max_episodes()
    if total > limit:
        raise KibbleError(
            f"{total:,} episodes planned in all; this machine plans at most {limit:,} "
            f"(about {BYTES_PER_EPISODE // 1024} KiB of launcher memory each). Split the "
            "job into several datasets"
        )


def check_expert(task_id: str, source: str, sample: bool = False) -> None:
    """Refuse an expert source that cannot act on ``task_id`` (see the module docstring)."""
    task = get_task(task_id)
    src = parse_source(source)
    if src.kind in (SCRIPTED, BOT) and src.kind not in task.expert_sources:
        raise KibbleError(
            f"{task.id} has no {src.kind} expert; its expert sources are: "
            f"{', '.join(task.expert_sources)}"
        )
    if sample and not src.can_sample:
        raise KibbleError(
            f"sample: true needs a learned expert (a checkpoint); {src.kind} has no "
            "distribution to sample from"
        )
    if not src.has_checkpoint or is_url(src.location):
        return
    if src.kind == "sb3":
        from kibble.experts.sb3 import describe_sb3_source

        describe_sb3_source(src.location, task)
        return
    _check_rllib(task, src.location)


def _check_rllib(task, location: str) -> None:
    """The checkpoint exists, and its metadata (if any) names the task's spaces."""
    from kibble.envs.registry import space_summary
    from kibble.experts.rllib_policy import find_module_dir, read_expert_metadata

    find_module_dir(location)  # exists and holds an RLModule
    try:
        meta = read_expert_metadata(location)
    except (OSError, ValueError) as e:
        raise KibbleError(f"{location}: could not read its kibble_expert.json: {e}") from e
    if not isinstance(meta, dict):
        return  # a plain RLlib checkpoint: the worker compares the module's spaces
    obs, act = (space_summary(s) for s in task.spaces())
    for what, ours in (("observation", obs), ("action", act)):
        theirs = meta.get(f"{what}_space")
        if theirs is not None and theirs != ours:
            raise KibbleError(
                f"the checkpoint {location} was trained on another {what} space than "
                f"{task.id} has (it was trained on {meta.get('task', 'another task')}): "
                f"checkpoint {theirs}, task {ours}"
            )


def check_card(path: str, task: str) -> None:
    """The expert card reads and is ``task``'s, with finite numbers (``read_card`` checks
    it; the launcher reads it again when the job starts)."""
    from kibble.experts.card import read_card

    read_card(path, task=task)


MAX_NUM_ENVS = 256
"""Environments per worker: each holds a simulator (Atari, MuJoCo) in memory."""


def check_config(config) -> None:
    """Every value of a ``DatasetConfig`` (its types, ranges, tasks, expert sources and
    cards), as one KibbleError naming the field: the one place a curation job is checked
    (``DatasetConfig`` runs it when made, whoever makes it)."""
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise KibbleError(f"seed: expected a non-negative integer, got {config.seed!r}")
    fraction = config.fraction
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0 < fraction <= 1
    ):
        raise KibbleError(f"filter.fraction: expected a number in (0, 1], got {fraction!r}")
    positive_int("episodes_per_shard", config.episodes_per_shard)
    positive_int("num_envs", config.num_envs, MAX_NUM_ENVS)
    if not config.tasks:
        raise KibbleError("tasks: expected a non-empty list of {task, expert, episodes}")
    seen: set[str] = set()
    for i, job in enumerate(config.tasks):
        where = f"tasks[{i}]"
        try:
            get_task(job.task)
        except KibbleError as e:
            raise KibbleError(f"{where}.task: {e}") from e
        if job.task in seen:
            raise KibbleError(f"{where}.task: {job.task} is listed twice")
        seen.add(job.task)
        try:
            positive_int("episodes", job.episodes, max_episodes())
            if job.max_steps is not None:
                positive_int("max_steps", job.max_steps)
        except KibbleError as e:
            raise KibbleError(f"{where}.{e}") from e
        try:
            check_expert(job.task, job.expert, job.sample)
            if job.card is not None:
                check_card(job.card, job.task)
        except KibbleError as e:
            raise KibbleError(f"{where} ({job.task}, expert {job.expert}): {e}") from e
    try:
        check_episodes(sum(job.episodes for job in config.tasks))
    except KibbleError as e:
        raise KibbleError(f"tasks: {e}") from e
