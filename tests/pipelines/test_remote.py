"""Datasets at URLs (the object-store publish path) and kibble on remote Beam workers.

No cloud here. A ``file://`` URL takes the code path of ``gs://`` and ``s3://``:
pyarrow's ``FileSystem.from_uri``, staging beside the output on its filesystem (Beam
workers in other processes write their shards there) and publishing by copies with
the manifest last. The publish steps also run on fsspec's in-memory filesystem behind
pyarrow's ``PyFileSystem``, which, like an object store, has no real directories.
"""

import json
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from kibble.errors import KibbleError
from kibble.pipelines import publish, remote
from kibble.pipelines.beam_job import default_options, run
from kibble.pipelines.config import load_config
from kibble.pipelines.stages import EpisodeOutcome, TaskJob, task_threshold
from kibble.reading.inspection import inspect_dataset
from kibble.schemas import layout

KIBBLE = Path(sys.executable).parent / "kibble"

CONFIG = """
name: urls
output: {out}
seed: 1
filter: {{fraction: 0.8}}
episodes_per_shard: 4
tasks:
  - {{task: gym/CartPole-v1, expert: random, episodes: {episodes}}}
"""


def _config(tmp_path, out, episodes=12):
    path = tmp_path / f"config-{episodes}.yaml"
    path.write_text(CONFIG.format(out=out, episodes=episodes))
    return load_config(path)


def _episodes_and_tokens(location: str) -> list[tuple]:
    """(episode_id, step, observation tokens, action tokens) of every kept row, read the
    way a trainer would: the manifest's files through the location's filesystem."""
    manifest = layout.read_manifest(location)
    fs, root = layout.resolve(location)
    rows = []
    for entry in manifest["files"]:
        if entry["path"].startswith("data/"):
            with fs.open_input_file(f"{root}/{entry['path']}") as f:
                table = pq.read_table(
                    f, columns=["episode_id", "step", "observation_tokens", "action_tokens"]
                )
            rows += [tuple(map(str, r.values())) for r in table.to_pylist()]
    return rows


@pytest.mark.slow
def test_url_output_is_the_local_dataset_and_reruns_leave_nothing_behind(tmp_path):
    local = run(_config(tmp_path, tmp_path / "local"), ["--direct_running_mode=in_memory"])
    url = f"file://{tmp_path}/bucket/datasets/ds"
    # Two worker processes write their shards to the URL's staging location.
    remote_ = run(_config(tmp_path, url), ["--direct_num_workers=2"])

    assert [(f["path"], f["rows"], f["sha256"]) for f in remote_["files"]] == [
        (f["path"], f["rows"], f["sha256"]) for f in local["files"]
    ]
    assert remote_["tasks"] == local["tasks"]
    for entry in remote_["files"]:  # entries made by the workers hold for the files
        assert publish.file_entry(url, entry["path"]) == entry
    rows = _episodes_and_tokens(url)
    assert rows == _episodes_and_tokens(str(tmp_path / "local")) and len(rows) > 0
    assert layout.read_manifest(url) == remote_
    assert sorted(p.name for p in (tmp_path / "bucket" / "datasets").iterdir()) == ["ds"]

    report = inspect_dataset(url)
    assert report.problems == []
    assert report.tasks == inspect_dataset(tmp_path / "local").tasks
    done = subprocess.run([str(KIBBLE), "inspect", url], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "every file matches its schema" in done.stdout

    def published() -> list[str]:
        manifest = layout.read_manifest(url)
        extra = [
            layout.MANIFEST,
            layout.CARD,
            "returns/gym__CartPole-v1.png",
            "views/gym__CartPole-v1.png",
        ]
        return sorted([f["path"] for f in manifest["files"]] + extra)

    assert layout.list_files(url) == published()
    first_files = layout.list_files(url)
    smaller = run(_config(tmp_path, url, episodes=4), ["--direct_running_mode=in_memory"])
    assert layout.list_files(url) == published()  # the old shards are gone
    assert len(smaller["files"]) < len(remote_["files"])
    again = run(_config(tmp_path, url), ["--direct_running_mode=in_memory"])
    assert layout.list_files(url) == first_files
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in remote_["files"]]


class FlakyStore(pafs.FSSpecHandler):
    """fsspec's in-memory filesystem that records changes and can die on the Nth copy."""

    def __init__(self, die_on_copy: int | None = None):
        from fsspec.implementations.memory import MemoryFileSystem

        super().__init__(MemoryFileSystem())
        self.die_on_copy, self.ops = die_on_copy, []

    def copy_file(self, src, dest):
        self.ops.append(("copy", dest))
        if self.die_on_copy is not None and len(self.ops_of("copy")) == self.die_on_copy:
            raise KeyboardInterrupt  # the job is killed
        super().copy_file(src, dest)

    def delete_file(self, path):
        self.ops.append(("delete", path))
        super().delete_file(path)

    def ops_of(self, kind):
        return [path for op, path in self.ops if op == kind]


def _write(fs, root, files: dict[str, bytes]):
    for rel, body in files.items():
        with fs.open_output_stream(f"{root}/{rel}") as f:
            f.write(body)


def _read_all(fs, root) -> dict[str, bytes]:
    out = {}
    for rel in layout.list_entries(fs, root, pafs.FileType.File):
        with fs.open_input_stream(f"{root}/{rel}") as f:
            out[rel] = f.read()
    return out


OLD = {
    "manifest.json": b'{"old": 1}',
    "README.md": b"old card",
    "data/gym__A/part-00000.parquet": b"old a0",
    "data/gym__B/part-00003.parquet": b"old b3",  # a task the new dataset does not have
    "returns/gym__B.png": b"old png",
}
NEW = {
    "manifest.json": b'{"new": 1}',
    "README.md": b"new card",
    "data/gym__A/part-00000.parquet": b"new a0",
    "data/gym__A/part-00001.parquet": b"new a1",
    "rejected/part-00000.parquet": b"new rejected",
}


def _stores(die_on_copy=None):
    handler = FlakyStore(die_on_copy)
    fs = pafs.PyFileSystem(handler)
    prefix = f"bucket-{uuid.uuid4().hex[:8]}"  # fsspec's memory store is process-wide
    src, dst = f"{prefix}/.ds.staging-1", f"{prefix}/ds"
    _write(fs, dst, OLD)
    _write(fs, src, NEW)
    handler.ops.clear()
    return handler, fs, src, dst


def test_publish_by_copy_replaces_the_dataset_and_commits_with_the_manifest():
    handler, fs, src, dst = _stores()
    publish.publish_by_copy(fs, src, dst)
    assert _read_all(fs, dst) == NEW
    assert fs.get_file_info(f"{dst}/data/gym__B").type == pafs.FileType.NotFound
    assert fs.get_file_info(src).type == pafs.FileType.NotFound
    # The old manifest goes first, the new one comes last.
    assert handler.ops[0] == ("delete", f"{dst}/manifest.json")
    assert handler.ops[-1] == ("copy", f"{dst}/manifest.json")


@pytest.mark.parametrize("die_on_copy", [1, 3, len(NEW)])
def test_a_publish_killed_midway_leaves_no_manifest_and_a_rerun_completes(die_on_copy):
    handler, fs, src, dst = _stores(die_on_copy)
    with pytest.raises(KeyboardInterrupt):
        publish.publish_by_copy(fs, src, dst)
    left = _read_all(fs, dst)
    assert "manifest.json" not in left  # incomplete, and marked so
    assert set(left) <= set(NEW)  # nothing of the old dataset's that the new one lacks
    handler.die_on_copy = None
    publish.publish_by_copy(fs, src, dst)  # the rerun's staging holds the same files
    assert _read_all(fs, dst) == NEW


def test_url_mistakes_are_one_paragraph_errors(tmp_path):
    with pytest.raises(KibbleError, match="cannot use nosuch://b/ds: Unrecognized filesystem"):
        publish.check_output("nosuch://b/ds")
    with pytest.raises(KibbleError, match="is a bucket"):
        publish.staging_location("gs://bucket/")
    (tmp_path / "ds").mkdir()
    with pytest.raises(KibbleError, match="did not finish"):
        layout.read_manifest(f"file://{tmp_path}/ds")
    (tmp_path / "ds" / "notes.txt").write_text("mine")
    with pytest.raises(KibbleError, match=r"not part of a kibble dataset \(notes.txt\)"):
        publish.check_output(f"file://{tmp_path}/ds")

    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "x", episodes=2))
    done = subprocess.run(
        [str(KIBBLE), "pipeline", "run", str(config), "--out", "nosuch://b/ds"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "cannot use nosuch://b/ds" in done.stderr
    assert "Traceback" not in done.stderr


def test_join_keeps_url_queries_at_the_end():
    assert (
        layout.join("s3://b/ds?region=x", "data", "p.parquet")
        == "s3://b/ds/data/p.parquet?region=x"
    )
    staging = publish.staging_location("s3://b/sets/ds?region=x")
    assert staging.startswith("s3://b/sets/.ds.staging-") and staging.endswith("?region=x")


DATAFLOW = ["--runner", "DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/t"]


@pytest.mark.parametrize(
    ("args", "adds_setup_file"),
    [
        (DATAFLOW, True),
        (["--runner=dataflow"], True),  # Beam's short, any-case names
        (["--runner=FlinkRunner", "--flink_master=localhost:8081"], True),
        (["--runner=SparkRunner"], True),
        ([*DATAFLOW, "--setup_file=/elsewhere/setup.py"], False),
        ([*DATAFLOW, "--extra_package=dist/kibble-0.1.0-py3-none-any.whl"], False),
        ([*DATAFLOW, "--sdk_container_image=example.com/kibble:1"], False),
        ([], False),
        (["--runner=DirectRunner"], False),
        (["--runner=PrismRunner"], False),
    ],
)
def test_remote_runners_get_the_package_unless_told_how(args, adds_setup_file):
    out = remote.worker_args(args, "gs://b/ds")
    added = [a for a in out if a not in args]
    if adds_setup_file:
        assert added == [f"--setup_file={remote.find_setup_file()}"]
        assert Path(remote.find_setup_file()).parent.joinpath("pyproject.toml").is_file()
    else:
        assert added == []


def test_local_output_on_dataflow_is_refused_and_elsewhere_warned(caplog, tmp_path):
    with pytest.raises(KibbleError, match="local path, which dataflowrunner workers"):
        remote.worker_args(DATAFLOW, "data/ds")
    remote.worker_args(["--runner=FlinkRunner"], "data/ds")
    assert "mount every worker sees" in caplog.text
    # The command line hands Beam's space-separated options through in order.
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "x", episodes=2))
    done = subprocess.run(
        [str(KIBBLE), "pipeline", "run", str(config), *DATAFLOW], capture_output=True, text=True
    )
    assert done.returncode == 1 and "which dataflowrunner workers do not share" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_beams_stager_builds_a_kibble_package_that_installs_and_imports(tmp_path):
    from apache_beam.runners.portability.stager import Stager

    options = default_options(DATAFLOW, "gs://b/ds")
    build = tmp_path / "build"
    build.mkdir()
    resources = Stager.create_job_resources(
        options, str(build), log_submission_env_dependencies=False
    )
    staged = [r.role_payload for r in resources]
    assert any(b"workflow.tar.gz" in p for p in staged)  # Beam's name for the setup package
    (sdist,) = build.glob("kibble-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"pipelines/beam_job.py", "pipelines/remote.py", "tokenize/episode.py"} <= names
    # What a worker does with it (without dependencies: they are this environment's).
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(sdist)],
        check=True, capture_output=True,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", "import kibble.pipelines.beam_job as b; print(b.__file__)"],
        cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(target)


def test_expert_checkpoints_ship_through_the_output_filesystem(tmp_path):
    expert = tmp_path / "experts" / "cartpole"
    (expert / "checkpoint").mkdir(parents=True)
    (expert / "checkpoint" / "module.pt").write_bytes(b"weights")
    (expert / "kibble_expert.json").write_text("{}")
    jobs = [
        TaskJob("gym/CartPole-v1", str(expert), 4),
        TaskJob("gym/Acrobot-v1", "random", 4),
        TaskJob("gym/Pendulum-v1", "/in/the/worker/image", 4),
    ]
    staging = f"file://{tmp_path}/bucket/.ds.staging-1"
    shipped = remote.ship_experts(jobs, staging)
    url = shipped["gym/CartPole-v1"].expert
    assert url == f"{staging}/.experts/00-cartpole"
    assert shipped["gym/Acrobot-v1"] == jobs[1] and shipped["gym/Pendulum-v1"] == jobs[2]
    local = Path(remote.fetch_expert(url))
    try:
        assert (local / "checkpoint" / "module.pt").read_bytes() == b"weights"
        assert (local / "kibble_expert.json").is_file()
    finally:
        shutil.rmtree(local)
    assert remote.fetch_expert("local/dir") == "local/dir"
    with pytest.raises(KibbleError, match="does not exist"):
        remote.fetch_expert(f"file://{tmp_path}/nothing")


def test_an_sb3_zip_ships_with_its_sidecar_and_loads_from_the_url(tmp_path):
    pytest.importorskip("stable_baselines3")
    import numpy as np
    from stable_baselines3 import PPO

    from kibble.envs import get_task
    from kibble.experts.sources import load_expert

    agents = tmp_path / "agents"  # the sidecar names statistics in a sibling folder
    PPO("MlpPolicy", "CartPole-v1", n_steps=64, seed=0).save(agents / "ppo" / "ppo.zip")
    stats = {"obs_mean": [0.5, 1.0, -0.1, 2.0], "obs_var": [4.0, 0.25, 1.0, 9.0]}
    (agents / "stats").mkdir()
    (agents / "stats" / "vn.json").write_text(json.dumps(stats))
    (agents / "ppo" / "ppo.kibble.yaml").write_text("vec_normalize: ../stats/vn.json\n")
    (agents / "ppo" / "unrelated.bin").write_bytes(b"not shipped")
    staging = f"file://{tmp_path}/bucket/.ds.staging-1"
    jobs = [TaskJob("gym/CartPole-v1", f"sb3:{agents / 'ppo' / 'ppo.zip'}", 4)]
    url = remote.ship_experts(jobs, staging)["gym/CartPole-v1"].expert
    assert url == f"sb3:{staging}/.experts/00-ppo/ppo/ppo.zip"
    shipped = tmp_path / "bucket" / ".ds.staging-1" / ".experts" / "00-ppo"
    assert sorted(p.relative_to(shipped).as_posix() for p in shipped.rglob("*.*")) == [
        "ppo/ppo.kibble.yaml", "ppo/ppo.zip", "stats/vn.json"
    ]  # fmt: skip

    local = Path(remote.fetch_expert(url.removeprefix("sb3:")))
    task = get_task("gym/CartPole-v1")
    here = load_expert(task, jobs[0].expert, *task.spaces())
    there = load_expert(task, f"sb3:{local}", *task.spaces())
    read = there.view.make_chain()[0].path.resolve()
    assert read == (local.parent.parent / "stats" / "vn.json").resolve()
    obs = list(np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32))
    assert there.act(obs, list(range(64))) == here.act(obs, list(range(64)))
    (agents / "ppo" / "ppo.kibble.yaml").unlink()  # the statistics change the actions
    plain = load_expert(task, f"sb3:{agents / 'ppo' / 'ppo.zip'}", *task.spaces())
    assert plain.act(obs, list(range(64))) != here.act(obs, list(range(64)))

    sidecar = agents / "ppo" / "ppo.kibble.yaml"  # workers have no such absolute path
    sidecar.write_text(f"vec_normalize: {agents / 'stats' / 'vn.json'}\n")
    with pytest.raises(KibbleError, match="by the absolute path"):
        remote.ship_experts(jobs, staging)
    sidecar.unlink()
    (agents / "ppo" / "vec_normalize.pkl").write_bytes(b"a pickle, never read")
    with pytest.raises(KibbleError, match=r"cannot be shipped.*vec_normalize\.pkl"):
        remote.ship_experts(jobs, staging)


def test_a_card_read_on_the_launcher_sets_the_threshold(tmp_path):
    from kibble.experts.card import RolloutSettings, make_card

    card = make_card("gym/CartPole-v1", "random", RolloutSettings(episodes=2))
    job = TaskJob("gym/CartPole-v1", "random", 3, card="/only/on/the/launcher.json")
    outs = [
        EpisodeOutcome(
            task=job.task, episode_id=f"e{i}", index=i, episode_return=10.0 * i,
            episode_length=5, reason=None,
        )
        for i in range(3)
    ]  # fmt: skip
    threshold = task_threshold(job, outs, 0.8, card=card)
    assert threshold.source == "card" and threshold.expert_return == card.expert_return.mean
    with pytest.raises(KibbleError, match="does not exist"):
        task_threshold(job, outs, 0.8)  # without it, the path is read


def test_manifest_json_of_a_local_dataset_reads_the_same_through_a_file_url(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps({"name": "x", "files": []}))
    assert layout.read_manifest(tmp_path / "ds") == layout.read_manifest(f"file://{tmp_path}/ds")
