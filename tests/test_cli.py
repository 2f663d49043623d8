"""The ``kibble`` console script, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

KIBBLE = Path(sys.executable).parent / "kibble"
COMMANDS = ["tasks", "expert", "rollout", "pipeline", "inspect", "train", "eval", "demo"]


def kibble(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(KIBBLE), *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_every_command_of_the_spec():
    done = kibble("--help")
    assert done.returncode == 0
    for command in COMMANDS:
        assert command in done.stdout
    assert "train" in kibble("expert", "--help").stdout
    assert "run" in kibble("pipeline", "--help").stdout


def test_user_error_is_one_paragraph_without_traceback():
    done = kibble("tasks", "--family", "nope")
    assert done.returncode == 1
    assert done.stderr.startswith("kibble: error: unknown task family 'nope'")
    assert "Traceback" not in done.stderr


def test_python_m_kibble_is_the_same_command():
    done = subprocess.run(
        [sys.executable, "-m", "kibble", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "demo" in done.stdout


def test_output_paths_of_the_wrong_kind_are_clear_errors(tmp_path):
    done = kibble(
        "expert", "eval", "gym/CartPole-v1", "--expert", "random", "--episodes", "1",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 1 and "is a directory" in done.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    done = kibble("demo", "--out", str(a_file))
    assert done.returncode == 1 and "is a file" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_option_values_are_usage_errors():
    done = kibble("expert", "eval", "gym/CartPole-v1", "--expert", "random", "--episodes", "1",
                  "--out", "c.json", "--seed", "-1")  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_rollout_then_inspect(tmp_path):
    out = tmp_path / "ds"
    done = kibble(
        "rollout", "gym/CartPole-v1", "--expert", "random", "--episodes", "6", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "kept" in done.stdout and (out / "manifest.json").is_file()
    done = kibble("inspect", str(out))
    assert done.returncode == 0 and "every file matches its schema" in done.stdout
    (out / "rejected" / "part-00000.parquet").write_bytes(b"corrupt")
    done = kibble("inspect", str(out))
    assert done.returncode == 1 and "not a readable Parquet file" in done.stderr


def test_pipeline_config_errors_are_one_paragraph(tmp_path):
    done = kibble("pipeline", "run", str(tmp_path / "missing.yaml"))
    assert done.returncode == 1 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
