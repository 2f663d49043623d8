"""The dataset reader: manifest facts, episodes as stored, raw values, bounded reads, errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from gymnasium import spaces

from kibble.errors import KibbleError
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob, tokenize_episode
from kibble.schemas.arrow import tokenized_episode_to_table
from kibble.schemas.layout import TaskEntry
from kibble.schemas.raw_values import describe_space
from kibble.schemas.reader import CuratedDataset, EpisodeRecord
from kibble.schemas.records import Episode
from kibble.tokenize.episode import EpisodeTokenizer

CARTPOLE, COINRUN, BABYAI = "gym/CartPole-v1", "procgen/coinrun", "babyai/PickupLoc-v0"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Vectors (CartPole), images (coinrun), a Dict with a grid and a text mission (BabyAI)."""
    out = tmp_path_factory.mktemp("reader") / "mixed"
    jobs = [
        TaskJob(CARTPOLE, "random", 6),
        TaskJob(COINRUN, "random", 2, max_steps=12),
        TaskJob(BABYAI, "bot", 2),
    ]
    curate_tasks("mixed", jobs, out, fraction=0.05)
    return out


def _rows(dataset: Path) -> dict[str, list[dict]]:
    """Every kept row, grouped by episode id, read with plain pyarrow."""
    episodes: dict[str, list[dict]] = {}
    for path in sorted((dataset / "data").rglob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            episodes.setdefault(row["episode_id"], []).append(row)
    return episodes


def test_manifest_facts_are_the_manifest(mixed):
    manifest = json.loads((mixed / "manifest.json").read_text())
    ds = CuratedDataset(mixed)
    assert ds.name == manifest["name"] == "mixed"
    assert ds.schema_version == manifest["schema_version"]
    assert ds.kibble_version == manifest["kibble_version"]
    assert ds.config == manifest["config"]
    assert ds.files == manifest["files"]
    assert ds.task_ids == list(manifest["tasks"])
    for task, entry in manifest["tasks"].items():
        assert ds.task(task) == TaskEntry.from_dict(entry)
        assert ds.task(task).threshold == entry["threshold"]
    assert ds.num_episodes == sum(t["kept"] for t in manifest["tasks"].values())
    assert ds.num_steps == sum(t["steps"] for t in manifest["tasks"].values())
    assert ds.cards == {task: None for task in manifest["tasks"]}  # curated without cards
    assert isinstance(ds.observation_space(BABYAI), spaces.Dict)
    assert ds.action_space(CARTPOLE) == spaces.Discrete(2)
    assert f"{CARTPOLE}: kept 6 of 6" in ds.summary()


def test_episodes_are_the_stored_episodes(mixed):
    ds = CuratedDataset(mixed)
    rows = _rows(mixed)
    records = list(ds.episodes())
    assert [r.episode_id for r in records] == list(rows)  # every episode once, in file order
    for task, entry in ds.tasks.items():
        mine = [r for r in records if r.task == task]
        assert len(mine) == entry.kept
        assert sum(r.length for r in mine) == entry.steps
    for record in records:
        stored = rows[record.episode_id]
        assert record.length == len(stored) == stored[0]["episode_length"]
        assert record.rewards.tolist() == [r["reward"] for r in stored]
        assert record.episode_return == stored[0]["episode_return"]
        assert record.episode_return == pytest.approx(record.rewards.sum())
        assert record.terminated.tolist() == [r["terminated"] for r in stored]
        assert record.truncated.tolist() == [r["truncated"] for r in stored]
        assert [t.tolist() for t in record.observation_tokens] == [
            r["observation_tokens"] for r in stored
        ]
        assert [t.tolist() for t in record.action_tokens] == [r["action_tokens"] for r in stored]
        assert record.observation.tolist() == [r["observation"] for r in stored]
        assert record.action.tolist() == [r["action"] for r in stored]
        assert record.texts == [r["texts"] for r in stored]
        assert record.observation_tokens[0].dtype == np.int32
        assert record.rewards.dtype == np.float64 and record.observation.dtype == np.float64


def test_images_are_the_stored_pixels(mixed):
    records = list(CuratedDataset(mixed).episodes(COINRUN))
    assert len(records) == 2  # the second starts mid-file
    for record in records:
        stored = _rows(mixed)[record.episode_id]
        (frames,) = record.images
        assert frames.shape == (record.length, 64, 64, 3) and frames.dtype == np.uint8
        for t, row in enumerate(stored):
            assert frames[t].tobytes() == row["images"][0]
        assert record.native_observation().shape == (record.length, 64, 64, 3)


def test_native_leaves_of_a_dict_observation_with_text(mixed):
    ds = CuratedDataset(mixed)
    space = ds.observation_space(BABYAI)
    for record in ds.episodes(BABYAI):
        obs = record.native_observation()
        assert set(obs) == set(space.spaces)
        assert obs["direction"].dtype == space["direction"].dtype
        assert obs["image"].shape == (record.length, *space["image"].shape)
        assert list(obs["mission"]) == [step[0] for step in record.texts]
        assert obs["mission"][0].startswith("pick up ")
        for t in range(record.length):
            step = {k: v[t] for k, v in obs.items()}
            assert space.contains(step)
        action = record.native_action()
        assert action.shape == (record.length,) and action.dtype == ds.action_space(BABYAI).dtype


def test_a_task_filter_and_an_unknown_task(mixed):
    ds = CuratedDataset(mixed)
    records = list(ds.episodes(CARTPOLE))
    assert len(records) == ds.task(CARTPOLE).kept and {r.task for r in records} == {CARTPOLE}
    with pytest.raises(KibbleError, match=r"gym/Nope-v0 is not a task of the dataset .*gym/Cart"):
        ds.episodes("gym/Nope-v0")  # at the call, before anything is read
    with pytest.raises(KibbleError, match="is not a task of the dataset"):
        ds.task("gym/Nope-v0")


def test_episodes_spanning_row_groups_read_whole(mixed, tmp_path):
    # Tiny row groups: episodes cross group boundaries, and records come out the same.
    copy = tmp_path / "small_groups"
    shutil.copytree(mixed, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for entry in manifest["files"]:
        path = copy / entry["path"]
        if entry["path"].startswith("data/"):
            pq.write_table(pq.read_table(path), path, row_group_size=5)
            entry["bytes"] = path.stat().st_size
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert pq.ParquetFile(next((copy / "data").rglob("*.parquet"))).num_row_groups > 3
    before = list(CuratedDataset(mixed).episodes())
    after = list(CuratedDataset(copy).episodes())
    assert [r.episode_id for r in after] == [r.episode_id for r in before]
    for a, b in zip(after, before, strict=True):
        assert a.length == b.length and (a.rewards == b.rewards).all()
        assert np.array_equal(a.observation, b.observation)
        assert [x.tolist() for x in a.observation_tokens] == [
            x.tolist() for x in b.observation_tokens
        ]
        assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))


def test_a_damaged_data_file_is_named(mixed, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(mixed, copy)
    path = next((copy / "data").rglob("*.parquet"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(KibbleError, match=rf"{path.name} does not match its manifest"):
        list(CuratedDataset(copy).episodes())


def test_not_a_dataset_and_another_schema_version(mixed, tmp_path):
    with pytest.raises(KibbleError, match=r"nothing"):  # the path, named
        CuratedDataset(tmp_path / "nothing")
    copy = tmp_path / "old"
    shutil.copytree(mixed, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = "1"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KibbleError, match="an older kibble wrote it"):
        CuratedDataset(copy)


def test_a_dataset_without_raw_values(tmp_path):
    out = tmp_path / "tokens_only"
    curate_tasks(
        "tokens_only", [TaskJob(CARTPOLE, "random", 2, raw_values=False)], out, fraction=0.05
    )
    (record, *_) = CuratedDataset(out).episodes()
    assert record.observation.shape == (record.length, 0)
    assert record.action.shape == (record.length, 0)
    assert record.texts == [[]] * record.length
    assert not record.has_raw_values
    with pytest.raises(KibbleError, match="without raw values"):
        record.native_observation()


def test_padded_images_are_cut_to_their_own_size():
    # docs/format.md section 7's example: a 20x30 image is stored padded to 32x32.
    obs_space = spaces.Dict(
        pixels=spaces.Box(0, 255, (20, 30, 3), np.uint8), state=spaces.Box(-1, 1, (2,))
    )
    act_space = spaces.Discrete(3)
    rng = np.random.default_rng(0)
    t = 4
    observations = {
        "pixels": rng.integers(0, 256, (t, 20, 30, 3), dtype=np.uint8),
        "state": rng.uniform(-1, 1, (t, 2)).astype(np.float32),
    }
    episode = Episode(
        "test/pixels", "test/pixels#s0#000000", observations, np.array([0, 2, 1, 0]),
        np.ones(t), np.zeros(t, bool), np.zeros(t, bool),
    )  # fmt: skip
    tokenized = tokenize_episode(episode, EpisodeTokenizer(obs_space, act_space))
    table = tokenized_episode_to_table(tokenized)
    stored = EpisodeRecord.from_table(table)
    assert stored.images[0].shape == (t, 32, 32, 3)  # without the space: as stored
    described = EpisodeRecord.from_table(
        table, describe_space(obs_space, "observation"), describe_space(act_space, "action")
    )
    assert described.images[0].shape == (t, 20, 30, 3)
    native = described.native_observation()
    assert np.array_equal(native["pixels"], observations["pixels"])
    assert np.array_equal(native["state"], observations["state"])
    assert native["state"].dtype == np.float32
    assert described.native_action().tolist() == [0, 2, 1, 0]
