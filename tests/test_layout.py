"""The package layout: one import package, and the standard library's tokenize unshadowed."""

import subprocess
import sys
import sysconfig
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


def test_parts_are_subpackages_of_kibble():
    import kibble.experts
    import kibble.pipelines
    import kibble.schemas
    import kibble.trainer

    for module in (kibble.experts, kibble.pipelines, kibble.schemas, kibble.trainer):
        assert module.__name__.startswith("kibble.")
