import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO_ROOT = Path(__file__).resolve().parents[1]

# No per-example deadline: on a loaded machine (CI, 2 shared cores) one slow example
# would fail a property test that holds. Select another profile with --hypothesis-profile.
settings.register_profile("kibble", deadline=None)
settings.load_profile("kibble")


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


# A second CI environment installs some extras only (NumPy 2 beside everything but
# procgen): there, a test whose task family's packages are absent is skipped, naming the
# extra. Everywhere else (the main CI, with every extra) it fails as usual.
SKIP_MISSING_EXTRAS = os.environ.get("KIBBLE_TESTS_SKIP_MISSING_EXTRAS") == "1"
MISSING_EXTRA = "needs packages that are not installed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not SKIP_MISSING_EXTRAS or call.excinfo is None or report.passed:
        return
    if MISSING_EXTRA in str(call.excinfo.value):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, str(call.excinfo.value))


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size)``: a real tmpfs of ``size`` (``"400k"``, ``"2m"``) mounted under
    tmp_path, unmounted afterwards; the test is skipped where this process cannot mount
    one (it needs root)."""
    import subprocess

    mounted: list[Path] = []

    def mount(size: str) -> Path:
        disk = tmp_path / f"disk-{len(mounted)}"
        disk.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
            capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip("cannot mount a small tmpfs here (needs root)")
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        subprocess.run(["umount", str(disk)], check=False)
