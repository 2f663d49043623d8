import json

import gymnasium as gym
import numpy as np
import pytest

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.tokenize.episode import EpisodeTokenizer
from kibble.trainer.config import DatasetSpec, MixtureConfig, ModelConfig
from kibble.trainer.evaluate import (
    GatoPolicy,
    LoadedRun,
    action_token_ranges,
    evaluate_task,
    write_report,
)
from kibble.trainer.scores import normalized_score
from kibble.trainer.train import train

TINY = ModelConfig(layers=2, heads=2, width=32, ff=64, patch_hidden=8)


@pytest.fixture(scope="module")
def run_dir(cartpole_dataset, procgen_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    cfg = MixtureConfig(
        datasets=[DatasetSpec(str(cartpole_dataset)), DatasetSpec(str(procgen_dataset))],
        model=TINY, model_name="custom", context=72, batch_size=4, steps=3,
    )  # fmt: skip
    train(cfg, run)
    return run


def test_action_token_ranges_follow_the_action_space():
    box = gym.spaces.Box(-1, 1, (2,))
    assert action_token_ranges(EpisodeTokenizer(box, gym.spaces.Discrete(3))) == [(0, 3)]
    multi = EpisodeTokenizer(box, gym.spaces.MultiDiscrete([2, 5]))
    assert action_token_ranges(multi) == [(0, 2), (0, 5)]
    assert action_token_ranges(EpisodeTokenizer(box, box)) == [(32000, 33024)] * 2


def test_eval_scores_against_the_manifest_and_writes_a_report(run_dir):
    run = LoadedRun.load(run_dir)
    row = evaluate_task(run, "gym/CartPole-v1", episodes=3, seed=5, num_envs=2)
    assert row["episodes"] == 3 and row["seeds"] == [5, 6, 7]
    assert row["score"] == pytest.approx(
        normalized_score(row["return_mean"], row["expert_return"], row["random_return"])
    )
    # A random-expert dataset's manifest has no random return: it is measured on the seeds.
    assert "random measured" in row["baseline_source"]
    summary = write_report(run_dir, [row])
    assert summary["tasks"] == 1 and "gym/CartPole-v1" in summary["table"]
    saved = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert saved["rows"][0]["return_mean"] == row["return_mean"]
    assert (run_dir / "eval" / "scores.png").stat().st_size > 0


def test_the_policy_acts_on_images_with_legal_actions(run_dir):
    run = LoadedRun.load(run_dir)
    policy = GatoPolicy(run, "procgen/coinrun")
    env = get_task("procgen/coinrun").make()
    obs, _ = env.reset(seed=1)
    policy.start_episode(0, 1)
    assert policy.prompts[0] is not None and len(policy.prompts[0].images) == 1
    for _ in range(3):
        (action,) = policy.act([obs], [0])
        assert env.action_space.contains(action)
        obs, *_ = env.step(action)
    assert len(policy.history[0]) == 2  # context 72 / 18 tokens = 4 steps: 2 prompt, 2 live
    env.close()


def test_a_task_outside_the_mixture_is_a_clear_error(run_dir):
    run = LoadedRun.load(run_dir)
    with pytest.raises(KibbleError, match=r"not in .* training mixture"):
        GatoPolicy(run, "gym/Acrobot-v1")


def test_a_folder_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(KibbleError, match="no kibble checkpoint"):
        LoadedRun.load(tmp_path)


def test_deterministic_for_a_seed(run_dir):
    run = LoadedRun.load(run_dir)
    a = evaluate_task(run, "gym/CartPole-v1", episodes=2, seed=0, num_envs=1)
    b = evaluate_task(run, "gym/CartPole-v1", episodes=2, seed=0, num_envs=2)
    assert a["return_mean"] == b["return_mean"] and np.isfinite(a["score"])
