"""`kibble export --format minari`: real curated datasets, read back by the real `minari`."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kibble.cli import app
from kibble.errors import KibbleError
from kibble.experts.card import ReturnStats, RolloutSettings, make_card, write_card
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.reading.export import export_dataset
from kibble.reading.export_minari import dataset_id

CARTPOLE, PENDULUM = "gym/CartPole-v1", "gym/Pendulum-v1"
EXPERT_RETURN = 200.0  # the card's stated expert return (see the fixture)


class PixelsEnv(gym.Env):
    """A Dict observation with an RGB image and a state vector, a MultiDiscrete action."""

    def __init__(self, channels: int = 3):
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (32, 32, channels), np.uint8),
                "state": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            }
        )
        self.action_space = gym.spaces.MultiDiscrete([3, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._observation(), {}

    def step(self, action):
        self._t += 1
        return self._observation(), float(action[0]), self._t >= 4, False, {}

    def _observation(self) -> dict:
        # A smooth picture (a gradient that brightens each step), as camera images are.
        ramp = np.linspace(0, 200, 32)[:, None, None] + 10 * self._t
        shape = self.observation_space["pixels"].shape
        pixels = np.broadcast_to(ramp, shape).astype(np.uint8)
        state = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return {"pixels": pixels, "state": state}


gym.register("KibbleTestPixels-v0", entry_point=PixelsEnv)
gym.register("KibbleTestGray-v0", entry_point=PixelsEnv, kwargs={"channels": 1})
gym.register("KibbleTestRGBA-v0", entry_point=PixelsEnv, kwargs={"channels": 4})


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    """CartPole with an expert card, Pendulum without: both kept whole (fraction 0.01)."""
    root = tmp_path_factory.mktemp("export")
    # A card for an expert better than random (training one takes minutes): the random
    # policy's returns are measured, the expert's stated.
    card = make_card(CARTPOLE, "random", RolloutSettings(episodes=2))
    card = dataclasses.replace(
        card, expert_return=ReturnStats(mean=EXPERT_RETURN, std=0.0, min=200.0, max=200.0)
    )
    write_card(card, root / "card.json")
    jobs = [
        TaskJob(CARTPOLE, "random", 4, card=str(root / "card.json")),
        TaskJob(PENDULUM, "random", 2, max_steps=30),
    ]
    curate_tasks("demo", jobs, root / "ds", seed=0, fraction=0.01)
    return root


def parquet_rows(ds: Path, task: str) -> list[dict]:
    path = ds / "data" / task.replace("/", "__") / "part-00000.parquet"
    return pq.read_table(path).to_pylist()


def test_minari_loads_each_task_with_raw_values_and_ref_scores(curated, tmp_path, monkeypatch):
    result = export_dataset(curated / "ds", "minari", tmp_path / "out")
    assert [t.task for t in result.tasks] == [CARTPOLE, PENDULUM]
    card_random = minari_ref = None

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "out"))
    assert set(minari.list_local_datasets()) == {t.dataset_id for t in result.tasks}
    for exported in result.tasks:
        ds = minari.load_dataset(exported.dataset_id)
        rows = parquet_rows(curated / "ds", exported.task)
        ids = list(dict.fromkeys(r["episode_id"] for r in rows))
        # Every kept episode, each without its last step (no observation after it).
        assert ds.total_episodes == len(ids) == exported.episodes
        assert ds.total_steps == len(rows) - len(ids) == exported.steps
        episodes = list(ds.iterate_episodes())
        for episode, episode_id in zip(episodes, ids, strict=True):
            mine = [r for r in rows if r["episode_id"] == episode_id]
            t = len(mine)
            assert len(episode.observations) == t and len(episode.actions) == t - 1
            # A raw observation, action and reward equal the Parquet values.
            observation = episode.observations[3].astype(np.float64)
            assert np.array_equal(observation, mine[3]["observation"])
            assert np.array_equal(
                np.asarray(episode.actions[2], np.float64).reshape(-1), mine[2]["action"]
            )
            assert episode.rewards.tolist() == [r["reward"] for r in mine[:-1]]
            assert episode.terminations.tolist() == [r["terminated"] for r in mine[:-1]]
            # The last step lives in the episode's metadata.
            (meta,) = ds.storage.get_episode_metadata([episode.id])
            last = meta["kibble_last_step"]
            assert meta["kibble_episode_id"] == episode_id and meta["kibble_episode_length"] == t
            assert last["reward"] == mine[-1]["reward"]
            last_action = np.asarray(last["action"], np.float64).reshape(-1)
            assert np.array_equal(last_action, mine[-1]["action"])
            assert (last["terminated"], last["truncated"]) == (
                mine[-1]["terminated"],
                mine[-1]["truncated"],
            )
            # The recorded reset seed reproduces the episode's first observation.
            env = gym.make(exported.task.split("/", 1)[1])
            first, _ = env.reset(seed=meta["seed"])
            assert np.array_equal(first, episode.observations[0])
        native = gym.make(exported.task.split("/", 1)[1])
        assert ds.observation_space == native.observation_space
        assert ds.action_space == native.action_space
        assert ds.recover_environment().spec.id == native.spec.id
        if exported.task == CARTPOLE:
            card_random = ds.storage.metadata["ref_min_score"]
            minari_ref = ds.storage.metadata["ref_max_score"]
            returns = np.array([EXPERT_RETURN, card_random])
            assert minari.get_normalized_score(ds, returns).tolist() == [1.0, 0.0]
        else:  # no card: no random-policy return, so no ref scores
            assert "ref_min_score" not in ds.storage.metadata
            with pytest.raises(ValueError, match="Reference score not provided"):
                minari.get_normalized_score(ds, np.array([1.0]))
            assert any("without an expert card" in n for n in exported.notes)
    # The ref scores are the card's (through the manifest).
    manifest_task = minari.MinariDataset(result.tasks[0].path).storage.metadata
    assert (card_random, minari_ref) == (
        manifest_task["ref_min_score"],
        EXPERT_RETURN,
    )
    assert result.tasks[0].ref_min_score == card_random < EXPERT_RETURN


@pytest.mark.parametrize("channels", [3, 1])
def test_dict_spaces_and_images_round_trip_through_minari(tmp_path, channels):
    task = "gym/KibbleTestPixels-v0" if channels == 3 else "gym/KibbleTestGray-v0"
    curate_tasks("px", [TaskJob(task, "random", 2)], tmp_path / "ds", seed=0, fraction=0.01)
    (exported,) = export_dataset(tmp_path / "ds", "minari", tmp_path / "out").tasks
    ds = minari.MinariDataset(exported.path)  # the folder, without MINARI_DATASETS_PATH
    native = PixelsEnv(channels).observation_space
    # Minari's JPEG refuses (H, W, 1): a grayscale leaf is declared as (H, W), and said so.
    pixels = (32, 32, 3) if channels == 3 else (32, 32)
    assert ds.observation_space["pixels"].shape == pixels
    assert ds.observation_space["state"] == native["state"]
    assert any("stored as (H, W)" in n for n in exported.notes) == (channels == 1)
    episode = next(ds.iterate_episodes())
    rows = parquet_rows(tmp_path / "ds", task)[:4]
    assert episode.observations["pixels"].shape == (4, *pixels)
    state = np.stack([r["observation"] for r in rows])
    assert np.array_equal(episode.observations["state"].astype(np.float64), state)
    actions = np.stack([r["action"] for r in rows[:3]])
    assert np.array_equal(episode.actions.astype(np.float64), actions)
    # Minari keeps images as JPEG: close to the stored pixels, not equal (documented).
    stored = np.frombuffer(rows[0]["images"][0], np.uint8).reshape(pixels)
    error = np.abs(episode.observations["pixels"][0].astype(int) - stored)
    assert 0 < error.mean() < 2 and error.max() < 16


def fails(args: list[str]) -> str:
    """Run ``kibble ARGS``; assert one ``kibble: error:`` paragraph and exit 1; return it."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    error = result.stderr[result.stderr.find("kibble: error: ") :].strip()
    assert error.startswith("kibble: error: ") and "\n" not in error, result.stderr
    return error


def test_bad_inputs_are_one_paragraph_errors_and_write_nothing(curated, tmp_path):
    ds, out = str(curated / "ds"), tmp_path / "out"
    error = fails(["export", ds, "--format", "hdf5", "--out", str(out)])
    assert "unknown export format 'hdf5'" in error and "minari" in error
    assert "torch" in fails(["export", ds, "--format", "lerobot", "--out", str(out)])
    error = fails(["export", ds, "--out", str(out), "--episode", f"{CARTPOLE}#s0#000099"])
    assert "no kept episode" in error and f"closest kept ones: {CARTPOLE}#s0#00000" in error
    error = fails(["export", ds, "--out", str(out), "--task", "gym/Nope-v0"])
    assert "not a task of the dataset" in error
    assert not out.exists() and not list(tmp_path.iterdir())
    out.mkdir()
    assert "already exists" in fails(["export", ds, "--out", str(out)])
    assert not list(out.iterdir())
    assert "an export writes to a local path" in fails(["export", ds, "--out", "gs://b/x"])

    curate_tasks(
        "raw",
        [TaskJob(CARTPOLE, "random", 2, raw_values=False)],
        tmp_path / "noraw",
        seed=0,
        fraction=0.01,
    )
    error = fails(["export", str(tmp_path / "noraw"), "--out", str(tmp_path / "o2")])
    assert "without raw values" in error
    curate_tasks(
        "rgba",
        [TaskJob("gym/KibbleTestRGBA-v0", "random", 1)],
        tmp_path / "rgba",
        seed=0,
        fraction=0.01,
    )
    error = fails(["export", str(tmp_path / "rgba"), "--out", str(tmp_path / "o3")])
    assert "gym/KibbleTestRGBA-v0: Minari cannot represent" in error and "(32, 32, 4)" in error
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_one_episode_of_one_task(curated, tmp_path):
    episode_id = f"{CARTPOLE}#s0#000002"
    result = CliRunner().invoke(
        app, ["export", str(curated / "ds"), "--out", str(tmp_path / "o"), "--episode", episode_id]
    )
    assert result.exit_code == 0, result.output
    assert dataset_id(CARTPOLE, "demo") in result.output and PENDULUM not in result.output
    ds = minari.MinariDataset(tmp_path / "o" / dataset_id(CARTPOLE, "demo") / "data")
    assert ds.total_episodes == 1
    (meta,) = ds.storage.get_episode_metadata([0])
    assert meta["kibble_episode_id"] == episode_id


def test_a_killed_export_leaves_nothing_at_the_output(curated, tmp_path):
    out = tmp_path / "out"
    kibble = Path(sys.executable).with_name("kibble")
    env = {**os.environ, "KIBBLE_FAULT": "publish:staged"}  # SIGKILL once all is written
    done = subprocess.run(
        [str(kibble), "export", str(curated / "ds"), "--out", str(out)], env=env, timeout=300
    )
    assert done.returncode == -9
    assert not out.exists()
    left = sorted(p.name.split("-")[0] for p in tmp_path.iterdir())
    assert left == [".out.lock", ".out.staging"]  # beside the output, never at it
    # The next export to the path removes what the killed one left, and completes.
    export_dataset(curated / "ds", "minari", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(KibbleError, match="already exists"):
        export_dataset(curated / "ds", "minari", out)
