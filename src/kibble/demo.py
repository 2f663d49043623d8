"""``kibble demo``: the main job, end to end, on one machine.

    RLlib expert (CartPole) + scripted experts (Meta-World) + random ones (Procgen, Atari)
    -> expert cards -> Beam curation job -> curated dataset -> Gato trainer
    -> evaluation against the cards -> report.md

Each stage is a function that writes under ``out`` and returns a :class:`StageResult`.
A stage whose output already exists, made from the same inputs and settings, is reused
(``fresh=True`` redoes everything). The demo writes the configs it runs as files, so
every stage can be rerun by hand with the command it stands for:

    OUT/experts/<task>/     kibble expert train      (RLlib checkpoint, progress.jsonl)
    OUT/cards/<task>.json   kibble expert eval       (expert cards)
    OUT/dataset.yaml        kibble pipeline run OUT/dataset.yaml
    OUT/dataset/            the curated dataset (manifest.json, data/, rejected/, returns/)
    OUT/mixture.yaml        kibble train OUT/mixture.yaml --out OUT/run
    OUT/run/                checkpoint, metrics.jsonl, eval/ (kibble eval)
    OUT/report.md           cards, dataset counts, training, scores, with PNGs
    OUT/report.json         the same numbers, and each stage's wall time

Two presets: :func:`default_config` (under 20 minutes on 2 CPU cores) and
:func:`short_config` (CI: every stage at tiny sizes, about a minute).
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

import kibble
from kibble.errors import KibbleError

log = logging.getLogger(__name__)

RLLIB = "rllib"  # a DemoTask expert: trained by the demo with RLlib
STAGES = ("experts", "cards", "dataset", "train", "eval", "report")


@dataclass(frozen=True)
class DemoTask:
    """One task of the demo and where its expert comes from."""

    task: str
    """Task id, e.g. gym/CartPole-v1."""
    expert: str
    """``rllib`` (trained by the demo), ``scripted`` or ``random``."""
    episodes: int
    """Episodes the pipeline rolls out (each kept or rejected)."""
    card_episodes: int
    """Episodes of the expert card (and as many of the random policy, same seeds)."""
    eval_episodes: int
    """Episodes the trained generalist plays."""
    max_steps: int | None = None
    """Cut dataset and card episodes here (a random Pong game lasts about 900 steps)."""


# Meta-World episodes are cut at 100 steps, in the dataset, the cards and the evaluation
# alike: the scripted experts finish within about 50, and whole 500-step episodes are
# mostly the arm holding still, which a small model trained for minutes learns to copy
# (measured: reach-v3 scored -1% trained on 500-step episodes, moving towards the goal
# on 100-step ones).
METAWORLD_STEPS = 100

DEFAULT_TASKS = (
    DemoTask("gym/CartPole-v1", RLLIB, episodes=50, card_episodes=20, eval_episodes=5),
    DemoTask(
        "metaworld/reach-v3",
        "scripted",
        episodes=50,
        card_episodes=10,
        eval_episodes=10,
        max_steps=METAWORLD_STEPS,
    ),
    DemoTask(
        "metaworld/drawer-close-v3",
        "scripted",
        episodes=50,
        card_episodes=10,
        eval_episodes=10,
        max_steps=METAWORLD_STEPS,
    ),
    # Random experts bring image observations; their cards' expert is the random policy,
    # so they have no expert-normalized score (the gap is zero), only returns.
    DemoTask("procgen/starpilot", "random", episodes=16, card_episodes=10, eval_episodes=2),
    DemoTask("atari/Pong", "random", episodes=10, card_episodes=5, eval_episodes=1, max_steps=200),
)


@dataclass
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
    episodes_per_shard: int = 10
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
    train_steps: int = 480
    """Optimizer steps; sized to end near train_minutes on 2 busy cores (about 1 step/s)."""
    train_minutes: float | None = 8.0
    """Stop training (with a checkpoint) after this long, whatever train_steps says."""
    torch_threads: int | None = None
    """Torch threads for training and evaluation; default half the cores, at least 1.
    Measured on 2 cores shared with another job: with 1 thread the tiny model trains 3.4x
    faster than with 2 (3,900 vs 1,100 tokens/s) and played Pong 20x faster (before
    evaluation had a key/value cache)."""
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
    )


PRESETS: dict[str, Callable[[Path], DemoConfig]] = {
    "default": default_config,
    "short": short_config,
}


@dataclass
class StageResult:
    """What a stage did: made or reused its output, how long it took, what it found."""

    stage: str
    reused: bool
    seconds: float
    summary: str
    details: list[str] = field(default_factory=list)


class Display:
    """How the demo shows its progress. This base shows nothing; the CLI draws bars."""

    @contextmanager
    def bar(self, description: str, total: float | None) -> Iterator[Callable[..., None]]:
        """A progress bar for the ``with`` block; yields ``update(completed=, advance=,
        info=)``."""
        yield lambda **_: None

    def stage_done(self, number: int, result: StageResult) -> None:
        """A stage finished (or was reused)."""

    def note(self, line: str) -> None:
        """A line worth showing while a stage runs (what is about to be trained...)."""

    def stage_output(self, log_file: Path) -> AbstractContextManager:
        """Where the stage's own output goes: here, unchanged. The CLI sends it to
        ``log_file`` with :func:`output_to`, so library banners and Beam workers' logging
        do not scroll over its progress bars."""
        return nullcontext()


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``path`` for the block, for this process and the
    processes it starts (Beam's workers, Ray's). Python's and C's buffers are flushed at
    both ends, so nothing printed before or after lands on the wrong side."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _flush_all()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        _flush_all()
        for fd, saved_fd in zip((1, 2), saved, strict=True):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)


def _flush_all() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    # C stdio too (C++ iostreams are synced to it): ALE's banner, MuJoCo's warnings.
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)


# -- where things go ---------------------------------------------------------------------


@dataclass(frozen=True)
class DemoPaths:
    out: Path

    def expert(self, task: str) -> Path:
        return self.out / "experts" / task.replace("/", "__")

    def card(self, task: str) -> Path:
        return self.out / "cards" / f"{task.replace('/', '__')}.json"

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
    def run_marker(self) -> Path:
        """Written when training ends: the mixture and dataset it trained on."""
        return self.out / "run" / "demo.json"

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


# -- 1. experts ----------------------------------------------------------------------------


def _expert_finished(meta: dict | None, cfg: DemoConfig) -> bool:
    progress = (meta or {}).get("progress") or {}
    if not progress:
        return False
    target = cfg.expert_target_return
    reached = target is not None and (progress.get("return_mean") or -math.inf) >= target
    return (
        reached
        or progress.get("env_steps", 0) >= cfg.expert_timesteps
        or progress.get("seconds", 0) >= 60 * cfg.expert_max_minutes
    )


def train_experts(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """Train (or resume, or reuse) an RLlib expert for every ``rllib`` task."""
    from kibble.experts.rllib_policy import CHECKPOINT_SUBDIR, read_expert_metadata

    started = time.monotonic()
    details, made = [], False
    for t in (t for t in cfg.tasks if t.expert == RLLIB):
        out = paths.expert(t.task)
        meta = read_expert_metadata(out)
        if (out / CHECKPOINT_SUBDIR).is_dir() and _expert_finished(meta, cfg):
            p = meta["progress"]
            details.append(
                f"{t.task}: reused {out} ({meta['algorithm']}, {p['env_steps']:,} env steps, "
                f"mean training return {_fmt(p['return_mean'])})"
            )
            continue
        made = True
        meta = _train_expert(cfg, t.task, out, display)
        p = meta.get("progress") or {}
        details.append(
            f"{t.task}: {meta['algorithm']} trained to {p.get('env_steps', 0):,} env steps, "
            f"mean training return {_fmt(p.get('return_mean'))} -> {out}"
        )
    if not details:
        return StageResult("experts", True, time.monotonic() - started, "no RLlib experts")
    verb = "trained" if made else "reused"
    summary = f"{verb} {len(details)} RLlib expert(s)"
    return StageResult("experts", not made, time.monotonic() - started, summary, details)


def _train_expert(cfg: DemoConfig, task: str, out: Path, display: Display) -> dict:
    import ray

    from kibble.experts.rllib_train import ExpertTrainConfig, train_expert

    train_cfg = ExpertTrainConfig(
        task=task,
        out=out,
        timesteps=cfg.expert_timesteps,
        target_return=cfg.expert_target_return,
        max_minutes=cfg.expert_max_minutes,
        seed=cfg.seed,
        overrides=dict(cfg.expert_overrides),
    )
    last = {"return": "n/a"}
    try:
        with display.bar(f"RLlib expert {task}", cfg.expert_timesteps) as update:
            update(info="starting Ray")

            def show(report) -> None:
                if report.return_mean is not None:
                    last["return"] = f"{report.return_mean:.1f}"
                update(
                    completed=report.env_steps,
                    info=f"iter {report.iteration}, mean return {last['return']}",
                )

            return train_expert(train_cfg, on_iteration=show)
    finally:
        _set_torch_threads(cfg.threads)  # train_expert sets its own
        if ray.is_initialized():
            ray.shutdown()  # its processes would hold memory and CPU through the later stages


# -- 2. cards ------------------------------------------------------------------------------


def make_cards(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """An expert card per task: the expert's and the random policy's returns."""
    from kibble.experts.card import make_card, write_card

    started = time.monotonic()
    details, made = [], 0
    for t in cfg.tasks:
        path, source = paths.card(t.task), expert_source(paths, t)
        card = _reusable_card(path, t, source, cfg, paths)
        reused = card is not None
        if not reused:
            label = "random" if source == "random" else f"{t.expert} and random"
            runs = 1 if source == "random" else 2
            with display.bar(f"card {t.task} ({label})", runs * t.card_episodes) as update:
                card = make_card(
                    t.task,
                    source,
                    t.card_episodes,
                    cfg.seed,
                    cfg.num_envs,
                    lambda _, u=update: u(advance=1),
                    max_steps=t.max_steps,
                )
            write_card(card, path)
            made += 1
        details.append(_card_line(card, t, reused))
    seconds = time.monotonic() - started
    if made == 0:
        details = [line.removesuffix(" [reused]") for line in details]
        return StageResult("cards", True, seconds, f"reused {len(details)} cards", details)
    where = paths.card(cfg.tasks[0].task).parent
    summary = f"wrote {made} expert card(s) to {where}" + (
        f", reused {len(details) - made}" if made < len(details) else ""
    )
    return StageResult("cards", False, seconds, summary, details)


def _reusable_card(path: Path, t: DemoTask, source: str, cfg: DemoConfig, paths: DemoPaths):
    """The card at ``path`` if it measured this expert with these settings."""
    from kibble.experts.card import read_card

    if cfg.fresh or not path.is_file():
        return None
    try:
        card = read_card(path)
    except KibbleError:
        return None
    same = (
        card.task == t.task
        and card.expert == source
        and card.episodes == t.card_episodes
        and card.max_steps == t.max_steps
        and card.seeds[:1] == [cfg.seed]
    )
    if not same:
        return None
    if t.expert == RLLIB:  # a retrained expert needs a new card
        from kibble.experts.rllib_policy import EXPERT_METADATA

        meta = paths.expert(t.task) / EXPERT_METADATA
        if not meta.is_file() or meta.stat().st_mtime > path.stat().st_mtime:
            return None
    return card


def _card_line(card, t: DemoTask, reused: bool) -> str:
    success = "" if card.success_rate is None else f", success {card.success_rate:.2f}"
    cut = f", episodes cut at {t.max_steps} steps" if t.max_steps else ""
    return (
        f"{t.task} ({t.expert}): return {card.expert_return.mean:.1f} ± "
        f"{card.expert_return.std:.1f}{success}; random {card.random_return.mean:.1f} "
        f"(N={card.episodes}{cut}){' [reused]' if reused else ''}"
    )


# -- 3. dataset ----------------------------------------------------------------------------


def dataset_config_text(cfg: DemoConfig, paths: DemoPaths) -> str:
    """The dataset config as YAML (what `kibble pipeline run` takes)."""
    tasks = []
    for t in cfg.tasks:
        entry = {"task": t.task, "expert": expert_source(paths, t), "episodes": t.episodes}
        entry["card"] = str(paths.card(t.task))
        if t.max_steps:
            entry["max_steps"] = t.max_steps
        tasks.append(entry)
    body = {
        "name": "kibble-demo",
        "output": str(paths.dataset),
        "seed": cfg.seed,
        "filter": {"fraction": 0.8},
        "episodes_per_shard": cfg.episodes_per_shard,
        "num_envs": cfg.num_envs,
        "tasks": tasks,
    }
    header = f"# Written by kibble demo; rerun with: kibble pipeline run {paths.dataset_config}\n"
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=200)


def build_dataset(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """Run the Beam curation job (local runner, all cores) into ``OUT/dataset``."""
    from kibble.pipelines.config import load_config

    started = time.monotonic()
    paths.dataset_config.parent.mkdir(parents=True, exist_ok=True)
    paths.dataset_config.write_text(dataset_config_text(cfg, paths))
    config = load_config(paths.dataset_config)
    manifest = None if cfg.fresh else _reusable_manifest(config)
    reused = manifest is not None
    if not reused:
        from kibble.pipelines.beam_job import run
        from kibble.pipelines.stages import plan_shards

        shards = sum(len(plan_shards(j, config.episodes_per_shard)) for j in config.tasks)
        episodes = sum(j.episodes for j in config.tasks)
        description = f"Beam: {episodes} episodes of {len(config.tasks)} tasks"
        with display.bar(description, shards) as update, _watch_shards(paths.dataset, update):
            manifest = run(config, [])
    details = []
    for task, t in _in_order(manifest["tasks"], cfg):
        rejected = ", ".join(f"{k} {v}" for k, v in t["rejected"].items()) or "none"
        details.append(
            f"{task}: kept {t['kept']} of {t['planned']} (rejected: {rejected}); "
            f"{t['steps']:,} steps, {t['tokens']:,} tokens; threshold {_fmt(t['threshold'])}"
        )
    kept = sum(t["kept"] for t in manifest["tasks"].values())
    planned = sum(t["planned"] for t in manifest["tasks"].values())
    verb = "reused" if reused else "curated"
    summary = f"{verb} {paths.dataset}: kept {kept} of {planned} episodes"
    return StageResult("dataset", reused, time.monotonic() - started, summary, details)


def _reusable_manifest(config) -> dict | None:
    """The existing dataset's manifest if it was made by this config from these cards."""
    from kibble.experts.card import read_card
    from kibble.schemas.dataset import read_manifest

    try:
        manifest = read_manifest(config.output)
    except KibbleError:
        return None
    if _plain(manifest.get("config")) != _plain(config.as_dict()):
        return None
    for job in config.tasks:
        entry = manifest["tasks"].get(job.task) or {}
        try:
            card = read_card(job.card)
        except KibbleError:
            return None
        if (entry.get("expert_return"), entry.get("random_return")) != (
            card.expert_return.mean,
            card.random_return.mean,
        ):
            return None
    return manifest


@contextmanager
def _watch_shards(out: Path, update: Callable[..., None]) -> Iterator[None]:
    """Count the shards Beam workers have rolled out (their staging files appear whole,
    under a fresh folder beside ``out``), for the progress bar."""
    from kibble.pipelines.local import STAGING

    stop = threading.Event()
    pattern = f".{out.name}.staging-*/{STAGING}/*/part-*.parquet"

    def watch() -> None:
        while not stop.wait(0.5):
            update(completed=sum(1 for _ in out.parent.glob(pattern)))

    thread = threading.Thread(target=watch, name="kibble-demo-shards", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# -- 4. train ------------------------------------------------------------------------------


def mixture_text(cfg: DemoConfig, paths: DemoPaths) -> str:
    """The mixture as YAML (what `kibble train` takes)."""
    body: dict[str, Any] = {
        "datasets": [{"path": str(paths.dataset), "weight": 1.0}],
        "model": cfg.model,
        "context": cfg.context,
        "batch_size": cfg.batch_size,
        "steps": cfg.train_steps,
        "learning_rate": cfg.learning_rate,
        "seed": cfg.seed,
        "log_every": 5,
        "checkpoint_every": 100,
    }
    if cfg.train_minutes is not None:
        body["max_minutes"] = cfg.train_minutes
    header = (
        f"# Written by kibble demo; rerun with: kibble train {paths.mixture} --out {paths.run}\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)


def train_generalist(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """Train the generalist on the dataset; an interrupted run resumes, a finished one is
    reused while its mixture and dataset are unchanged."""
    from kibble.schemas.dataset import read_manifest
    from kibble.trainer.checkpoint import CHECKPOINT, read_state
    from kibble.trainer.config import load_mixture

    started = time.monotonic()
    paths.mixture.write_text(mixture_text(cfg, paths))
    config = load_mixture(paths.mixture)
    files = sorted(f["sha256"] for f in read_manifest(paths.dataset)["files"])
    wanted = {"mixture": _plain(config.to_dict()), "dataset_files": files}
    marker = _read_json(paths.run_marker)
    checkpoint = paths.run / CHECKPOINT
    same = marker is not None and {k: marker.get(k) for k in wanted} == wanted
    if same and checkpoint.is_dir() and not cfg.fresh:
        s = marker["summary"]
        reuse = f"reused {paths.run}: {_train_line(s)}"
        return StageResult("train", True, time.monotonic() - started, reuse)
    if marker is not None or (
        checkpoint.is_dir()
        and not _same_mixture(read_state(paths.run)["config"], wanted["mixture"])
    ):
        # A finished run of other settings, or a checkpoint of another mixture: start over.
        shutil.rmtree(paths.run, ignore_errors=True)
    elif checkpoint.is_dir() and cfg.train_minutes is not None:
        done = read_state(paths.run)["progress"]["seconds"] / 60
        config = replace(config, max_minutes=max(0.1, cfg.train_minutes - done))
    summary = _train(config, cfg.threads, paths, display)
    paths.run_marker.write_text(json.dumps({**wanted, "summary": summary}, indent=2) + "\n")
    seconds = time.monotonic() - started
    return StageResult("train", False, seconds, _train_line(summary))


def _same_mixture(a: dict, b: dict) -> bool:
    """The same training, whatever time limit each call had (a resumed run gets less)."""
    drop = lambda d: {k: v for k, v in _plain(d).items() if k != "max_minutes"}  # noqa: E731
    return drop(a) == drop(b)


def _train(config, threads: int, paths: DemoPaths, display: Display) -> dict:
    from kibble.trainer.train import train

    _set_torch_threads(threads)

    limit = f", up to {config.max_minutes:.1f} min" if config.max_minutes else ""
    with display.bar(f"training ({config.model_name}{limit})", config.steps) as update:

        def start(info: dict) -> None:
            resuming = f", resuming at step {info['step']}" if info["step"] else ""
            display.note(
                f"training {info['parameters']:,} parameters on {info['device']}{resuming}: "
                f"{info['episodes']} episodes, {info['timesteps']:,} timesteps of "
                f"{len(info['tasks'])} tasks"
            )
            update(completed=info["step"])

        def step(r) -> None:
            update(completed=r.step, info=f"loss {r.loss:.3f}, {r.tokens_per_s:,.0f} tok/s")

        summary = train(config, paths.run, on_step=step, on_start=start)
    # The final loss: the mean over the last tenth of the logged windows (one is noisy).
    tail = _metrics(paths.run)
    tail = tail[-max(1, len(tail) // 10) :]
    summary["final_loss"] = sum(m["loss"] for m in tail) / len(tail) if tail else None
    families = sorted({f for m in tail for f in m["family_loss"]})
    summary["final_family_loss"] = {
        f: _mean([m["family_loss"][f] for m in tail if f in m["family_loss"]]) for f in families
    }
    return summary


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _train_line(s: dict) -> str:
    how = "stopped at the time limit" if s["stopped_early"] else "done"
    rate = s["tokens"] / s["seconds"] if s["seconds"] else 0.0
    return (
        f"{s['parameters']:,} parameters, {s['step']}/{s['steps']} steps ({how}), "
        f"{s['tokens']:,} tokens at {rate:,.0f} tok/s, final loss {_fmt(s['final_loss'], 3)}"
    )


def _metrics(run: Path) -> list[dict]:
    from kibble.trainer.train import METRICS

    path = run / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- 5. eval -------------------------------------------------------------------------------


def evaluate_generalist(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """Play the trained generalist on every task it trained on; scores from the cards."""
    from kibble.trainer.checkpoint import CHECKPOINT, STATE
    from kibble.trainer.evaluate import LoadedRun, evaluate_task, write_report

    started = time.monotonic()
    summary_file = paths.run / "eval" / "summary.json"
    trained = {t["task"] for t in json.loads((paths.run / "tasks.json").read_text())}
    tasks = [t for t in cfg.tasks if t.task in trained]
    skipped = [t.task for t in cfg.tasks if t.task not in trained]
    wanted = [(t.task, t.eval_episodes, cfg.eval_seed) for t in tasks]
    old = _read_json(summary_file)
    state = paths.run / CHECKPOINT / STATE
    if (
        old is not None
        and not cfg.fresh
        and [(r["task"], r["episodes"], r["seeds"][0]) for r in old["rows"]] == wanted
        and summary_file.stat().st_mtime > state.stat().st_mtime
    ):
        rows, reused = old["rows"], True
    else:
        _set_torch_threads(cfg.threads)
        run = LoadedRun.load(paths.run)
        rows, reused = [], False
        for t in tasks:
            with display.bar(f"eval {t.task}", t.eval_episodes) as update:
                rows.append(
                    evaluate_task(
                        run,
                        t.task,
                        t.eval_episodes,
                        cfg.eval_seed,
                        num_envs=t.eval_episodes,  # all episodes in lockstep: one batch
                        card=paths.card(t.task),
                        on_episode=lambda _, u=update: u(advance=1),
                        max_steps=t.max_steps,  # as the card and the dataset were cut
                    )
                )
        with warnings.catch_warnings():  # a family of random-expert tasks has no mean score
            warnings.simplefilter("ignore", RuntimeWarning)
            write_report(paths.run, rows)
    random_experts = {t.task for t in cfg.tasks if t.expert == "random"}
    details = [_score_line(r, r["task"] in random_experts) for r in rows]
    details += [f"{task}: no kept episodes, so not trained on nor evaluated" for task in skipped]
    scored = [r["score"] for r in rows if _finite(r["score"])]
    summary = (
        f"{'reused' if reused else 'evaluated'} {len(rows)} tasks; "
        f"mean expert-normalized score {_fmt(sum(scored) / len(scored)) if scored else 'n/a'}% "
        f"over the {len(scored)} with a non-random expert"
    )
    return StageResult("eval", reused, time.monotonic() - started, summary, details)


def _score_line(r: dict, random_expert: bool) -> str:
    if _finite(r["score"]):
        score = f"score {r['score']:.1f}%"
    elif random_expert:
        score = "no score (the expert is the random policy)"
    else:
        score = "no score (the expert is no better than random)"
    success = "" if r.get("success_rate") is None else f", success {r['success_rate']:.2f}"
    return (
        f"{r['task']}: return {r['return_mean']:.1f} ± {r['return_std']:.1f} over "
        f"{r['episodes']} episodes{success} (expert {r['expert_return']:.1f}, random "
        f"{r['random_return']:.1f}): {score}"
    )


# -- 6. report -----------------------------------------------------------------------------


def write_demo_report(cfg: DemoConfig, paths: DemoPaths, results: list[StageResult]) -> StageResult:
    """``report.md`` and ``report.json``: cards, dataset, training, scores, timings."""
    from kibble.experts.card import read_card
    from kibble.schemas.dataset import read_manifest
    from kibble.trainer.scores import score_table, summarize

    started = time.monotonic()
    cards = {t.task: read_card(paths.card(t.task)) for t in cfg.tasks}
    manifest = read_manifest(paths.dataset)
    marker = _read_json(paths.run_marker) or {}
    training = marker.get("summary", {})
    metrics = _metrics(paths.run)
    loss_png = _loss_chart(metrics, paths.loss_png)
    evaluation = _read_json(paths.run / "eval" / "summary.json") or {"rows": []}
    rows = evaluation["rows"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = summarize(rows)
    total = sum(r.seconds for r in results)
    made = _made_seconds(results, paths)
    rel = lambda p: os.path.relpath(p, paths.out)  # noqa: E731

    md = [
        "# kibble demo report",
        "",
        f"kibble {kibble.__version__}, preset `{cfg.preset}`, seed {cfg.seed}. "
        f"Everything below is under `{paths.out}` (links are relative to it; what the "
        f"libraries printed is in `{rel(paths.logs)}/`). Each stage can be rerun by hand: "
        f"`kibble pipeline run {paths.dataset_config}`, "
        f"`kibble train {paths.mixture} --out {paths.run}`, "
        f"`kibble eval {paths.run} --task TASK --card CARD`.",
        "",
        "## Stages",
        "",
        "| stage | what | wall time |",
        "|---|---|---|",
    ]
    for r in results:
        took = duration(r.seconds)
        if r.reused and made[r.stage]:
            took += f" (reused; made in {duration(made[r.stage])})"
        elif r.reused:
            took += " (reused)"
        md.append(f"| {r.stage} | {r.summary} | {took} |")
    md += [f"| total | | {duration(total)} |", ""]

    md += [
        "## Expert cards",
        "",
        "| task | expert | episodes | expert return | random return | success | file |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in cfg.tasks:
        c = cards[t.task]
        success = "" if c.success_rate is None else f"{c.success_rate:.2f}"
        cut = f" (cut at {c.max_steps} steps)" if c.max_steps else ""
        md.append(
            f"| {t.task} | {t.expert} | {c.episodes}{cut} | {c.expert_return.mean:.1f} ± "
            f"{c.expert_return.std:.1f} | {c.random_return.mean:.1f} | {success} | "
            f"[{rel(paths.card(t.task))}]({rel(paths.card(t.task))}) |"
        )
    md += [
        "",
        "## Dataset",
        "",
        f"`{rel(paths.dataset)}` (schema version {manifest['schema_version']}; its card: "
        f"[{rel(paths.dataset / 'README.md')}]({rel(paths.dataset / 'README.md')})). Every "
        "planned episode is kept or rejected with a reason; the threshold is 80% of the "
        "card's expert return (or `random + 0.8 x (expert - random)` when that is not "
        "positive).",
        "",
        "| task | planned | kept | rejected (reason) | steps kept | tokens kept | threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, t in _in_order(manifest["tasks"], cfg):
        rejected = ", ".join(f"{v} {k}" for k, v in t["rejected"].items()) or "0"
        md.append(
            f"| {task} | {t['planned']} | {t['kept']} | {rejected} | {t['steps']:,} | "
            f"{t['tokens']:,} | {_fmt(t['threshold'])} ({t['rule']}) |"
        )
    md += ["", "Returns per task, kept vs rejected:", ""]
    for task, _ in _in_order(manifest["tasks"], cfg):
        png = paths.dataset / "returns" / f"{task.replace('/', '__')}.png"
        if png.is_file():
            md.append(f"![{task} returns]({rel(png)})")
    md += ["", "## Training", ""]
    if training:
        model = cfg.model if isinstance(cfg.model, str) else f"custom {cfg.model}"
        rate = training["tokens"] / training["seconds"] if training["seconds"] else 0.0
        md += [
            f"Model {model}: {training['parameters']:,} parameters; context {cfg.context}, "
            f"batch {cfg.batch_size}, peak learning rate {cfg.learning_rate:g}. "
            f"{training['step']} of {training['steps']} steps"
            + (" (stopped at the time limit)" if training["stopped_early"] else "")
            + f", {training['tokens']:,} tokens in {training['seconds']:.0f} s "
            f"({rate:,.0f} tokens/s); final loss {_fmt(training.get('final_loss'), 3)} "
            "(cross-entropy on action tokens; by family: "
            + ", ".join(
                f"{k} {v:.3f}" for k, v in (training.get("final_family_loss") or {}).items()
            )
            + ").",
            "",
        ]
        if loss_png:
            md += [f"![training loss]({rel(loss_png)})", ""]
    md += [
        "## Scores",
        "",
        "The generalist plays each task, prompted with a demonstration from the dataset; "
        "score = 100 x (R - R_random) / (R_expert - R_random) from the expert cards. Tasks "
        "whose expert is the random policy have no score (nan below), only returns.",
        "",
    ]
    if rows:
        md += [score_table(rows, scores), ""]
        chart = paths.run / "eval" / "scores.png"
        if chart.is_file():
            md += [f"![scores]({rel(chart)})", ""]
    paths.report.write_text("\n".join(md) + "\n")

    report = {
        "kibble_version": kibble.__version__,
        "preset": cfg.preset,
        "out": str(paths.out),
        "timings": {
            r.stage: {"seconds": r.seconds, "reused": r.reused, "made_seconds": made[r.stage]}
            for r in results
        },
        "total_seconds": total,
        "cards": {task: _plain(c.__dict__) for task, c in cards.items()},
        "dataset": {task: _plain(t) for task, t in manifest["tasks"].items()},
        "training": _plain(training),
        "scores": _plain({"rows": rows, **scores}),
    }
    seconds = time.monotonic() - started
    report["timings"]["report"] = {"seconds": seconds, "reused": False, "made_seconds": seconds}
    report["total_seconds"] = total + seconds
    paths.report_json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return StageResult("report", False, seconds, f"wrote {paths.report} and {paths.report_json}")


def _made_seconds(results: list[StageResult], paths: DemoPaths) -> dict[str, float | None]:
    """How long each stage took when its output was made: now, or as an earlier report says."""
    before = (_read_json(paths.report_json) or {}).get("timings", {})
    return {
        r.stage: (before.get(r.stage) or {}).get("made_seconds") if r.reused else r.seconds
        for r in results
    }


def _loss_chart(metrics: list[dict], path: Path) -> Path | None:
    """Training loss, overall and per family, against the step (None without matplotlib)."""
    if not metrics:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [m["step"] for m in metrics]
    ax.plot(steps, [m["loss"] for m in metrics], color="black", linewidth=2, label="all")
    families = sorted({f for m in metrics for f in m["family_loss"]})
    for f in families:
        points = [(m["step"], m["family_loss"][f]) for m in metrics if f in m["family_loss"]]
        ax.plot(*zip(*points, strict=True), linewidth=1, alpha=0.8, label=f)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (action tokens)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- the whole job -------------------------------------------------------------------------


def run_demo(cfg: DemoConfig, display: Display | None = None) -> list[StageResult]:
    """Run every stage in order; returns what each did (the report has it too)."""
    display = display or Display()
    paths = DemoPaths(Path(cfg.out))
    if paths.out.exists() and not paths.out.is_dir():
        raise KibbleError(f"--out {paths.out} is a file; give a directory")
    if cfg.fresh:
        for p in paths.owned():
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    paths.out.mkdir(parents=True, exist_ok=True)
    results = []
    stages = (train_experts, make_cards, build_dataset, train_generalist, evaluate_generalist)
    for number, (name, stage) in enumerate(zip(STAGES, stages, strict=False), 1):
        log_file = paths.logs / f"{name}.log"
        try:
            with display.stage_output(log_file):
                result = stage(cfg, paths, display)
        except BaseException:
            display.note(f"the {name} stage failed; what it printed is in {log_file}")
            raise
        results.append(result)
        display.stage_done(number, result)
    result = write_demo_report(cfg, paths, results)
    results.append(result)
    display.stage_done(len(results), result)
    return results


# -- helpers -------------------------------------------------------------------------------


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _in_order(by_task: dict, cfg: DemoConfig) -> list[tuple[str, Any]]:
    """The manifest's per-task entries in the demo's task order."""
    order = {t.task: i for i, t in enumerate(cfg.tasks)}
    return sorted(by_task.items(), key=lambda kv: order.get(kv[0], len(order)))


def duration(seconds: float) -> str:
    """``42 s`` or ``12.3 min``."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _plain(value: Any) -> Any:
    """JSON-ready, NaN as None: tuples become lists, dataclasses dicts."""
    if hasattr(value, "__dataclass_fields__"):
        value = value.__dict__
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _fmt(x: Any, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if _finite(x) else "n/a"
