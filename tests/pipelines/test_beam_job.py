"""The Beam job: its transforms on in-memory records, and end to end on the local runner."""

import json

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from kibble.errors import KibbleError
from kibble.pipelines import curation, in_process
from kibble.pipelines.beam_job import RunShardStep, RunTaskStep, run
from kibble.pipelines.config import load_config
from kibble.pipelines.stages import EpisodeOutcome, TaskJob, Threshold, plan_shards


def outcome(task, i, ret, reason=None):
    return EpisodeOutcome(
        task=task, episode_id=f"{task}#{i}", index=i, episode_return=ret, episode_length=10,
        reason=reason,
    )  # fmt: skip


def test_the_threshold_step_uses_valid_episodes_in_collection_order(tmp_path):
    jobs = {"a/x": TaskJob("a/x", "random", 20), "b/y": TaskJob("b/y", "random", 3)}
    # a/x: 20 episodes -> W = 2; the best pair of consecutive valid returns is (10, 10).
    a = [outcome("a/x", i, 1.0) for i in range(20)]
    a[5], a[6] = outcome("a/x", 5, 10.0), outcome("a/x", 6, 10.0)
    a[7] = outcome("a/x", 7, float("nan"), "non_finite_reward")  # invalid: not counted
    b = [outcome("b/y", i, r) for i, r in enumerate([-5.0, -1.0, -3.0])]  # W = 1: expert -1
    # a/x in two shards that arrive out of order: the step puts them back in order.
    a_shards = list(plan_shards(jobs["a/x"], 10))
    groups = [
        ("a/x", [(a_shards[1], curation.ShardResult(tuple(a[10:]))),
                 (a_shards[0], curation.ShardResult(tuple(a[:10])))]),
        ("b/y", [(next(plan_shards(jobs["b/y"], 10)), curation.ShardResult(tuple(b)))]),
    ]  # fmt: skip
    settings = curation.Settings(str(tmp_path), seed=0, num_envs=1, fraction=0.8)
    expected_a = Threshold(
        expert_return=10.0, source="windowed", random_return=None, fraction=0.8,
        threshold=8.0, rule="fraction_of_expert", defining=(5,),
    )  # fmt: skip
    # No card: the base is the lowest valid return, -5: -5 + 0.8 * 4.
    expected_b = Threshold(
        expert_return=-1.0, source="windowed", random_return=None, fraction=0.8,
        threshold=-5.0 + 0.8 * 4.0, rule="lowest_plus_fraction_of_gap", defining=(1,),
    )  # fmt: skip
    with TestPipeline() as p:
        result = p | beam.Create(groups) | beam.ParDo(RunTaskStep(curation.THRESHOLD, settings, []))
        assert_that(result, equal_to([("a/x", expected_a), ("b/y", expected_b)]))


def kept_and_rejected_ids(out, task: str) -> tuple[list[str], list[str]]:
    """Episode ids of ``task`` in the data files and in the rejected file, read from disk."""
    data = sorted((out / "data" / task.replace("/", "__")).glob("*.parquet"))
    kept = [i for f in data for i in pq.read_table(f)["episode_id"].unique().to_pylist()]
    rejected = pq.read_table(out / "rejected" / "part-00000.parquet").to_pylist()
    return kept, [r["episode_id"] for r in rejected if r["task"] == task]


CONFIG = """
name: beamtest
output: {out}
seed: 3
filter: {{fraction: 0.8}}
episodes_per_shard: 8
tasks:
  - {{task: gym/CartPole-v1, expert: random, episodes: 20}}
  - {{task: metaworld/reach-v3, expert: scripted, episodes: 2, max_steps: 40}}
"""


@pytest.mark.slow
def test_local_runner_end_to_end_and_deterministic_across_workers(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(out=tmp_path / "two"))
    two = run(load_config(path), ["--direct_num_workers=2"])
    one = run(load_config(path, output=str(tmp_path / "one")), ["--direct_running_mode=in_memory"])
    assert [(f["path"], f["sha256"]) for f in one["files"]] == [
        (f["path"], f["sha256"]) for f in two["files"]
    ]
    for task, t in two["tasks"].items():
        assert t["kept"] + sum(t["rejected"].values()) == t["planned"], task
        # On disk, each task's kept ids (data files) and rejected ids partition its plan.
        kept, rejected = kept_and_rejected_ids(tmp_path / "two", task)
        assert len(kept) == t["kept"] and len(set(kept)) == len(kept), task
        assert len(set(rejected)) == len(rejected) and set(kept).isdisjoint(rejected), task
        assert set(kept) | set(rejected) == {f"{task}#s3#{i:06d}" for i in range(t["planned"])}
    cartpole = two["tasks"]["gym/CartPole-v1"]
    shards = sorted((tmp_path / "two" / "data" / "gym__CartPole-v1").glob("*.parquet"))
    assert 1 <= len(shards) <= 3  # one file per shard with kept episodes
    assert sum(pq.ParquetFile(s).metadata.num_rows for s in shards) == cartpole["steps"]
    rejected = pq.read_table(tmp_path / "two" / "rejected" / "part-00000.parquet")
    assert rejected.num_rows == sum(sum(t["rejected"].values()) for t in two["tasks"].values())
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["config"]["seed"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


TASK = "tasks: [{task: gym/CartPole-v1, expert: random, episodes: 2}]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("output: x\ntasks: []", "tasks: expected a non-empty list"),
        ("tasks: []", "output: missing"),
        (
            "output: x\ntasks: [{task: gym/CartPole-v1, expert: random}]",
            r"tasks\[0\].episodes: missing",
        ),
        ("output: x\n" + TASK.replace("CartPole", "CartPol"), "closest: gym/CartPole-v1"),
        (
            "output: x\nfilter: {fraction: 2}\n" + TASK,
            r"filter.fraction: expected a number in \(0, 1\]",
        ),
        ("output: x\nseed: abc\n" + TASK, "seed: expected a non-negative integer"),
        ("[1, 2", "not valid YAML"),
    ],
)
def test_config_errors_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(KibbleError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_rollout_and_filter_steps_on_one_shard(tmp_path):
    job = TaskJob("gym/CartPole-v1", "random", 4)
    (shard,) = plan_shards(job, 4)
    settings = curation.Settings(str(tmp_path), seed=0, num_envs=2, fraction=1.0)
    with TestPipeline() as p:
        rolled = (
            p
            | beam.Create([(shard, None)])
            | beam.ParDo(RunShardStep(curation.ROLLOUT, settings, []))
        )
        assert_that(
            rolled | beam.FlatMap(lambda pair: [(o.index, o.reason) for o in pair[1].outcomes]),
            equal_to([(i, None) for i in range(4)]),
        )
    staged = tmp_path / ".staging" / "gym__CartPole-v1" / "part-00000.parquet"
    rows = pq.read_table(staged, columns=["episode_id", "episode_return"]).to_pylist()
    returns = {r["episode_id"]: r["episode_return"] for r in rows}
    best = max(returns.values())
    threshold = Threshold(
        expert_return=best, source="windowed", random_return=None, fraction=1.0,
        threshold=best, rule="fraction_of_expert",
    )  # fmt: skip
    kept = [i for i, r in returns.items() if r >= best]
    carried = curation.ShardResult(
        tuple(
            EpisodeOutcome(
                task=job.task, episode_id=i, index=k, episode_return=r, episode_length=1,
                reason=None,
            )
            for k, (i, r) in enumerate(returns.items())
        )
    )  # fmt: skip
    with TestPipeline() as p:
        thresholds = beam.pvalue.AsDict(p | "T" >> beam.Create([(job.task, threshold)]))
        written = (
            p
            | beam.Create([(shard, carried)])
            | beam.ParDo(
                RunShardStep(curation.FILTER, settings, [curation.THRESHOLD.label]), thresholds
            )
        )
        expected_rows = sum(1 for r in rows if r["episode_id"] in kept)
        path = "data/gym__CartPole-v1/part-00000.parquet"
        assert_that(
            written | beam.Map(lambda pair: (pair[1].file["path"], pair[1].file["rows"])),
            equal_to([(path, expected_rows)]),
        )
    final = pq.read_table(tmp_path / path)
    assert set(final["episode_id"].to_pylist()) == set(kept)


@pytest.mark.slow
def test_both_executors_write_the_same_dataset(tmp_path):
    """One definition, two executors: the in-process run of a config writes the very
    files the Beam job writes, and the same manifest but for the output's path."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(out=tmp_path / "beam"))
    beam_manifest = run(load_config(path), ["--direct_num_workers=2"])
    here = in_process.run(load_config(path, output=str(tmp_path / "here")))
    assert here["files"] == beam_manifest["files"]
    assert here["tasks"] == beam_manifest["tasks"]
    assert here["config"] == dict(beam_manifest["config"], output=str(tmp_path / "here"))
    for rel in ("rejected/part-00000.parquet", "README.md"):
        assert (tmp_path / "here" / rel).read_bytes() == (tmp_path / "beam" / rel).read_bytes()
