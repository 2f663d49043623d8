"""A Beam worker's exception reaches the user as one paragraph: the root cause and the
log file with Beam's full output, never a wall of tracebacks."""

import pytest

from kibble.errors import KibbleError
from kibble.pipelines.beam_job import run
from kibble.pipelines.config import DatasetConfig
from kibble.pipelines.guard import root_cause
from kibble.pipelines.stages import TaskJob


@pytest.mark.slow
def test_a_worker_error_is_one_paragraph_naming_the_root_cause_and_the_log(tmp_path, capfd):
    # A job the launcher would refuse, built past its checks: a worker meets the mistake.
    jobs = [TaskJob("gym/CartPole-v1", "random", 4)]
    config = DatasetConfig("t", str(tmp_path / "ds"), jobs, episodes_per_shard=2)
    config.tasks[0].expert = str(tmp_path / "missing")  # after the config's checks
    with pytest.raises(KibbleError) as err:
        run(config, ["--direct_num_workers=2"])
    message = str(err.value)
    assert "\n" not in message
    assert f"expert checkpoint {tmp_path / 'missing'} does not exist" in message
    log = tmp_path / ".ds.log"
    assert f"Beam's full log is in {log}" in message
    assert "[while running" not in message
    assert "Traceback" in log.read_text()  # the details are kept there
    captured = capfd.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.log"]  # no staging, no lock


def test_root_cause_is_the_first_error_line_of_a_worker_traceback():
    text = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "IndexError: index 7 is out of bounds\n\nDuring handling ...\n"
        "RuntimeError: IndexError: index 7 is out of bounds [while running 'Rollout']\n"
    )
    assert root_cause(RuntimeError(text)) == "IndexError: index 7 is out of bounds"
    assert root_cause(RuntimeError("plain")) == "RuntimeError: plain"


@pytest.mark.slow
def test_a_full_disk_ends_the_beam_job_with_one_paragraph(tmp_path, small_disk):
    """Disk full during `kibble pipeline run`, an old dataset on the small disk: the job
    used to roll everything out and then wait forever (Beam's threads failed writing the
    worker log on that disk); now it ends with the worker's error, the old dataset kept."""
    import subprocess
    import sys

    disk = small_disk("400k")
    kibble = [sys.executable, "-m", "kibble"]
    old = ["rollout", "gym/CartPole-v1", "--expert", "random", "--episodes", "10"]
    subprocess.run([*kibble, *old, "--out", str(disk / "ds")], check=True, capture_output=True)
    before = sorted(p.relative_to(disk).as_posix() for p in (disk / "ds").rglob("*"))
    (tmp_path / "c.yaml").write_text(
        f"name: full\noutput: {disk / 'ds'}\nepisodes_per_shard: 10\ntasks:\n"
        "  - {task: gym/CartPole-v1, expert: random, episodes: 20}\n"
        "  - {task: metaworld/reach-v3, expert: scripted, episodes: 20, max_steps: 100}\n"
    )
    run = subprocess.run(
        [*kibble, "pipeline", "run", str(tmp_path / "c.yaml"), "--direct_num_workers=2"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("kibble: error: the curation job failed: OSError: [Errno 28]"), last
    assert "Nothing was published" in last
    assert sorted(p.relative_to(disk).as_posix() for p in (disk / "ds").rglob("*")) == before
