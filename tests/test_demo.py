"""``kibble demo --short`` as CI runs it: every stage's output is valid, reruns reuse.

The short preset runs the whole path (RLlib expert, cards, Beam job, trainer, eval,
report) at tiny sizes; about a minute and a half on 2 cores.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kibble.experts.card import read_card
from kibble.schemas import check_file
from kibble.schemas.layout import read_manifest

KIBBLE = Path(sys.executable).parent / "kibble"
TASKS = {
    "gym/CartPole-v1",
    "metaworld/reach-v3",
    "metaworld/drawer-close-v3",
    "procgen/starpilot",
    "atari/Pong",
}
STAGES = ["experts", "cards", "dataset", "train", "eval", "report"]

pytestmark = pytest.mark.slow


def demo(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [str(KIBBLE), "demo", "--short", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, time.monotonic() - started


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "out"
    done, _ = demo(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_every_stage_reports_a_line(first_run):
    _, done = first_run
    for i, stage in enumerate(STAGES, 1):
        assert f"[{i}/6] {stage}: " in done.stderr
    assert "Traceback" not in done.stderr
    # The short preset's scores are no result: its headline says so.
    assert "(a smoke test: tiny sizes, the scores mean nothing)" in done.stderr
    assert "report:" in done.stdout


def test_expert_and_cards(first_run):
    out, _ = first_run
    assert (out / "experts" / "gym__CartPole-v1" / "checkpoint").is_dir()
    cards = {read_card(p).task: read_card(p) for p in (out / "cards").glob("*.json")}
    assert set(cards) == TASKS
    assert cards["metaworld/reach-v3"].expert == "scripted"
    assert cards["metaworld/reach-v3"].success_rate is not None
    assert cards["atari/Pong"].max_steps == 30
    assert cards["gym/CartPole-v1"].expert == str(out / "experts" / "gym__CartPole-v1")


def test_dataset_counts_add_up_and_files_validate(first_run):
    out, _ = first_run
    manifest = read_manifest(out / "dataset")
    assert set(manifest["tasks"]) == TASKS
    for t in manifest["tasks"].values():
        assert t["kept"] + sum(t["rejected"].values()) == t["planned"]
        assert t["expert_return_source"] == "card"
    data_rows = 0
    for entry in manifest["files"]:
        check_file(out / "dataset" / entry["path"])
        if entry["path"].startswith("data/"):
            data_rows += entry["rows"]
    assert data_rows == sum(t["steps"] for t in manifest["tasks"].values())
    # The config the demo ran is a file `kibble pipeline run` takes.
    assert "kibble pipeline run" in (out / "dataset.yaml").read_text()


def test_training_and_evaluation_outputs(first_run):
    out, _ = first_run
    state = json.loads((out / "run" / "checkpoint" / "state.json").read_text())
    assert state["progress"]["step"] == 20
    assert (out / "run" / "checkpoint" / "model.safetensors").is_file()
    assert (out / "run" / "metrics.jsonl").read_text().strip()
    summary = json.loads((out / "run" / "eval" / "summary.json").read_text())
    trained = {t["task"] for t in json.loads((out / "run" / "tasks.json").read_text())}
    assert {r["task"] for r in summary["rows"]} == trained
    assert all(r["episodes"] == 1 for r in summary["rows"])


def test_report_links_pngs_that_exist(first_run):
    out, _ = first_run
    report = (out / "report.md").read_text()
    for heading in ("## Expert cards", "## Dataset", "## Training", "## Scores"):
        assert heading in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert "loss.png" in images and "run/eval/scores.png" in images
    assert sum(i.startswith("dataset/returns/") for i in images) == len(TASKS)
    for image in images:
        assert (out / image).is_file(), image
    timings = json.loads((out / "report.json").read_text())["timings"]
    assert list(timings) == STAGES
    assert not any(t["reused"] for t in timings.values())


def test_second_run_reuses_every_stage_and_a_lost_card_is_remade(first_run):
    out, _ = first_run
    done, _ = demo(out)
    assert done.returncode == 0, done.stderr[-3000:]
    for i, stage in enumerate(STAGES[:-1], 1):
        assert re.search(rf"\[{i}/6\] {stage}: reused", done.stderr), done.stderr
    timings = json.loads((out / "report.json").read_text())["timings"]
    assert all(timings[s]["reused"] for s in STAGES[:-1])
    assert all(timings[s]["made_seconds"] > timings[s]["seconds"] for s in STAGES[:-1])

    # Cards are deterministic: a lost one is remade, and what was built from it still holds.
    (out / "cards" / "atari__Pong.json").unlink()
    done, _ = demo(out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[2/6] cards: wrote 1 expert card(s)" in done.stderr
    assert "[3/6] dataset: reused" in done.stderr
