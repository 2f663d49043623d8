"""Frames (each (H, W, 3) uint8) encoded as a video: an animated GIF or an H.264 MP4.

Pillow writes GIFs (``kibble[view]``). MP4s are encoded by the ffmpeg executable that
the ``imageio-ffmpeg`` wheel ships (``kibble[view]``), or one on ``PATH``; frames stream
into it one at a time.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from kibble.errors import KibbleError


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
