"""`kibble view` and the dataset card's episode pictures, on a small real dataset.

One dataset of two tasks (procgen/starpilot with 64x64 RGB frames, gym/CartPole-v1
without images), curated with random experts, and one of one task (BabyAI: a Dict
observation of named leaves); every output is decoded again.
"""

import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kibble.errors import KibbleError
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.publish import check_output
from kibble.pipelines.stages import TaskJob
from kibble.reading.video import ffmpeg_executable
from kibble.reading.view_plots import plot_figure
from kibble.reading.viewed_episode import load_episode
from kibble.reading.viewer import CARD_VIEW, ViewConfig, view_episode
from kibble.schemas.reader import CuratedDataset

STARPILOT, CARTPOLE, BABYAI = "procgen/starpilot", "gym/CartPole-v1", "babyai/GoToObj-v0"


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("view") / "ds"
    jobs = [TaskJob(STARPILOT, "random", 3, max_steps=20), TaskJob(CARTPOLE, "random", 3)]
    curate_tasks("t", jobs, out, num_envs=2)
    return out


@pytest.fixture(scope="module")
def babyai(tmp_path_factory):
    """One task, observations {direction: Discrete(4), image: 7x7x3 grid, mission: text}."""
    out = tmp_path_factory.mktemp("view") / "babyai"
    curate_tasks("b", [TaskJob(BABYAI, "bot", 2)], out, num_envs=1)
    return out


def first_episode(ds, task):
    return next(CuratedDataset(ds).episodes(task))


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
    return frames


def picture_error(frame: np.ndarray, image: np.ndarray, scale: int) -> float:
    """Mean absolute difference between a frame's picture area and the image scaled up."""
    big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1).astype(np.int16)
    return float(np.abs(frame[: big.shape[0], : big.shape[1]].astype(np.int16) - big).mean())


def test_a_gif_has_one_frame_per_step_showing_the_episode(ds, tmp_path):
    ep = first_episode(ds, STARPILOT)
    view = view_episode(ds, STARPILOT, tmp_path / "ep.gif")
    frames = gif_frames(tmp_path / "ep.gif")
    assert len(frames) == ep.length == view.length == view.drawn
    # 64x64 frames scaled 4x to 256 wide, a text band below; even sides.
    assert frames[0].shape[1] == 256 and frames[0].shape[0] > 256
    assert frames[0].shape[0] % 2 == 0
    image = ep.images[0]  # (T, 64, 64, 3)
    for t in (0, ep.length - 1):
        assert picture_error(frames[t], image[t], 4) < 6  # GIF palette rounding only
    assert picture_error(frames[0], image[-1], 4) > picture_error(frames[0], image[0], 4)
    assert list(tmp_path.iterdir()) == [tmp_path / "ep.gif"]  # no temp file left


def test_an_mp4_decodes_to_one_frame_per_step(ds, tmp_path):
    cv2 = pytest.importorskip("cv2")  # an independent decoder (OpenCV's own FFmpeg)
    if ffmpeg_executable() is None:
        pytest.skip("no ffmpeg: install kibble[view]")
    ep = first_episode(ds, STARPILOT)
    view_episode(ds, STARPILOT, tmp_path / "ep.mp4", episode_id=ep.episode_id)
    video = cv2.VideoCapture(str(tmp_path / "ep.mp4"))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])  # BGR -> RGB
    assert len(frames) == ep.length
    assert frames[0].shape[1] == 256
    assert picture_error(frames[-1], ep.images[0][-1], 4) < 25  # H.264 is lossy


def test_max_frames_cuts_the_video(ds, tmp_path):
    view = view_episode(ds, STARPILOT, tmp_path / "ep.gif", config=ViewConfig(max_frames=3))
    assert len(gif_frames(tmp_path / "ep.gif")) == view.drawn == 3


def test_the_command_draws_max_frames_and_still_takes_its_old_name(ds, tmp_path):
    from kibble.cli import app

    for flag in ("--max-frames", "--max-steps"):
        out = tmp_path / f"{flag[2:]}.gif"
        args = ["view", str(ds), "--task", STARPILOT, "--out", str(out), flag, "3"]
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 0, done.output
        assert "(the first 3 drawn)" in done.stdout and len(gif_frames(out)) == 3
    assert "--max-steps is deprecated; use --max-frames" in done.stderr
    args = ["view", str(ds), "--task", STARPILOT, "--out", str(tmp_path / "x.gif")]
    done = CliRunner().invoke(app, [*args, "--max-frames", "3", "--max-steps", "4"])
    assert done.exit_code == 1 and "disagree" in done.output
    shown = CliRunner().invoke(app, ["view", "--help"], terminal_width=200).output
    assert "--max-frames" in shown and "--max-steps" not in shown  # the old name is hidden


def test_the_task_may_be_left_out_when_the_dataset_has_one(ds, babyai, tmp_path):
    from kibble.cli import app

    done = CliRunner().invoke(app, ["view", str(babyai), "--out", str(tmp_path / "ep.png")])
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"{BABYAI}: episode ")
    done = CliRunner().invoke(app, ["view", str(ds), "--out", str(tmp_path / "x.png")])
    assert done.exit_code == 1
    tasks = ", ".join(CuratedDataset(ds).task_ids)  # both, in the manifest's order
    assert f"has 2 tasks ({tasks}): give the one to view with --task" in done.output
    assert list(tmp_path.iterdir()) == [tmp_path / "ep.png"]


def legends(episode) -> dict[str, list[str]]:
    """Per panel of the episode's plot (by its y label), the labels of its legend."""
    fig = plot_figure(episode, episode.length)
    try:
        return {
            ax.get_ylabel(): [t.get_text() for t in ax.get_legend().get_texts()]
            if ax.get_legend()
            else []
            for ax in fig.axes
        }
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_plot_legends_name_the_leaves_of_the_space(ds, babyai):
    # A Dict observation: its keys (148 values, too many for a line each: one per leaf).
    labels = legends(load_episode(babyai, None, None))
    assert labels["observation"] == ["direction", "image (147 values)"]
    assert labels["action"] == labels["reward"] == []  # one value: the y label says it
    # A Box is one leaf without names: its values by index.
    labels = legends(load_episode(ds, CARTPOLE, None))
    assert labels["observation"] == [f"observation[{i}]" for i in range(4)]


def test_a_task_without_images_is_plotted(ds, tmp_path):
    ep = first_episode(ds, CARTPOLE)
    view = view_episode(ds, CARTPOLE, tmp_path / "ep.png")
    assert (view.episode_id, view.length) == (ep.episode_id, ep.length)
    with Image.open(tmp_path / "ep.png") as im:
        im.load()
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300


def test_a_given_episode_id_is_the_one_drawn(ds, tmp_path):
    episodes = list(CuratedDataset(ds).episodes(STARPILOT))
    last = episodes[-1]
    view = view_episode(ds, STARPILOT, tmp_path / "ep.gif", episode_id=last.episode_id)
    assert view.episode_id == last.episode_id
    assert len(gif_frames(tmp_path / "ep.gif")) == last.length


def test_the_card_links_one_picture_per_task(ds):
    card = (ds / "README.md").read_text()
    gif, png = ds / "views" / "procgen__starpilot.gif", ds / "views" / "gym__CartPole-v1.png"
    assert "(views/procgen__starpilot.gif)" in card and "(views/gym__CartPole-v1.png)" in card
    ep = first_episode(ds, STARPILOT)
    assert len(gif_frames(gif)) == min(ep.length, CARD_VIEW.max_frames)
    with Image.open(png) as im:
        im.load()
    check_output(ds)  # views/ is part of the layout: a rerun may replace this dataset


def _error(ds, tmp_path, out, **kwargs) -> str:
    with pytest.raises(KibbleError) as e:
        view_episode(ds, kwargs.pop("task", STARPILOT), tmp_path / out, **kwargs)
    return str(e.value)


def test_an_episode_id_that_does_not_exist(ds, tmp_path):
    message = _error(ds, tmp_path, "x.gif", episode_id="procgen/starpilot#s0#999999")
    assert "is not a kept episode of procgen/starpilot" in message
    assert "procgen/starpilot#s0#0000" in message  # what ids look like
    assert list(tmp_path.iterdir()) == []


def test_a_rejected_episode_says_why(ds, tmp_path):
    kept = {e.episode_id for e in CuratedDataset(ds).episodes(STARPILOT)}
    rejected = next(i for i in (f"{STARPILOT}#s0#{k:06d}" for k in range(3)) if i not in kept)
    assert "it was rejected (below_threshold" in _error(ds, tmp_path, "x.gif", episode_id=rejected)


def test_an_output_that_exists_is_left_alone(ds, tmp_path):
    (tmp_path / "x.gif").write_bytes(b"mine")
    assert "already exists" in _error(ds, tmp_path, "x.gif")
    assert (tmp_path / "x.gif").read_bytes() == b"mine"


@pytest.mark.parametrize("name", ["x.avi", "x", "x.jpeg"])
def test_an_unknown_extension(ds, tmp_path, name):
    message = _error(ds, tmp_path, name)
    assert (
        "give a file name ending in .mp4 or .gif (a video of the episode's images) or .png ("
        in (message)
    )


def test_an_output_that_cannot_be_written(ds, tmp_path):
    assert "the directory" in _error(ds, tmp_path, "no/such/dir/x.gif")
    with pytest.raises(KibbleError, match="kibble view writes to a local path"):
        view_episode(ds, STARPILOT, "gs://bucket/x.gif")


def test_a_video_of_a_task_without_images(ds, tmp_path):
    assert "has no image observations" in _error(ds, tmp_path, "x.gif", task=CARTPOLE)
    assert list(tmp_path.iterdir()) == []


def test_the_command_prints_what_it_drew_and_errors_are_one_paragraph(ds, tmp_path):
    from kibble.cli import app

    out = tmp_path / "ep.png"
    done = CliRunner().invoke(app, ["view", str(ds), "--task", CARTPOLE, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert re.match(
        rf"{CARTPOLE}: episode \S+#s0#\d{{6}}, return \S+, \d+ steps; wrote ", done.output
    )
    for args in (["--out", str(out)], ["--out", str(tmp_path / "x.gif"), "--episode", "nope"]):
        done = CliRunner().invoke(app, ["view", str(ds), "--task", CARTPOLE, *args])
        assert done.exit_code == 1
        assert done.output.startswith("kibble: error: ") and "Traceback" not in done.output
        assert done.output.strip().count("\n") == 0, done.output  # one paragraph
