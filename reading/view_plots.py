"""A plot of an episode: its raw observation and action values and its rewards over the
steps (the only picture a task without images has). matplotlib draws it (``kibble[plots]``).

Legends name the values by the leaves of the task's spaces (from the manifest's space
descriptions): a Dict observation's keys (``direction``, ``image``), Tuple indexes, and
``observation[i]`` only for a space that is one unnamed leaf (a Box).
"""

from __future__ import annotations

import io

import numpy as np

from kibble.reading.frames import number_text, steps_text
from kibble.reading.viewed_episode import ViewedEpisode

LEGEND_LINES = 10
"""A legend of more lines than this says nothing: values are then labelled by leaf (one
colour and one legend line per leaf), or not at all when there are as many leaves."""


def series(
    role: str, n: int, leaves: list[tuple[str, int]] | None
) -> list[tuple[str | None, list[int]]]:
    """How the ``n`` values of ``role`` are drawn: (legend label or None, their columns)
    per colour, from the (name, values) of its leaves.

    Up to :data:`LEGEND_LINES` values: one colour each, labelled ``name`` (a one-value
    leaf) or ``name[j]``. More, in up to :data:`LEGEND_LINES` named leaves: one colour per
    leaf, labelled ``name`` or ``name (k values)``. Else one colour per value, no labels.
    """
    if leaves is None or sum(size for _, size in leaves) != n:  # no (usable) description
        leaves = [(role, n)]
    starts = np.cumsum([0, *(size for _, size in leaves)]).tolist()
    if n <= LEGEND_LINES:
        return [
            (name if size == 1 else f"{name}[{j}]", [start + j])
            for (name, size), start in zip(leaves, starts, strict=False)
            for j in range(size)
        ]
    if 1 < len(leaves) <= LEGEND_LINES:
        return [
            (name if size == 1 else f"{name} ({size} values)", list(range(start, start + size)))
            for (name, size), start in zip(leaves, starts, strict=False)
        ]
    return [(None, [i]) for i in range(n)]


def plot_figure(episode: ViewedEpisode, steps: int):
    """The plot of the first ``steps`` steps, as a matplotlib Figure (close it when done)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    x = np.arange(steps)
    panels = [
        ("observation", episode.observation[:steps], episode.observation_leaves),
        ("action", episode.action[:steps], episode.action_leaves),
        ("reward", episode.rewards[:steps, None], None),
    ]
    panels = [panel for panel in panels if panel[1].shape[1]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.2 + 1.9 * len(panels)), sharex=True)
    for ax, (name, values, leaves) in zip(np.atleast_1d(axes), panels, strict=True):
        # Actions and rewards hold for a whole step: drawn as steps, not slopes.
        style = "default" if name == "observation" else "steps-post"
        marker = "." if steps < 30 else None  # a one-step episode is a point, not a line
        drawn = series(name, values.shape[1], leaves)
        for k, (label, columns) in enumerate(drawn):
            for i, column in enumerate(columns):
                ax.plot(
                    x,
                    values[:, column],
                    linewidth=1,
                    color=f"C{k % 10}",
                    label=label if i == 0 else None,
                    drawstyle=style,
                    marker=marker,
                )
        ax.set_ylabel(name)
        if len(drawn) > 1 and drawn[0][0] is not None:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    np.atleast_1d(axes)[-1].set_xlabel("step")
    cut = f", first {steps} steps" if steps < episode.length else ""
    text = f"\n{episode.texts[0]}" if any(episode.texts) else ""  # e.g. a BabyAI mission
    fig.suptitle(
        f"{episode.task}: {episode.episode_id}\n"
        f"return {number_text(episode.episode_return)}, {steps_text(episode.length)}{cut}{text}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def plot_png(episode: ViewedEpisode, steps: int) -> bytes:
    """A PNG of :func:`plot_figure`."""
    fig = plot_figure(episode, steps)
    import matplotlib.pyplot as plt  # after plot_figure chose the backend

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return png.getvalue()
