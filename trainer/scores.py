"""Expert-normalized scores (SPEC 6): per task, per family, IQM, counts above 50% and 80%.

>>> normalized_score(75.0, expert=100.0, random=50.0)
50.0
>>> round(interquartile_mean([0, 10, 20, 30, 40, 50, 60, 70]), 6)
35.0
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np


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


def summarize(rows: list[dict]) -> dict:
    """Rows with ``task`` and ``score`` -> families, IQM, and how many tasks clear 50 / 80%."""
    by_family: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_family[r["task"].split("/", 1)[0]].append(r["score"])
    scores = [r["score"] for r in rows]
    return {
        "tasks": len(rows),
        "iqm": interquartile_mean(scores),
        "mean": _finite_mean(scores),
        "above_50": sum(s > 50 for s in scores),
        "above_80": sum(s > 80 for s in scores),
        "families": {
            f: {"tasks": len(v), "mean": _finite_mean(v), "iqm": interquartile_mean(v)}
            for f, v in sorted(by_family.items())
        },
    }


def score_table(rows: list[dict], summary: dict) -> str:
    """A Markdown table per task, then per family, then the aggregate line."""
    lines = [
        "| task | return | expert | random | score % |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['return_mean']:.1f} ± {r['return_std']:.1f} | "
            f"{r['expert_return']:.1f} | {r['random_return']:.1f} | {r['score']:.1f} |"
        )
    lines += ["", "| family | tasks | mean score % | IQM % |", "|---|---|---|---|"]
    for f, v in summary["families"].items():
        lines.append(f"| {f} | {v['tasks']} | {v['mean']:.1f} | {v['iqm']:.1f} |")
    lines += [
        "",
        f"{summary['tasks']} tasks: IQM {summary['iqm']:.1f}%, "
        f"{summary['above_50']} above 50%, {summary['above_80']} above 80%.",
    ]
    return "\n".join(lines)


def score_chart(rows: list[dict], path: Path) -> Path | None:
    """A bar chart of the score per task, with the 50% and 80% lines (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(rows) + 2), 3.5))
    names = [r["task"] for r in rows]
    ax.bar(range(len(rows)), [r["score"] for r in rows], color="tab:blue")
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
