"""Expert cards: how good an expert is on a task, measured, as JSON (docs/format.md section 13).

A card records, for one task and one expert source, the return over N evaluation
episodes (mean, std, min, max), the success rate where the environment reports
one, the random policy's return on the same seeds, N, the seeds and the package
versions. Episode i resets with seed ``seed + i``; the expert and the random policy
are deterministic given that seed, so a card is reproducible. Cards drive
filtering thresholds and expert-normalized scores.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.evaluation import RolloutSettings, evaluate, evaluate_policy, success_rate
from kibble.experts.sources import load_expert, parse_source
from kibble.schemas.records import Episode
from kibble.versions import package_versions

CARD_VERSION = "1"
_VERSIONED_PACKAGES = (
    "kibble", "gymnasium", "numpy", "torch", "ray", "ale-py", "dm-control", "mujoco",
    "metaworld", "procgen2", "minigrid",
)  # fmt: skip


@dataclass(kw_only=True)
class ReturnStats:
    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def of(cls, returns: Iterable[float]) -> ReturnStats:
        r = np.asarray(list(returns), np.float64)
        return cls(mean=float(r.mean()), std=float(r.std()), min=float(r.min()), max=float(r.max()))


@dataclass(kw_only=True)
class ExpertCard:
    """One expert's measured quality on one task."""

    task: str
    expert: str
    sampled: bool
    episodes: int
    seeds: list[int]
    expert_return: ReturnStats
    random_return: ReturnStats
    success_rate: float | None
    random_success_rate: float | None
    length_mean: float
    versions: dict[str, str]
    max_steps: int | None = None
    """Episodes were cut at this many steps (None: played to their end)."""
    source: dict | None = None
    """What the source is exactly, where it says (an SB3 zip: file sha256, algorithm,
    policy class, the expert's view and the dynamics compared)."""
    card_version: str = CARD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> ExpertCard:
        d = dict(d)
        d["expert_return"] = ReturnStats(**d["expert_return"])
        d["random_return"] = ReturnStats(**d["random_return"])
        return cls(**d)


def make_card(
    task_id: str,
    source: str,
    settings: RolloutSettings,
    *,
    sample: bool = False,
    on_episode: Callable[[Episode], None] | None = None,
) -> ExpertCard:
    """Measure ``source`` (greedy, or sampled with ``sample``) and the random policy on
    the episodes ``settings`` give (cut at ``settings.max_steps`` to match a dataset whose
    episodes are cut)."""
    src = parse_source(source)
    task = get_task(task_id)
    policy = load_expert(task, src, *task.spaces(), sample=sample)
    expert = evaluate_policy(task_id, policy, settings, on_episode=on_episode)
    rand = expert if src.is_random else evaluate(task_id, "random", settings, on_episode=on_episode)
    return ExpertCard(
        task=task_id,
        expert=src.text,
        sampled=sample and src.can_sample,
        episodes=settings.episodes,
        seeds=[e.seed for e in expert],
        expert_return=ReturnStats.of(e.episode_return for e in expert),
        random_return=ReturnStats.of(e.episode_return for e in rand),
        success_rate=success_rate(expert),
        random_success_rate=success_rate(rand),
        length_mean=float(np.mean([e.length for e in expert])),
        versions=package_versions(_VERSIONED_PACKAGES),
        max_steps=settings.max_steps,
        source=getattr(policy, "description", None),
    )


def write_card(card: ExpertCard, path: str | Path) -> None:
    """Write atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(card.to_json())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise KibbleError(f"cannot write the expert card to {path}: {e}") from e


MAX_CARD_BYTES = 1 << 20
"""A card is a few kilobytes of JSON; anything far larger is not one."""

_RETURN_FIELDS = ("expert_return", "random_return")
_STATS = ("mean", "std", "min", "max")


def read_card(path: str | Path, *, task: str | None = None) -> ExpertCard:
    """The expert card at ``path``, checked: the one place a card is read and checked,
    for every use (``pipeline run``'s launcher, ``kibble rollout``, ``kibble eval``).

    Refused with one paragraph naming the card (and the field): a URL or anything but a
    local regular file, bytes that are not UTF-8 JSON, a missing or unknown field, a
    return or rate that is not a finite number, and, with ``task``, a card measured on
    another task than the one it is used for.
    """
    text = str(path)
    if "://" in text:
        raise KibbleError(
            f"expert card {text}: cards are read from local files, not URLs; copy the card "
            "to a local file and give its path"
        )
    path = Path(path)
    try:
        # Opened without blocking (a FIFO would wait for a writer forever), then checked.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise KibbleError(f"expert card {path} is not a regular file; give a card file")
            raw = f.read(MAX_CARD_BYTES + 1)
    except IsADirectoryError as e:
        raise KibbleError(f"expert card {path} is not a regular file; give a card file") from e
    except FileNotFoundError as e:
        raise KibbleError(
            f"expert card {path} does not exist; make one with `kibble expert eval`"
        ) from e
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise KibbleError(
            f"expert card {path} cannot be read: {getattr(e, 'strerror', None) or e}"
        ) from e
    if len(raw) > MAX_CARD_BYTES:
        raise KibbleError(
            f"{path} is not a kibble expert card: it is over {MAX_CARD_BYTES:,} bytes (a card "
            "is a few kilobytes of JSON)"
        )
    try:
        d = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise KibbleError(
            f"{path} is not a kibble expert card: it is not UTF-8 text (byte {e.start} is "
            f"{raw[e.start]:#04x}); give the JSON file `kibble expert eval --out` wrote"
        ) from e
    except json.JSONDecodeError as e:
        raise KibbleError(f"{path} is not a kibble expert card: not JSON ({e})") from e
    except RecursionError as e:
        raise KibbleError(f"{path} is not a kibble expert card: JSON nested too deep") from e
    if not isinstance(d, dict):
        raise KibbleError(
            f"{path} is not a kibble expert card: expected a JSON object, got {type(d).__name__}"
        )
    for key in _RETURN_FIELDS:
        if not isinstance(d.get(key, {}), dict):
            raise KibbleError(
                f"{path} is not a kibble expert card: {key} is {d[key]!r}, not an object "
                "of mean, std, min and max"
            )
    try:
        card = ExpertCard.from_dict(d)
    except (TypeError, KeyError, ValueError) as e:
        raise KibbleError(f"{path} is not a kibble expert card: {e}") from e
    _check_values(card, path)
    if task is not None and card.task != task:
        raise KibbleError(
            f"expert card {path} is the card of {card.task}, not of {task}: give the card "
            f"`kibble expert eval {task} ... --out CARD.json` wrote"
        )
    return card


def _check_values(card: ExpertCard, path: Path) -> None:
    """Every number a card holds is a finite number (NaN or infinity, a string or a bool
    would turn filtering and scores into silent nonsense)."""

    def bad(field: str, value: object, expected: str = "a finite number") -> KibbleError:
        return KibbleError(
            f"expert card {path}: {field} is {value!r}, not {expected}; measure the expert "
            "again with `kibble expert eval ... --out CARD.json`"
        )

    if not isinstance(card.task, str) or not card.task:
        raise bad("task", card.task, "a task id")
    numbers = [(f"{r}.{s}", getattr(getattr(card, r), s)) for r in _RETURN_FIELDS for s in _STATS]
    numbers.append(("length_mean", card.length_mean))
    for field, value in numbers:
        if not _finite(value):
            raise bad(field, value)
    for field in ("success_rate", "random_success_rate"):
        value = getattr(card, field)
        if value is not None and not (_finite(value) and 0 <= value <= 1):
            raise bad(field, value, "null or a number in [0, 1]")


def _finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def card_matches(
    card: ExpertCard,
    task: str,
    source: str,
    settings: RolloutSettings,
    *,
    sample: bool = False,
) -> bool:
    """True when ``card`` measured ``source`` on ``task`` with these settings: what
    :func:`make_card` would measure again (a card can then be reused). ``num_envs``
    does not matter: it changes no episode."""
    src = parse_source(source)
    return (
        card.task == task
        and card.expert == src.text
        and card.episodes == settings.episodes
        and card.seeds[:1] == [settings.seed]
        and card.max_steps == settings.max_steps
        and card.sampled == (sample and src.can_sample)
    )


def current_card(
    path: str | Path,
    task: str,
    source: str,
    settings: RolloutSettings,
    *,
    sample: bool = False,
) -> ExpertCard | None:
    """The card at ``path`` if it still holds: it exists, :func:`card_matches` these
    settings, and the expert's checkpoint (for learned sources) has not changed since it
    was written (a retrained expert needs a new card). None otherwise."""
    path = Path(path)
    try:
        card = read_card(path, task=task)
    except KibbleError:
        return None
    if not card_matches(card, task, source, settings, sample=sample):
        return None
    src = parse_source(source)
    local = src.location is not None and "://" not in src.location
    if local and _newest_mtime(Path(src.location)) > path.stat().st_mtime:
        return None
    return card


def _newest_mtime(location: Path) -> float:
    """The latest modification time of a checkpoint file or of any file under a folder
    (inf when it is missing: a card of a vanished expert is not current)."""
    if location.is_file():
        return location.stat().st_mtime
    if not location.is_dir():
        return float("inf")
    times = [p.stat().st_mtime for p in location.rglob("*") if p.is_file()]
    return max(times, default=location.stat().st_mtime)


__all__ = [
    "ExpertCard",
    "ReturnStats",
    "RolloutSettings",
    "card_matches",
    "current_card",
    "make_card",
    "read_card",
    "write_card",
]
