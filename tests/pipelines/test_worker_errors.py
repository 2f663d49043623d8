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
