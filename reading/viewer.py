"""Look at one episode of a curated dataset: a video of its frames, or a plot of its values.

``kibble view`` and the dataset card use it. An episode with image observations becomes
an MP4 or a GIF, one frame per step, each with the step, the action taken and the reward
written under the picture; any episode can become a PNG plot of its raw observation and
action values and its rewards over the steps (the only picture a task without images
has).

Optional libraries, imported only here: Pillow draws frames and writes GIFs, matplotlib
plots (both come with ``kibble[plots]``), and MP4s are encoded by the ffmpeg executable
that the ``imageio-ffmpeg`` wheel ships (``kibble[view]``), or one on ``PATH``.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kibble.errors import KibbleError
from kibble.schemas.layout import VIEWS_DIR, join, task_dir_name, write_bytes

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif")
PLOT_SUFFIX = ".png"
SUFFIXES = (*VIDEO_SUFFIXES, PLOT_SUFFIX)


@dataclass
class ViewConfig:
    """How an episode is drawn."""

    fps: int = 15
    """Frames per second of a video (Atari with frame skip 4 and Procgen run at 15)."""
    min_side: int = 256
    """Frames whose longer side is shorter are scaled up by a whole factor (nearest
    neighbour, so pixels stay sharp) until it reaches this, so the text is legible."""
    max_steps: int | None = None
    """Draw only the first this many steps; None: the whole episode."""


CARD_VIEW = ViewConfig(fps=15, min_side=128, max_steps=32)
"""The dataset card's picture per task: about two seconds of GIF, small frames (a few
hundred kB for a noisy 64x64 Procgen game, less for Atari and plots)."""


@dataclass
class Episode:
    """The parts of one kept episode a view draws (docs/format.md section 8)."""

    task: str
    episode_id: str
    episode_return: float
    length: int
    rewards: np.ndarray  # (T,) float64
    action: np.ndarray  # (T, A) float64: raw action leaves, flattened
    observation: np.ndarray  # (T, D) float64: raw non-image observation leaves, flattened
    images: list[np.ndarray] = field(default_factory=list)  # K x (T, H, W, C) uint8
    texts: list[str] = field(default_factory=list)
    """Per step, the observation's text leaves joined (a BabyAI mission); [] or "" without."""
    observation_names: list[str] | None = None
    """A name per ``observation`` column, from the manifest's space description."""
    action_names: list[str] | None = None


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


# -- checks ---------------------------------------------------------------------------


def check_output(out: str | os.PathLike) -> str:
    """The suffix of ``out`` (``.mp4``, ``.gif`` or ``.png``), once it is a name we can
    write: a known suffix, nothing there yet, and a parent directory."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise KibbleError(
            f"cannot tell what to write to {out}: give a file name ending in .mp4 or .gif "
            "(a video of the episode's images) or .png (a plot of its observation and action "
            "values and rewards)"
        )
    if path.exists() or path.is_symlink():
        raise KibbleError(
            f"{out} already exists; kibble view does not overwrite files: remove it or give "
            "another name"
        )
    if not path.parent.is_dir():
        raise KibbleError(f"cannot write {out}: the directory {path.parent} does not exist")
    return suffix


# -- reading one episode --------------------------------------------------------------


def load_episode(dataset: str | os.PathLike, task: str, episode_id: str | None) -> Episode:
    """One kept episode of ``task``, read with kibble's dataset reader; ``episode_id``
    None: the task's first kept episode (its lowest kept episode index: files and the
    episodes in them are in index order, docs/format.md section 9)."""
    from kibble.schemas.reader import CuratedDataset

    return _load(CuratedDataset(dataset), task, episode_id)


def _load(ds, task: str, episode_id: str | None) -> Episode:
    entry = ds.task(task)  # an unknown task: an error naming the dataset's tasks
    files = [f for f in ds.data_files(task) if f["rows"]]
    if not files:
        raise KibbleError(
            f"{task} kept no episode in {ds.location} ({entry.counts()}): there is nothing to view"
        )
    if episode_id is None:
        record = next(ds.open_file(files[0]).episodes())
    else:
        record = _find_episode(ds, files, task, episode_id)
    return _episode(record, entry.extra)


def _find_episode(ds, files: list[dict], task: str, episode_id: str):
    """The kept episode ``episode_id`` of ``task``, reading only the row groups that hold
    it (an Atari file holds hundreds of frames per episode); a KibbleError if absent."""
    import pyarrow as pa

    from kibble.schemas.reader import EpisodeRecord

    for entry in files:
        data = ds.open_file(entry)
        ids = data.read(["episode_id"])["episode_id"].to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(ids == episode_id)
        if not rows.size:
            continue
        lo, hi = int(rows[0]), int(rows[-1]) + 1  # an episode's rows are contiguous
        first = int(np.searchsorted(data.group_starts, lo, side="right")) - 1
        last = int(np.searchsorted(data.group_starts, hi - 1, side="right")) - 1
        groups = [data.read_group(g, data.columns) for g in range(first, last + 1)]
        table = pa.concat_tables(groups).slice(lo - int(data.group_starts[first]), hi - lo)
        return EpisodeRecord.from_table(table)
    raise KibbleError(_unknown_episode(ds, files, task, episode_id))


def _unknown_episode(ds, files: list[dict], task: str, episode_id: str) -> str:
    """Why ``episode_id`` is not viewable: rejected (and why), or not in the dataset."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from kibble.schemas.layout import REJECTED_DIR, resolve

    message = f"episode {episode_id!r} is not a kept episode of {task} in {ds.location}"
    fs, path = resolve(join(ds.location, REJECTED_DIR, "part-00000.parquet"))
    try:
        with fs.open_input_file(path) as f:
            rejected = pq.read_table(f, columns=["task", "episode_id", "reason", "detail"])
    except (OSError, ValueError):  # no rejected file to consult: say what we know
        rejected = None
    if rejected is not None:
        hit = rejected.filter(pc.equal(rejected["episode_id"], episode_id)).to_pylist()
        if hit:
            return (
                f"{message}: it was rejected ({hit[0]['reason']}: {hit[0]['detail']}), and "
                "only kept episodes are stored; give a kept one, or leave --episode out to "
                "view the first kept episode"
            )
    first = ds.open_file(files[0]).read(["episode_id"])["episode_id"].unique().to_pylist()
    examples = ", ".join(first[:3]) + (", ..." if len(first) > 3 else "")
    kept = ds.task(task).kept
    return (
        f"{message}: none of its kept episodes ({kept}) has that id (they look like "
        f"{examples}); copy an id from the `episode_id` column, or leave --episode out to "
        "view the first kept episode"
    )


def _episode(record, entry_extra: dict) -> Episode:
    """An EpisodeRecord -> what a view draws: image leaves cropped to their own size (the
    stored pixels are padded, docs/format.md section 5), plot labels from the manifest's
    space descriptions (docs/format.md section 9) where it has them."""
    from kibble.schemas.raw_values import crop_image

    images = list(record.images)
    observation_space = entry_extra.get("observation_space")
    if isinstance(observation_space, dict):
        for leaf in observation_space.get("leaves", []):
            if leaf.get("column") != "images":
                continue
            i = leaf["index"]
            if i < len(images):
                cropped = crop_image(images[i], leaf["shape"])
                images[i] = cropped[..., None] if cropped.ndim == 3 else cropped
    return Episode(
        task=record.task,
        episode_id=record.episode_id,
        episode_return=float(record.episode_return),
        length=int(record.length),
        rewards=np.asarray(record.rewards, np.float64),
        action=np.asarray(record.action, np.float64),
        observation=np.asarray(record.observation, np.float64),
        images=images,
        texts=[" | ".join(step) for step in record.texts],
        observation_names=_names(observation_space, "observation"),
        action_names=_names(entry_extra.get("action_space"), "action"),
    )


def _names(description: object, role: str) -> list[str] | None:
    """Names of the flat ``role`` values from a space description: ``obs[0]``,
    ``position[1]``...; None without a description."""
    if not isinstance(description, dict):
        return None
    names = []
    for leaf in description.get("leaves", []):
        if leaf.get("column") != role:
            continue
        base = ".".join(str(p) for p in leaf.get("path", [])) or role
        size = int(leaf.get("size", 1))
        names += [base] if size == 1 else [f"{base}[{j}]" for j in range(size)]
    return names


# -- frames ---------------------------------------------------------------------------


def _rgb(image: np.ndarray) -> np.ndarray:
    """(T, H, W, C) with C in {1, 3, 4} -> (T, H, W, 3) uint8."""
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3]


def _side_by_side(images: list[np.ndarray]) -> np.ndarray:
    """K image leaves (T, H_k, W_k, C_k) -> one (T, max H, sum W, 3) strip, top-aligned."""
    rgb = [_rgb(img) for img in images]
    height = max(img.shape[1] for img in rgb)
    return np.concatenate(
        [np.pad(img, ((0, 0), (0, height - img.shape[1]), (0, 0), (0, 0))) for img in rgb],
        axis=2,
    )


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e9 else f"{x:.3g}"


def _action_text(action: np.ndarray) -> str:
    """A step's flat action: ``3`` for one discrete value, ``[0.12 -0.4 1]`` for a vector."""
    if action.size == 0:  # a dataset curated with raw_values: false
        return "n/a (no raw values)"
    if action.size == 1:
        return _number(float(action[0]))
    return "[" + " ".join(_number(float(a)) for a in action) + "]"


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` cut (with "...") to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _captions(episode: Episode, steps: int) -> list[list[str]]:
    """Per drawn step, the parts of its caption: step, reward, return so far, action, and
    the text observation (a BabyAI mission) for a task with one."""
    returns = np.cumsum(episode.rewards)
    texts = episode.texts if any(episode.texts) else None
    return [
        [
            f"step {t}/{episode.length - 1}",
            f"reward {_number(episode.rewards[t])}",
            f"return {_number(returns[t])}",
            f"action {_action_text(episode.action[t])}",
            *([texts[t]] if texts else []),
        ]
        for t in range(steps)
    ]


def _layout(draw, font, captions: list[list[str]], width: int) -> list[list[int]]:
    """Which caption parts share a line: step, reward and return on one line and the
    action on the next when every step's first line fits ``width``; else step, then
    reward and return, then the action (a narrow frame, e.g. the dataset card's)."""
    wide = [[0, 1, 2], [3]]
    if all(draw.textlength(" | ".join(c[:3]), font=font) <= width for c in captions):
        layout = wide
    else:
        layout = [[0], [1, 2], [3]]
    extra = len(captions[0]) - 4 if captions else 0
    return layout + [[4 + i] for i in range(extra)]


def frames(episode: Episode, config: ViewConfig) -> Iterator[np.ndarray]:
    """The annotated frames, one per drawn step: (H', W', 3) uint8, H' and W' even.

    The picture (the image leaves side by side, scaled up to ``config.min_side``) sits on
    a black band that says the step, its reward, the return so far and the action taken
    at that step (and the text observation, for a task with one). The band has the same
    height on every frame: a video's frames share one size.
    """
    from PIL import Image, ImageDraw, ImageFont

    strip = _side_by_side(episode.images)  # (T, H, W, 3)
    steps = _drawn(episode, config)
    height, width = strip.shape[1:3]
    scale = max(1, math.ceil(config.min_side / max(height, width)))
    width_out = width * scale
    width_even = width_out + width_out % 2  # H.264 in yuv420p wants even sides
    font_size = max(10, width_out // 22)
    font = ImageFont.load_default(size=font_size)
    captions = _captions(episode, steps)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    layout = _layout(measure, font, captions, width_even - 8)
    line_height = font_size + 4
    height_out = height * scale + len(layout) * line_height + 6
    height_out += height_out % 2
    for t in range(steps):
        canvas = Image.new("RGB", (width_even, height_out))
        picture = Image.fromarray(strip[t])
        if scale > 1:
            picture = picture.resize((width_out, height * scale), Image.NEAREST)
        canvas.paste(picture, (0, 0))
        draw = ImageDraw.Draw(canvas)
        for i, parts in enumerate(layout):
            line = " | ".join(captions[t][j] for j in parts)
            xy = (4, height * scale + 3 + i * line_height)
            draw.text(xy, _fit(draw, line, font, width_even - 8), fill="white", font=font)
        yield np.asarray(canvas)


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _drawn(episode: Episode, config: ViewConfig) -> int:
    if config.max_steps is None:
        return episode.length
    return min(episode.length, config.max_steps)


def gif_bytes(pictures: Iterable[np.ndarray], fps: int) -> bytes:
    """An animated GIF (looping) of ``pictures`` (each (H, W, 3) uint8)."""
    from PIL import Image

    images = [Image.fromarray(p) for p in pictures]
    out = io.BytesIO()
    # Every frame differs (its step number), so Pillow merges none: frames == steps.
    images[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
    )
    return out.getvalue()


def ffmpeg_executable() -> str | None:
    """The ffmpeg executable that encodes MP4s, or None.

    imageio-ffmpeg's wheel ships one. Versions below 0.4 (which gym3, Procgen's dependency,
    pins) import ``pkg_resources``, which setuptools 81 and later no longer have, so when
    the module does not import the shipped binary is found beside it without importing
    it; then ``IMAGEIO_FFMPEG_EXE``, then ``ffmpeg`` on ``PATH``.
    """
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError):
        pass
    spec = importlib.util.find_spec("imageio_ffmpeg")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for exe in sorted(Path(folder, "binaries").glob("ffmpeg*")):
            if os.access(exe, os.X_OK):
                return str(exe)
    exe = os.environ.get("IMAGEIO_FFMPEG_EXE")
    if exe and os.access(exe, os.X_OK):
        return exe
    return shutil.which("ffmpeg")


def write_mp4(pictures: Iterator[np.ndarray], path: Path, fps: int) -> None:
    """Encode ``pictures`` (each (H, W, 3) uint8, H and W even) as H.264 into ``path``.

    Frames stream into ffmpeg's stdin one at a time: a long episode is never held in
    memory as pictures.
    """
    exe = ffmpeg_executable()
    if exe is None:
        raise KibbleError(
            "writing an .mp4 needs ffmpeg, and none was found: install kibble's view extra "
            "(pip install 'kibble[view]', which brings imageio-ffmpeg and its ffmpeg) or put "
            "ffmpeg on PATH; or write a GIF instead (--out NAME.gif)"
        )
    first = next(pictures)
    height, width = first.shape[:2]
    command = [
        exe, "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
        "-i", "-",
        "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
        "-f", "mp4", str(path),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
        try:
            for picture in _chain(first, pictures):
                process.stdin.write(np.ascontiguousarray(picture).tobytes())
            process.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg stopped: its message is read below
        finally:
            code = process.wait()
        if code != 0:
            errors.seek(0)
            message = " ".join(errors.read().decode(errors="replace").split())
            raise KibbleError(f"ffmpeg ({exe}) could not write {path}: {message or code}")


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


# -- plots ----------------------------------------------------------------------------


def plot_png(episode: Episode, config: ViewConfig) -> bytes:
    """A PNG: the raw observation values, the action values and the rewards over steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    steps = _drawn(episode, config)
    x = np.arange(steps)
    panels = [
        ("observation", episode.observation[:steps], episode.observation_names),
        ("action", episode.action[:steps], episode.action_names),
        ("reward", episode.rewards[:steps, None], ["reward"]),
    ]
    panels = [panel for panel in panels if panel[1].shape[1]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.2 + 1.9 * len(panels)), sharex=True)
    for ax, (name, values, names) in zip(np.atleast_1d(axes), panels, strict=True):
        if names is None or len(names) != values.shape[1]:  # no space description
            n = values.shape[1]
            names = [name] if n == 1 else [f"{name}[{i}]" for i in range(n)]
        many = values.shape[1] > 10  # a legend of more than 10 lines says nothing
        # Actions and rewards hold for a whole step: drawn as steps, not slopes.
        style = "default" if name == "observation" else "steps-post"
        for i in range(values.shape[1]):
            label = None if many else names[i]
            marker = "." if steps < 30 else None  # a one-step episode is a point, not a line
            ax.plot(x, values[:, i], linewidth=1, label=label, drawstyle=style, marker=marker)
        ax.set_ylabel(name)
        if not many and values.shape[1] > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    np.atleast_1d(axes)[-1].set_xlabel("step")
    cut = f", first {steps} steps" if steps < episode.length else ""
    text = f"\n{episode.texts[0]}" if any(episode.texts) else ""  # e.g. a BabyAI mission
    fig.suptitle(
        f"{episode.task}: {episode.episode_id}\n"
        f"return {_number(episode.episode_return)}, {_steps(episode.length)}{cut}{text}",
        fontsize=9,
    )
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return png.getvalue()


# -- writing --------------------------------------------------------------------------


def _no_video(episode: Episode, suffix: str) -> KibbleError:
    return KibbleError(
        f"{episode.task} has no image observations, so there is no video to make; write a "
        f"plot of its observation and action values instead (--out NAME.png, not {suffix})"
    )


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
    task: str,
    out: str | os.PathLike,
    episode_id: str | None = None,
    config: ViewConfig | None = None,
) -> View:
    """Draw one kept episode of ``task`` into ``out`` (``.mp4``, ``.gif`` or ``.png``).

    ``episode_id`` None: the task's first kept episode. The file is written beside
    ``out`` under a hidden name and moved into place when complete; an existing ``out``
    is never replaced.
    """
    config = config or ViewConfig()
    out = Path(out)
    suffix = check_output(out)
    _install_hint("matplotlib" if suffix == PLOT_SUFFIX else "PIL")
    episode = load_episode(dataset, task, episode_id)
    if suffix in VIDEO_SUFFIXES and not episode.images:
        raise _no_video(episode, suffix)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}"
    try:
        if suffix == ".mp4":
            write_mp4(frames(episode, config), tmp, config.fps)
        elif suffix == ".gif":
            tmp.write_bytes(gif_bytes(frames(episode, config), config.fps))
        else:
            tmp.write_bytes(plot_png(episode, config))
        _publish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return View(
        str(out),
        episode.task,
        episode.episode_id,
        episode.episode_return,
        episode.length,
        _drawn(episode, config),
    )


def card_view(root: str | os.PathLike, task: str, config: ViewConfig = CARD_VIEW) -> str | None:
    """Write the dataset card's picture of ``task`` under ``root`` (a path or URL):
    ``views/<task>.gif`` (the first kept episode's first frames) for a task with images,
    ``views/<task>.png`` (its plot) for one without. Returns the path relative to
    ``root``; None when the task kept no episode or Pillow/matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None or importlib.util.find_spec("PIL") is None:
        log.warning("matplotlib or Pillow is not installed: no episode picture for %s", task)
        return None
    from kibble.schemas.reader import CuratedDataset

    ds = CuratedDataset(root)
    if not ds.task(task).kept:  # the card's table says so
        return None
    episode = _load(ds, task, None)
    if episode.images:
        rel, data = f"{task_dir_name(task)}.gif", gif_bytes(frames(episode, config), config.fps)
    else:
        rel, data = f"{task_dir_name(task)}.png", plot_png(episode, config)
    write_bytes(join(root, VIEWS_DIR, rel), data)
    return f"{VIEWS_DIR}/{rel}"
