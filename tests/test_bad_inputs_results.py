"""Issue 25's silent wrong results, each now a clear error (or the right result).

* Expert cards are checked when read, in one place (``kibble.experts.card.read_card``):
  every return a finite number, the card's task the task it is used for, UTF-8 JSON in a
  local regular file. ``pipeline run`` (through ``checks.check_card``), ``kibble rollout
  --card`` and ``kibble eval --card`` all read through it.
* ``kibble eval`` plays each task once: a task given twice, a card of a task not played
  and two cards of one task are refused (``trainer.evaluate.evaluation_plan``).
* URLs stay URLs: ``kibble rollout --out`` takes a URL as it is (never a local ``gs:``
  folder); an option that takes a local path only refuses a URL (``cli.base.local_path``).

Rows run through tests/test_bad_inputs.py's runner (``CliRunner`` on ``kibble.cli.app``,
one paragraph, no traceback) with its @TMP, @DS and @RUN placeholders.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kibble.cli import app

_spec = importlib.util.spec_from_file_location(
    "_bad_inputs_table", Path(__file__).with_name("test_bad_inputs.py")
)
_table = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _table  # dataclasses look their module up there
_spec.loader.exec_module(_table)
Bad, cfg = _table.Bad, _table.cfg
shared = _table.shared  # the @DS and @RUN fixture
_check_row = _table.test_bad_input_is_a_clear_error

TASK = "gym/CartPole-v1"
ROLL = f"rollout {TASK} --expert random --episodes 2 --out @TMP/out"
EVAL = f"eval @RUN --task {TASK} --episodes 1 --num-envs 1"
_STATS = {"mean": 20.0, "std": 5.0, "min": 10.0, "max": 30.0}
CARD = {
    "task": TASK,
    "expert": "random",
    "sampled": False,
    "episodes": 2,
    "seeds": [0, 1],
    "expert_return": dict(_STATS),
    "random_return": dict(_STATS),
    "success_rate": None,
    "random_success_rate": None,
    "length_mean": 20.0,
    "versions": {},
    "max_steps": None,
    "source": None,
    "card_version": "1",
}


def card(name: str = "card.json", **changes) -> dict[str, str]:
    """A card file @TMP/NAME: CARD with ``changes`` (``expert_return_mean=`` reaches in)."""
    d = json.loads(json.dumps(CARD))
    for key, value in changes.items():
        top, _, leaf = key.rpartition("_")
        if top in ("expert_return", "random_return"):
            d[top][leaf] = value
        else:
            d[key] = value
    return {name: json.dumps(d)}  # NaN and Infinity as Python's json writes (and reads) them


def cfg_card(files: dict[str, str | bytes], name: str = "card.json") -> dict[str, str | bytes]:
    """A dataset config @TMP/c.yaml whose one task uses the card @TMP/NAME."""
    return {**cfg(f", card: @TMP/{name}}}"), **files}


NOT_UTF8 = {"card.json": b"\xff\xfe{\x00binary"}
NOT_JSON = {"card.json": "{task: gym/CartPole-v1"}

ROWS: dict[str, Bad] = {
    # --- a card is checked when read, for every use -----------------------------------
    "card-nan-expert-return-pipeline": Bad("pipeline run @TMP/c.yaml",
        "expert_return.mean is nan, not a finite number",
        cfg_card(card(expert_return_mean=math.nan))),
    "card-inf-random-return-pipeline": Bad("pipeline run @TMP/c.yaml",
        "random_return.mean is inf, not a finite number",
        cfg_card(card(random_return_mean=math.inf))),
    "card-string-return-pipeline": Bad("pipeline run @TMP/c.yaml",
        "expert_return.max is 'lots'", cfg_card(card(expert_return_max="lots"))),
    "card-other-task-pipeline": Bad("pipeline run @TMP/c.yaml",
        "is the card of gym/Acrobot-v1, not of gym/CartPole-v1",
        cfg_card(card(task="gym/Acrobot-v1"))),
    "card-not-utf8-pipeline": Bad("pipeline run @TMP/c.yaml", "not UTF-8", cfg_card(NOT_UTF8)),
    "card-not-json-pipeline": Bad("pipeline run @TMP/c.yaml", "not JSON", cfg_card(NOT_JSON)),
    "card-a-directory-pipeline": Bad("pipeline run @TMP/c.yaml", "not a regular file",
        cfg_card({"card.json/": ""})),
    "card-nan-rollout": Bad(f"{ROLL} --card @TMP/card.json",
        "expert_return.mean is nan", card(expert_return_mean=math.nan)),
    "card-other-task-rollout": Bad(f"{ROLL} --card @TMP/card.json",
        "not of gym/CartPole-v1", card(task="gym/Acrobot-v1")),
    "card-not-utf8-rollout": Bad(f"{ROLL} --card @TMP/card.json", "not UTF-8", NOT_UTF8),
    "card-nan-eval": Bad(f"{EVAL} --card @TMP/card.json",
        "expert_return.mean is nan", card(expert_return_mean=math.nan)),
    "card-nan-random-eval": Bad(f"{EVAL} --card @TMP/card.json",
        "random_return.mean is nan", card(random_return_mean=math.nan)),
    "card-other-task-eval": Bad(f"{EVAL} --card @TMP/card.json",
        "card of gym/Acrobot-v1, which is not evaluated here", card(task="gym/Acrobot-v1")),
    "card-not-utf8-eval": Bad(f"{EVAL} --card @TMP/card.json", "not UTF-8", NOT_UTF8),
    "card-not-json-eval": Bad(f"{EVAL} --card @TMP/card.json", "not JSON", NOT_JSON),
    "card-url-eval": Bad(f"{EVAL} --card gs://bucket/card.json", "is a URL"),
    # --- kibble eval plays each task once ------------------------------------------------
    "eval-task-twice": Bad(f"{EVAL} --task {TASK}", "--task gym/CartPole-v1 is given more "
                           "than once"),
    "eval-two-cards-of-one-task": Bad(f"{EVAL} --card @TMP/a.json --card @TMP/b.json",
        "are both cards of gym/CartPole-v1", {**card("a.json"), **card("b.json")}),
    # --- URLs stay URLs; a local-only option refuses one ---------------------------------
    "url-eval-run-dir": Bad(f"eval gs://bucket/run --task {TASK}", "is a URL"),
}  # fmt: skip


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_bad_result_is_a_clear_error(row: Bad, tmp_path: Path, shared) -> None:
    _check_row(row, tmp_path, shared)


def test_eval_with_a_good_card_still_scores_against_it(tmp_path: Path, shared) -> None:
    """The checks refuse bad cards only: a good card scores its task."""
    (tmp_path / "card.json").write_text(card()["card.json"])
    args = _table._fill(f"{EVAL} --card @TMP/card.json", tmp_path, shared).split()
    run = Path(args[1])
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(run, copy)
    args[1] = str(copy)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((copy / "eval" / "summary.json").read_text())["rows"]
    assert [r["task"] for r in rows] == [TASK]
    assert rows[0]["baseline_source"] == str(tmp_path / "card.json")


def _kibble(args: list[str], cwd: Path, seconds: float) -> subprocess.CompletedProcess | None:
    """``kibble ARGS`` in ``cwd``; None if it still ran after ``seconds`` (then killed)."""
    command = [sys.executable, "-m", "kibble", *args]
    with subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as p:
        try:
            out, err = p.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            return None
        return subprocess.CompletedProcess(command, p.returncode, out, err)


ROLLOUT = ["rollout", TASK, "--expert", "random", "--episodes", "2"]


def test_rollout_writes_a_file_url_where_it_points(tmp_path: Path) -> None:
    """``--out file:///ABS/x`` goes through pyarrow's filesystem to /ABS/x, not ./file:/."""
    target = tmp_path / "elsewhere" / "ds"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = _kibble([*ROLLOUT, "--out", f"file://{target}"], cwd, 300)
    assert done is not None and done.returncode == 0, done and done.stderr
    assert json.loads((target / "manifest.json").read_text())["tasks"][TASK]
    assert f"wrote file://{target}" in done.stdout
    assert os.listdir(cwd) == [], os.listdir(cwd)  # no file: folder


@pytest.mark.parametrize("url", ["gs://kibble-no-such-bucket/x", "s3://kibble-no-such-bucket/x"])
def test_rollout_to_a_bucket_url_never_writes_a_local_folder(tmp_path: Path, url: str) -> None:
    """A bucket URL is used as a URL: it works, or it fails with one paragraph (here, with
    no credentials or network). A command still waiting on the network after a while is
    stopped: what matters here is that no local ``gs:`` or ``s3:`` folder appears (with a
    Path option it did, within two seconds, and the command said "wrote gs:/...")."""
    started = time.monotonic()
    done = _kibble([*ROLLOUT, "--out", url], tmp_path, 45)
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)
    if done is not None:
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode == 0:
            assert f"wrote {url}" in done.stdout, done.stdout
        else:
            error = done.stderr[done.stderr.find("kibble: error: ") :].strip()
            assert error.startswith("kibble: error: ") and "\n" not in error, done.stderr
            assert url.split("/")[2] in error, error
    else:
        assert time.monotonic() - started >= 45
