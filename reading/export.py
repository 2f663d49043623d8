"""``kibble export``: a curated dataset written in another library's format.

One format today, ``minari`` (:mod:`kibble.reading.export_minari` decides,
:mod:`kibble.reading.minari_writer` writes; docs/format.md section 15): one Minari
dataset per task under ``--out``, which is a Minari datasets root
(``MINARI_DATASETS_PATH=OUT`` and ``minari.load_dataset(ID)``).

What this module owns, whatever the format: the checks made before anything is written
(the format is known, the output does not exist, is a local path and is not inside the
dataset read (its next curation would delete it), the tasks and
episode ids asked for exist, the dataset stores raw values) and the atomic publish. The
export is written into ``.OUT.staging-<8 hex>`` beside the output and renamed to ``OUT``
only when complete, under the output's lock (:func:`kibble.atomic.hold`), so a killed
export leaves nothing at ``OUT``; the next export to that path removes what it left.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kibble import atomic, interrupts
from kibble.errors import KibbleError
from kibble.schemas.outputs import check_output
from kibble.schemas.reader import CuratedDataset

log = logging.getLogger(__name__)

FORMATS = ("minari",)
"""Formats ``kibble export`` writes."""

NOT_SUPPORTED = {
    "lerobot": (
        "LeRobot's format is not supported: no lerobot release installs beside kibble's "
        "pins (lerobot 0.4.4 needs torch<2.11, older ones torch<2.8 or gymnasium<1, and "
        "kibble pins torch==2.13.0)"
    ),
}
"""Formats people ask for that kibble does not write, and why."""

OUTPUT_RULES = {
    "replace_dataset": False,
    "local_only": "the libraries an export is for read local folders",
    "writer": "an export",
}
"""How :func:`kibble.schemas.outputs.check_output` checks an export's ``--out``: a local
directory that does not exist yet (an export never replaces anything)."""


@dataclass
class ExportedTask:
    """What one task became in the export."""

    task: str
    dataset_id: str
    """The id the target library loads it by (Minari: ``minari.load_dataset(ID)``)."""
    path: Path
    """Where it lies under the output (after publishing)."""
    episodes: int
    steps: int
    """Steps (transitions) written."""
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    notes: list[str] = field(default_factory=list)
    """What a user of the export must know: what was not exported, and why."""


@dataclass
class ExportResult:
    out: Path
    format: str
    tasks: list[ExportedTask]
    skipped: list[str] = field(default_factory=list)
    """Tasks left out because they kept no episode."""


def check_format(fmt: str) -> str:
    """``fmt`` if kibble writes it, else a KibbleError naming the formats it writes."""
    if fmt in FORMATS:
        return fmt
    reason = NOT_SUPPORTED.get(fmt.lower())
    known = ", ".join(FORMATS)
    if reason:
        raise KibbleError(f"cannot export to {fmt!r}: {reason}. Formats: {known}")
    raise KibbleError(f"unknown export format {fmt!r}; kibble exports to: {known}")


def select(
    ds: CuratedDataset, tasks: list[str] | None, episode_ids: list[str] | None
) -> dict[str, set[str] | None]:
    """Task id -> the episode ids to export (None: all), in the manifest's task order.

    ``tasks``: export only these (default all); ``episode_ids``: export only these
    episodes (their tasks). An unknown task or episode id is a KibbleError naming the
    closest known ones; nothing is read but the episode ids of the tasks concerned.
    """
    chosen = list(ds.tasks) if not tasks else list(dict.fromkeys(tasks))
    for task in chosen:
        ds.task(task)  # a KibbleError listing the dataset's tasks
    if not episode_ids:
        return dict.fromkeys(chosen)
    wanted = list(dict.fromkeys(episode_ids))
    by_task: dict[str, set[str]] = {}
    known: set[str] = set()
    for task in chosen:
        ids = set()
        for entry in ds.data_files(task):
            if entry["rows"]:
                ids.update(ds.open_file(entry).read(["episode_id"])["episode_id"].to_pylist())
        known |= ids
        for episode_id in wanted:
            if episode_id in ids:
                by_task.setdefault(task, set()).add(episode_id)
    missing = [e for e in wanted if e not in known]
    if missing:
        close = difflib.get_close_matches(missing[0], sorted(known), n=3)
        hint = f"; the closest kept ones: {', '.join(close)}" if close else ""
        where = f" of {', '.join(chosen)}" if tasks else ""
        raise KibbleError(
            f"no kept episode{where} in {ds.location} has the id {missing[0]!r}"
            + (f" (nor {len(missing) - 1} other id(s) given)" if len(missing) > 1 else "")
            + f"{hint}. Ids are TASK#sSEED#INDEX, as in the data files' episode_id column "
            "(rejected episodes are not in the data)"
        )
    return {task: by_task[task] for task in chosen if task in by_task}


def export_dataset(
    dataset: str | os.PathLike,
    fmt: str,
    out: str | os.PathLike,
    *,
    tasks: list[str] | None = None,
    episode_ids: list[str] | None = None,
) -> ExportResult:
    """Export the curated dataset at ``dataset`` (a path or URL) to ``out`` in ``fmt``.

    Every check is made before anything is written; the output appears complete or not
    at all (module docstring). ``tasks`` and ``episode_ids`` narrow what is exported.
    """
    fmt = check_format(fmt)
    check_output(out, **OUTPUT_RULES, reads=(dataset,))
    out = Path(out)
    from kibble.reading.export_minari import plan
    from kibble.reading.minari_writer import write

    ds = CuratedDataset(dataset)
    selection = select(ds, tasks, episode_ids)
    plans = [plan(ds, task) for task in selection]  # refusals before any writing
    # SIGINT/SIGTERM end the export cleanly: staging removed, lock released, one line.
    with interrupts.interruptible(out, had_dataset=False) as state, atomic.hold(out):
        # Again under the lock: another export may have finished.
        check_output(out, **OUTPUT_RULES, reads=(dataset,))
        # Absolute: Minari's arrow storage mangles a relative data path.
        staging = out.absolute().parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
        try:
            exported = write(ds, plans, selection, staging)
            atomic.fault_point("staged")
            with state.publishing():
                staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    for task in exported:
        task.path = out / task.path.relative_to(staging)  # as the user wrote ``out``
        log.info("%s: %d episodes as %s", task.task, task.episodes, task.dataset_id)
    skipped = [task for task, p in zip(selection, plans, strict=True) if p is None]
    for task in skipped:
        log.warning("%s kept no episode: not exported", task)
    return ExportResult(out, fmt, exported, skipped)
