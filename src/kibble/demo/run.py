"""The whole demo: each stage in order, its output sent to a log, its lines displayed."""

from __future__ import annotations

import shutil
from pathlib import Path

from kibble.demo.card_stage import make_cards
from kibble.demo.config import DemoConfig, DemoPaths
from kibble.demo.dataset_stage import build_dataset
from kibble.demo.evaluation_stage import evaluate_generalist
from kibble.demo.expert_stage import train_experts
from kibble.demo.report_stage import write_demo_report
from kibble.demo.stage import STAGES, StageResult
from kibble.demo.training_stage import train_generalist
from kibble.display import Display
from kibble.errors import KibbleError

STAGE_FUNCTIONS = (train_experts, make_cards, build_dataset, train_generalist, evaluate_generalist)
"""The stages that make something, in order: every stage of ``STAGES`` but the last. The
report comes last and apart: it reads what the others returned (``write_demo_report``)."""


def clear(paths: DemoPaths) -> None:
    """Remove everything the demo wrote under ``paths.out`` (``--fresh``)."""
    for p in paths.owned():
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run_demo(cfg: DemoConfig, display: Display | None = None) -> list[StageResult]:
    """Run every stage in order; returns what each did (the report has it too)."""
    display = display or Display()
    paths = DemoPaths(Path(cfg.out))
    if paths.out.exists() and not paths.out.is_dir():
        raise KibbleError(f"--out {paths.out} is a file; give a directory")
    if cfg.fresh:
        clear(paths)
    paths.out.mkdir(parents=True, exist_ok=True)
    results = []
    for number, (name, stage) in enumerate(zip(STAGES[:-1], STAGE_FUNCTIONS, strict=True), 1):
        log_file = paths.logs / f"{name}.log"
        try:
            with display.stage_output(log_file):
                result = stage(cfg, paths, display)
        except BaseException:
            display.line(f"    the {name} stage failed; what it printed is in {log_file}")
            raise
        results.append(result)
        _show(display, number, result)
    result = write_demo_report(cfg, paths, results)
    results.append(result)
    _show(display, len(results), result)
    return results


def _show(display: Display, number: int, result: StageResult) -> None:
    for line in result.lines(number):
        display.line(line)
