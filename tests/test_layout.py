"""The package layout: one import package, and the standard library's tokenize unshadowed."""

import importlib
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import kibble.tokenize

STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def _python(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_import_tokenize_from_repo_root_is_the_standard_library(repo_root):
    # `python -c` puts the current directory first on sys.path, as `python -m pytest` does.
    code = "import tokenize, inspect, linecache; print(tokenize.__file__); print(tokenize.open)"
    path, opener = _python(code, repo_root).splitlines()
    assert Path(path).resolve() == STDLIB / "tokenize.py"
    assert "function open" in opener


def test_python_m_pytest_works_from_repo_root(repo_root, tmp_path):
    # pytest from the root, reporting a failing assert: that report goes through
    # inspect, linecache and tokenize, which a shadowing tokenize/ would break.
    failing = tmp_path / "test_failing.py"
    failing.write_text("def test_fails():\n    assert 1 == 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(failing)],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 1, report  # 1: tests ran and one failed; not an internal error
    assert "assert 1 == 2" in report
    assert "INTERNALERROR" not in report


def test_kibble_tokenize_is_the_package_and_exports_the_api(repo_root):
    code = (
        "import kibble.tokenize as t, kibble.tokenize.continuous as c; "
        "print(t.continuous_to_tokens is c.continuous_to_tokens, t.__path__[0])"
    )
    same, path = _python(code, repo_root).split(" ", 1)
    assert same == "True"
    assert not Path(path).resolve().is_relative_to(STDLIB)
    assert callable(kibble.tokenize.tokens_to_continuous)


def test_no_generic_top_level_names_are_installed(tmp_path):
    # Away from the repository root, only `kibble` may resolve; `tokenize` is the stdlib's.
    code = (
        "import importlib.util as u\n"
        "for n in ['kibble', 'experts', 'pipelines', 'schemas', 'trainer', 'tokenize']:\n"
        "    s = u.find_spec(n); print(n, s.origin if s else None)"
    )
    found = dict(line.split(" ", 1) for line in _python(code, tmp_path).splitlines())
    assert found["kibble"] != "None"
    for name in ("experts", "pipelines", "schemas", "trainer"):
        assert found[name] == "None", f"{name} is importable as a top-level package"
    assert Path(found["tokenize"]).resolve() == STDLIB / "tokenize.py"


def _package_folders(repo_root: Path) -> dict[str, Path]:
    """pyproject's packages -> their folders in the repository (package-dir, else the
    parent's folder and the last name, as setuptools resolves them)."""
    config = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = config["package-dir"]

    def folder(package: str) -> Path:
        if package in mapped:
            return repo_root / mapped[package]
        parent, _, name = package.rpartition(".")
        return folder(parent) / name

    return {package: folder(package) for package in config["packages"]}


def test_parts_are_subpackages_of_kibble(repo_root):
    folders = _package_folders(repo_root)
    # Every top-level folder of modules (tests and benchmarks aside) is a part of kibble.
    parts = {p for p in repo_root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    parts = {p for p in parts if any(p.glob("*.py"))} - {
        repo_root / "tests",
        repo_root / "benchmarks",
    }
    assert parts <= set(folders.values()), f"folders not packaged: {parts - set(folders.values())}"
    for package, folder in folders.items():
        # A folder of modules inside a package is a listed package too (else an install
        # without -e leaves it out).
        for sub in folder.iterdir():
            if sub.is_dir() and any(sub.glob("*.py")):
                assert f"{package}.{sub.name}" in folders, f"{sub} is not in pyproject's packages"
        # The installed package holds every module of its folder.
        module = importlib.import_module(package)
        installed = {p.name for p in Path(module.__path__[0]).glob("*.py")}
        missing = {p.name for p in folder.glob("*.py")} - installed
        assert not missing, f"{package} lacks {sorted(missing)} of {folder}; reinstall kibble"
