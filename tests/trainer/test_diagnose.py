"""The teacher-forced diagnosis: the expert drives, the model is measured beside it."""

import pytest

from kibble.experts.evaluation import RolloutSettings, evaluate
from kibble.trainer.config import DatasetSpec, MixtureConfig, ModelConfig
from kibble.trainer.diagnose import teacher_forced
from kibble.trainer.evaluate import LoadedRun
from kibble.trainer.train import train

TINY = ModelConfig(layers=2, heads=2, width=32, ff=64, patch_hidden=8)


@pytest.fixture(scope="module")
def run(cartpole_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    cfg = MixtureConfig(
        datasets=[DatasetSpec(str(cartpole_dataset))],
        model=TINY, model_name="custom", context=60, batch_size=4, steps=3,
    )  # fmt: skip
    train(cfg, run_dir)
    return LoadedRun.load(run_dir)


def test_the_expert_drives_and_every_step_is_compared(run):
    result = teacher_forced(run, "gym/CartPole-v1", "random", episodes=2, seed=7)
    expert = evaluate("gym/CartPole-v1", "random", RolloutSettings(episodes=2, seed=7, num_envs=1))
    # The episodes are the expert's own (same seeds, same returns), not the model's.
    assert result.expert_return == pytest.approx(sum(e.episode_return for e in expert) / 2)
    assert result.steps == sum(e.length for e in expert)
    assert len(result.same_token) == 1  # CartPole: one action token
    assert 0 <= result.same_token[0] <= result.steps
    assert result.bin_distance[0] <= result.steps  # actions 0/1: at most one bin apart
    assert any("same token" in line for line in result.lines())
