"""`kibble pipeline run` as a user sees it: a progress bar of the shards rolled out, and
Beam's own output (its import warnings, its workers' logs) in a log file, not on the
terminal."""

import re
import subprocess
import sys
from pathlib import Path

KIBBLE = Path(sys.executable).parent / "kibble"

CONFIG = """
name: tiny
output: ds
episodes_per_shard: 2
tasks:
  - {task: gym/CartPole-v1, expert: random, episodes: 4}
"""


def test_progress_on_the_terminal_and_beams_noise_in_the_log(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    done = subprocess.run(
        [str(KIBBLE), "pipeline", "run", "c.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # Not a terminal: the bar is one plain line at the end, with the shards done.
    assert re.search(r"^tiny: shards rolled out .* 2/2 4 episodes of 1 task", done.stderr, re.M)
    for noise in ("apitools", "Discarding unparseable", "WARNING", "INFO"):
        assert noise not in done.stderr + done.stdout, done.stderr
    assert done.stdout.splitlines()[-1] == "wrote ds; Beam's log: .ds.log"
    log = (tmp_path / ".ds.log").read_text()
    # Beam 2.77's workers always log these; here they are, instead of on stderr.
    assert "Discarding unparseable args" in log, log
    assert (tmp_path / "ds" / "manifest.json").is_file()
