"""SIGINT/SIGTERM during `kibble rollout` and `kibble pipeline run`: one line saying what
was kept, exit 128 + the signal, no traceback, the old dataset untouched, no staging."""

import hashlib
import signal
import subprocess
import sys
import time

import pytest

from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob


def files_on_disk(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def interrupt(
    tmp_path, args: list[str], signum: int, delay: float = 1.0, when: str = ".ds.staging-*/*"
) -> tuple[int, str]:
    """Run ``kibble ARGS``, send ``signum`` ``delay`` seconds after a file matching ``when``
    appears (by default: rollouts have started), return (exit status, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kibble", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 90
    while not list(tmp_path.glob(when)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "rollouts never started"
        time.sleep(0.1)
    time.sleep(delay)
    assert proc.poll() is None, "finished before the signal: give it more episodes"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_rollout_interrupted_keeps_the_old_dataset(tmp_path, signum):
    out = tmp_path / "ds"
    curate_tasks("t", [TaskJob("gym/CartPole-v1", "random", 4)], out)
    before = files_on_disk(out)
    args = ["rollout", "gym/CartPole-v1", "--expert", "random", "--episodes", "20000"]
    code, err = interrupt(tmp_path, [*args, "--out", "ds"], signum)
    assert code == 128 + signum
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("kibble:")]
    assert lines == [
        f"kibble: interrupted by {signal.Signals(signum).name}: nothing was published; "
        "the old dataset at ds is kept, untouched; staging removed"
    ]
    assert files_on_disk(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


CONFIG = """
name: sig
output: ds
episodes_per_shard: 5
tasks:
  - {task: gym/CartPole-v1, expert: random, episodes: 4000}
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "delay"),
    # Early and later in the rollouts (Beam's threads then report their workers' end,
    # which must not reach the terminal).
    [(signal.SIGTERM, 0.5), (signal.SIGINT, 2.0)],
)
def test_pipeline_run_interrupted_prints_one_line(tmp_path, signum, delay):
    (tmp_path / "c.yaml").write_text(CONFIG)
    args = ["pipeline", "run", "c.yaml", "--direct_num_workers=2"]
    code, err = interrupt(tmp_path, args, signum, delay)
    assert code == 128 + signum, err
    assert "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("kibble:")] == [
        f"kibble: interrupted by {signal.Signals(signum).name}: nothing was published; "
        "there was no dataset at ds and none was written; staging removed"
    ]
    # Beam's log stays for a look (overwritten by the next run); no staging, no lock.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.log", "c.yaml"]


@pytest.mark.slow
def test_export_interrupted_leaves_no_staging_and_no_lock(tmp_path):
    # SIGTERM exited 143 with no message and left the export's staging and lock behind.
    curate_tasks("t", [TaskJob("gym/CartPole-v1", "random", 3000)], tmp_path / "ds", fraction=0.01)
    args = ["export", "ds", "--format", "minari", "--out", "out"]
    code, err = interrupt(tmp_path, args, signal.SIGTERM, delay=0.3, when=".out.staging-*")
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("kibble:")] == [
        "kibble: interrupted by SIGTERM: nothing was published; there was no dataset at out "
        "and none was written; staging removed"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no staging, no lock
