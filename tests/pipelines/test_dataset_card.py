"""A curated folder is a Hugging Face dataset as it is: the card's front matter declares
its configurations, the real `datasets` library loads each, and the card's snippet runs
from any working directory. `kibble inspect` shows columns and a sample row per task."""

import json
import os
import re

import gymnasium as gym
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from kibble.pipelines.dataset_card import task_configs
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.reading.inspection import inspect_dataset, sample_values
from kibble.schemas.arrow import REJECTED_EPISODE_SCHEMA, TOKENIZED_EPISODE_SCHEMA
from kibble.schemas.layout import task_entries

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before `datasets` is first imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")
datasets = pytest.importorskip("datasets")


class PixelsEnv(gym.Env):
    """Five steps of a 20x30 RGB frame and a 2-value state: an image leaf in the rows."""

    observation_space = gym.spaces.Dict(
        pixels=gym.spaces.Box(0, 255, (20, 30, 3), np.uint8),
        state=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    )
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        return self.observation_space.sample(), 1.0, self._t == 5, False, {}


gym.register("KibbleTestPixels-v0", entry_point=PixelsEnv)

JOBS = [
    TaskJob("gym/CartPole-v1", "random", 6),
    TaskJob("gym/KibbleTestPixels-v0", "random", 2),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("card") / "ds"
    curate_tasks("card-test", JOBS, out)
    return out


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """`datasets` offline, its cache under tmp_path (never the dataset or the repository),
    whether or not another test imported it first."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path / "hf-cache"


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_load_dataset_reads_kept_steps_by_default_and_rejected_as_a_config(folder, offline):
    before = _files(folder)
    manifest = _manifest(folder)
    tasks = task_entries(manifest)
    steps = datasets.load_dataset(str(folder), cache_dir=str(offline))
    assert list(steps) == ["train"]
    assert steps["train"].num_rows == sum(t.steps for t in tasks.values()) > 0
    assert steps["train"].column_names == TOKENIZED_EPISODE_SCHEMA.names
    rejected = datasets.load_dataset(str(folder), "rejected", split="train", cache_dir=str(offline))
    assert rejected.num_rows == sum(sum(t.rejected.values()) for t in tasks.values()) > 0
    assert rejected.column_names == REJECTED_EPISODE_SCHEMA.names
    assert set(rejected["reason"]) == {"below_threshold"}
    assert _files(folder) == before  # nothing written into the dataset


def test_a_dataset_that_rejected_nothing_has_no_rejected_config(tmp_path, offline):
    # fraction 0.01 keeps every random CartPole episode: rejected/ has 0 rows, and
    # `datasets` cannot build an empty split (it raised "corresponds to no data").
    out = tmp_path / "all-kept"
    manifest = curate_tasks("all", [TaskJob("gym/CartPole-v1", "random", 3)], out, fraction=0.01)
    assert task_entries(manifest)["gym/CartPole-v1"].rejected == {}
    card = (out / "README.md").read_text()
    assert "config_name: rejected" not in card and "nothing was rejected" in card
    with pytest.raises(ValueError, match="BuilderConfig 'rejected' not found"):
        datasets.load_dataset(str(out), "rejected", split="train", cache_dir=str(offline))
    steps = datasets.load_dataset(str(out), split="train", cache_dir=str(offline))
    assert steps.num_rows == task_entries(manifest)["gym/CartPole-v1"].steps


def test_each_task_with_kept_rows_is_a_config(folder, offline):
    manifest = _manifest(folder)
    assert task_configs(manifest) == {
        "gym__CartPole-v1": "gym/CartPole-v1",
        "gym__KibbleTestPixels-v0": "gym/KibbleTestPixels-v0",
    }
    for name, task in task_configs(manifest).items():
        one = datasets.load_dataset(str(folder), name, split="train", cache_dir=str(offline))
        assert set(one["task"]) == {task}
        assert one.num_rows == task_entries(manifest)[task].steps


def test_the_card_front_matter_and_columns(folder):
    card = (folder / "README.md").read_text()
    head, sep, body = card.removeprefix("---\n").partition("\n---\n")
    assert sep and card.startswith("---\n")
    meta = yaml.safe_load(head)
    assert meta["license"] and meta["task_categories"] == ["reinforcement-learning"]
    assert "kibble" in meta["tags"]
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert configs["default"]["default"] is True
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/*/*.parquet"}]
    assert configs["rejected"]["data_files"] == [{"split": "train", "path": "rejected/*.parquet"}]
    for schema in (TOKENIZED_EPISODE_SCHEMA, REJECTED_EPISODE_SCHEMA):
        for name in schema.names:  # every column, with a meaning
            (row,) = [line for line in body.splitlines() if line.startswith(f"| `{name}` |")][:1]
            assert "(not described)" not in row, row
    assert "hf upload USER/NAME DATASET_DIR . --repo-type dataset" in body
    assert "huggingface-cli upload" in body


def test_the_card_snippet_runs_from_another_directory(folder, offline, tmp_path, monkeypatch):
    card = (folder / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", card, re.S)
    assert 'DATASET_DIR = "' in snippet
    snippet = re.sub(r'DATASET_DIR = "[^"]*"', f"DATASET_DIR = {str(folder)!r}", snippet)
    monkeypatch.chdir(tmp_path)  # not the dataset: the card's paths must not be relative
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    steps = sum(t.steps for t in task_entries(_manifest(folder)).values())
    assert scope["table"].num_rows == len(scope["steps"]) == steps
    assert len(scope["one_task"]) < steps and len(scope["rejected"]) > 0


def test_inspect_lists_columns_and_one_sample_row_per_task(folder):
    report = inspect_dataset(folder, quick=True)
    assert [name for name, _ in report.columns["data"]] == TOKENIZED_EPISODE_SCHEMA.names
    assert dict(report.columns["data"])["image_shapes"] == "list<list<int32>>"
    assert dict(report.columns["rejected"])["reason"] == "string"
    assert sorted(report.samples) == ["gym/CartPole-v1", "gym/KibbleTestPixels-v0"]
    rel, row = report.samples["gym/KibbleTestPixels-v0"]
    assert rel == "data/gym__KibbleTestPixels-v0/part-00000.parquet" and row["step"] == 0
    values = dict(sample_values(row))
    # 20x30 pixels padded to 32x32; a 32x32x3 frame's bytes summarised, not dumped.
    assert values["images"] == "1 image(s): 32x32x3 uint8 (3,072 bytes)"
    tokens = values["observation_tokens"]  # 4 patches + 2 state tokens: short, not cut
    assert "..." not in tokens and tokens.count(",") == 5

    from kibble.cli import app

    result = CliRunner().invoke(app, ["inspect", str(folder), "--quick"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "columns of data/" in out and "columns of rejected/" in out
    assert re.search(r"^  image_shapes +list<list<int32>>$", out, re.M)
    assert "sample row of gym/CartPole-v1" in out and "sample row of gym/KibbleTestPixels-v0" in out
    assert "32x32x3 uint8 (3,072 bytes)" in out and "\\x" not in out  # no raw bytes


def test_long_values_are_cut():
    row = {"observation_tokens": list(range(100)), "task": "x" * 500, "images": []}
    values = dict(sample_values(row))
    assert values["observation_tokens"] == "[0, 1, 2, 3, 4, 5, 6, 7, ... (100 items)]"
    assert len(values["task"]) < 70 and values["task"].endswith("...'")
    assert values["images"] == "[] (no images)"
