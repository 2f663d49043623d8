"""Return histograms for the dataset card: kept vs rejected episodes, and the threshold.

matplotlib is optional (``kibble[plots]``, part of ``beam`` and ``all``): without it
the card says how to get the plots and the dataset is otherwise complete.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os

import numpy as np

from kibble.pipelines.stages import EpisodeOutcome, Threshold, is_kept
from kibble.schemas.layout import RETURNS_DIR, join, task_dir_name, write_bytes

log = logging.getLogger(__name__)
PLOTS_DIR = RETURNS_DIR


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def return_histogram(
    root: str | os.PathLike, task: str, outcomes: list[EpisodeOutcome], threshold: Threshold
) -> str | None:
    """Write ``returns/<task>.png`` under ``root`` (a path or URL); None without matplotlib."""
    if not available():
        log.warning(
            "matplotlib is not installed: no return histogram (pip install 'kibble[plots]')"
        )
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    kept = [o.episode_return for o in outcomes if is_kept(o, threshold)]
    below = [o.episode_return for o in outcomes if o.reason is None and not is_kept(o, threshold)]
    values = np.asarray(kept + below, np.float64)
    bins = np.histogram_bin_edges(values, bins=30) if values.size else 10
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist([kept, below], bins=bins, stacked=True, label=["kept", "below threshold"],
            color=["tab:green", "tab:red"])  # fmt: skip
    if threshold.threshold is not None:
        ax.axvline(threshold.threshold, color="black", linestyle="--", label="threshold")
    invalid = sum(1 for o in outcomes if o.reason is not None)
    ax.set_title(f"{task}: {len(kept)} kept, {len(below)} below threshold, {invalid} invalid")
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    path = join(root, PLOTS_DIR, f"{task_dir_name(task)}.png")
    write_bytes(path, png.getvalue())
    return path
