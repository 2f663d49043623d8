"""What a training run records about itself, and what other layers ask a run directory.

``train()`` returns a :class:`TrainingSummary` and, when a call ends (all steps done or
its time limit reached), writes ``RUN_DIR/training.json``: the summary, the mixture and
the sha256 of every dataset file it trained on. :func:`finished_run` answers "is this a
finished run of this mixture on these files?" from that record, and
:func:`resumable_progress` "can this run be resumed?", so callers (the demo) need not
know the run directory's file names.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kibble.errors import KibbleError
from kibble.schemas.layout import file_entries, read_manifest
from kibble.trainer.checkpoint import CHECKPOINT, read_state
from kibble.trainer.config import MixtureConfig

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
"""One JSON line per logged window: step, loss, lr, tokens_per_s, tokens, family_loss."""
TASKS = "tasks.json"
"""The tasks a run trained on, with their token layout and expert returns (for eval)."""
RECORD = "training.json"
"""The last finished call's summary, mixture and dataset files."""


@dataclass(kw_only=True)
class TrainingSummary:
    """What one call of ``train()`` did."""

    run_dir: str
    step: int
    """The step reached (a resumed run counts from its first call)."""
    steps: int
    """The mixture's total steps."""
    tokens: int
    """Tokens trained on, over every call."""
    seconds: float
    """Training wall time, over every call."""
    parameters: int
    stopped_early: bool
    """Stopped at the time limit before ``steps``."""
    resumed: bool
    tasks: list[str]
    final_loss: float | None = None
    """The mean loss over the last tenth of the logged windows (one window is noisy)."""
    final_family_loss: dict[str, float] = field(default_factory=dict)
    """The same, per task family."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        """``1,234 parameters, 20/20 steps (done), 5,000 tokens at 900 tok/s, final loss 3.1``."""
        how = "stopped at the time limit" if self.stopped_early else "done"
        loss = _fmt(self.final_loss, 3)
        return (
            f"{self.parameters:,} parameters, {self.step}/{self.steps} steps ({how}), "
            f"{self.tokens:,} tokens at {self.tokens_per_s:,.0f} tok/s, final loss {loss}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = RECORD) -> TrainingSummary:
        names = [f.name for f in fields(cls)]
        if not isinstance(d, dict) or not {"step", "steps", "parameters"} <= set(d):
            raise KibbleError(f"{where}: not a kibble training summary; train the run again")
        return cls(**{k: v for k, v in d.items() if k in names})


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every logged window of ``RUN_DIR/metrics.jsonl``, in order ([] before the first).

    A torn last line (the run was killed while writing it) is dropped with a logged note,
    as is any other line that is not a record.
    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a record with a step")
        except ValueError:
            why = (
                "is torn (a run was killed while writing it)"
                if number == len(lines)
                else ("is not a metrics record")
            )
            log.warning("%s: line %d %s; dropped", path, number, why)
            continue
        rows.append(row)
    return rows


def keep_metrics_until(run_dir: str | Path, step: int) -> None:
    """Drop the logged windows past ``step`` (a run resuming from a checkpoint at ``step``
    redoes them; a fresh run passes 0) and any torn line. The file is replaced in one
    rename, so a kill leaves the old version or the new."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return
    text = path.read_text(errors="replace")
    rows = read_metrics(run_dir)
    kept = [r for r in rows if r["step"] <= step]
    body = "".join(json.dumps(r) + "\n" for r in kept)
    if body == text:
        return
    if len(kept) < len(rows):
        log.info("%s: dropped %d windows past step %d", path, len(rows) - len(kept), step)
    tmp = path.with_name(f".{METRICS}.tmp")
    tmp.write_text(body)
    os.replace(tmp, path)


def final_losses(metrics: list[dict]) -> tuple[float | None, dict[str, float]]:
    """The mean loss, overall and per family, over the last tenth of the logged windows."""
    tail = metrics[-max(1, len(metrics) // 10) :]
    if not tail:
        return None, {}
    families = sorted({f for m in tail for f in m["family_loss"]})
    per_family = {}
    for f in families:
        values = [m["family_loss"][f] for m in tail if f in m["family_loss"]]
        per_family[f] = sum(values) / len(values)
    return sum(m["loss"] for m in tail) / len(tail), per_family


def dataset_files(config: MixtureConfig) -> list[str]:
    """The sha256 of every file of the mixture's datasets, from their manifests (sorted)."""
    return sorted(f["sha256"] for d in config.datasets for f in file_entries(read_manifest(d.path)))


def write_record(run_dir: str | Path, summary: TrainingSummary, config: MixtureConfig) -> None:
    """``RUN_DIR/training.json``: the finished call's summary, mixture and dataset files."""
    body = {
        "summary": summary.to_dict(),
        "mixture": config.to_dict(),
        "dataset_files": dataset_files(config),
    }
    (Path(run_dir) / RECORD).write_text(json.dumps(body, indent=2) + "\n")


def read_summary(run_dir: str | Path) -> TrainingSummary | None:
    """The summary of the run's last finished call; None when no call has finished."""
    record = _read_record(run_dir)
    return None if record is None else record[0]


def same_training(a: MixtureConfig | dict, b: MixtureConfig | dict) -> bool:
    """The same training, whatever time limit each call had (a resumed run gets less)."""

    def plain(c: MixtureConfig | dict) -> dict:
        d = c.to_dict() if isinstance(c, MixtureConfig) else dict(c)
        d.pop("max_minutes", None)
        return json.loads(json.dumps(d))  # tuples as lists, as stored

    return plain(a) == plain(b)


def finished_run(run_dir: str | Path, config: MixtureConfig) -> TrainingSummary | None:
    """The summary of ``run_dir`` if its last call finished (all steps, or its time limit)
    training ``config`` (time limit aside) on the datasets' current files; else None."""
    record = _read_record(run_dir)
    progress = _checkpoint_progress(run_dir)
    if record is None or progress is None:
        return None
    summary, body = record
    if summary.step != progress["step"]:  # a later call was interrupted after a checkpoint
        return None
    if not same_training(body.get("mixture") or {}, config):
        return None
    try:
        files = dataset_files(config)
    except KibbleError:
        return None
    return summary if body.get("dataset_files") == files else None


def resumable_progress(run_dir: str | Path, config: MixtureConfig) -> dict | None:
    """The checkpoint's progress (step, tokens, seconds) if ``run_dir`` holds an interrupted
    run of ``config`` (time limit aside); None when there is nothing to resume: no
    checkpoint, another mixture's, or a run whose last call finished."""
    progress = _checkpoint_progress(run_dir)
    if progress is None:
        return None
    state = read_state(run_dir)
    if not same_training(state["config"], config):
        return None
    summary = read_summary(run_dir)
    if summary is not None and summary.step == progress["step"]:
        return None  # that call finished; its settings or files differ (or it would be reused)
    return progress


def trained_tasks(run_dir: str | Path) -> list[str]:
    """The task ids a run trained on, in the order it indexed them."""
    path = Path(run_dir) / TASKS
    try:
        return [t["task"] for t in json.loads(path.read_text())]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KibbleError(f"{path} cannot be read ({e}); train the run again") from e


def _checkpoint_progress(run_dir: str | Path) -> dict | None:
    if not (Path(run_dir) / CHECKPOINT).is_dir():
        return None
    try:
        return read_state(run_dir)["progress"]
    except (KibbleError, KeyError):
        return None


def _read_record(run_dir: str | Path) -> tuple[TrainingSummary, dict] | None:
    path = Path(run_dir) / RECORD
    try:
        body = json.loads(path.read_text())
        return TrainingSummary.from_dict(body["summary"], str(path)), body
    except (OSError, ValueError, KeyError, TypeError, KibbleError):
        return None


def _fmt(x: Any, digits: int) -> str:
    finite = isinstance(x, int | float) and math.isfinite(x)
    return f"{x:.{digits}f}" if finite else "n/a"
