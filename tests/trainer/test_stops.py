"""How ``kibble train`` stops, as a user sees it: SIGINT and SIGTERM print one line saying
what was kept and exit 130/143; a diverging run is a one-paragraph error, exit 1."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kibble.errors import KibbleError
from kibble.trainer.config import load_mixture
from kibble.trainer.train import train

KIBBLE = Path(sys.executable).parent / "kibble"
SMALL_MODEL = "{layers: 2, heads: 2, width: 32, ff: 64, patch_hidden: 8}"


def train_until_logged(mixture: Path, run: Path, lines: int) -> subprocess.Popen:
    """``kibble train`` in a subprocess, returned once metrics.jsonl has ``lines`` lines."""
    proc = subprocess.Popen(
        [str(KIBBLE), "train", str(mixture), "--out", str(run), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test suite started in the background (`cmd &`) ignores SIGINT, and a child
        # inherits that: give it SIGINT's default so Python turns it into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= lines:
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no progress within a minute: {proc.communicate()}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_stops_training_with_one_line(
    cartpole_dataset, write_mixture, tmp_path, signum, status
):
    mixture = write_mixture(
        tmp_path / "mix.yaml", [cartpole_dataset], model=SMALL_MODEL, context=48,
        batch_size=4, steps=100000, log_every=1, checkpoint_every=2,
    )  # fmt: skip
    run = tmp_path / "run"
    proc = train_until_logged(mixture, run, 3)  # past the first checkpoint
    try:
        # Meanwhile a second run on the same folder is refused, naming the first.
        with pytest.raises(
            KibbleError, match=rf"being written by another kibble run \(pid {proc.pid} "
        ):
            train(load_mixture(mixture), run)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a failed check must not leave a 100,000-step run behind
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    kept = json.loads((run / "checkpoint" / "state.json").read_text())["progress"]["step"]
    line = (
        f"kibble: training interrupted by {signal.Signals(signum).name}: the checkpoint at "
        f"step {kept} in {run / 'checkpoint'} is kept; run the same command again to resume"
    )
    assert stderr.strip().splitlines()[-1] == line
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no staging
    # The rerun resumes from the kept step, logging no step twice.
    write_mixture(
        mixture, [cartpole_dataset], model=SMALL_MODEL, context=48, batch_size=4,
        steps=kept + 2, log_every=1, checkpoint_every=2,
    )  # fmt: skip
    done = subprocess.run(
        [str(KIBBLE), "train", str(mixture), "--out", str(run), "--threads", "1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, kept + 3))


def test_a_diverging_run_exits_1_with_one_paragraph(cartpole_dataset, write_mixture, tmp_path):
    mixture = write_mixture(
        tmp_path / "mix.yaml", [cartpole_dataset], model=SMALL_MODEL, context=48,
        batch_size=4, steps=20, learning_rate="1e6", warmup_steps=1, checkpoint_every=1,
    )  # fmt: skip
    run = tmp_path / "run"
    done = subprocess.run(
        [str(KIBBLE), "train", str(mixture), "--out", str(run), "--threads", "1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("kibble: error: training diverged at step ")
    assert f"in {mixture}" in error and "done" not in done.stdout
    kept = json.loads((run / "checkpoint" / "state.json").read_text())["progress"]["step"]
    assert f"the last good checkpoint, at step {kept} in {run / 'checkpoint'}, is kept" in error
