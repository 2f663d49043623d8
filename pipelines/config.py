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
windowed rule), ``sample`` (sample an RLlib expert's actions), ``max_steps`` and
``noise: {fraction, scale}`` (recovery data: a fraction of steps execute a perturbed
action while the expert's own is recorded; ``kibble.experts.rollout.ActionNoise``).
``text_model: PATH`` (top level, or per task) is the SentencePiece model that tokenizes
text observations (BabyAI missions); by default kibble's own BabyAI model. The manifest
records which model (file name and sha256) tokenized each task with text.
``raw_values: false`` (top level, or per task) leaves out the raw observation and action
values kibble stores beside the tokens by default (docs/format.md section 8): a smaller
dataset whose tokens cannot be recomputed. ``notes`` (top level, anything) is kept in
the manifest. Any other key is refused,
naming the closest known one; every value is checked (types, ranges, expert sources
and cards: ``kibble.pipelines.checks``) before any work starts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import KW_ONLY, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kibble.errors import KibbleError
from kibble.experts.rollout import ActionNoise
from kibble.pipelines.checks import check_config, refuse_unknown
from kibble.pipelines.filtering import DEFAULT_FRACTION
from kibble.pipelines.stages import TaskJob
from kibble.yaml_file import read_yaml, want

log = logging.getLogger(__name__)


@dataclass
class DatasetConfig:
    """A curation job; checked when made (``kibble.pipelines.checks.check_config``), so
    every executor gets a valid one."""

    name: str
    """Dataset name (the card's title)."""
    output: str
    """Output directory."""
    tasks: list[TaskJob]
    """What to roll out."""
    _: KW_ONLY
    seed: int = 0
    """Base seed: episode seeds derive from (seed, task, episode index)."""
    fraction: float = DEFAULT_FRACTION
    """Keep episodes with return >= fraction x expert return (docs/format.md section 10)."""
    episodes_per_shard: int = 25
    """Episodes per unit of parallel work."""
    num_envs: int = 4
    """Environments a worker steps together (one batched inference per step)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """The config's ``notes``, kept for the manifest."""
    text_model: str | None = None
    """SentencePiece model file for text observations (None: kibble's BabyAI model)."""
    raw_values: bool = True
    """Store raw observations and actions beside the tokens (a task may override it)."""

    def __post_init__(self) -> None:
        check_config(self)
        self.fraction = float(self.fraction)  # 1 in a YAML file is the fraction 1.0

    def as_dict(self) -> dict:
        """The config as run: the manifest's ``config`` (docs/format.md section 9)."""
        return asdict(self)


TOP_KEYS = (
    "name",
    "output",
    "seed",
    "filter",
    "episodes_per_shard",
    "num_envs",
    "tasks",
    "text_model",
    "raw_values",
    "notes",
)
FILTER_KEYS = ("fraction",)
EXPERT_WHAT = "a checkpoint path, sb3:PATH.zip, scripted, bot or random"


def _read(path: Path) -> Any:
    """The parsed file; a folder, unreadable or non-UTF-8 file is a KibbleError."""
    if path.is_dir():
        raise KibbleError(f"config file {path} is a folder; give the dataset config YAML file")
    try:
        return read_yaml(path, "config file")
    except UnicodeDecodeError as e:
        raise KibbleError(
            f"config file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from e
    except OSError as e:
        raise KibbleError(f"config file {path} cannot be read: {e.strerror or e}") from e


def load_config(path: str | Path, output: str | None = None) -> DatasetConfig:
    """Read a dataset config; ``output`` overrides the file's.

    Here the YAML becomes typed values (unknown keys refused with the closest known
    one, missing keys named); ``DatasetConfig`` then checks every value (ranges, tasks,
    expert sources, cards), and its errors are given the file's name.
    """
    path = Path(path)
    raw = _read(path)
    if not isinstance(raw, dict):
        raise KibbleError(f"{path}: expected a mapping of settings (name, output, tasks, ...)")
    refuse_unknown(str(path), raw, TOP_KEYS)
    name = want(path, "name", raw.get("name", path.stem), str, "a string")
    out = output if output is not None else raw.get("output")
    if out is None:
        raise KibbleError(f"{path}: output: missing; give the dataset directory (or --out)")
    want(path, "output", out, str, "a directory path")
    if not out.strip():
        raise KibbleError(f"{path}: output: empty; give the dataset directory (or --out)")
    filt = want(path, "filter", raw.get("filter", {}) or {}, dict, "a mapping like {fraction: 0.8}")
    refuse_unknown(f"{path}: filter", filt, FILTER_KEYS)
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise KibbleError(f"{path}: tasks: expected a non-empty list of {{task, expert, episodes}}")
    known = [f.name for f in fields(TaskJob)]
    text_model = _text_model(path, "text_model", raw.get("text_model"))
    raw_values = want(path, "raw_values", raw.get("raw_values", True), bool, "true or false")
    jobs = []
    for i, entry in enumerate(tasks_raw):
        where = f"tasks[{i}]"
        want(path, where, entry, dict, "a mapping {task, expert, episodes}")
        refuse_unknown(f"{path}: {where}", entry, known)
        for key in ("task", "expert", "episodes"):
            if key not in entry:
                raise KibbleError(f"{path}: {where}.{key}: missing")
        jobs.append(
            TaskJob(
                want(path, f"{where}.task", entry["task"], str, "a task id like gym/CartPole-v1"),
                want(path, f"{where}.expert", entry["expert"], str, EXPERT_WHAT),
                entry["episodes"],
                card=want(
                    path, f"{where}.card", entry.get("card"), (str, type(None)), "a card path"
                ),
                sample=want(
                    path, f"{where}.sample", entry.get("sample", False), bool, "true or false"
                ),
                max_steps=entry.get("max_steps"),
                text_model=_text_model(path, f"{where}.text_model", entry.get("text_model"))
                or text_model,
                noise=_noise(path, f"{where}.noise", entry.get("noise")),
                raw_values=want(
                    path,
                    f"{where}.raw_values",
                    entry.get("raw_values", raw_values),
                    bool,
                    "true or false",
                ),
            )
        )
    try:
        return DatasetConfig(
            name,
            out,
            jobs,
            seed=raw.get("seed", 0),
            fraction=filt.get("fraction", DEFAULT_FRACTION),
            episodes_per_shard=raw.get("episodes_per_shard", 25),
            num_envs=raw.get("num_envs", 4),
            extra={"notes": raw["notes"]} if "notes" in raw else {},
            text_model=text_model,
            raw_values=raw_values,
        )
    except KibbleError as e:
        raise KibbleError(f"{path}: {e}") from e


def _noise(path: Path, where: str, value: Any) -> ActionNoise | None:
    """``{fraction: 0.3, scale: 0.1}``: recovery data (kibble.experts.rollout.ActionNoise)."""
    if value is None:
        return None
    want(path, where, value, dict, "a mapping like {fraction: 0.3, scale: 0.1}")
    refuse_unknown(f"{path}: {where}", value, ["fraction", "scale"])
    fraction = want(path, f"{where}.fraction", value.get("fraction"), (int, float), "in [0, 1]")
    scale = want(path, f"{where}.scale", value.get("scale", 0.1), (int, float), "> 0")
    if not 0 <= fraction <= 1:
        raise KibbleError(f"{path}: {where}.fraction: expected a number in [0, 1], got {fraction}")
    if not scale > 0:
        raise KibbleError(f"{path}: {where}.scale: expected a positive number, got {scale}")
    return ActionNoise(float(fraction), float(scale))


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
    from kibble.experts.card import read_card
    from kibble.schemas.layout import read_manifest, task_entries

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
            card = read_card(job.card, task=job.task)
        except KibbleError:
            return None
        if (entry.expert_return, entry.random_return) != (
            card.expert_return.mean,
            card.random_return.mean,
        ):
            return None
    return manifest
