"""The annotated frames of a video of an episode: its pictures with a caption band.

Each frame shows one step's image observations (side by side, scaled up so the text is
legible) above a black band that says the step, its reward, the return so far and the
action taken (and the text observation, for a task with one). Pillow draws them
(``kibble[view]``); :mod:`kibble.reading.video` encodes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from kibble.reading.viewed_episode import ViewedEpisode


def number_text(x: float) -> str:
    """``3`` for a whole number, else three significant digits: ``0.125``, ``-1.2e+03``."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e9 else f"{x:.3g}"


def steps_text(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


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


def _action_text(action: np.ndarray) -> str:
    """A step's flat action: ``3`` for one discrete value, ``[0.12 -0.4 1]`` for a vector."""
    if action.size == 0:  # a dataset curated with raw_values: false
        return "n/a (no raw values)"
    if action.size == 1:
        return number_text(float(action[0]))
    return "[" + " ".join(number_text(float(a)) for a in action) + "]"


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` cut (with "...") to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _captions(episode: ViewedEpisode, steps: int) -> list[list[str]]:
    """Per drawn step, the parts of its caption: step, reward, return so far, action, and
    the text observation (a BabyAI mission) for a task with one."""
    returns = np.cumsum(episode.rewards)
    texts = episode.texts if any(episode.texts) else None
    return [
        [
            f"step {t}/{episode.length - 1}",
            f"reward {number_text(episode.rewards[t])}",
            f"return {number_text(returns[t])}",
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


def frames(episode: ViewedEpisode, steps: int, min_side: int) -> Iterator[np.ndarray]:
    """The annotated frames of the first ``steps`` steps: (H', W', 3) uint8, H' and W' even.

    The picture (the image leaves side by side, scaled up by a whole factor until its
    longer side reaches ``min_side``, nearest neighbour so pixels stay sharp) sits on
    a black band that says the step, its reward, the return so far and the action taken
    at that step (and the text observation, for a task with one). The band has the same
    height on every frame: a video's frames share one size.
    """
    from PIL import Image, ImageDraw, ImageFont

    strip = _side_by_side(episode.images)  # (T, H, W, 3)
    height, width = strip.shape[1:3]
    scale = max(1, math.ceil(min_side / max(height, width)))
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
