"""`kibble rollout`'s curation, end to end on real environments (small sizes)."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest

from kibble.errors import KibbleError
from kibble.experts.rollout import episode_seed
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.reading.inspection import inspect_dataset
from kibble.schemas.layout import sha256


class GlitchyEnv(gym.Env):
    """CartPole whose observations turn NaN on step 3 of every third seed (a broken sensor)."""

    def __init__(self):
        self._env = gym.make("CartPole-v1")
        self.observation_space = self._env.observation_space
        self.action_space = self._env.action_space

    def reset(self, *, seed=None, options=None):
        self._broken = seed is not None and seed % 3 == 0
        self._t = 0
        return self._env.reset(seed=seed)

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(action)
        self._t += 1
        if self._broken and self._t == 3:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


gym.register("KibbleTestGlitchy-v0", entry_point=GlitchyEnv)


def planned_ids(task: str, base_seed: int, episodes: int) -> set[str]:
    """The episode ids a job plans (the dataset format's ``TASK#sSEED#INDEX``)."""
    return {f"{task}#s{base_seed}#{i:06d}" for i in range(episodes)}


def kept_and_rejected_ids(out: Path, task: str) -> tuple[list[str], list[str]]:
    """Episode ids of ``task`` in the data files and in the rejected file, read from disk."""
    data = sorted((out / "data" / task.replace("/", "__")).glob("*.parquet"))
    kept = [i for f in data for i in pq.read_table(f)["episode_id"].unique().to_pylist()]
    rejected = pq.read_table(out / "rejected" / "part-00000.parquet").to_pylist()
    return kept, [r["episode_id"] for r in rejected if r["task"] == task]


def files_on_disk(root: Path) -> dict[str, str]:
    """Every file under ``root``: relative path -> sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_planned_episode_is_kept_or_rejected_with_a_reason(tmp_path):
    out = tmp_path / "ds"
    jobs = [
        TaskJob("gym/KibbleTestGlitchy-v0", "random", 30),
        TaskJob("metaworld/reach-v3", "scripted", 2, max_steps=60),
    ]
    manifest = curate_tasks("test", jobs, out, seed=1)
    glitchy = manifest["tasks"]["gym/KibbleTestGlitchy-v0"]
    assert glitchy["kept"] + sum(glitchy["rejected"].values()) == 30
    broken = sum(episode_seed(1, "gym/KibbleTestGlitchy-v0", i) % 3 == 0 for i in range(30))
    assert glitchy["rejected"]["non_finite_observation"] == broken > 0
    assert glitchy["rejected"]["below_threshold"] > 0
    reach = manifest["tasks"]["metaworld/reach-v3"]
    assert reach["kept"] + sum(reach["rejected"].values()) == 2
    # On disk: the kept ids (data files) and rejected ids (rejected file) of each task
    # partition its planned ids, each id once.
    for job in jobs:
        kept_ids, rejected_ids = kept_and_rejected_ids(out, job.task)
        assert len(kept_ids) == manifest["tasks"][job.task]["kept"], job.task
        assert len(set(kept_ids)) == len(kept_ids) and len(set(rejected_ids)) == len(rejected_ids)
        assert set(kept_ids).isdisjoint(rejected_ids), job.task
        assert set(kept_ids) | set(rejected_ids) == planned_ids(job.task, 1, job.episodes)

    rejected = pq.read_table(out / "rejected" / "part-00000.parquet").to_pylist()
    assert len(rejected) == sum(sum(t["rejected"].values()) for t in manifest["tasks"].values())
    below = [r for r in rejected if r["reason"] == "below_threshold"]
    assert all(r["episode_return"] < glitchy["threshold"] for r in below)
    assert all(r["episode_length"] > 0 for r in below)

    kept = pq.read_table(out / "data" / "gym__KibbleTestGlitchy-v0" / "part-00000.parquet")
    assert kept.num_rows == glitchy["steps"]
    assert min(kept["episode_return"].to_pylist()) >= glitchy["threshold"]
    for entry in manifest["files"]:
        assert sha256(out / entry["path"]) == entry["sha256"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    card = (out / "README.md").read_text()
    assert "gym/KibbleTestGlitchy-v0" in card
    assert (out / "returns" / "gym__KibbleTestGlitchy-v0.png").stat().st_size > 1000
    assert "returns/gym__KibbleTestGlitchy-v0.png" in card


def test_plain_tools_read_the_dataset(tmp_path):
    out = tmp_path / "ds"
    curate_tasks("test", [TaskJob("gym/CartPole-v1", "random", 12)], out)
    files = str(out / "data" / "*" / "*.parquet")
    n = pq.read_table(out / "data" / "gym__CartPole-v1" / "part-00000.parquet").num_rows
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{files}')").fetchall() == [(n,)]
    import datasets

    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert len(ds) == n and "observation_tokens" in ds.column_names


def test_the_same_config_gives_the_same_dataset(tmp_path):
    a = curate_tasks("t", [TaskJob("gym/CartPole-v1", "random", 8)], tmp_path / "a", num_envs=1)
    b = curate_tasks("t", [TaskJob("gym/CartPole-v1", "random", 8)], tmp_path / "b", num_envs=3)
    assert [f["sha256"] for f in a["files"]] == [f["sha256"] for f in b["files"]]
    assert a["tasks"] == b["tasks"]


def test_a_killed_run_leaves_the_old_dataset_and_a_rerun_replaces_it(tmp_path):
    out = tmp_path / "ds"
    first_jobs = [
        TaskJob("gym/CartPole-v1", "random", 6),
        TaskJob("gym/KibbleTestGlitchy-v0", "random", 6),
    ]
    curate_tasks("t", first_jobs, out)
    before = files_on_disk(out)
    assert "data/gym__KibbleTestGlitchy-v0/part-00000.parquet" in before

    def killed(episode):
        if episode.episode_id.endswith("000003"):
            raise KeyboardInterrupt  # the job is killed midway

    second_jobs = [TaskJob("gym/CartPole-v1", "random", 6, max_steps=5)]
    with pytest.raises(KeyboardInterrupt):
        curate_tasks("t", second_jobs, out, on_episode=killed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no staging left behind
    assert files_on_disk(out) == before  # every old file there, byte for byte

    # The rerun of the changed config replaces the dataset as a whole: the glitchy task's
    # files are gone, CartPole's episodes are cut at 5 steps, and the manifest on disk
    # lists exactly the Parquet files there, with their hashes.
    again = curate_tasks("t", second_jobs, out)
    after = files_on_disk(out)
    assert not (out / "data" / "gym__KibbleTestGlitchy-v0").exists()
    assert after["manifest.json"] != before["manifest.json"]
    assert json.loads((out / "manifest.json").read_text()) == again
    assert list(again["tasks"]) == ["gym/CartPole-v1"]
    parquet = {rel: digest for rel, digest in after.items() if rel.endswith(".parquet")}
    assert parquet == {f["path"]: f["sha256"] for f in again["files"]}
    data = "data/gym__CartPole-v1/part-00000.parquet"
    assert after[data] != before[data]
    assert max(pq.read_table(out / data)["episode_length"].to_pylist()) <= 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_inspect_summarises_and_names_problems(tmp_path):
    out = tmp_path / "ds"
    curate_tasks("t", [TaskJob("gym/CartPole-v1", "random", 10)], out)
    report = inspect_dataset(out)
    summary = report.tasks["gym/CartPole-v1"]
    assert summary.kept + sum(summary.rejected.values()) == 10
    assert summary.tokens_per_step == 6.0 and report.problems == []
    (out / "data" / "gym__CartPole-v1" / "junk.parquet").write_bytes(b"nope")
    assert any("junk.parquet" in p for p in inspect_dataset(out).problems)
    with pytest.raises(KibbleError, match="not a dataset directory"):
        inspect_dataset(tmp_path / "missing")


def test_bad_fraction_is_refused(tmp_path):
    with pytest.raises(KibbleError, match="fraction"):
        curate_tasks("t", [TaskJob("gym/CartPole-v1", "random", 1)], tmp_path / "x", fraction=1.5)


def test_the_in_process_executor_does_not_import_beam():
    # Beam's options import logs a warning about Google Cloud's clients on every
    # `kibble rollout`; nothing of Beam is needed without it.
    code = (
        "import sys, kibble.pipelines.in_process; "
        "print(any(m.startswith('apache_beam') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
