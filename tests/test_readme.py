"""README.md's and docs/'s commands stay true: the two setup commands (CI runs the test
one), every example writes under kibble-out/ (which .gitignore lists), every transcript
(a ``$ kibble ...`` line) is on the newcomer's path, and that path (the README's sections
Tasks and experts, Curating a dataset, Training, with the docs pages' sections they lead
to) runs as written, in order."""

import os
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


def test_readme_stays_short(repo_root):
    # A newcomer's guide readable in ten minutes; the rest lives in docs/.
    assert len((repo_root / "README.md").read_text().splitlines()) <= 250


# -- the pages and their commands -----------------------------------------------------


def pages(repo: Path) -> dict[str, str]:
    """README.md and every docs/ page, by path relative to the repository."""
    found = {"README.md": (repo / "README.md").read_text()}
    for page in sorted((repo / "docs").glob("*.md")):
        found[f"docs/{page.name}"] = page.read_text()
    return found


def _sections(text: str):
    """(section, line, in a fenced block, fence line) for each line of a page. A page's
    ``## `` headings name its sections, ``### `` ones its subsections
    (``Section/Subsection``); the page's title and the text before its first section are
    section ``""``."""
    section, top, fenced = "", "", False
    for line in text.splitlines():
        if not fenced and line.startswith("## "):
            section = top = line[3:].strip()
        elif not fenced and line.startswith("### "):
            section = f"{top}/{line[4:].strip()}"
        if line.startswith("```"):
            fenced = not fenced
            yield section, line, fenced, True
            continue
        yield section, line, fenced, False


def kibble_commands(text: str) -> list[tuple[str, bool, list[str]]]:
    """(section, is a transcript line, argv after ``kibble``) for every kibble command in
    a page's code: ``$ kibble ...`` lines of fenced blocks (transcripts: run as written)
    and ``kibble ...`` lines of indented blocks (sketches, often with placeholders),
    continuation lines joined; a pipe and what follows are dropped."""
    found = []
    lines = list(_sections(text))
    i = 0
    while i < len(lines):
        section, line, fenced, fence = lines[i]
        i += 1
        if fence:
            continue
        transcript = fenced and line.startswith("$ kibble ")
        if not transcript and not (not fenced and line.startswith("    kibble ")):
            continue
        command = line.strip().removeprefix("$ ")
        while command.endswith("\\") and i < len(lines):
            command = command[:-1] + " " + lines[i][1].strip()
            i += 1
        argv = shlex.split(command.split(" | ")[0])[1:]
        found.append((section, transcript, argv))
    return found


def python_blocks(text: str) -> list[tuple[str, str]]:
    """(section, code) for every fenced ``python`` block of a page."""
    blocks, code = [], None
    for section, line, fenced, fence in _sections(text):
        if fence and fenced:
            code = [] if line.strip() == "```python" else None
        elif fence:
            if code is not None:
                blocks.append((section, "\n".join(code) + "\n"))
            code = None
        elif code is not None:
            code.append(line)
    return blocks


def test_the_parser_reads_sections_blocks_and_continuations():
    page = (
        "# Title\n\n    kibble tasks\n\n## One\n\n```\n$ kibble rollout t --out kibble-out/x \\\n"
        "    --episodes 5 | head -1\nkept 5\n## not a heading: inside a block\n```\n\n"
        "### Sub\n\n```python\nprint(1)\n```\n"
    )
    assert kibble_commands(page) == [
        ("", False, ["tasks"]),
        ("One", True, ["rollout", "t", "--out", "kibble-out/x", "--episodes", "5"]),
    ]
    assert python_blocks(page) == [("One/Sub", "print(1)\n")]


# -- every example writes under kibble-out/ ---------------------------------------------


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


def test_every_example_writes_under_kibble_out(repo_root):
    commands = {page: kibble_commands(text) for page, text in pages(repo_root).items()}
    assert len(commands["README.md"]) >= 10  # the parser still finds them
    assert sum(map(len, commands.values())) >= 25
    outside = [
        (page, " ".join(argv), path)
        for page, found in commands.items()
        for _, _, argv in found
        for path in written_paths(argv, repo_root)
        if not _under_out(path)
    ]
    assert not outside, f"documented commands that write outside {OUT}: {outside}"
    assert OUT in (repo_root / ".gitignore").read_text().splitlines()


def test_example_configs_write_and_read_under_kibble_out(repo_root):
    for config in sorted((repo_root / "configs").glob("*.yaml")):
        body = yaml.safe_load(config.read_text())
        paths = [body["output"]] if "output" in body else []
        paths += [d["path"] for d in body.get("datasets", [])]
        assert paths, config
        assert all(p.startswith(OUT) for p in paths), (config, paths)


# -- the newcomer's path runs as written --------------------------------------------------

# (page, section): the README's sections and the docs pages' sections they lead to, in
# the order a newcomer follows them (each step may use what an earlier one made). Only a
# section's main text runs, not its subsections.
NEWCOMER_PATH = (
    ("README.md", "Tasks and experts"),
    ("docs/tasks-and-experts.md", "Expert sources"),
    ("README.md", "Curating a dataset"),
    ("docs/curating.md", "Reading a dataset"),
    ("docs/curating.md", "Look at an episode"),
    ("docs/curating.md", "Export to Minari"),
    ("README.md", "Training"),
    ("docs/training.md", "A measured run: CartPole and reach-v3"),
)
# Python blocks of the path that run too (after their section's commands): the
# `datasets` example must not fail on what the commands wrote.
PYTHON_ON_THE_PATH = (("docs/curating.md", "Reading a dataset"),)
# Each command runs as the page writes it, with only its sizes cut (these options' values
# lowered, or added), so the whole path takes a few minutes.
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
            if name not in argv:
                argv += [name, value]
            elif not value.isdigit() or int(value) < int(argv[argv.index(name) + 1]):
                argv[argv.index(name) + 1] = value
    return argv


def newcomer_path(repo: Path) -> list[list[str]]:
    texts, path = pages(repo), []
    for page, wanted in NEWCOMER_PATH:
        for section, transcript, argv in kibble_commands(texts[page]):
            runs = section == wanted and transcript and argv[0] not in NOT_RUN
            if runs and argv not in path:  # a step repeated in a later section is done
                path.append(argv)
    return path


def test_the_newcomers_path_is_found(repo_root):
    texts = pages(repo_root)
    for page, wanted in NEWCOMER_PATH:  # a renamed or moved section fails here
        found = [argv for s, t, argv in kibble_commands(texts[page]) if s == wanted and t]
        assert found, f"{page}: no section {wanted!r} with a `$ kibble` transcript"
    for page, wanted in PYTHON_ON_THE_PATH:
        assert any(s == wanted for s, _ in python_blocks(texts[page])), (page, wanted)
    path = newcomer_path(repo_root)
    starts = [tuple(argv[:2]) for argv in path]
    assert ("expert", "train") in starts and ("train", "configs/mixture.yaml") in starts
    assert starts.index(("expert", "train")) < starts.index(("rollout", "gym/CartPole-v1"))
    assert ("export", "kibble-out/reach") in starts
    assert tiny(["rollout", "t", "--episodes", "200"]) == ["rollout", "t", "--episodes", "3"]
    assert tiny(["rollout", "t", "--episodes", "2"]) == ["rollout", "t", "--episodes", "2"]


def test_every_transcript_is_on_the_newcomers_path(repo_root):
    """A `$ kibble ...` line shows what a command prints: one that no test runs can go
    stale unseen, so each one is on the path (or is `tasks` or the demo)."""
    path = set(NEWCOMER_PATH)
    off = [
        (page, section, " ".join(argv))
        for page, text in pages(repo_root).items()
        for section, transcript, argv in kibble_commands(text)
        if transcript and argv[0] not in NOT_RUN and (page, section) not in path
    ]
    assert not off, f"transcripts no test runs (add their section to NEWCOMER_PATH): {off}"


@pytest.mark.slow
def test_the_newcomers_path_runs_as_written(repo_root, tmp_path):
    """A fresh clone's working directory (the configs), the documented commands in order:
    each must succeed, and everything they write must land under kibble-out/."""
    clone = tmp_path / "clone"
    shutil.copytree(repo_root / "configs", clone / "configs")
    texts = pages(repo_root)
    done_steps: list[list[str]] = []
    for page, wanted in NEWCOMER_PATH:
        for section, transcript, argv in kibble_commands(texts[page]):
            if section != wanted or not transcript or argv[0] in NOT_RUN or argv in done_steps:
                continue
            done_steps.append(argv)
            done = subprocess.run(
                [str(KIBBLE), *tiny(argv)], capture_output=True, text=True, cwd=clone, timeout=600
            )
            assert done.returncode == 0, (page, argv, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr, (page, argv, done.stderr)
        if (page, wanted) not in PYTHON_ON_THE_PATH:
            continue
        for section, code in python_blocks(texts[page]):
            if section != wanted:
                continue
            env = {"HF_DATASETS_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_OFFLINE": "1"}
            done = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                cwd=clone,
                timeout=600,
                env={**os.environ, **env},
            )
            assert done.returncode == 0, (page, code, done.stdout, done.stderr)
    assert done_steps == newcomer_path(repo_root)
    assert sorted(p.name for p in clone.iterdir()) == ["configs", "kibble-out"]
    made = {p.name for p in (clone / "kibble-out").iterdir()}
    assert {"experts", "cards", "example", "runs", "reach-minari"} <= made, made
    assert (clone / "kibble-out" / "runs" / "cartpole-reach" / "eval" / "summary.json").is_file()


# -- the Python API page's example prints what it shows ---------------------------------


@pytest.mark.slow  # the CLI and torch in two fresh processes: about 10 s
def test_the_python_api_page_example_prints_what_it_shows(repo_root, tmp_path):
    text = (repo_root / "docs" / "python-api.md").read_text()
    (command,) = re.findall(r"^    (kibble rollout .*)$", text, re.M)
    code, shown = re.findall(r"```(?:python)?\n(.*?)```", text, re.S)[:2]
    # Run where the page says (the repository root) but in a copy: nothing is written
    # into the source tree.
    rollout = subprocess.run(
        [KIBBLE, *command.split()[1:]], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    script = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert (rollout.stdout + script.stdout).splitlines() == shown.splitlines()
