"""The public Python API: ``kibble.open_dataset`` stays light, and the README's example runs
as written and prints what the README shows."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import kibble
from kibble.api import Dataset
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob

KIBBLE = Path(sys.executable).parent / "kibble"


def _section(readme: str) -> str:
    return readme.split("## Python API", 1)[1].split("\n## ", 1)[0]


@pytest.mark.slow  # the CLI and torch in two fresh processes: about 10 s
def test_the_readme_example_runs_and_prints_what_it_shows(repo_root, tmp_path):
    section = _section((repo_root / "README.md").read_text())
    (command,) = re.findall(r"^    (kibble rollout .*)$", section, re.M)
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    # Run where the README says (the repository root) but in a copy: nothing is written
    # into the source tree.
    rollout = subprocess.run(
        [KIBBLE, *command.split()[1:]], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    script = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert (rollout.stdout + script.stdout).splitlines() == shown.splitlines()


def test_import_kibble_imports_neither_torch_nor_the_reader(tmp_path):
    code = (
        "import sys, kibble\n"
        "print(sorted(m for m in ('torch', 'pyarrow', 'kibble.api') if m in sys.modules))\n"
        f"ds = kibble.open_dataset({str(tmp_path)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.splitlines()[0] == "[]"
    # Opening reads the manifest (none here: a clear error, no torch needed to say so).
    assert "kibble.errors.KibbleError" in done.stderr and "torch" not in done.stderr


def test_reading_episodes_needs_no_torch(tmp_path):
    out = tmp_path / "ds"
    curate_tasks("ds", [TaskJob("gym/CartPole-v1", "random", 3)], out, fraction=0.05)
    code = (
        "import sys, kibble\n"
        f"ds = kibble.open_dataset({str(out)!r})\n"
        "print(sum(1 for _ in ds.episodes()), ds.num_episodes, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, kept, torch_loaded = done.stdout.split()
    assert n == kept and torch_loaded == "False"
    assert isinstance(kibble.open_dataset(out), Dataset)
