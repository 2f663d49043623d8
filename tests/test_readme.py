"""README.md's two commands stay true, and CI runs the README's test command."""

import re


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
