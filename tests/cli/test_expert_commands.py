"""``kibble tasks`` and ``kibble expert eval`` as a user runs them (the console script)."""

import json
import re
import subprocess
import sys
from pathlib import Path

KIBBLE = Path(sys.executable).parent / "kibble"


def kibble(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(KIBBLE), *args], capture_output=True, text=True, cwd=cwd)


def test_tasks_writes_the_list_to_stdout_and_nothing_to_stderr():
    done = kibble("tasks", "--family", "gym")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar's empty line when stderr is not a terminal
    assert any(line.startswith("gym/CartPole-v1 ") for line in done.stdout.splitlines())


def test_expert_eval_without_out_prints_the_measurement_and_writes_nothing(tmp_path):
    args = ("expert", "eval", "gym/CartPole-v1", "--expert", "random", "--episodes", "3")
    done = kibble(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert re.fullmatch(
        r"gym/CartPole-v1 random: return \d+\.\d ± \d+\.\d over 3 episodes; random policy "
        r"\d+\.\d \(no --out: no card written\)",
        line,
    ), line
    assert list(tmp_path.iterdir()) == []
    # With --out the same measurement is written as a card.
    done = kibble(*args, "--out", "card.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("; wrote card.json")
    card = json.loads((tmp_path / "card.json").read_text())
    assert line.startswith(f"gym/CartPole-v1 random: return {card['expert_return']['mean']:.1f} ±")
