"""Small real datasets, curated once per test session with the local rollout path."""

from __future__ import annotations

from pathlib import Path

import pytest

from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob


def _write_mixture(path: Path, datasets: list[Path], **keys) -> Path:
    lines = ["datasets:"] + [f"  - {{path: {d}, weight: 1.0}}" for d in datasets]
    lines += [f"{k}: {v}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def write_mixture():
    """``write_mixture(path, [datasets], key=value, ...)`` writes a mixture YAML."""
    return _write_mixture


@pytest.fixture(scope="session")
def cartpole_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "cartpole"
    # A low fraction keeps most random episodes: the tests need data, not experts.
    curate_tasks("cartpole", [TaskJob("gym/CartPole-v1", "random", 12)], out, fraction=0.05)
    return out


@pytest.fixture(scope="session")
def procgen_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "procgen"
    job = TaskJob("procgen/coinrun", "random", 3, max_steps=20)
    curate_tasks("coinrun", [job], out, fraction=0.05)
    return out
