"""Stage 6: ``report.md`` and ``report.json``: cards, dataset, training, scores, timings.

Every number is read through its owner's record: cards (``read_card``), the manifest's
typed task entries, the run's :class:`~kibble.trainer.summary.TrainingSummary` and
metrics, the stored :class:`~kibble.trainer.scores.EvalRow` rows.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import kibble
from kibble.demo.charts import loss_chart
from kibble.demo.config import DemoConfig, DemoPaths
from kibble.demo.stage import StageResult, duration, fmt, in_order


def write_demo_report(cfg: DemoConfig, paths: DemoPaths, results: list[StageResult]) -> StageResult:
    """``report.md`` and ``report.json``: cards, dataset, training, scores, timings."""
    from kibble.experts.card import read_card
    from kibble.schemas.layout import RETURNS_DIR, read_manifest, task_dir_name, task_entries
    from kibble.trainer.scores import EVAL_DIR, read_scores, score_table, summarize
    from kibble.trainer.summary import read_metrics, read_summary

    started = time.monotonic()
    order = [t.task for t in cfg.tasks]
    cards = {t.task: read_card(paths.card(t.task), task=t.task) for t in cfg.tasks}
    manifest = read_manifest(paths.dataset)
    entries = task_entries(manifest)
    training = read_summary(paths.run)
    loss_png = loss_chart(read_metrics(paths.run), paths.loss_png)
    rows = read_scores(paths.run) or []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = summarize(rows)
    total = sum(r.seconds for r in results)
    made = _made_seconds(results, paths)
    rel = lambda p: os.path.relpath(p, paths.out)  # noqa: E731

    md = [
        "# kibble demo report",
        "",
        f"kibble {kibble.__version__}, preset `{cfg.preset}`, seed {cfg.seed}. "
        f"Everything below is under `{paths.out}` (links are relative to it; what the "
        f"libraries printed is in `{rel(paths.logs)}/`). Each stage can be rerun by hand: "
        f"`kibble pipeline run {paths.dataset_config}`, "
        f"`kibble train {paths.mixture} --out {paths.run}`, "
        f"`kibble eval {paths.run} --task TASK --card CARD`.",
        "",
        "## Stages",
        "",
        "| stage | what | wall time |",
        "|---|---|---|",
    ]
    for r in results:
        took = duration(r.seconds)
        if r.reused and made[r.stage]:
            took += f" (reused; made in {duration(made[r.stage])})"
        elif r.reused:
            took += " (reused)"
        md.append(f"| {r.stage} | {r.summary} | {took} |")
    md += [f"| total | | {duration(total)} |", ""]

    md += [
        "## Expert cards",
        "",
        "| task | expert | episodes | expert return | random return | success | file |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in cfg.tasks:
        c = cards[t.task]
        success = "" if c.success_rate is None else f"{c.success_rate:.2f}"
        cut = f" (cut at {c.max_steps} steps)" if c.max_steps else ""
        md.append(
            f"| {t.task} | {t.expert} | {c.episodes}{cut} | {c.expert_return.mean:.1f} ± "
            f"{c.expert_return.std:.1f} | {c.random_return.mean:.1f} | {success} | "
            f"[{rel(paths.card(t.task))}]({rel(paths.card(t.task))}) |"
        )
    md += [
        "",
        "## Dataset",
        "",
        f"`{rel(paths.dataset)}` (schema version {manifest['schema_version']}; its card: "
        f"[{rel(paths.dataset / 'README.md')}]({rel(paths.dataset / 'README.md')})). Every "
        "planned episode is kept or rejected with a reason; the threshold is 80% of the "
        "card's expert return (rule `fraction_of_expert`); when that is not positive, "
        "`random + 0.8 x (expert - random)` (`random_plus_fraction_of_gap`), or, with no "
        "random return, `lowest + 0.8 x (expert - lowest)` from the task's lowest episode "
        "return (`lowest_plus_fraction_of_gap`).",
        "",
        "| task | planned | kept | rejected (reason) | steps kept | tokens kept | threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, t in in_order(entries, order):
        rejected = ", ".join(f"{v} {k}" for k, v in t.rejected.items()) or "0"
        md.append(
            f"| {task} | {t.planned} | {t.kept} | {rejected} | {t.steps:,} | "
            f"{t.tokens:,} | {fmt(t.threshold)} ({t.rule}) |"
        )
    md += ["", "Returns per task, kept vs rejected:", ""]
    for task, _ in in_order(entries, order):
        png = paths.dataset / RETURNS_DIR / f"{task_dir_name(task)}.png"
        if png.is_file():
            md.append(f"![{task} returns]({rel(png)})")
    md += ["", "## Training", ""]
    if training is not None:
        md += [_training_paragraph(cfg, training), ""]
        if loss_png:
            md += [f"![training loss]({rel(loss_png)})", ""]
    md += [
        "## Scores",
        "",
        "The generalist plays each task, "
        + (
            "prompted with a demonstration from the dataset; "
            if cfg.prompt_fraction > 0
            else "without a demonstration prompt (it trained without them); "
        )
        + "score = 100 x (R - R_random) / (R_expert - R_random) from the expert cards. Tasks "
        "whose expert is the random policy have no score (nan below), only returns.",
        "",
    ]
    if rows:
        md += [score_table(rows, scores), ""]
        chart = paths.run / EVAL_DIR / "scores.png"
        if chart.is_file():
            md += [f"![scores]({rel(chart)})", ""]
    paths.report.write_text("\n".join(md) + "\n")

    report = {
        "kibble_version": kibble.__version__,
        "preset": cfg.preset,
        "out": str(paths.out),
        "timings": {
            r.stage: {"seconds": r.seconds, "reused": r.reused, "made_seconds": made[r.stage]}
            for r in results
        },
        "total_seconds": total,
        "cards": {task: plain(c.__dict__) for task, c in cards.items()},
        "dataset": {task: plain(t.to_dict()) for task, t in entries.items()},
        "training": plain(training.to_dict() if training else {}),
        "scores": plain({"rows": [r.to_dict() for r in rows], **scores}),
    }
    seconds = time.monotonic() - started
    report["timings"]["report"] = {"seconds": seconds, "reused": False, "made_seconds": seconds}
    report["total_seconds"] = total + seconds
    paths.report_json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    summary = f"wrote {paths.report} and {paths.report_json}"
    return StageResult(stage="report", reused=False, seconds=seconds, summary=summary)


def _training_paragraph(cfg: DemoConfig, training) -> str:
    model = cfg.model if isinstance(cfg.model, str) else f"custom {cfg.model}"
    families = ", ".join(f"{k} {v:.3f}" for k, v in training.final_family_loss.items())
    return (
        f"Model {model}: {training.parameters:,} parameters; context {cfg.context}, "
        f"batch {cfg.batch_size}, peak learning rate {cfg.learning_rate:g}. "
        f"{training.step} of {training.steps} steps"
        + (" (stopped at the time limit)" if training.stopped_early else "")
        + f", {training.tokens:,} tokens in {training.seconds:.0f} s "
        f"({training.tokens_per_s:,.0f} tokens/s); final loss {fmt(training.final_loss, 3)} "
        f"(cross-entropy on action tokens; by family: {families})."
    )


def _made_seconds(results: list[StageResult], paths: DemoPaths) -> dict[str, float | None]:
    """How long each stage took when its output was made: now, or as an earlier report says."""
    before = (_read_json(paths.report_json) or {}).get("timings", {})
    return {
        r.stage: (before.get(r.stage) or {}).get("made_seconds") if r.reused else r.seconds
        for r in results
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def plain(value: Any) -> Any:
    """JSON-ready, NaN as None: tuples become lists, dataclasses dicts."""
    if hasattr(value, "__dataclass_fields__"):
        value = value.__dict__
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
