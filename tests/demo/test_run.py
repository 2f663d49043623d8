"""The demo's driver: every stage in order, numbered out of all of them, the report last."""

import pytest

import kibble.demo.run as run
from kibble.demo import DemoConfig
from kibble.demo.stage import STAGES, StageResult
from kibble.display import Display


class Lines(Display):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)


def test_each_stage_runs_once_in_order_and_the_report_comes_last(tmp_path, monkeypatch):
    ran = []

    def stage(name):
        def run_stage(cfg, paths, display):
            ran.append(name)
            return StageResult(stage=name, reused=False, seconds=1.0, summary="done")

        return run_stage

    def report(cfg, paths, results):
        ran.append("report")
        assert [r.stage for r in results] == list(STAGES[:-1])
        return StageResult(stage="report", reused=False, seconds=0.0, summary="wrote")

    makers = tuple(stage(name) for name in STAGES[:-1])
    monkeypatch.setattr(run, "STAGE_FUNCTIONS", makers)
    monkeypatch.setattr(run, "write_demo_report", report)
    display = Lines()
    results = run.run_demo(DemoConfig(out=tmp_path / "demo"), display)
    assert ran == list(STAGES) == [r.stage for r in results]
    n = len(STAGES)
    assert display.lines == [
        *(f"[{i}/{n}] {name}: done (1 s)" for i, name in enumerate(STAGES[:-1], 1)),
        f"[{n}/{n}] report: wrote (0 s)",
    ]
    # One function per stage that makes something: a stage without one is an error,
    # not a stage silently skipped.
    monkeypatch.setattr(run, "STAGE_FUNCTIONS", makers[:-1])
    with pytest.raises(ValueError, match="zip"):
        run.run_demo(DemoConfig(out=tmp_path / "short"), Lines())
