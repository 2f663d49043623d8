"""The mixture file (docs/format.md §14) and the model sizes (§12), as checked dataclasses.

A mixture says which curated datasets to train on, with what weights, and how::

    datasets:
      - {path: data/demo, weight: 1.0}
    model: tiny                  # or small, 79m, 364m, 1.2b, or {layers, heads, width, ff}
    context: 1024
    batch_size: 16
    steps: 2000
    learning_rate: 3e-4          # more keys below, all optional

Every mistake is reported as ``FILE: FIELD: expected X, got Y``. Every number goes
through :func:`number_in` (finite, in the key's range: no ``.inf`` or ``.nan`` weight,
no ``dropout: 5``), and a custom model's weights are sized from its table before
anything is built (:func:`parameter_count`, checked against this machine's memory by
:mod:`kibble.limits`), whether the table comes from a mixture or a checkpoint.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import KW_ONLY, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from kibble.errors import KibbleError
from kibble.limits import check_memory
from kibble.tokenize.vocab import PATCH_SIZE, VOCAB_SIZE
from kibble.yaml_file import read_yaml, want


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The transformer's shape; the embedding and patch sizes follow docs/format.md §5."""

    layers: int = 4
    heads: int = 4
    width: int = 128
    ff: int = 512
    dropout: float = 0.0
    # Observation tokens per timestep that get their own local position; Meta-World has 39,
    # a 64x64 image 16 patches, an 80x80 one 25. Longer observations are an error at load time.
    max_observation_tokens: int = 512
    # Action tokens per timestep with their own local position: kibble also gives action
    # tokens a local position so a model knows which action dimension it predicts next.
    max_action_tokens: int = 64
    # Image channels per patch; fewer channels are zero-padded (grayscale Atari has 1).
    patch_channels: int = 3
    # Channels inside the patch ResNet block.
    patch_hidden: int = 16

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise KibbleError(f"model: width {self.width} must be divisible by heads {self.heads}")


def parameter_count(m: ModelConfig) -> int:
    """A lower bound of the model's weights, from its sizes alone (nothing is built): the
    token embedding, the position embeddings, the patch embedding's output layer and each
    block's attention (4 x width^2) and MLP (2 x width x ff)."""
    positions = m.max_observation_tokens + m.max_action_tokens + 2
    patch = m.patch_hidden * PATCH_SIZE * PATCH_SIZE * m.width
    blocks = m.layers * (4 * m.width * m.width + 2 * m.width * m.ff)
    return (VOCAB_SIZE + positions) * m.width + patch + blocks


# Gato's sizes (docs/format.md §12) and small ones that train on a CPU in minutes.
MODEL_SIZES: dict[str, ModelConfig] = {
    "tiny": ModelConfig(layers=4, heads=4, width=128, ff=512),
    "small": ModelConfig(layers=6, heads=8, width=256, ff=1024),
    "79m": ModelConfig(layers=8, heads=24, width=768, ff=3072, patch_hidden=64),
    "364m": ModelConfig(layers=12, heads=12, width=1536, ff=6144, patch_hidden=64),
    "1.2b": ModelConfig(layers=24, heads=16, width=2048, ff=8192, patch_hidden=64),
}


SAMPLING = ("timesteps", "tasks")
ACTION_LOGITS = ("full", "legal")
PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class DatasetSpec:
    """One curated dataset in the mixture."""

    path: str
    weight: float = 1.0


@dataclass
class MixtureConfig:
    """What to train on and how. Field comments are the documentation of the YAML keys."""

    datasets: list[DatasetSpec]
    _: KW_ONLY  # every key past the datasets by name
    model: ModelConfig = field(default_factory=lambda: MODEL_SIZES["tiny"])
    model_name: str = "tiny"
    context: int = 1024  # tokens per training sequence (Gato: 1024)
    batch_size: int = 16
    steps: int = 2000  # optimizer steps in total
    learning_rate: float = 3e-4  # peak, after warm-up
    min_learning_rate: float | None = None  # end of the cosine decay; default peak / 10
    warmup_steps: int | None = None  # default: 5% of steps
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # the gradient norm is clipped to this; 0 turns clipping off
    prompt_fraction: float = 0.25  # sequences that get a prompt from another episode
    # How a dataset's windows are drawn: "timesteps" (Gato: a uniform timestep, so a task's
    # share follows its size) or "tasks" (each task of a dataset an equal share first).
    sampling: str = "timesteps"
    # Per-task multipliers on that share, by task id (e.g. {metaworld/drawer-open-v3: 2}):
    # with "tasks" a task's share is its weight over the sum; with "timesteps" its
    # timesteps times its weight. Tasks not named weigh 1.
    task_weights: dict[str, float] = field(default_factory=dict)
    # Output logits at action positions: "full" (Gato: the whole vocabulary) or "legal"
    # (only the 1,024 ids of the action's kind: discrete [0, 1024) or the continuous bins;
    # a 32x smaller head, and no probability spent on ids an action can never take).
    action_logits: str = "full"
    seed: int = 0
    log_every: int = 10  # steps between TensorBoard points
    checkpoint_every: int = 250  # steps between checkpoints (and always at the end)
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    # Matrix products in training: "bfloat16" (autocast; weights, optimizer and loss stay
    # float32), "float32", or "auto" (bfloat16 on a GPU, float32 on a CPU).
    precision: str = "auto"
    compile: bool | None = None  # torch.compile; default on a GPU only
    cache_row_groups: int = 64  # Parquet row groups the loader keeps decoded
    max_minutes: float | None = None  # stop (and checkpoint) after this much training time
    # Where the config was read from (named in errors found later); not a mixture key.
    source: ClassVar[str] = "mixture"

    @property
    def final_lr(self) -> float:
        return (
            self.min_learning_rate
            if self.min_learning_rate is not None
            else self.learning_rate / 10
        )

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 20)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "mixture") -> MixtureConfig:
        """A config saved by a run (checked as a mixture; its schedule was checked then)."""
        return parse_mixture(d, where, schedule=False)


def _number(value: Any) -> Any:
    """YAML reads ``1e-3`` (no dot) as a string; accept it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def number_in(
    where: str,
    key: str,
    value: Any,
    low: float = 0.0,
    high: float = math.inf,
    *,
    above: bool = False,
    below: bool = False,
) -> float:
    """``value`` as a finite float in [low, high] (``above``: > low, ``below``: < high),
    else ``WHERE: KEY: expected ..., got V``: the one check of every number in a mixture,
    so no ``.inf``, ``.nan`` or out-of-range value reaches training."""
    if high == math.inf:
        what = f"a finite number {'>' if above else '>='} {low:g}"
    else:
        what = f"a number in {'(' if above else '['}{low:g}, {high:g}{')' if below else ']'}"
    v = want(where, key, _number(value), (int, float), what)
    inside = (v > low if above else v >= low) and (v < high if below else v <= high)
    if not (math.isfinite(v) and inside):
        raise KibbleError(f"{where}: {key}: expected {what}, got {value!r}")
    return float(v)


def _model(where: str, raw: Any) -> tuple[str, ModelConfig]:
    if isinstance(raw, str):
        if raw not in MODEL_SIZES:
            raise KibbleError(
                f"{where}: model: expected one of {', '.join(MODEL_SIZES)} "
                f"or a table of sizes, got {raw!r}"
            )
        return raw, MODEL_SIZES[raw]
    if isinstance(raw, dict):
        known = {f.name for f in fields(ModelConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise KibbleError(
                f"{where}: model: unknown key(s) {unknown}; known: {', '.join(sorted(known))}"
            )
        base = MODEL_SIZES.get(raw.get("base", "tiny"), MODEL_SIZES["tiny"])
        values = {**asdict(base), **raw}
        for k, v in values.items():
            if k != "dropout":
                want(where, f"model.{k}", v, int, "a positive integer")
                if v < 1:
                    raise KibbleError(f"{where}: model.{k}: expected a positive integer, got {v}")
        values["dropout"] = number_in(where, "model.dropout", values["dropout"], 0, 1, below=True)
        if values["width"] % values["heads"]:
            raise KibbleError(
                f"{where}: model: width {values['width']} must be divisible by heads "
                f"{values['heads']} (each head gets width / heads dimensions)"
            )
        model = ModelConfig(**values)
        # Sized before anything is built: a table can name any width (kibble.limits).
        check_memory(
            4 * parameter_count(model),
            f"{where}: model (layers {model.layers}, width {model.width}, ff {model.ff}): "
            f"its {parameter_count(model):,} weights alone",
            "use a smaller model: fewer layers, or a smaller width or ff",
        )
        return "custom", model
    raise KibbleError(f"{where}: model: expected a size name or a table, got {raw!r}")


def parse_mixture(raw: Any, where: str, schedule: bool = True) -> MixtureConfig:
    """Check a mixture mapping (already parsed from YAML); ``where`` names it in errors.

    ``schedule``: also check that the settings go together (off for a partial mapping).
    """
    if not isinstance(raw, dict):
        raise KibbleError(f"{where}: expected a mapping with datasets, model, steps, ...")
    known = {f.name for f in fields(MixtureConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise KibbleError(f"{where}: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
    ds_raw = raw.get("datasets")
    if not isinstance(ds_raw, list) or not ds_raw:
        raise KibbleError(f"{where}: datasets: expected a non-empty list of {{path, weight}}")
    datasets = []
    for i, entry in enumerate(ds_raw):
        if isinstance(entry, str):
            entry = {"path": entry}
        want(where, f"datasets[{i}]", entry, dict, "a mapping {path, weight}")
        extra = sorted(set(entry) - {"path", "weight"})
        if extra:
            raise KibbleError(f"{where}: datasets[{i}]: unknown key(s) {extra}")
        if "path" not in entry:
            raise KibbleError(f"{where}: datasets[{i}].path: missing")
        p = want(where, f"datasets[{i}].path", entry["path"], str, "a dataset directory")
        w = number_in(where, f"datasets[{i}].weight", entry.get("weight", 1.0), above=True)
        same = next((j for j, d in enumerate(datasets) if _same_place(d.path, p)), None)
        if same is not None:
            # Twice would train on every episode twice; a weight says how much more.
            raise KibbleError(
                f"{where}: datasets[{i}].path: {p} is datasets[{same}] again; list a dataset "
                "once and give it a larger weight to sample it more"
            )
        datasets.append(DatasetSpec(p, w))
    values: dict[str, Any] = {"datasets": datasets}
    if "model" in raw:
        values["model_name"], values["model"] = _model(where, raw["model"])
    if "model_name" in raw and not isinstance(raw.get("model"), dict):
        values["model_name"] = str(raw["model_name"])
    positive_ints = ("context", "batch_size", "steps", "log_every", "checkpoint_every")
    for key in (*positive_ints, "cache_row_groups"):
        if key in raw:
            v = want(where, key, raw[key], int, "a positive integer")
            if v < 1:
                raise KibbleError(f"{where}: {key}: expected a positive integer, got {v}")
            values[key] = v
    for key in ("warmup_steps", "seed"):
        if raw.get(key) is not None:
            v = want(where, key, raw[key], int, "a non-negative integer")
            if v < 0:
                raise KibbleError(f"{where}: {key}: expected a non-negative integer, got {v}")
            values[key] = v
    for key in ("learning_rate", "min_learning_rate", "weight_decay", "grad_clip", "max_minutes"):
        if raw.get(key) is not None:
            values[key] = number_in(where, key, raw[key])
    if "prompt_fraction" in raw:
        fraction = raw["prompt_fraction"]
        values["prompt_fraction"] = number_in(where, "prompt_fraction", fraction, 0, 1)
    if "betas" in raw:
        b = raw["betas"]
        b = [_number(x) for x in b] if isinstance(b, list | tuple) else b
        if not (
            isinstance(b, list)
            and len(b) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in b)
            and all(math.isfinite(x) and 0 <= x < 1 for x in b)
        ):
            raise KibbleError(
                f"{where}: betas: expected two numbers in [0, 1) like [0.9, 0.95], "
                f"got {raw['betas']!r}"
            )
        values["betas"] = (float(b[0]), float(b[1]))
    for key, choices in (
        ("sampling", SAMPLING),
        ("action_logits", ACTION_LOGITS),
        ("precision", PRECISIONS),
    ):
        if key in raw:
            v = want(where, key, raw[key], str, " or ".join(choices))
            if v not in choices:
                raise KibbleError(f"{where}: {key}: expected {' or '.join(choices)}, got {v!r}")
            values[key] = v
    if raw.get("task_weights") is not None:
        values["task_weights"] = _task_weights(where, raw["task_weights"])
    if "device" in raw:
        values["device"] = want(where, "device", raw["device"], str, "auto, cpu or cuda[:N]")
        if not _DEVICE.fullmatch(values["device"]):
            raise KibbleError(
                f"{where}: device: expected auto, cpu, cuda or cuda:N (N a GPU's index), "
                f"got {raw['device']!r}"
            )
    if raw.get("compile") is not None:
        values["compile"] = want(where, "compile", raw["compile"], bool, "true or false")
    config = MixtureConfig(**values)
    if schedule:
        _check_schedule(where, config)
    config.source = where
    return config


def _task_weights(where: str, raw: Any) -> dict[str, float]:
    want(where, "task_weights", raw, dict, "a mapping of task id to weight")
    weights = {}
    for task, w in raw.items():
        if not isinstance(task, str):
            raise KibbleError(
                f"{where}: task_weights: expected task id: weight > 0, got {task!r}: {w!r}"
            )
        weights[task] = number_in(where, f"task_weights[{task}]", w, above=True)
    return weights


_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
"""The devices a mixture may name (mps and others are not supported)."""


def _check_schedule(where: str, config: MixtureConfig) -> None:
    """Settings that are each fine but cannot go together."""
    if config.warmup_steps is not None and config.warmup_steps > config.steps:
        raise KibbleError(
            f"{where}: warmup_steps: {config.warmup_steps} is longer than the whole training "
            f"(steps: {config.steps}); the learning rate would never reach its peak. Use fewer "
            "warm-up steps (default: 5% of steps)"
        )
    if config.min_learning_rate is not None and config.min_learning_rate > config.learning_rate:
        raise KibbleError(
            f"{where}: min_learning_rate: {config.min_learning_rate:g} is above the peak "
            f"learning_rate {config.learning_rate:g}; the decay ends at the minimum, so give "
            "one at most the peak (default: a tenth of it)"
        )


def _same_place(a: str, b: str) -> bool:
    """Two dataset locations that name one dataset: the same URL, or local paths that
    resolve to the same folder (``ds``, ``./ds/`` and its absolute path; links followed)."""
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def load_mixture(path: str | Path, overrides: dict[str, Any] | None = None) -> MixtureConfig:
    """Read and check a mixture file; ``overrides`` replace top-level keys (e.g. steps)."""
    path = Path(path)
    if overrides:
        # Checked alone first, so a bad value is blamed on the option, not on the file.
        parse_mixture({"datasets": ["-"], **overrides}, "command-line option", schedule=False)
    try:
        raw = read_yaml(path, "mixture file")
    except UnicodeDecodeError as e:
        raise KibbleError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save the mixture as "
            "UTF-8 YAML"
        ) from e
    if isinstance(raw, dict):
        raw = {**raw, **(overrides or {})}
        # Relative dataset paths are relative to the working directory, as a dataset
        # config's output is; failing that, to the mixture file's folder.
        for entry in raw.get("datasets") or []:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                p = entry["path"]
                if "://" not in p and not Path(p).exists() and (path.parent / p).exists():
                    entry["path"] = str(path.parent / p)
    return parse_mixture(raw, str(path))
