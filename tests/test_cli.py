"""The ``kibble`` console script, run as a user runs it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

KIBBLE = Path(sys.executable).parent / "kibble"
COMMANDS = [
    "tasks",
    "expert",
    "rollout",
    "pipeline",
    "inspect",
    "view",
    "export",
    "train",
    "eval",
    "demo",
]
SUBCOMMANDS = {"expert": ["train", "eval"], "pipeline": ["run"]}


def kibble(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(KIBBLE), *args], capture_output=True, text=True, cwd=cwd)


def listed_commands(help_text: str) -> list[str]:
    """The names in the Commands section of a help screen (a rich panel or click's list).

    A row starts with the name one or two columns in; its description's continuation
    lines are indented further.
    """
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^\W*Commands\b", line))
    names = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("╰"):
            break
        row = line.strip("│").rstrip()
        if re.match(r"^ {1,2}\S", row):
            names.append(row.split()[0])
    return names


def assert_user_error(done: subprocess.CompletedProcess, message: str) -> None:
    """A user error as the CLI promises it: exit status 1, ``kibble: error: MESSAGE...`` on
    stderr as one paragraph (no blank line inside), and no traceback."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    error = done.stderr[done.stderr.find("kibble: error: ") :].strip()
    assert error.startswith(f"kibble: error: {message}"), done.stderr
    assert not re.search(r"\n[ \t]*\n", error), f"not one paragraph: {error!r}"
    assert done.stderr.rstrip().endswith(error)  # nothing after the message


def test_help_lists_every_command_of_the_spec():
    done = kibble("--help")
    assert done.returncode == 0
    assert sorted(listed_commands(done.stdout)) == sorted(COMMANDS), done.stdout
    for command in COMMANDS:
        done = kibble(command, "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert re.search(rf"Usage: kibble {command}\b", done.stdout), done.stdout
    for group, subcommands in SUBCOMMANDS.items():
        assert sorted(listed_commands(kibble(group, "--help").stdout)) == sorted(subcommands)
        for sub in subcommands:
            done = kibble(group, sub, "--help")
            assert done.returncode == 0, (group, sub, done.stderr)
            assert re.search(rf"Usage: kibble {group} {sub}\b", done.stdout), done.stdout


def test_user_error_is_one_paragraph_without_traceback():
    assert_user_error(kibble("tasks", "--family", "nope"), "unknown task family 'nope'")


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
    assert_user_error(done, "")
    assert "is a directory" in done.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    done = kibble("demo", "--out", str(a_file))
    assert_user_error(done, "")
    assert "is a file" in done.stderr


def test_invalid_option_values_are_usage_errors():
    done = kibble("expert", "eval", "gym/CartPole-v1", "--expert", "random", "--episodes", "1",
                  "--out", "c.json", "--seed", "-1")  # fmt: skip
    assert_user_error(done, "invalid value for '--seed'")
    assert "(see kibble expert eval --help)" in done.stderr


@pytest.mark.parametrize(
    ("args", "message", "command"),
    [
        (["train", "m.yaml", "--out", "r", "--nope"], "no such option: --nope", "kibble train"),
        (["train", "--out", "r"], "missing argument", "kibble train"),
        (["rollout", "gym/CartPole-v1", "--expert", "random", "--episodes", "abc", "--out", "d"],
         "invalid value for '--episodes'", "kibble rollout"),
        (["expert", "eval", "gym/CartPole-v1"], "missing option", "kibble expert eval"),
        (["nosuchcommand"], "no such command", "kibble"),
        (["expert", "nosuch"], "no such command", "kibble expert"),
    ],
)  # fmt: skip
def test_usage_mistakes_are_one_paragraph_errors_with_a_pointer_to_help(args, message, command):
    """Click's usage errors in kibble's style: exit 1, no box, the command's --help named."""
    done = kibble(*args)
    assert_user_error(done, "")
    assert message in done.stderr.lower(), done.stderr
    assert done.stderr.rstrip().endswith(f"(see {command} --help)"), done.stderr
    assert not any(c in done.stderr for c in "╭╰│"), done.stderr  # no Rich box
    assert "Usage:" not in done.stderr


def test_usage_errors_reach_cli_runner_users_too():
    """``CliRunner().invoke(app, ...)`` goes through the same error path as the console script."""
    from typer.testing import CliRunner

    from kibble.cli import app

    result = CliRunner().invoke(app, ["train", "--bogus"])
    assert result.exit_code == 1
    assert result.output.startswith("kibble: error: no such option: --bogus")


def test_version_and_short_help():
    import kibble as package

    done = kibble("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"kibble {package.__version__}"
    assert re.fullmatch(r"kibble \d+\.\d+\.\d+\S*", done.stdout.strip())
    for args in (["-h"], ["train", "-h"], ["expert", "eval", "-h"], ["pipeline", "run", "-h"]):
        done = kibble(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert re.search(rf"Usage: kibble {' '.join(args[:-1])}".rstrip(), done.stdout)


def test_kibble_alone_shows_the_help():
    done = kibble()
    assert done.returncode == 0 and "Commands" in done.stdout and not done.stderr


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
    done = kibble("inspect", str(out))  # a report of the problems found, not a user error
    assert done.returncode == 1 and "not a readable Parquet file" in done.stderr


def test_rollout_prints_the_threshold_rounded(tmp_path):
    # Meta-World's returns are floats: 0.8 x one has many digits (385.9961172250628).
    args = ["metaworld/reach-v3", "--expert", "scripted", "--episodes", "1", "--max-steps", "7"]
    done = kibble("rollout", *args, "--out", str(tmp_path / "ds"))
    assert done.returncode == 0, done.stderr
    rule = r"\(fraction_of_expert: 0.8 x expert return\)"  # the rule's name, and in words
    assert re.search(r"; threshold -?\d+\.\d " + rule, done.stdout), done.stdout


def test_pipeline_config_errors_are_one_paragraph(tmp_path):
    done = kibble("pipeline", "run", str(tmp_path / "missing.yaml"))
    assert_user_error(done, "")
    assert "does not exist" in done.stderr
    # A config with several problems still reads as one paragraph.
    bad = tmp_path / "bad.yaml"
    bad.write_text("output: x\nseed: abc\ntasks: [{task: gym/CartPol-v1, expert: random}]\n")
    done = kibble("pipeline", "run", str(bad))
    assert_user_error(done, str(bad))
