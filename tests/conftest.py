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
