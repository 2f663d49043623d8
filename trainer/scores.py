"""Expert-normalized scores (docs/format.md §13): per task and family, IQM, tasks above 50% and 80%.

>>> normalized_score(75.0, expert=100.0, random=50.0)
50.0
>>> round(interquartile_mean([0, 10, 20, 30, 40, 50, 60, 70]), 6)
35.0
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from kibble.atomic import swap_in
from kibble.errors import KibbleError
from kibble.schemas.layout import task_dir_name

EVAL_DIR = "eval"
"""``RUN_DIR/eval``: a JSON per task, summary.json, scores.md and scores.png."""
EVAL_SUMMARY = "summary.json"


@dataclass(kw_only=True)
class EvalRow:
    """One task's evaluation: the generalist's returns and its expert-normalized score.

    A row of the score table, of ``RUN_DIR/eval/summary.json`` and of a task's own JSON
    file; :func:`write_scores` and :func:`read_scores` are the one pair that store them.
    """

    task: str
    episodes: int
    seeds: list[int]
    """Episode i reset with ``seeds[i]``."""
    return_mean: float
    return_std: float
    success_rate: float | None
    expert_return: float
    random_return: float
    baseline_source: str
    """Where the expert and random returns came from: a card's path, or the manifest."""
    score: float
    """``100 * (R - R_random) / (R_expert - R_random)``; NaN when the expert is no better."""
    step: int
    """The training step of the checkpoint evaluated."""
    max_steps: int | None = None
    """Episodes were cut here (as the expert card's were)."""
    past_steps: int | None = None
    """Earlier timesteps the model saw when acting; None: as many as its context held."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = EVAL_SUMMARY) -> EvalRow:
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or not {"task", "score"} <= set(d):
            raise KibbleError(f"{where}: an evaluation row must be a JSON object with task, score")
        row = cls(**{k: v for k, v in d.items() if k in names})
        # JSON written with allow_nan=False (report.json) holds a missing score as null.
        row.score = float("nan") if row.score is None else float(row.score)
        return row

    @property
    def has_score(self) -> bool:
        return math.isfinite(self.score)

    def line(self, expert_is_random: bool = False) -> str:
        """``task: return 9.0 ± 0.0 over 1 episodes (expert 9.5, random 17.5): score 5.9%``."""
        if self.has_score:
            score = f"score {self.score:.1f}%"
        elif expert_is_random:
            score = "no score (the expert is the random policy)"
        else:
            score = "no score (the expert is no better than random)"
        success = "" if self.success_rate is None else f", success {self.success_rate:.2f}"
        if self.past_steps == 0:
            success += ", acting on the present observation alone"
        elif self.past_steps is not None:
            success += f", seeing at most {self.past_steps} earlier timesteps"
        return (
            f"{self.task}: return {self.return_mean:.1f} ± {self.return_std:.1f} over "
            f"{self.episodes} episodes{success} (expert {self.expert_return:.1f}, random "
            f"{self.random_return:.1f}): {score}"
        )


def normalized_score(score: float, expert: float, random: float) -> float:
    """``100 * (R - R_random) / (R_expert - R_random)``; NaN when the expert is no better."""
    gap = expert - random
    if gap <= 0:
        return float("nan")
    return 100.0 * (score - random) / gap


def interquartile_mean(values: list[float]) -> float:
    """The mean of the middle 50% (the IQM of Agarwal et al., 2021), by sorted position."""
    v = np.sort(np.asarray([x for x in values if np.isfinite(x)], np.float64))
    if len(v) == 0:
        return float("nan")
    n = len(v)
    lo, hi = int(np.floor(n * 0.25)), int(np.ceil(n * 0.75))
    return float(v[lo:hi].mean()) if hi > lo else float(v.mean())


def _finite_mean(values: list[float]) -> float:
    """The mean of the scores that exist (a task whose expert is random has none)."""
    v = [x for x in values if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def summarize(rows: list[EvalRow]) -> dict:
    """Rows -> families, IQM, and how many tasks clear 50 / 80%."""
    by_family: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_family[r.task.split("/", 1)[0]].append(r.score)
    scores = [r.score for r in rows]
    return {
        "tasks": len(rows),
        # The headline counts only tasks with a score (a random-policy expert has none).
        "scored": sum(bool(np.isfinite(s)) for s in scores),
        "iqm": interquartile_mean(scores),
        "mean": _finite_mean(scores),
        "above_50": sum(s > 50 for s in scores),
        "above_80": sum(s > 80 for s in scores),
        "families": {
            f: {"tasks": len(v), "mean": _finite_mean(v), "iqm": interquartile_mean(v)}
            for f, v in sorted(by_family.items())
        },
    }


def score_table(rows: list[EvalRow], summary: dict) -> str:
    """A Markdown table per task, then per family, then the aggregate line."""
    lines = [
        "| task | return | expert | random | score % |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.task} | {r.return_mean:.1f} ± {r.return_std:.1f} | "
            f"{r.expert_return:.1f} | {r.random_return:.1f} | {r.score:.1f} |"
        )
    lines += ["", "| family | tasks | mean score % | IQM % |", "|---|---|---|---|"]
    for f, v in summary["families"].items():
        lines.append(f"| {f} | {v['tasks']} | {v['mean']:.1f} | {v['iqm']:.1f} |")
    lines += [
        "",
        f"IQM {summary['iqm']:.1f}% over {summary['scored']} scored task(s) of "
        f"{summary['tasks']}; {summary['above_50']} above 50%, {summary['above_80']} above 80%.",
    ]
    limited = [f"{r.task} ({r.past_steps})" for r in rows if r.past_steps is not None]
    if limited:
        lines.append(
            "Earlier timesteps the model saw when acting, where fewer than its context "
            "holds: " + ", ".join(limited) + "."
        )
    return "\n".join(lines)


def score_chart(rows: list[EvalRow], path: Path) -> Path | None:
    """A bar chart of the score per task, with the 50% and 80% lines (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(rows) + 2), 3.5))
    names = [r.task for r in rows]
    ax.bar(range(len(rows)), [r.score for r in rows], color="tab:blue")
    for level, style in ((50, ":"), (80, "--")):
        ax.axhline(level, color="gray", linestyle=style, linewidth=1, label=f"{level}%")
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("expert-normalized score %")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_scores(run_dir: str | Path, rows: list[EvalRow]) -> dict:
    """``RUN_DIR/eval/``: one JSON per task, summary.json (the rows and :func:`summarize`),
    scores.md and scores.png; returns the summary with its ``table`` and ``chart``."""
    # Written beside and swapped in whole: a second evaluation leaves no stale per-task
    # file of the first beside its new summary.
    final = Path(run_dir) / EVAL_DIR
    out = final.parent / f".{EVAL_DIR}.staging-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for r in rows:
        (out / f"{task_dir_name(r.task)}.json").write_text(json.dumps(r.to_dict(), indent=2) + "\n")
    summary = summarize(rows)
    body = {"rows": [r.to_dict() for r in rows], **summary}
    (out / EVAL_SUMMARY).write_text(json.dumps(body, indent=2) + "\n")
    (out / "scores.md").write_text(score_table(rows, summary) + "\n")
    chart = score_chart(rows, out / "scores.png")
    swap_in(out, final)
    summary["chart"] = str(final / chart.name) if chart else None
    summary["table"] = score_table(rows, summary)
    return summary


def scores_file(run_dir: str | Path) -> Path:
    """``RUN_DIR/eval/summary.json``."""
    return Path(run_dir) / EVAL_DIR / EVAL_SUMMARY


def read_scores(run_dir: str | Path) -> list[EvalRow] | None:
    """The rows :func:`write_scores` stored for ``run_dir``; None when there are none (or
    the file is unreadable: a run evaluated by nothing yet)."""
    path = scores_file(run_dir)
    try:
        body = json.loads(path.read_text())
        return [EvalRow.from_dict(r, str(path)) for r in body["rows"]]
    except (OSError, ValueError, KeyError, TypeError, KibbleError):
        return None
