import json
import math

import gymnasium as gym
import numpy as np
import pytest

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.card import ExpertCard, ReturnStats, write_card
from kibble.experts.evaluation import RolloutSettings as S
from kibble.tokenize.episode import EpisodeTokenizer
from kibble.trainer.config import DatasetSpec, MixtureConfig, ModelConfig
from kibble.trainer.evaluate import (
    GatoPolicy,
    LoadedRun,
    action_token_ranges,
    evaluate_task,
    write_report,
)
from kibble.trainer.scores import EvalRow, interquartile_mean, normalized_score, summarize
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


def test_normalized_score_is_100_times_the_share_of_the_expert_gap():
    # 100 * (R - R_random) / (R_expert - R_random), by hand.
    assert normalized_score(75.0, expert=100.0, random=50.0) == 50.0
    assert normalized_score(10.0, expert=110.0, random=-10.0) == pytest.approx(50 / 3)  # 2000/120
    assert normalized_score(-10.0, expert=110.0, random=-10.0) == 0.0
    assert normalized_score(110.0, expert=110.0, random=-10.0) == 100.0
    assert normalized_score(200.0, expert=100.0, random=50.0) == 300.0  # better than the expert
    assert normalized_score(0.0, expert=100.0, random=50.0) == -100.0  # worse than random
    # No score when the expert is the random policy (no gap) or worse than it.
    assert math.isnan(normalized_score(3.0, expert=0.6, random=0.6))
    assert math.isnan(normalized_score(3.0, expert=0.5, random=0.6))


def test_interquartile_mean_of_known_values():
    assert interquartile_mean([70, 0, 60, 10, 50, 20, 40, 30]) == 35.0  # mean of 20, 30, 40, 50
    assert interquartile_mean([1, 2, 3, 100]) == 2.5  # mean of 2, 3
    # 7 scores (NaN: no score, left out): drop one at each end, mean of 1, 2, 3, 7, 100.
    scores = [100, -50, 3, 7, float("nan"), 1, 2, 1000]
    assert interquartile_mean(scores) == pytest.approx(22.6)
    assert interquartile_mean([5.0]) == 5.0
    assert math.isnan(interquartile_mean([])) and math.isnan(interquartile_mean([float("nan")]))


def row(task: str, score: float, expert: float = 100.0, random: float = 0.0) -> EvalRow:
    return EvalRow(
        task=task, episodes=1, seeds=[0], return_mean=score, return_std=0.0, success_rate=None,
        expert_return=expert, random_return=random, baseline_source="test", score=score, step=1,
    )  # fmt: skip


def test_summary_counts_only_tasks_with_a_score():
    rows = [
        row("gym/CartPole-v1", 10.0),
        row("gym/Acrobot-v1", 60.0),
        row("procgen/coinrun", 90.0),
        row("procgen/starpilot", float("nan"), expert=0.6, random=0.6),  # expert is random
    ]
    summary = summarize(rows)
    assert summary["tasks"] == 4
    assert summary["mean"] == pytest.approx(160 / 3)
    assert summary["iqm"] == pytest.approx(160 / 3)  # 3 scores: none dropped
    assert (summary["above_50"], summary["above_80"]) == (2, 1)
    assert summary["families"]["gym"] == {"tasks": 2, "mean": 35.0, "iqm": 35.0}
    assert summary["families"]["procgen"] == {"tasks": 2, "mean": 90.0, "iqm": 90.0}
    assert (
        rows[3]
        .line(expert_is_random=True)
        .endswith("(expert 0.6, random 0.6): no score (the expert is the random policy)")
    )
    assert rows[2].line().endswith("(expert 100.0, random 0.0): score 90.0%")


def _card(path, task: str, expert: float, random: float):
    card = ExpertCard(
        task=task, expert="random", sampled=False, episodes=3, seeds=[0, 1, 2],
        expert_return=ReturnStats(mean=expert, std=0.0, min=expert, max=expert),
        random_return=ReturnStats(mean=random, std=0.0, min=random, max=random),
        success_rate=None, random_success_rate=None, length_mean=10.0, versions={},
    )  # fmt: skip
    write_card(card, path)
    return path


def test_eval_scores_against_a_card(run_dir, tmp_path):
    run = LoadedRun.load(run_dir)
    card = _card(tmp_path / "card.json", "gym/CartPole-v1", expert=300.0, random=20.0)
    scored = evaluate_task(run, "gym/CartPole-v1", S(episodes=3, seed=5, num_envs=2), card=card)
    assert (scored.expert_return, scored.random_return) == (300.0, 20.0)
    assert scored.baseline_source == str(card)
    assert scored.score == pytest.approx(100 * (scored.return_mean - 20.0) / 280.0)
    # The expert is the random policy: no score.
    card = _card(tmp_path / "random.json", "gym/CartPole-v1", expert=20.0, random=20.0)
    unscored = evaluate_task(run, "gym/CartPole-v1", S(episodes=3, seed=5, num_envs=2), card=card)
    assert unscored.return_mean == scored.return_mean  # same seeds, same play
    assert math.isnan(unscored.score) and not unscored.has_score
    assert unscored.line(expert_is_random=True).endswith(
        "no score (the expert is the random policy)"
    )


def test_eval_scores_against_the_manifest_and_writes_a_report(run_dir):
    run = LoadedRun.load(run_dir)
    result = evaluate_task(run, "gym/CartPole-v1", S(episodes=3, seed=5, num_envs=2))
    assert result.episodes == 3 and result.seeds == [5, 6, 7]
    expert, random = result.expert_return, result.random_return
    assert expert == run.task_entry("gym/CartPole-v1").expert_return
    assert result.score == pytest.approx(100 * (result.return_mean - random) / (expert - random))
    # A random-expert dataset's manifest has no random return: it is measured on the seeds.
    assert "random measured" in result.baseline_source
    summary = write_report(run_dir, [result])
    assert summary["tasks"] == 1 and "gym/CartPole-v1" in summary["table"]
    saved = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert saved["rows"][0]["return_mean"] == result.return_mean
    assert saved["rows"][0]["score"] == pytest.approx(result.score)
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


def test_with_no_past_steps_an_action_depends_on_the_prompt_and_the_present_only(run_dir):
    run = LoadedRun.load(run_dir)
    env = get_task("gym/CartPole-v1").make()
    policy = GatoPolicy(run, "gym/CartPole-v1", past_steps=0)
    assert policy.history_steps == 1 < GatoPolicy(run, "gym/CartPole-v1").history_steps
    obs, _ = env.reset(seed=2)
    policy.start_episode(0, 2)
    for _ in range(5):
        (action,) = policy.act([obs], [0])
        # A policy that has seen nothing of the episode yet (same prompt) acts the same.
        fresh = GatoPolicy(run, "gym/CartPole-v1")
        fresh.start_episode(0, 2)
        assert fresh.act([obs], [0]) == [action]
        obs, *_ = env.step(action)
    assert len(policy.history[0]) == 1
    env.close()
    with pytest.raises(KibbleError, match="past_steps: expected 0 or more"):
        GatoPolicy(run, "gym/CartPole-v1", past_steps=-1)


def test_a_task_outside_the_mixture_is_a_clear_error(run_dir):
    run = LoadedRun.load(run_dir)
    with pytest.raises(KibbleError, match=r"not in .* training mixture"):
        GatoPolicy(run, "gym/Acrobot-v1")


def test_a_folder_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(KibbleError, match="no kibble checkpoint"):
        LoadedRun.load(tmp_path)


def test_deterministic_for_a_seed(run_dir):
    run = LoadedRun.load(run_dir)
    a = evaluate_task(run, "gym/CartPole-v1", S(episodes=2, seed=0, num_envs=1))
    b = evaluate_task(run, "gym/CartPole-v1", S(episodes=2, seed=0, num_envs=2))
    assert a.return_mean == b.return_mean and np.isfinite(a.score)


def test_a_run_trained_without_prompts_is_evaluated_without_one(run_dir):
    run = LoadedRun.load(run_dir)
    assert GatoPolicy(run, "gym/CartPole-v1").prompt_steps > 0  # trained with prompts
    run.config.prompt_fraction = 0.0
    policy = GatoPolicy(run, "gym/CartPole-v1")
    policy.start_episode(0, seed=3)
    assert policy.prompt_steps == 0 and policy.prompts[0] is None


def test_the_headline_counts_only_scored_tasks_and_a_rerun_leaves_no_stale_file(tmp_path):
    from kibble.trainer.scores import write_scores

    first = [row("gym/CartPole-v1", 10.0), row("gym/Acrobot-v1", 60.0)]
    write_scores(tmp_path, first)
    assert (tmp_path / "eval" / "gym__Acrobot-v1.json").exists()
    second = [
        row("gym/CartPole-v1", 90.0),
        row("procgen/starpilot", float("nan"), expert=0.6, random=0.6),
    ]
    summary = write_scores(tmp_path, second)
    assert (summary["tasks"], summary["scored"]) == (2, 1)
    assert "IQM 90.0% over 1 scored task(s) of 2" in summary["table"]
    files = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert "gym__Acrobot-v1.json" not in files  # the first evaluation's task is gone
    assert "gym__CartPole-v1.json" in files and "summary.json" in files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
