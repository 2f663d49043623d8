"""The report's training-loss chart (the score chart is the trainer's own)."""

from __future__ import annotations

from pathlib import Path


def loss_chart(metrics: list[dict], path: Path) -> Path | None:
    """Training loss, overall and per family, against the step (None without matplotlib)."""
    if not metrics:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [m["step"] for m in metrics]
    ax.plot(steps, [m["loss"] for m in metrics], color="black", linewidth=2, label="all")
    families = sorted({f for m in metrics for f in m["family_loss"]})
    for f in families:
        points = [(m["step"], m["family_loss"][f]) for m in metrics if f in m["family_loss"]]
        ax.plot(*zip(*points, strict=True), linewidth=1, alpha=0.8, label=f)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (action tokens)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
