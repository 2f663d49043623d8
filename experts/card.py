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
import os
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


def read_card(path: str | Path) -> ExpertCard:
    path = Path(path)
    try:
        return ExpertCard.from_dict(json.loads(path.read_text()))
    except FileNotFoundError as e:
        raise KibbleError(
            f"expert card {path} does not exist; make one with `kibble expert eval`"
        ) from e
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise KibbleError(f"{path} is not a kibble expert card: {e}") from e


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
        card = read_card(path)
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
