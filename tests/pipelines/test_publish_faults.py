"""Publishing a dataset under kill -9 at each step, concurrent runs, and leftovers.

A process is SIGKILLed (``KIBBLE_FAULT=publish:STEP``, ``kibble.atomic``) at each step of
the publish sequence; after each, the output holds the old or the new dataset whole (its
manifest verifies), and a rerun succeeds and leaves nothing beside it.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from kibble.atomic import hold, recover
from kibble.errors import KibbleError
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.reading.inspection import inspect_dataset

JOBS = [TaskJob("gym/CartPole-v1", "random", 6)]
OLD_SEED, NEW_SEED = 0, 1

CURATE = """
import sys
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
curate_tasks("t", [TaskJob("gym/CartPole-v1", "random", 6)], sys.argv[1], seed=int(sys.argv[2]))
"""


def seed_of(out) -> int:
    """The seed of the dataset at ``out``, after checking it is whole (its manifest verifies)."""
    report = inspect_dataset(out)
    assert report.problems == [], report.problems
    return json.loads((out / "manifest.json").read_text())["config"]["seed"]


def beside(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


STEPS = [
    # (KIBBLE_FAULT, the dataset the path holds after the kill)
    ("publish:locked", OLD_SEED),  # lock taken, nothing written yet
    ("publish:staged", OLD_SEED),  # the new dataset whole in staging, not swapped in
    ("publish:exchanged", NEW_SEED),  # swapped in one step; old copy not yet deleted
    ("publish:removing", NEW_SEED),  # old copy half deleted
    ("publish:published", NEW_SEED),  # done, lock not yet released
    # A filesystem without RENAME_EXCHANGE: two renames, the old copy parked between.
    ("publish:parked,no-exchange", OLD_SEED),  # nothing at the path: recover() restores
    ("publish:moved,no-exchange", NEW_SEED),
    ("publish:removing,no-exchange", NEW_SEED),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "holds"), STEPS)
def test_a_kill_at_each_publish_step_leaves_old_or_new_and_a_rerun_cleans_up(
    tmp_path, fault, holds
):
    out = tmp_path / "ds"
    curate_tasks("t", JOBS, out, seed=OLD_SEED)
    env = dict(os.environ, KIBBLE_FAULT=fault)
    done = subprocess.run(
        [sys.executable, "-c", CURATE, str(out), str(NEW_SEED)], env=env, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    recover(out)  # what every reader of a dataset does first
    assert seed_of(out) == holds
    # The rerun takes the dead run's lock, removes what it left, and publishes.
    curate_tasks("t", JOBS, out, seed=NEW_SEED)
    assert seed_of(out) == NEW_SEED
    assert beside(tmp_path) == ["ds"]


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "ds"
    curate_tasks("t", JOBS, out)
    before = (out / "manifest.json").read_bytes()
    live = tmp_path / ".ds.staging-live0000"  # the running writer's staging
    with hold(out):
        live.mkdir()
        with pytest.raises(KibbleError) as err:
            curate_tasks("t", JOBS, out, seed=NEW_SEED)
        message = str(err.value)
        assert f"pid {os.getpid()} on {socket.gethostname()}, started " in message
        assert "being written by another kibble run" in message
        assert live.is_dir()  # a live run's staging is never touched
        assert (out / "manifest.json").read_bytes() == before
        live.rmdir()
    assert beside(tmp_path) == ["ds"]  # the lock file goes with its holder


def test_a_second_process_is_refused_at_once(tmp_path):
    out = tmp_path / "ds"
    with hold(out):
        done = subprocess.run(
            [sys.executable, "-c", CURATE, str(out), "0"], capture_output=True, timeout=120
        )
    assert done.returncode == 1
    assert f"pid {os.getpid()}" in done.stderr.decode()
    assert not out.exists()


def test_leftovers_of_killed_runs_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "ds"
    curate_tasks("t", JOBS, out, seed=OLD_SEED)
    for name in (".ds.staging-dead0001", ".ds.old-dead0002"):
        (tmp_path / name / "data").mkdir(parents=True)
        (tmp_path / name / "data" / "x.parquet").write_bytes(b"half")
    (tmp_path / ".ds.lock").write_text('{"pid": 1}')  # a dead holder's, no flock on it
    curate_tasks("t", JOBS, out, seed=NEW_SEED)
    assert seed_of(out) == NEW_SEED
    assert beside(tmp_path) == ["ds"]


def test_a_parked_old_dataset_comes_back_before_the_next_run(tmp_path):
    out = tmp_path / "ds"
    curate_tasks("t", JOBS, out, seed=OLD_SEED)
    out.rename(tmp_path / ".ds.old-parked01")  # a fallback swap killed between its renames
    with pytest.raises(KibbleError, match="being written"), hold(out), hold(out):
        pass
    assert seed_of(out) == OLD_SEED  # restored by the first hold
    assert beside(tmp_path) == ["ds"]


def test_a_reader_says_where_a_parked_dataset_is(tmp_path):
    # Killed between the fallback's renames, the path held nothing until the next run
    # restored it silently: a reader now names the parked copy and what to do.
    from kibble.schemas.reader import CuratedDataset

    out = tmp_path / "ds"
    curate_tasks("t", JOBS, out, seed=OLD_SEED)
    out.rename(tmp_path / ".ds.old-parked01")
    with pytest.raises(KibbleError, match=r"interrupted, and the previous dataset is parked at"):
        CuratedDataset(out)
    assert beside(tmp_path) == [".ds.old-parked01"]  # a reader moves nothing
