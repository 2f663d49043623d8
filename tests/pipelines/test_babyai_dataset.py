"""BabyAI datasets: mission text in the observation tokens, the text model in the manifest,
a variable number of observation tokens per episode, and the trainer reading them."""

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from kibble.errors import KibbleError
from kibble.pipelines.config import load_config
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.tokenize.text import DEFAULT_TEXT_MODEL
from kibble.tokenize.vocab import TEXT_VOCAB_SIZE
from kibble.trainer.config import DatasetSpec, MixtureConfig
from kibble.trainer.mixture_data import MixtureData

KIBBLE = Path(sys.executable).parent / "kibble"
TASK = "babyai/PickupLoc-v0"
GRID = 1 + 7 * 7 * 3  # direction, then the 7x7x3 grid: discrete tokens before the mission


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("babyai") / "pickup"
    curate_tasks("pickup", [TaskJob(TASK, "bot", 6)], out, fraction=0.05, num_envs=2)
    return out


def _rows(dataset: Path):
    (path,) = (dataset / "data").rglob("*.parquet")
    return pq.read_table(path).to_pylist()


def test_observations_end_with_the_mission_as_text_tokens(dataset):
    sp = spm.SentencePieceProcessor(model_file=str(DEFAULT_TEXT_MODEL))
    rows = _rows(dataset)
    missions = set()
    for row in rows:
        tokens = row["observation_tokens"]
        assert row["n_observation_tokens"] == len(tokens)
        text = tokens[GRID:]
        assert text and max(text) < TEXT_VOCAB_SIZE
        mission = sp.DecodeIds(text)
        assert mission.startswith("pick up ")
        missions.add((row["episode_id"], mission))
    # One mission per episode; missions of different lengths give different token counts.
    assert len({e for e, _ in missions}) == len(missions) == 6
    assert len({r["n_observation_tokens"] for r in rows}) > 1
    # token_offset follows each episode's own count.
    for a, b in itertools.pairwise(rows):
        if b["step"]:
            assert b["token_offset"] - a["token_offset"] == a["n_observation_tokens"] + 2


def test_the_manifest_names_the_text_model(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    record = manifest["tasks"][TASK]["text_model"]
    assert record["file"] == "babyai.model"
    assert record["sha256"] == hashlib.sha256(DEFAULT_TEXT_MODEL.read_bytes()).hexdigest()
    assert record["pieces"] <= TEXT_VOCAB_SIZE


def test_the_trainer_samples_windows_of_episodes_with_different_counts(dataset):
    data = MixtureData(MixtureConfig(datasets=[DatasetSpec(str(dataset))], context=256, seed=1))
    (task,) = data.tasks
    rows = _rows(dataset)
    assert task.n_observation_tokens == max(r["n_observation_tokens"] for r in rows)
    assert task.text_model["file"] == "babyai.model"
    for _ in range(10):
        batch = data.sample_batch(4)
        assert batch.tokens.shape == (4, 256)
        assert batch.loss_mask.any()


def test_a_pipeline_run_with_a_text_model_option(tmp_path):
    config = tmp_path / "babyai.yaml"
    config.write_text(
        f"name: tiny\noutput: {tmp_path / 'out'}\ntext_model: {DEFAULT_TEXT_MODEL}\n"
        "filter: {fraction: 0.05}\n"
        "tasks:\n  - {task: babyai/GoToRedBall-v0, expert: bot, episodes: 3}\n"
    )
    done = subprocess.run(
        [str(KIBBLE), "pipeline", "run", str(config), "--direct_num_workers=1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entry = manifest["tasks"]["babyai/GoToRedBall-v0"]
    assert entry["kept"] == 3 and entry["text_model"]["file"] == "babyai.model"
    rows = _rows(tmp_path / "out")
    sp = spm.SentencePieceProcessor(model_file=str(DEFAULT_TEXT_MODEL))
    assert sp.DecodeIds(rows[0]["observation_tokens"][GRID:]) == "go to the red ball"


def test_a_text_model_that_is_not_a_model_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_text("not a model")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"output: x\ntext_model: {bad}\ntasks: [{{task: {TASK}, expert: bot, episodes: 1}}]\n"
    )
    with pytest.raises(KibbleError, match="text_model"):
        load_config(config)
    config.write_text(f"output: x\ntasks: [{{task: {TASK}, expert: bot, episodes: 1}}]\n")
    assert load_config(config).tasks[0].text_model is None  # the shipped model
