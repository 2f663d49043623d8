"""The demo's presets (what it runs) and paths (where everything goes under ``out``).

Two presets: :func:`default_config` (under 20 minutes on 2 CPU cores) and
:func:`short_config` (CI: every stage at tiny sizes, about a minute).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from kibble.schemas.layout import task_dir_name

RLLIB = "rllib"  # a DemoTask expert: trained by the demo with RLlib


@dataclass(frozen=True)
class DemoTask:
    """One task of the demo and where its expert comes from."""

    task: str
    """Task id, e.g. gym/CartPole-v1."""
    expert: str
    """``rllib`` (trained by the demo), ``scripted``, ``bot`` or ``random``."""
    _: KW_ONLY  # the counts by name: DemoTask(task, expert, episodes=..., ...)
    episodes: int
    """Episodes the pipeline rolls out (each kept or rejected)."""
    card_episodes: int
    """Episodes of the expert card (and as many of the random policy, same seeds)."""
    eval_episodes: int
    """Episodes the trained generalist plays."""
    max_steps: int | None = None
    """Cut dataset and card episodes here (a random Pong game lasts about 900 steps)."""
    noise: dict[str, float] | None = None
    """Recovery data: the dataset config's ``noise`` for this task ({fraction, scale})."""
    eval_past_steps: int | None = None
    """Evaluation: earlier timesteps the model sees when it acts (`kibble eval
    --past-steps`); None: as many as the context holds."""


# Meta-World episodes are cut at 100 steps, in the dataset, the cards and the evaluation
# alike: the scripted experts finish within about 50, and whole 500-step episodes are
# mostly the arm holding still, which a small model trained for minutes learns to copy
# (measured: reach-v3 scored -1% trained on 500-step episodes, moving towards the goal
# on 100-step ones).
METAWORLD_STEPS = 100

# Recovery data (DART-style, docs/format.md): on 30% of Meta-World steps the arm executes
# the expert's action plus Gaussian noise of 10% of the action range, and the dataset
# records the expert's own action; BabyAI executes a random action on 20% of steps (the
# bot replans from wherever that leaves it). Measured with benchmarks/learning.py, 2,000
# steps: 200 noisy episodes per Meta-World task scored reach-v3 77.1-98.2% and
# drawer-open-v3 16.9-76.6% over three runs (1,000 steps on 50 clean episodes: 49.8%,
# 22.0%); see docs/learning.md.
MW_NOISE = {"fraction": 0.3, "scale": 0.1}

# Meta-World's generalist acts on the current observation only (`kibble eval --past-steps
# 0`). The scripted experts switch phase on a distance threshold (drawer-open-v3: over the
# handle -> down -> pull); a model that also sees its last few actions keeps repeating
# them past the switch (behaviour cloning's "copycat" problem), hovering over the handle.
# Measured on the same two trained models (benchmarks/learning.py, 2,000 steps, 20
# episodes): drawer-open-v3 39.8% -> 98.9% and 94.6% -> 98.5%, reach-v3 100.5% -> 101.8%
# and 84.8% -> 101.6%. The observation already holds the previous frame, and the experts
# act on it alone. CartPole kept its history: 100.0% -> 91.1% and 92.8% -> 86.8% without.
MW_PAST_STEPS = 0
BABYAI_NOISE = {"fraction": 0.2}

DEFAULT_TASKS = (
    DemoTask("gym/CartPole-v1", RLLIB, episodes=50, card_episodes=20, eval_episodes=20),
    # Two Meta-World tasks whose expert-random gap is wide at 100 steps (measured with
    # `kibble expert eval ... --max-steps 100`, 10 episodes: reach-v3 833 vs 122,
    # drawer-open-v3 457 vs 114; drawer-close-v3, the earlier choice, 245 vs 169).
    DemoTask(
        "metaworld/reach-v3",
        "scripted",
        episodes=200,
        card_episodes=10,
        eval_episodes=20,
        max_steps=METAWORLD_STEPS,
        noise=MW_NOISE,
        eval_past_steps=MW_PAST_STEPS,
    ),
    DemoTask(
        "metaworld/drawer-open-v3",
        "scripted",
        episodes=200,
        card_episodes=10,
        eval_episodes=20,
        max_steps=METAWORLD_STEPS,
        noise=MW_NOISE,
        eval_past_steps=MW_PAST_STEPS,
    ),
    # Language in the observations: the mission as text; the bot is the expert. Its
    # episodes are short (about 6 steps), so it takes many to make a few thousand steps.
    # GoToObj: one object in the room, which the mission names ("go to the blue key").
    # GoToLocal (the same with up to 8 distractors, so the words must pick the object)
    # scored 17.5% and 23.7% in two 2,000-step runs of this preset (benchmarks/learning.py),
    # GoToObj 95.2%: the tiny model in minutes does not yet ground the mission's words.
    DemoTask(
        "babyai/GoToObj-v0",
        "bot",
        episodes=1000,
        card_episodes=20,
        eval_episodes=20,
        noise=BABYAI_NOISE,
    ),
    # A random expert keeps the image path exercised (64x64x3 frames in the dataset and in
    # training); its card's expert is the random policy, so it has no score.
    DemoTask("procgen/starpilot", "random", episodes=16, card_episodes=10, eval_episodes=2),
)


# Each task's share of the training windows, relative to an equal one (sampling: tasks).
# drawer-open-v3 learns slowest (16.9-76.6% over three equal-share runs, acting with its
# history) and gets 2.5 shares (37% of windows). A BabyAI timestep (about 155 tokens)
# fills a 256-token window alone, so its window trains one action token where
# Meta-World's trains 20 and CartPole's 42; at one share, the demo with --seed 1 never
# got its BabyAI loss below 0.6 (GoToObj 72.2%, seed 0: 0.14 and 101.1%), so it gets 2
# shares (30%). The random-expert image task only keeps the image path exercised: 4%.
DEMO_TASK_WEIGHTS = {
    "metaworld/drawer-open-v3": 2.5,
    "babyai/GoToObj-v0": 2.0,
    "procgen/starpilot": 0.25,
}


@dataclass(kw_only=True)
class DemoConfig:
    """What ``kibble demo`` runs; see :func:`default_config` and :func:`short_config`."""

    out: Path = Path("kibble-out/demo")
    """Output directory; everything the demo makes goes under it."""
    preset: str = "default"
    """The preset's name, for the report."""
    tasks: tuple[DemoTask, ...] = DEFAULT_TASKS
    """The tasks, their experts and episode counts."""
    seed: int = 0
    """Base seed: expert training, cards (seeds seed..), dataset, training."""
    eval_seed: int = 1000
    """Evaluation episodes reset with seeds eval_seed.. (not the cards' seeds)."""
    expert_timesteps: int = 200_000
    """RLlib: stop after this many environment steps."""
    expert_target_return: float | None = 490.0
    """RLlib: stop once the mean training return reaches this (CartPole's best is 500)."""
    expert_max_minutes: float = 4.0
    """RLlib: stop after this long whatever the return (a safety cap)."""
    expert_overrides: dict[str, Any] = field(default_factory=dict)
    """RLlib AlgorithmConfig overrides (as `kibble expert train --set`)."""
    episodes_per_shard: int = 25
    """Pipeline: episodes per unit of parallel work (and per progress tick)."""
    num_envs: int = 4
    """Environments stepped together in cards and rollouts."""
    model: str | dict[str, int] = "tiny"
    """Generalist size: a name from kibble.trainer.config.MODEL_SIZES or a table."""
    context: int = 256
    """Tokens per training sequence (Gato: 1024; 256 keeps a CPU step short)."""
    batch_size: int = 16
    learning_rate: float = 1e-3
    """Peak learning rate (tiny models take a higher one than Gato's 1e-4)."""
    sampling: str = "tasks"
    """Mixture sampling: each task an equal share ("tasks") or by timesteps (Gato)."""
    task_weights: dict[str, float] = field(default_factory=lambda: dict(DEMO_TASK_WEIGHTS))
    """Mixture task_weights: multipliers on each task's share (unnamed tasks 1)."""
    action_logits: str = "legal"
    """Softmax over the action's legal ids ("legal") or the whole vocabulary (Gato)."""
    prompt_fraction: float = 0.0
    """Training sequences that start with a demonstration from another episode; with 0
    the evaluation shows no prompt either (measured: a prompt from another episode, whose
    goal differs, halved reach-v3's score)."""
    train_steps: int = 2000
    """Optimizer steps; sized to end near train_minutes on 2 quiet cores (measured: 2,000
    steps, 7.0M tokens, at 8-10K tokens/s on 2 threads)."""
    train_minutes: float | None = 13.0
    """Stop training (with a checkpoint) after this long, whatever train_steps says."""
    torch_threads: int | None = None
    """Torch threads for training and evaluation. Default: training measures a few steps
    with 1 thread and with every core and keeps the faster (a quiet 2-core machine trains
    faster on 2, a busy one on 1: 3.4x slower on 2 when another job ran beside it);
    evaluation and expert inference use half the cores."""
    fresh: bool = False
    """Redo every stage, even when its output exists."""

    @property
    def threads(self) -> int:
        return self.torch_threads or max(1, (os.cpu_count() or 2) // 2)


def default_config(out: Path = Path("kibble-out/demo")) -> DemoConfig:
    """The full demo: under 20 minutes on 2 CPU cores."""
    return DemoConfig(out=Path(out))


def short_config(out: Path = Path("kibble-out/demo")) -> DemoConfig:
    """Every stage at tiny sizes (CI): seconds per stage, about a minute in all."""
    tasks = (
        DemoTask("gym/CartPole-v1", RLLIB, episodes=6, card_episodes=2, eval_episodes=1),
        DemoTask(
            "metaworld/reach-v3",
            "scripted",
            episodes=2,
            card_episodes=1,
            eval_episodes=1,
            max_steps=METAWORLD_STEPS,
            noise=MW_NOISE,
            eval_past_steps=MW_PAST_STEPS,
        ),
        DemoTask(
            "metaworld/drawer-close-v3",
            "scripted",
            episodes=2,
            card_episodes=1,
            eval_episodes=1,
            max_steps=METAWORLD_STEPS,
        ),
        DemoTask("procgen/starpilot", "random", episodes=4, card_episodes=2, eval_episodes=1),
        DemoTask(
            "atari/Pong", "random", episodes=3, card_episodes=1, eval_episodes=1, max_steps=30
        ),
    )
    return DemoConfig(
        out=Path(out),
        preset="short",
        tasks=tasks,
        expert_timesteps=500,
        expert_target_return=None,
        expert_max_minutes=1.0,
        # One small PPO iteration: the path runs, the expert is weak.
        expert_overrides=dict(train_batch_size_per_learner=500, minibatch_size=125, num_epochs=1),
        episodes_per_shard=2,
        model={"layers": 1, "heads": 2, "width": 32, "ff": 64, "patch_hidden": 4},
        context=96,
        batch_size=4,
        train_steps=20,
        train_minutes=None,
        task_weights={},  # an equal share each: 20 steps teach nothing anyway
    )


PRESETS: dict[str, Callable[[Path], DemoConfig]] = {
    "default": default_config,
    "short": short_config,
}


# -- where things go ---------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPaths:
    """Where each stage writes, under ``out``."""

    out: Path

    def expert(self, task: str) -> Path:
        return self.out / "experts" / task_dir_name(task)

    def card(self, task: str) -> Path:
        return self.out / "cards" / f"{task_dir_name(task)}.json"

    @property
    def dataset_config(self) -> Path:
        return self.out / "dataset.yaml"

    @property
    def dataset(self) -> Path:
        return self.out / "dataset"

    @property
    def mixture(self) -> Path:
        return self.out / "mixture.yaml"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def logs(self) -> Path:
        """What libraries and Beam's workers printed, a file per stage."""
        return self.out / "logs"

    @property
    def loss_png(self) -> Path:
        return self.out / "loss.png"

    @property
    def report(self) -> Path:
        return self.out / "report.md"

    @property
    def report_json(self) -> Path:
        return self.out / "report.json"

    def owned(self) -> list[Path]:
        """Everything the demo writes (what ``fresh`` removes)."""
        return [
            self.out / "experts",
            self.out / "cards",
            self.dataset_config,
            self.dataset,
            self.mixture,
            self.run,
            self.loss_png,
            self.report,
            self.report_json,
            self.logs,
        ]


def expert_source(paths: DemoPaths, t: DemoTask) -> str:
    """The expert as the pipeline and the cards name it: a checkpoint path, or a name."""
    return str(paths.expert(t.task)) if t.expert == RLLIB else t.expert
