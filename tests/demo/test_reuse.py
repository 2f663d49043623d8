"""Each demo stage's "can the output be reused?" check, on hand-written files (no training).

A finished output is reused; a changed card, config or mixture is not; an interrupted
training run resumes; ``fresh`` redoes everything. The questions are answered by the
layer that owns each output (experts, cards, pipelines, trainer); the demo's stages are
checked with their expensive work replaced by a recorder.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kibble.demo import DemoConfig, DemoPaths, DemoTask, card_stage, dataset_stage, expert_stage
from kibble.demo import evaluation_stage as eval_stage
from kibble.demo import training_stage as train_stage
from kibble.display import Display
from kibble.experts.card import ExpertCard, ReturnStats, current_card, write_card
from kibble.experts.evaluation import RolloutSettings as S
from kibble.pipelines.config import DatasetConfig, reusable_dataset
from kibble.pipelines.stages import TaskJob
from kibble.schemas import SCHEMA_VERSION
from kibble.trainer.checkpoint import CHECKPOINT, FORMAT, STATE
from kibble.trainer.config import DatasetSpec, MixtureConfig, ModelConfig
from kibble.trainer.evaluate import EvalRequest, current_scores
from kibble.trainer.scores import EvalRow, write_scores
from kibble.trainer.summary import (
    TrainingSummary,
    finished_run,
    resumable_progress,
    write_record,
)

TASK = "gym/CartPole-v1"


class Called(Exception):
    """The stage did the expensive work the test replaced."""


def refuse(*_args, **_kwargs):
    raise Called


def later(path: Path, seconds: float = 5.0) -> None:
    """Move ``path``'s modification time forward (a file written after another)."""
    t = time.time() + seconds
    os.utime(path, (t, t))


# -- experts ------------------------------------------------------------------------------


def demo_cfg(out: Path, **kw) -> DemoConfig:
    tasks = (DemoTask(TASK, "rllib", episodes=2, card_episodes=2, eval_episodes=1),)
    defaults = dict(out=out, tasks=tasks, expert_timesteps=500, expert_target_return=None)
    return DemoConfig(**{**defaults, **kw})


def write_expert(out: Path, env_steps: int, seconds: float = 1.0) -> None:
    (out / "checkpoint").mkdir(parents=True)
    progress = {"iteration": 1, "env_steps": env_steps, "return_mean": 20.0, "seconds": seconds}
    meta = {"task": TASK, "algorithm": "PPO", "progress": progress}
    (out / "kibble_expert.json").write_text(json.dumps(meta))


def test_a_finished_expert_is_reused_and_an_unfinished_one_trained(tmp_path, monkeypatch):
    cfg = demo_cfg(tmp_path)
    paths = DemoPaths(tmp_path)
    write_expert(paths.expert(TASK), env_steps=509)
    monkeypatch.setattr(expert_stage, "_train_expert", refuse)
    result = expert_stage.train_experts(cfg, paths, Display())
    assert result.reused and "reused" in result.details[0] and "509 env steps" in result.details[0]
    # A larger step budget (and no time spent): the stop rule is not met, so it trains on.
    with pytest.raises(Called):
        expert_stage.train_experts(replace(cfg, expert_timesteps=10_000), paths, Display())
    with pytest.raises(Called):  # --fresh
        expert_stage.train_experts(replace(cfg, fresh=True), paths, Display())


# -- cards --------------------------------------------------------------------------------


def card(task: str = TASK, expert: str = "random", episodes: int = 2, **kw) -> ExpertCard:
    stats = ReturnStats(mean=10.0, std=1.0, min=9.0, max=11.0)
    fields = dict(
        task=task, expert=expert, sampled=False, episodes=episodes, seeds=[0, 1],
        expert_return=stats, random_return=ReturnStats(mean=5.0, std=0.0, min=5.0, max=5.0),
        success_rate=None, random_success_rate=None, length_mean=10.0, versions={},
    )  # fmt: skip
    return ExpertCard(**{**fields, **kw})


def test_a_card_measured_with_these_settings_is_current(tmp_path):
    path = tmp_path / "card.json"
    write_card(card(), path)
    assert current_card(path, TASK, "random", S(episodes=2, seed=0)) is not None
    assert current_card(path, TASK, "random", S(episodes=3, seed=0)) is None  # other episodes
    assert current_card(path, TASK, "random", S(episodes=2, seed=1)) is None  # other seeds
    assert current_card(path, TASK, "random", S(episodes=2, seed=0, max_steps=30)) is None  # cut
    assert current_card(path, TASK, "scripted", S(episodes=2, seed=0)) is None  # other expert
    assert current_card(path, "gym/Acrobot-v1", "random", S(episodes=2, seed=0)) is None
    assert current_card(tmp_path / "missing.json", TASK, "random", S(episodes=2, seed=0)) is None


def test_a_card_of_a_retrained_expert_is_not_current(tmp_path):
    expert = tmp_path / "expert"
    write_expert(expert, env_steps=500)
    path = tmp_path / "card.json"
    write_card(card(expert=str(expert)), path)
    later(path)
    assert current_card(path, TASK, str(expert), S(episodes=2, seed=0)) is not None
    later(expert / "kibble_expert.json", seconds=60)  # trained again after the card
    assert current_card(path, TASK, str(expert), S(episodes=2, seed=0)) is None


def test_the_card_stage_reuses_current_cards_and_remakes_changed_ones(tmp_path, monkeypatch):
    tasks = (DemoTask(TASK, "random", episodes=2, card_episodes=2, eval_episodes=1),)
    cfg = demo_cfg(tmp_path, tasks=tasks)
    paths = DemoPaths(tmp_path)
    write_card(card(), paths.card(TASK))
    monkeypatch.setattr("kibble.experts.card.make_card", refuse)
    result = card_stage.make_cards(cfg, paths, Display())
    assert result.reused and result.summary == "reused 1 cards"
    with pytest.raises(Called):  # a changed setting: the card is remade
        changed = (replace(tasks[0], card_episodes=3),)
        card_stage.make_cards(replace(cfg, tasks=changed), paths, Display())
    with pytest.raises(Called):
        card_stage.make_cards(replace(cfg, fresh=True), paths, Display())


# -- dataset ------------------------------------------------------------------------------


def entry(expert_return: float = 10.0, random_return: float = 5.0) -> dict:
    return dict(
        expert="random", planned=2, kept=2, rejected={}, steps=20, tokens=120,
        expert_return=expert_return, expert_return_source="card", random_return=random_return,
        fraction=0.8, threshold=8.0, rule="card",
    )  # fmt: skip


def write_dataset(config: DatasetConfig, **entry_kw) -> None:
    out = Path(config.output)
    out.mkdir(parents=True)
    manifest = {
        "name": config.name,
        "schema_version": SCHEMA_VERSION,
        "config": json.loads(json.dumps(config.as_dict())),
        "tasks": {job.task: entry(**entry_kw) for job in config.tasks},
        "files": [{"path": "data/x.parquet", "rows": 20, "bytes": 1, "sha256": "ab"}],
    }
    (out / "manifest.json").write_text(json.dumps(manifest))


def dataset_config(tmp_path: Path, **kw) -> DatasetConfig:
    write_card(card(), tmp_path / "card.json")
    job = TaskJob(TASK, "random", 2, card=str(tmp_path / "card.json"))
    return DatasetConfig(**{"name": "d", "output": str(tmp_path / "ds"), "tasks": [job], **kw})


def test_a_dataset_of_this_config_and_these_cards_is_reused(tmp_path):
    config = dataset_config(tmp_path)
    assert reusable_dataset(config) is None  # nothing there yet
    write_dataset(config)
    assert reusable_dataset(config)["name"] == "d"
    assert reusable_dataset(replace(config, seed=1)) is None  # another config
    write_card(
        card(random_return=ReturnStats(mean=6.0, std=0.0, min=6.0, max=6.0)), tmp_path / "card.json"
    )
    assert reusable_dataset(config) is None  # the card changed


def test_the_dataset_stage_reuses_or_reruns_the_job(tmp_path, monkeypatch):
    tasks = (DemoTask(TASK, "random", episodes=2, card_episodes=2, eval_episodes=1),)
    cfg = demo_cfg(tmp_path, tasks=tasks)
    paths = DemoPaths(tmp_path)
    write_card(card(), paths.card(TASK))
    paths.dataset_config.write_text(dataset_stage.dataset_config_text(cfg, paths))
    from kibble.pipelines.config import load_config

    write_dataset(load_config(paths.dataset_config))
    monkeypatch.setattr("kibble.pipelines.beam_job.run", refuse)
    result = dataset_stage.build_dataset(cfg, paths, Display())
    assert result.reused
    assert result.details == [
        f"{TASK}: kept 2 of 2 (rejected: none); 20 steps, 120 tokens; threshold 8.0"
    ]
    with pytest.raises(Called):  # another config
        dataset_stage.build_dataset(replace(cfg, episodes_per_shard=1), paths, Display())
    with pytest.raises(Called):
        dataset_stage.build_dataset(replace(cfg, fresh=True), paths, Display())


# -- train --------------------------------------------------------------------------------

TINY = ModelConfig(layers=1, heads=2, width=32, ff=64, patch_hidden=4)


def mixture(dataset: Path, **kw) -> MixtureConfig:
    return MixtureConfig(
        datasets=[DatasetSpec(str(dataset))], model=TINY, model_name="custom", steps=20, **kw
    )


def write_checkpoint(run: Path, config: MixtureConfig, step: int, seconds: float = 2.0) -> None:
    (run / CHECKPOINT).mkdir(parents=True, exist_ok=True)
    progress = {"step": step, "tokens": 100 * step, "seconds": seconds, "loader_rng": None}
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        "progress": progress,
        # A real checkpoint's state.json holds these too (read_state checks for them).
        "optimizer": {"param_groups": [], "scalars": []},
        "torch_rng": [],
    }
    (run / CHECKPOINT / STATE).write_text(json.dumps(state))


def summary(step: int) -> TrainingSummary:
    return TrainingSummary(
        run_dir="run", step=step, steps=20, tokens=100 * step, seconds=2.0, parameters=1234,
        stopped_early=False, resumed=False, tasks=[TASK],
    )  # fmt: skip


def test_a_finished_run_of_this_mixture_on_these_files_is_reused(tmp_path):
    config = dataset_config(tmp_path)
    write_dataset(config)
    run, mix = tmp_path / "run", mixture(tmp_path / "ds")
    write_checkpoint(run, mix, step=20)
    assert finished_run(run, mix) is None  # a checkpoint, but no call finished
    assert resumable_progress(run, mix)["step"] == 20
    write_record(run, summary(20), mix)
    assert finished_run(run, mix) == summary(20)
    assert finished_run(run, replace(mix, max_minutes=3.0)) == summary(20)  # time limit aside
    assert finished_run(run, replace(mix, steps=40)) is None  # another mixture
    assert resumable_progress(run, replace(mix, steps=40)) is None  # ... not resumable either
    assert resumable_progress(run, mix) is None  # finished: nothing to resume
    # The dataset was curated again (other files): the finished run is not of these files.
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    manifest["files"][0]["sha256"] = "cd"
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(manifest))
    assert finished_run(run, mix) is None


def test_an_interrupted_run_resumes(tmp_path):
    config = dataset_config(tmp_path)
    write_dataset(config)
    run, mix = tmp_path / "run", mixture(tmp_path / "ds")
    write_checkpoint(run, mix, step=10)
    write_record(run, summary(10), mix)
    write_checkpoint(run, mix, step=15, seconds=90.0)  # a later call, killed after a checkpoint
    assert finished_run(run, mix) is None
    assert resumable_progress(run, mix)["seconds"] == 90.0


def test_the_train_stage_reuses_resumes_or_starts_over(tmp_path, monkeypatch):
    tasks = (DemoTask(TASK, "random", episodes=2, card_episodes=2, eval_episodes=1),)
    small = {"layers": 1, "heads": 2, "width": 32, "ff": 64, "patch_hidden": 4}
    cfg = demo_cfg(tmp_path, tasks=tasks, model=small, train_steps=20, train_minutes=3.0)
    paths = DemoPaths(tmp_path)
    write_dataset(dataset_config(tmp_path, output=str(paths.dataset)))
    calls = []

    def fake_train(config, threads, paths, display):
        calls.append(config)
        return summary(config.steps)

    monkeypatch.setattr(train_stage, "_train", fake_train)
    paths.mixture.write_text(train_stage.mixture_text(cfg, paths))
    from kibble.trainer.config import load_mixture

    mix = load_mixture(paths.mixture)
    write_checkpoint(paths.run, mix, step=20)
    write_record(paths.run, summary(20), mix)
    result = train_stage.train_generalist(cfg, paths, Display())
    assert result.reused and not calls
    assert result.summary.startswith(f"reused {paths.run}: 1,234 parameters, 20/20 steps (done)")
    # Interrupted after 60 s of training: resumed with the rest of the 3 minutes.
    write_checkpoint(paths.run, mix, step=25, seconds=60.0)
    train_stage.train_generalist(cfg, paths, Display())
    assert calls[-1].max_minutes == pytest.approx(2.0) and paths.run.is_dir()
    # Another mixture's run is removed, and training starts over.
    other = replace(cfg, learning_rate=5e-4)
    train_stage.train_generalist(other, paths, Display())
    assert calls[-1].max_minutes == 3.0 and not paths.run.exists()  # fake_train wrote nothing
    write_checkpoint(paths.run, mix, step=20)
    write_record(paths.run, summary(20), mix)
    train_stage.train_generalist(replace(cfg, fresh=True), paths, Display())
    assert len(calls) == 3


# -- eval ---------------------------------------------------------------------------------


def eval_row(task: str = TASK, episodes: int = 1, seed: int = 1000) -> EvalRow:
    return EvalRow(
        task=task, episodes=episodes, seeds=[seed + i for i in range(episodes)],
        return_mean=9.0, return_std=0.0, success_rate=None, expert_return=9.5,
        random_return=17.5, baseline_source="card", score=float("nan"), step=20,
    )  # fmt: skip


def test_scores_of_these_tasks_on_the_last_checkpoint_are_reused(tmp_path):
    run = tmp_path / "run"
    write_checkpoint(run, mixture(tmp_path / "ds"), step=20)
    asked = functools.partial(EvalRequest, task=TASK)
    wanted = [asked(episodes=1, seed=1000)]
    assert current_scores(run, wanted) is None  # not evaluated yet
    write_scores(run, [eval_row()])
    later(run / "eval" / "summary.json")
    assert [r.task for r in current_scores(run, wanted)] == [TASK]
    assert current_scores(run, [asked(episodes=2, seed=1000)]) is None  # other episodes
    assert current_scores(run, [asked(episodes=1, seed=0)]) is None  # other seeds
    assert current_scores(run, [asked(episodes=1, seed=1000, max_steps=30)]) is None  # cut
    # Played seeing every earlier timestep: not the scores of acting on the present alone.
    assert current_scores(run, [asked(episodes=1, seed=1000, past_steps=0)]) is None
    later(run / CHECKPOINT / STATE, seconds=60)  # trained further after the scores
    assert current_scores(run, wanted) is None


def test_the_eval_stage_reuses_current_scores(tmp_path, monkeypatch):
    tasks = (DemoTask(TASK, "random", episodes=2, card_episodes=2, eval_episodes=1),)
    cfg = demo_cfg(tmp_path, tasks=tasks)
    paths = DemoPaths(tmp_path)
    write_checkpoint(paths.run, mixture(paths.dataset), step=20)
    (paths.run / "tasks.json").write_text(json.dumps([{"task": TASK}]))
    write_scores(paths.run, [eval_row()])
    later(paths.run / "eval" / "summary.json")
    monkeypatch.setattr("kibble.trainer.evaluate.LoadedRun.load", refuse)
    result = eval_stage.evaluate_generalist(cfg, paths, Display())
    assert result.reused
    assert result.details == [
        f"{TASK}: return 9.0 ± 0.0 over 1 episodes (expert 9.5, random 17.5): no score "
        "(the expert is the random policy)"
    ]
    with pytest.raises(Called):
        eval_stage.evaluate_generalist(replace(cfg, eval_seed=7), paths, Display())
    with pytest.raises(Called):
        eval_stage.evaluate_generalist(replace(cfg, fresh=True), paths, Display())
