"""Look at one episode of a curated dataset: a video of its frames, or a plot of its values.

``kibble view`` and the dataset card use it. An episode with image observations becomes
an MP4 or a GIF, one frame per step, each with the step, the action taken and the reward
written under the picture; any episode can become a PNG plot of its raw observation and
action values and its rewards over the steps (the only picture a task without images
has).

This module checks the output, chooses what to draw and puts the finished file in
place; the work is done by :mod:`kibble.reading.viewed_episode` (reading the episode),
:mod:`kibble.reading.frames` (drawing frames), :mod:`kibble.reading.video` (GIF and MP4)
and :mod:`kibble.reading.view_plots` (the plot). Optional libraries, imported only when
drawing: Pillow draws frames and writes GIFs, matplotlib plots (``kibble[plots]``), and
MP4s are encoded by the ffmpeg executable that the ``imageio-ffmpeg`` wheel ships
(``kibble[view]``), or one on ``PATH``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from kibble.errors import KibbleError
from kibble.reading.frames import frames
from kibble.reading.video import gif_bytes, write_mp4
from kibble.reading.view_plots import plot_png
from kibble.reading.viewed_episode import ViewedEpisode, load_episode
from kibble.schemas.layout import VIEWS_DIR, join, task_dir_name, write_bytes
from kibble.schemas.outputs import check_output
from kibble.schemas.reader import CuratedDataset

log = logging.getLogger(__name__)

VIDEO = "a video of the episode's images"
PLOT = "a plot of its observation and action values and rewards"
SUFFIXES = {".mp4": VIDEO, ".gif": VIDEO, ".png": PLOT}
"""What ``kibble view`` writes, by the output's suffix."""


@dataclass
class ViewConfig:
    """How an episode is drawn."""

    fps: int = 15
    """Frames per second of a video (Atari with frame skip 4 and Procgen run at 15)."""
    min_side: int = 256
    """Frames whose longer side is shorter are scaled up by a whole factor (nearest
    neighbour, so pixels stay sharp) until it reaches this, so the text is legible."""
    max_frames: int | None = None
    """Draw only the first this many steps (frames of a video, points of a plot); None:
    the whole episode. Unlike a dataset config's ``max_steps``, it cuts no episode."""

    def drawn(self, length: int) -> int:
        """How many steps of an episode of ``length`` steps are drawn."""
        return length if self.max_frames is None else min(length, self.max_frames)


CARD_VIEW = ViewConfig(fps=15, min_side=128, max_frames=32)
"""The dataset card's picture per task: about two seconds of GIF, small frames (a few
hundred kB for a noisy 64x64 Procgen game, less for Atari and plots)."""


@dataclass
class View:
    """What :func:`view_episode` wrote."""

    path: str
    task: str
    episode_id: str
    episode_return: float
    length: int
    """The episode's steps."""
    drawn: int
    """Steps drawn: frames of a video, points of a plot (``length`` unless cut)."""


def _picture(episode: ViewedEpisode, suffix: str, config: ViewConfig) -> bytes | None:
    """The bytes of a GIF or PNG of ``episode``; None for an MP4 (streamed to ffmpeg)."""
    steps = config.drawn(episode.length)
    if suffix == ".png":
        return plot_png(episode, steps)
    if not episode.images:
        raise KibbleError(
            f"{episode.task} has no image observations, so there is no video to make; write "
            f"a plot of its observation and action values instead (--out NAME.png, not {suffix})"
        )
    if suffix == ".gif":
        return gif_bytes(frames(episode, steps, config.min_side), config.fps)
    return None


def _install_hint(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        name = {"PIL": "Pillow"}.get(module, module)
        raise KibbleError(
            f"kibble view needs {name}, which is not installed: pip install 'kibble[view]'"
        )


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out`` without ever replacing a file that appeared
    there meanwhile (a hard link fails if ``out`` exists); rename where links are not
    supported."""
    try:
        os.link(tmp, out)
    except FileExistsError as e:
        raise KibbleError(f"{out} appeared while it was being written; nothing replaced") from e
    except OSError:
        os.replace(tmp, out)
        return
    tmp.unlink()


def view_episode(
    dataset: str | os.PathLike,
    task: str | None,
    out: str | os.PathLike,
    *,
    episode_id: str | None = None,
    config: ViewConfig | None = None,
) -> View:
    """Draw one kept episode of ``task`` into ``out`` (``.mp4``, ``.gif`` or ``.png``).

    ``task`` None: the dataset's one task (a KibbleError naming them if it has several).
    ``episode_id`` None: the task's first kept episode. The file is written beside
    ``out`` under a hidden name and moved into place when complete; an existing ``out``
    is never replaced.
    """
    config = config or ViewConfig()
    check_output(
        out,
        replace_dataset=False,
        local_only="Pillow and ffmpeg write local files",
        suffixes=SUFFIXES,
        writer="kibble view",
        reads=(dataset.location if isinstance(dataset, CuratedDataset) else dataset,),
    )
    out = Path(out)
    suffix = out.suffix.lower()
    _install_hint("matplotlib" if suffix == ".png" else "PIL")
    episode = load_episode(dataset, task, episode_id)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}"
    try:
        data = _picture(episode, suffix, config)
        if data is None:
            write_mp4(
                frames(episode, config.drawn(episode.length), config.min_side), tmp, config.fps
            )
        else:
            tmp.write_bytes(data)
        _publish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    drawn = config.drawn(episode.length)
    return View(
        str(out), episode.task, episode.episode_id, episode.episode_return, episode.length, drawn
    )


def card_view(root: str | os.PathLike, task: str, config: ViewConfig = CARD_VIEW) -> str | None:
    """Write the dataset card's picture of ``task`` under ``root`` (a path or URL):
    ``views/<task>.gif`` (the first kept episode's first frames) for a task with images,
    ``views/<task>.png`` (its plot) for one without. Returns the path relative to
    ``root``; None when the task kept no episode or Pillow/matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None or importlib.util.find_spec("PIL") is None:
        log.warning("matplotlib or Pillow is not installed: no episode picture for %s", task)
        return None
    ds = CuratedDataset(root)
    if not ds.task(task).kept:  # the card's table says so
        return None
    episode = load_episode(ds, task, None)
    suffix = ".gif" if episode.images else ".png"
    rel = f"{task_dir_name(task)}{suffix}"
    write_bytes(join(root, VIEWS_DIR, rel), _picture(episode, suffix, config))
    return f"{VIEWS_DIR}/{rel}"
