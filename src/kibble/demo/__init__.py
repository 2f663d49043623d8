"""``kibble demo``: the main job, end to end, on one machine.

    RLlib expert (CartPole) + scripted experts (Meta-World) + random ones (Procgen, Atari)
    -> expert cards -> Beam curation job -> curated dataset -> Gato trainer
    -> evaluation against the cards -> report.md

Each stage is a function that writes under ``out`` and returns a
:class:`~kibble.demo.stage.StageResult`. A stage whose output already exists, made from
the same inputs and settings, is reused (``fresh=True`` redoes everything); whether it can
be is asked of the layer that owns the output (the expert's stop rule, the card's
settings, the dataset's manifest, the trainer's run record, the stored scores). The demo
writes the configs it runs as files, so every stage can be rerun by hand with the
command it stands for:

    OUT/experts/<task>/     kibble expert train      (RLlib checkpoint, progress.jsonl)
    OUT/cards/<task>.json   kibble expert eval       (expert cards)
    OUT/dataset.yaml        kibble pipeline run OUT/dataset.yaml
    OUT/dataset/            the curated dataset (manifest.json, data/, rejected/, returns/)
    OUT/mixture.yaml        kibble train OUT/mixture.yaml --out OUT/run
    OUT/run/                checkpoint, metrics.jsonl, training.json, eval/ (kibble eval)
    OUT/report.md           cards, dataset counts, training, scores, with PNGs
    OUT/report.json         the same numbers, and each stage's wall time

The package, a job per module: ``config`` (presets and paths), ``stage`` (a stage's
result and its line), one module per stage (``expert_stage``, ``card_stage``,
``dataset_stage``, ``training_stage``, ``evaluation_stage``, ``report_stage``, with
``charts``), and ``run`` (the stages in order). What is shown while it runs is
:mod:`kibble.display`'s.
"""

from kibble.demo.config import (
    PRESETS,
    DemoConfig,
    DemoPaths,
    DemoTask,
    default_config,
    short_config,
)
from kibble.demo.run import run_demo
from kibble.demo.stage import STAGES, StageResult, duration

__all__ = [
    "PRESETS",
    "STAGES",
    "DemoConfig",
    "DemoPaths",
    "DemoTask",
    "StageResult",
    "default_config",
    "duration",
    "run_demo",
    "short_config",
]
