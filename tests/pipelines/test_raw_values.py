"""Raw values beside tokens, end to end: every family's kept rows re-tokenize bit for bit."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kibble.envs import get_task
from kibble.errors import KibbleError, SchemaError
from kibble.pipelines.config import load_config
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.schemas.layout import read_manifest
from kibble.schemas.raw_values import space_from_description, table_values
from kibble.tokenize.episode import EpisodeTokenizer

# One small task of every family kibble has (src/kibble/envs/registry.py), random experts.
TASKS = [
    "gym/CartPole-v1",
    "atari/Pong",
    "dmc/cartpole-swingup",
    "metaworld/reach-v3",
    "procgen/coinrun",
    "babyai/GoToRedBall-v0",
]


def kept_rows(out: Path, task: str) -> pa.Table:
    files = sorted((out / "data" / task.replace("/", "__")).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def episodes(table: pa.Table):
    ids = table["episode_id"].to_numpy(zero_copy_only=False)
    for episode_id in dict.fromkeys(ids):
        yield table.filter(ids == episode_id)


@pytest.fixture(scope="module")
def every_family(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "ds"
    jobs = [TaskJob(task, "random", 2, max_steps=12) for task in TASKS]
    curate_tasks("raw", jobs, out, seed=3, fraction=0.01, num_envs=2)
    return out


@pytest.mark.slow  # builds one environment of every family (about 20 s on 2 shared cores)
@pytest.mark.parametrize("task", TASKS)
def test_raw_values_retokenize_to_the_stored_tokens_bit_for_bit(every_family, task):
    manifest = json.loads((every_family / "manifest.json").read_text())
    json.dumps(manifest, allow_nan=False)  # strict JSON: infinite bounds are "inf" strings
    assert manifest["schema_version"] == "2"
    entry = manifest["tasks"][task]
    assert entry["raw_values"] is True
    obs_desc, act_desc = entry["observation_space"], entry["action_space"]
    obs_space, act_space = get_task(task).spaces()
    assert space_from_description(obs_desc) == obs_space
    assert space_from_description(act_desc) == act_space
    tokenizer = EpisodeTokenizer(obs_space, act_space)
    table = kept_rows(every_family, task)
    assert table.num_rows == entry["steps"] > 0
    for rows in episodes(table):
        obs, act = table_values(rows, obs_desc, act_desc)
        # Every leaf is back in its native dtype and shape.
        for leaf in (*obs_desc["leaves"], *act_desc["leaves"]):
            value = obs if leaf in obs_desc["leaves"] else act
            for key in leaf["path"]:
                value = value[key]
            if leaf["kind"] != "text":
                assert value.dtype == np.dtype(leaf["dtype"]), (task, leaf)
                assert value.shape == (rows.num_rows, *leaf["shape"]), (task, leaf)
        again = tokenizer.tokenize(obs, act)
        stored_obs = np.array(rows["observation_tokens"].to_pylist(), np.int32)
        stored_act = np.array(rows["action_tokens"].to_pylist(), np.int32)
        assert np.array_equal(again.observation_tokens, stored_obs), task
        assert np.array_equal(again.action_tokens, stored_act), task
        stored_images = rows["images"].to_pylist()
        for k, pixels in enumerate(again.images):  # re-padded pixels = stored bytes
            assert [r[k] for r in stored_images] == [p.tobytes() for p in pixels], task
        texts = rows["texts"].to_pylist()
        if task.startswith("babyai/"):  # the mission, the one text leaf
            assert all(len(t) == 1 and "red ball" in t[0] for t in texts)
        else:
            assert texts == [[]] * rows.num_rows


def test_raw_values_off_leaves_the_columns_empty_and_the_manifest_says_so(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "output: x\nraw_values: false\ntasks:\n"
        "  - {task: gym/CartPole-v1, expert: random, episodes: 2, max_steps: 10}\n"
        "  - {task: gym/Acrobot-v1, expert: random, episodes: 1, raw_values: true}\n"
    )
    jobs = load_config(config).tasks
    assert [j.raw_values for j in jobs] == [False, True]
    out = tmp_path / "ds"
    manifest = curate_tasks("off", jobs[:1], out)
    entry = manifest["tasks"]["gym/CartPole-v1"]
    assert entry["raw_values"] is False
    rows = kept_rows(out, "gym/CartPole-v1")
    assert rows.num_rows == entry["steps"] > 0
    for column in ("observation", "action", "texts"):
        assert rows[column].to_pylist() == [[]] * rows.num_rows
    with pytest.raises(SchemaError, match="without raw values"):
        table_values(rows, entry["observation_space"], entry["action_space"])


def test_raw_values_must_be_true_or_false(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "output: x\nraw_values: 'no'\n"
        "tasks: [{task: gym/CartPole-v1, expert: random, episodes: 1}]\n"
    )
    with pytest.raises(KibbleError, match="raw_values: expected true or false"):
        load_config(config)


def test_a_dataset_of_schema_version_1_is_refused_with_what_to_do(tmp_path):
    out = tmp_path / "ds"
    curate_tasks("old", [TaskJob("gym/CartPole-v1", "random", 1, max_steps=5)], out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["schema_version"] = "1"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KibbleError) as e:
        read_manifest(out)
    assert "schema version '1': an older kibble wrote it" in str(e.value)
    assert "kibble pipeline run" in str(e.value)
