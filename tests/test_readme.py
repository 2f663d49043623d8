"""README.md's commands stay true: the two setup commands (CI runs the test one), every
example writes under kibble-out/ (which .gitignore lists), and the newcomer's path (the
sections Tasks and experts, Curating a dataset, Training) runs as written, in order."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

KIBBLE = Path(sys.executable).parent / "kibble"
OUT = "kibble-out/"


def _commands(readme: str) -> list[str]:
    return [line.strip() for line in readme.splitlines() if re.match(r"^    python3 -m venv", line)]


def test_readme_has_exactly_two_setup_commands(repo_root):
    main, tests = _commands((repo_root / "README.md").read_text())
    assert main.endswith("kibble demo")
    assert tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command(repo_root):
    _, tests = _commands((repo_root / "README.md").read_text())
    ci = (repo_root / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


# -- every example writes under kibble-out/ ---------------------------------------------


def kibble_commands(readme: str) -> list[tuple[str, bool, list[str]]]:
    """(section, is a transcript line, argv after ``kibble``) for every kibble command in
    the README's code: ``$ kibble ...`` lines of fenced blocks (transcripts: run as
    written) and ``kibble ...`` lines of indented blocks (sketches, often with
    placeholders), continuation lines joined; a pipe and what follows are dropped. A
    subsection's commands have the section ``Section/Subsection``."""
    found, section, top, fenced = [], "", "", False
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("## "):
            section = top = line[3:].strip()
        elif line.startswith("### "):
            section = f"{top}/{line[4:].strip()}"
        if line.startswith("```"):
            fenced = not fenced
            continue
        transcript = fenced and line.startswith("$ kibble ")
        if not transcript and not (not fenced and line.startswith("    kibble ")):
            continue
        command = line.strip().removeprefix("$ ")
        while command.endswith("\\") and i < len(lines):
            command = command[:-1] + " " + lines[i].strip()
            i += 1
        argv = shlex.split(command.split(" | ")[0])[1:]
        found.append((section, transcript, argv))
    return found


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def written_paths(argv: list[str], repo: Path) -> list[str]:
    """The paths a command writes: its --out, a pipeline config's output."""
    out = _option(argv, "--out")
    if out is not None:
        return [out]
    if argv[:2] == ["pipeline", "run"]:
        return [yaml.safe_load((repo / argv[2]).read_text())["output"]]
    if argv[:1] == ["demo"]:
        return ["kibble-out/demo"]  # its default (the demo's tests hold it)
    return []


def _under_out(path: str) -> bool:
    placeholder = re.fullmatch(r"[A-Z][A-Z0-9_]*(\.\w+)?", path)  # DIR, RUN_DIR, CARD.json
    return path.startswith(OUT) or bool(placeholder) or "://" in path


def test_every_readme_example_writes_under_kibble_out(repo_root):
    commands = kibble_commands((repo_root / "README.md").read_text())
    assert len(commands) >= 15  # the parser still finds them
    outside = [
        (" ".join(argv), path)
        for _, _, argv in commands
        for path in written_paths(argv, repo_root)
        if not _under_out(path)
    ]
    assert not outside, f"README commands that write outside {OUT}: {outside}"
    assert OUT in (repo_root / ".gitignore").read_text().splitlines()


def test_example_configs_write_and_read_under_kibble_out(repo_root):
    for config in sorted((repo_root / "configs").glob("*.yaml")):
        body = yaml.safe_load(config.read_text())
        paths = [body["output"]] if "output" in body else []
        paths += [d["path"] for d in body.get("datasets", [])]
        assert paths, config
        assert all(p.startswith(OUT) for p in paths), (config, paths)


# -- the newcomer's path runs as written --------------------------------------------------

# Their main text, not their subsections (pictures, cloud runners).
NEWCOMER_SECTIONS = ("Tasks and experts", "Curating a dataset", "Training")
# Each command runs as the README writes it, with only its sizes cut (these options'
# values replaced, or added), so the whole path takes a few minutes.
TINY = {
    ("expert", "train"): {"--timesteps": "500", "--set": "train_batch_size_per_learner=500"},
    ("expert", "eval"): {"--episodes": "1"},
    ("rollout",): {"--episodes": "3"},
    ("train",): {"--steps": "2", "--set": "warmup_steps=1"},
    ("eval",): {"--episodes": "1", "--max-steps": "10"},
}
# `tasks` writes nothing and builds every environment of a family; the demo has its test.
NOT_RUN = {"tasks", "demo"}


def tiny(argv: list[str]) -> list[str]:
    argv = list(argv)
    for key, options in TINY.items():
        if tuple(argv[: len(key)]) != key:
            continue
        for name, value in options.items():
            if name in argv:
                argv[argv.index(name) + 1] = value
            else:
                argv += [name, value]
    return argv


def newcomer_path(repo: Path) -> list[list[str]]:
    path = []
    for section, transcript, argv in kibble_commands((repo / "README.md").read_text()):
        runs = section in NEWCOMER_SECTIONS and transcript and argv[0] not in NOT_RUN
        if runs and argv not in path:  # a step repeated in a later section is done already
            path.append(argv)
    return path


def test_the_newcomers_path_is_found(repo_root):
    path = newcomer_path(repo_root)
    starts = [tuple(argv[:2]) for argv in path]
    assert ("expert", "train") in starts and ("train", "configs/mixture.yaml") in starts
    assert starts.index(("expert", "train")) < starts.index(("rollout", "gym/CartPole-v1"))
    assert tiny(["rollout", "t", "--episodes", "200"]) == ["rollout", "t", "--episodes", "3"]


@pytest.mark.slow
def test_the_newcomers_path_runs_as_written(repo_root, tmp_path):
    """A fresh clone's working directory (the configs), the README's commands in order:
    each must succeed, and everything they write must land under kibble-out/."""
    clone = tmp_path / "clone"
    shutil.copytree(repo_root / "configs", clone / "configs")
    for argv in newcomer_path(repo_root):
        done = subprocess.run(
            [str(KIBBLE), *tiny(argv)], capture_output=True, text=True, cwd=clone, timeout=600
        )
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, (argv, done.stderr)
    assert sorted(p.name for p in clone.iterdir()) == ["configs", "kibble-out"]
    made = {p.name for p in (clone / "kibble-out").iterdir()}
    assert {"experts", "cards", "example", "runs"} <= made, made
    assert (clone / "kibble-out" / "runs" / "cartpole-reach" / "eval" / "summary.json").is_file()
