"""The dataset config (docs/format.md section 14), read from YAML with errors that name the field.

    name: demo
    output: data/demo            # a directory; relative paths are from the current one
    seed: 0
    filter: {fraction: 0.8}
    episodes_per_shard: 25       # optional: the unit of parallel work
    num_envs: 4                  # optional: environments stepped together per worker
    tasks:
      - {task: gym/CartPole-v1, expert: experts/cartpole, episodes: 200}
      - {task: metaworld/reach-v3, expert: scripted, episodes: 50}

Task entries also take ``card`` (an expert card: its expert return replaces the
windowed rule), ``sample`` (sample an RLlib expert's actions) and ``max_steps``.
``text_model: PATH`` (top level, or per task) is the SentencePiece model that tokenizes
text observations (BabyAI missions); by default kibble's own BabyAI model. The manifest
records which model (file name and sha256) tokenized each task with text.
Other keys are ignored (with a warning), so configs can carry notes of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.pipelines.filtering import DEFAULT_FRACTION
from kibble.pipelines.stages import TaskJob
from kibble.yaml_file import read_yaml, want

log = logging.getLogger(__name__)


@dataclass
class DatasetConfig:
    """A curation job."""

    name: str
    """Dataset name (the card's title)."""
    output: str
    """Output directory."""
    tasks: list[TaskJob]
    """What to roll out."""
    seed: int = 0
    """Base seed: episode seeds derive from (seed, task, episode index)."""
    fraction: float = DEFAULT_FRACTION
    """Keep episodes with return >= fraction x expert return (docs/format.md section 10)."""
    episodes_per_shard: int = 25
    """Episodes per unit of parallel work."""
    num_envs: int = 4
    """Environments a worker steps together (one batched inference per step)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys kibble does not use, kept for the manifest."""
    text_model: str | None = None
    """SentencePiece model file for text observations (None: kibble's BabyAI model)."""

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def load_config(path: str | Path, output: str | None = None) -> DatasetConfig:
    """Read and check a dataset config; ``output`` overrides the file's."""
    path = Path(path)
    raw = read_yaml(path, "config file")
    if not isinstance(raw, dict):
        raise KibbleError(f"{path}: expected a mapping of settings (name, output, tasks, ...)")
    name = want(path, "name", raw.get("name", path.stem), str, "a string")
    out = output if output is not None else raw.get("output")
    if out is None:
        raise KibbleError(f"{path}: output: missing; give the dataset directory (or --out)")
    want(path, "output", out, str, "a directory path")
    seed = want(path, "seed", raw.get("seed", 0), int, "a non-negative integer")
    if seed < 0:
        raise KibbleError(f"{path}: seed: expected a non-negative integer, got {seed}")
    filt = want(path, "filter", raw.get("filter", {}) or {}, dict, "a mapping like {fraction: 0.8}")
    fraction = want(
        path,
        "filter.fraction",
        filt.get("fraction", DEFAULT_FRACTION),
        (int, float),
        "a number in (0, 1]",
    )
    if not 0 < fraction <= 1:
        raise KibbleError(f"{path}: filter.fraction: expected a number in (0, 1], got {fraction}")
    per_shard = want(
        path, "episodes_per_shard", raw.get("episodes_per_shard", 25), int, "a positive integer"
    )
    num_envs = want(path, "num_envs", raw.get("num_envs", 4), int, "a positive integer")
    if per_shard < 1 or num_envs < 1:
        raise KibbleError(f"{path}: episodes_per_shard and num_envs must be at least 1")
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise KibbleError(f"{path}: tasks: expected a non-empty list of {{task, expert, episodes}}")
    known = {f.name for f in fields(TaskJob)}
    text_model = _text_model(path, "text_model", raw.get("text_model"))
    jobs, seen = [], set()
    for i, entry in enumerate(tasks_raw):
        where = f"tasks[{i}]"
        want(path, where, entry, dict, "a mapping {task, expert, episodes}")
        for key in ("task", "expert", "episodes"):
            if key not in entry:
                raise KibbleError(f"{path}: {where}.{key}: missing")
        task = want(path, f"{where}.task", entry["task"], str, "a task id like gym/CartPole-v1")
        try:
            get_task(task)
        except KibbleError as e:
            raise KibbleError(f"{path}: {where}.task: {e}") from e
        if task in seen:
            raise KibbleError(f"{path}: {where}.task: {task} is listed twice")
        seen.add(task)
        expert = want(
            path, f"{where}.expert", entry["expert"], str, "a checkpoint path, scripted or random"
        )
        episodes = want(path, f"{where}.episodes", entry["episodes"], int, "a positive integer")
        if episodes < 1:
            raise KibbleError(
                f"{path}: {where}.episodes: expected a positive integer, got {episodes}"
            )
        unknown = sorted(set(entry) - known)
        if unknown:
            log.warning("%s: %s: ignoring keys %s", path, where, ", ".join(unknown))
        jobs.append(
            TaskJob(
                task=task,
                expert=expert,
                episodes=episodes,
                card=entry.get("card"),
                sample=bool(entry.get("sample", False)),
                max_steps=entry.get("max_steps"),
                text_model=_text_model(path, f"{where}.text_model", entry.get("text_model"))
                or text_model,
            )
        )
    used = {"name", "output", "seed", "filter", "tasks", "episodes_per_shard", "num_envs"}
    extra = {k: v for k, v in raw.items() if k not in used | {"text_model"}}
    return DatasetConfig(
        name, out, jobs, seed, float(fraction), per_shard, num_envs, extra, text_model
    )


def _text_model(path: Path, where: str, value: Any) -> str | None:
    """A SentencePiece model file, checked now (not on a worker an hour later)."""
    if value is None:
        return None
    want(path, where, value, str, "a SentencePiece model file path")
    from kibble.tokenize.text import TextTokenizer

    try:
        TextTokenizer(value)
    except KibbleError as e:
        raise KibbleError(f"{path}: {where}: {e}") from e
    return str(Path(value).resolve())


def reusable_dataset(config: DatasetConfig) -> dict | None:
    """The manifest of the dataset at ``config.output`` if this config made it from the
    expert cards as they are now (their expert and random returns); None when it must be
    curated again (absent, unfinished, another config, or a card that changed)."""
    import json

    from kibble.experts.card import read_card
    from kibble.schemas.dataset import read_manifest, task_entries

    try:
        manifest = read_manifest(config.output)
        entries = task_entries(manifest)
    except KibbleError:
        return None
    # The manifest stores the config as JSON: compare in that form (tuples as lists).
    if manifest.get("config") != json.loads(json.dumps(config.as_dict())):
        return None
    for job in config.tasks:
        entry = entries.get(job.task)
        if entry is None:
            return None
        if job.card is None:
            continue
        try:
            card = read_card(job.card)
        except KibbleError:
            return None
        if (entry.expert_return, entry.random_return) != (
            card.expert_return.mean,
            card.random_return.mean,
        ):
            return None
    return manifest
