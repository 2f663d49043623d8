"""A hostile user's table: bad inputs and faults, each a clear error and never a traceback.

One row per mistake (issue 13): dataset configs, mixtures, files on disk, checkpoints,
command-line flags, expert sources and operating-system refusals. Each row gives the
command, the files to create first, the exit status, and a phrase the message must hold.
Rows run in-process through ``CliRunner().invoke(kibble.cli.app, ...)``, which goes
through the same error handling as the ``kibble`` console script (``KibbleGroup.main``);
an exception escaping it (a traceback for a user) fails the row.

Placeholders in arguments and file contents: ``@TMP`` (the row's own folder), ``@DS`` (a
small curated CartPole dataset, shared and read-only), ``@RUN`` (a one-step training run,
shared and read-only). A row that damages a dataset or a run works on a copy in @TMP.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kibble.cli import app

TASK = "gym/CartPole-v1"
DATA = "data/gym__CartPole-v1/part-00000.parquet"
MODEL_FILE = "checkpoint/model.safetensors"
OPTIMIZER_FILE = "checkpoint/optimizer.safetensors"
MODEL = "{layers: 1, heads: 2, width: 32, ff: 64, patch_hidden: 8}"
# A valid mixture on @DS, without steps: rows add keys, or replace a part of it.
MIX = f"datasets:\n  - {{path: @DS, weight: 1.0}}\nmodel: {MODEL}\ncontext: 48\nbatch_size: 2\n"
CFG = "output: @TMP/out\ntasks:\n  - {task: gym/CartPole-v1, expert: random, episodes: 2"
ROLL = "rollout gym/CartPole-v1 --episodes 1 --out @TMP/out"
ROW_SECONDS = 120  # each row takes well under 10 s; a hang is a failure
LONG = "x" * 300  # longer than any file system's NAME_MAX


@dataclass(frozen=True)
class Bad:
    """One row: ``kibble ARGS`` after writing ``files`` (and running ``setup``) exits
    ``status`` with ``phrase`` in its output; ``error_line``: the output ends in kibble's
    one-paragraph ``kibble: error: ...`` (False for ``inspect``'s list of problems)."""

    args: str
    phrase: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    copy: tuple[str, ...] = ()
    """Shared folders ("ds", "run") copied into @TMP first, for ``setup`` to damage."""
    status: int = 1
    error_line: bool = True


def cfg(task_tail: str = "}", head: str = "") -> dict[str, str]:
    """A dataset config @TMP/c.yaml: CFG's one task closed by ``task_tail``."""
    return {"c.yaml": head + CFG + task_tail + "\n"}


def expert(source: str, files: dict[str, str] | None = None) -> dict[str, str]:
    """A dataset config @TMP/c.yaml whose one task uses the expert ``source``."""
    return {"c.yaml": CFG.replace("random", source) + "}\n", **(files or {})}


def mix(extra: str = "", base: str = MIX + "steps: 2\n") -> dict[str, str]:
    """A mixture @TMP/m.yaml: ``base`` (a valid one on @DS) plus ``extra`` keys."""
    return {"m.yaml": base + extra}


# --- setups that damage a copy of the dataset or of the run -----------------------------


def edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """Edit the dataset copy's manifest.json in place with ``change``."""

    def setup(tmp: Path) -> None:
        path = tmp / "ds" / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))

    return setup


def replace(name: str, content: bytes | None) -> Callable[[Path], None]:
    """Replace (or, with None, delete) one file of the dataset copy."""

    def setup(tmp: Path) -> None:
        path = tmp / "ds" / name
        path.unlink()
        if content is not None:
            path.write_bytes(content)

    return setup


def truncate(name: str, size: int, where: str = "ds") -> Callable[[Path], None]:
    """Cut a file of the copy of @DS (``where="ds"``) or @RUN (``"run"``) to ``size`` bytes."""

    def setup(tmp: Path) -> None:
        path = tmp / where / name
        path.write_bytes(path.read_bytes()[:size])

    return setup


def flip_a_byte(tmp: Path) -> None:
    """Flip a byte in the middle of the observation tokens' pages (what training reads)."""
    import pyarrow.parquet as pq

    path = tmp / "ds" / DATA
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(5)
    assert chunk.path_in_schema == "observation_tokens.list.element"
    data = bytearray(path.read_bytes())
    data[chunk.data_page_offset + chunk.total_compressed_size // 2] ^= 0x01
    path.write_bytes(bytes(data))


def manifest_is_a_list(tmp: Path) -> None:
    (tmp / "ds" / "manifest.json").write_text("[1, 2]")


def on_ds(phrase: str, damage: Callable[[Path], None], args: str = "inspect @TMP/ds") -> Bad:
    """A row on a damaged copy of @DS: ``inspect`` lists the problems it finds (exit 1, no
    ``kibble: error:`` line); ``train`` on it (a mixture @TMP/m.yaml) is a user error."""
    if args.startswith("inspect"):
        return Bad(args, phrase, copy=("ds",), setup=damage, error_line=False)
    files = mix(base=MIX.replace("@DS", "@TMP/ds") + "steps: 2\n")
    return Bad(args, phrase, files, copy=("ds",), setup=damage)


ROWS = {
    # --- dataset configs: `kibble pipeline run` -------------------------------------------
    "cfg-unknown-expert-source": Bad("pipeline run @TMP/c.yaml", "foo:bar", expert("'foo:bar'")),
    "cfg-missing-checkpoint": Bad("pipeline run @TMP/c.yaml", "@TMP/no-ckpt does not exist",
                                  expert("@TMP/no-ckpt")),
    "cfg-scripted-without-one": Bad("pipeline run @TMP/c.yaml", "has no scripted expert",
                                    expert("scripted")),
    "cfg-bot-without-one": Bad("pipeline run @TMP/c.yaml", "bot",
                               expert("bot")),
    "cfg-expert-not-a-string": Bad("pipeline run @TMP/c.yaml", "expert",
                                   expert("5")),
    "cfg-max-steps-ten": Bad("pipeline run @TMP/c.yaml", "max_steps", cfg(", max_steps: ten}")),
    "cfg-max-steps-negative": Bad("pipeline run @TMP/c.yaml", "max_steps",
                                  cfg(", max_steps: -5}")),
    "cfg-max-steps-zero": Bad("pipeline run @TMP/c.yaml", "max_steps", cfg(", max_steps: 0}")),
    "cfg-episodes-1e11": Bad("pipeline run @TMP/c.yaml", "episodes",
                             {"c.yaml": CFG.replace("episodes: 2", "episodes: 1e11") + "}\n"}),
    "cfg-episodes-beyond-memory": Bad(
        "pipeline run @TMP/c.yaml", "allowed",
        {"c.yaml": CFG.replace("episodes: 2", "episodes: 100000000000") + "}\n"}),
    "cfg-episodes-zero": Bad("pipeline run @TMP/c.yaml", "episodes",
                             {"c.yaml": CFG.replace("episodes: 2", "episodes: 0") + "}\n"}),
    "cfg-episodes-many": Bad("pipeline run @TMP/c.yaml", "episodes",
                             {"c.yaml": CFG.replace("episodes: 2", "episodes: many") + "}\n"}),
    "cfg-unknown-top-level-key": Bad("pipeline run @TMP/c.yaml", "closest: seed",
                                     cfg("}", head="seeds: 3\n")),
    "cfg-unknown-task-key": Bad("pipeline run @TMP/c.yaml", "closest: episodes",
                                cfg(", episode: 3}")),
    "cfg-unknown-filter-key": Bad("pipeline run @TMP/c.yaml", "fractoin",
                                  cfg("}", head="filter: {fractoin: 0.5}\n")),
    "cfg-not-yaml": Bad("pipeline run @TMP/c.yaml", "not valid YAML",
                        {"c.yaml": "tasks: [unclosed\n  - {\n"}),
    "cfg-not-utf8": Bad("pipeline run @TMP/c.yaml", "UTF-8",
                        {"c.yaml": b"output: x\nname: \xff\xfe\n"}),
    "cfg-a-folder": Bad("pipeline run @TMP/c.yaml", "folder", {"c.yaml/": ""}),
    "cfg-missing": Bad("pipeline run @TMP/none.yaml", "does not exist"),
    "cfg-a-list": Bad("pipeline run @TMP/c.yaml", "mapping", {"c.yaml": "- a\n- b\n"}),
    "cfg-empty-file": Bad("pipeline run @TMP/c.yaml", "c.yaml", {"c.yaml": ""}),
    "cfg-no-tasks": Bad("pipeline run @TMP/c.yaml", "tasks",
                        {"c.yaml": "output: @TMP/out\ntasks: []\n"}),
    "cfg-unknown-task": Bad("pipeline run @TMP/c.yaml", "unknown task 'gym/CartPol-v1'",
                            {"c.yaml": CFG.replace("CartPole", "CartPol") + "}\n"}),
    "cfg-task-twice": Bad("pipeline run @TMP/c.yaml", "listed twice",
                          {"c.yaml": CFG + "}\n" + CFG.splitlines()[-1] + "}\n"}),
    "cfg-seed-negative": Bad("pipeline run @TMP/c.yaml", "seed", cfg("}", head="seed: -1\n")),
    "cfg-fraction-above-one": Bad("pipeline run @TMP/c.yaml", "fraction",
                                  cfg("}", head="filter: {fraction: 1.5}\n")),
    "cfg-num-envs-zero": Bad("pipeline run @TMP/c.yaml", "num_envs",
                             cfg("}", head="num_envs: 0\n")),
    "cfg-no-output": Bad("pipeline run @TMP/c.yaml", "output",
                         {"c.yaml": CFG.replace("output: @TMP/out\n", "") + "}\n"}),
    "cfg-missing-card": Bad("pipeline run @TMP/c.yaml", "expert card",
                            cfg(", card: @TMP/no-card.json}")),
    "cfg-sb3-no-path": Bad("pipeline run @TMP/c.yaml", "names no file",
                           expert("'sb3:'")),
    "cfg-sb3-missing-zip": Bad("pipeline run @TMP/c.yaml", "does not exist",
                               expert("'sb3:@TMP/none.zip'")),
    "cfg-sb3-not-a-zip": Bad("pipeline run @TMP/c.yaml", "not a readable zip",
                             expert("'sb3:@TMP/x.zip'", {"x.zip": "not a zip"})),
    # --- mixtures: `kibble train` ----------------------------------------------------------
    "mix-betas-words": Bad("train @TMP/m.yaml --out @TMP/run", "betas",
                           mix("betas: [fast, slow]\n")),
    "mix-device-banana": Bad("train @TMP/m.yaml --out @TMP/run", "device",
                             mix("device: banana\n")),
    "mix-heads-width": Bad("train @TMP/m.yaml --out @TMP/run", "m.yaml: model:",
                           mix(base=MIX.replace("heads: 2", "heads: 3") + "steps: 2\n")),
    "mix-unknown-key": Bad("train @TMP/m.yaml --out @TMP/run", "lerning_rate",
                           mix("lerning_rate: 0.1\n")),
    "mix-not-utf8": Bad("train @TMP/m.yaml --out @TMP/run", "UTF-8",
                        {"m.yaml": b"steps: 2\nmodel: \xff\xfe\n"}),
    "mix-warmup-beyond-steps": Bad("train @TMP/m.yaml --out @TMP/run", "warmup_steps",
                                   mix("warmup_steps: 50\n")),
    "mix-min-lr-above-lr": Bad("train @TMP/m.yaml --out @TMP/run", "min_learning_rate",
                               mix("learning_rate: 1.0e-4\nmin_learning_rate: 1.0e-3\n")),
    "mix-lr-negative": Bad("train @TMP/m.yaml --out @TMP/run", "learning_rate",
                           mix("learning_rate: -1\n")),
    "mix-batch-size-word": Bad("train @TMP/m.yaml --out @TMP/run", "batch_size",
                               mix(base=MIX.replace("batch_size: 2", "batch_size: big"))),
    "mix-context-beyond-memory": Bad("train @TMP/m.yaml --out @TMP/run", "memory",
                                     mix(base=MIX.replace("context: 48", "context: 1000000000"))),
    "mix-model-unknown": Bad("train @TMP/m.yaml --out @TMP/run", "m.yaml: model:",
                             mix(base=MIX.replace(MODEL, "huge") + "steps: 2\n")),
    "mix-prompt-fraction": Bad("train @TMP/m.yaml --out @TMP/run", "prompt_fraction",
                               mix("prompt_fraction: 2\n")),
    "mix-no-datasets": Bad("train @TMP/m.yaml --out @TMP/run", "datasets",
                           {"m.yaml": "model: tiny\nsteps: 2\n"}),
    "mix-negative-weight": Bad("train @TMP/m.yaml --out @TMP/run", "weight",
                               mix(base=MIX.replace("weight: 1.0", "weight: -1") + "steps: 2\n")),
    "mix-missing-dataset": Bad("train @TMP/m.yaml --out @TMP/run", "no dataset at",
                               mix(base=MIX.replace("@DS", "@TMP/nothing") + "steps: 2\n")),
    "mix-not-yaml": Bad("train @TMP/m.yaml --out @TMP/run", "not valid YAML",
                        {"m.yaml": "datasets: [\n"}),
    "mix-a-folder": Bad("train @TMP/m.yaml --out @TMP/run", "is a directory", {"m.yaml/": ""}),
    "mix-missing": Bad("train @TMP/none.yaml --out @TMP/run", "does not exist"),
    "mix-set-steps-abc": Bad("train @TMP/m.yaml --out @TMP/run --set steps=abc",
                             "command-line option: steps", mix()),
    "mix-set-without-value": Bad("train @TMP/m.yaml --out @TMP/run --set steps",
                                 "--set expects key=value", mix()),
    "mix-set-unknown-key": Bad("train @TMP/m.yaml --out @TMP/run --set nokey=3", "nokey", mix()),
    "mix-device-option": Bad("train @TMP/m.yaml --out @TMP/run --device banana", "device", mix()),
    # --- files on disk: `kibble inspect`, and training on damaged data ---------------------
    "inspect-missing-dir": Bad("inspect @TMP/nothing", "does not exist"),
    "inspect-not-a-dataset": Bad("inspect @TMP/empty", "no Parquet files", {"empty/": ""}),
    "inspect-a-file": Bad("inspect @TMP/afile", "afile", {"afile": "x"}),
    "inspect-manifest-not-json": on_ds("not valid JSON", replace("manifest.json", b"{not json")),
    "inspect-manifest-a-list": on_ds("no list of files", manifest_is_a_list),
    "inspect-manifest-not-utf8": on_ds("manifest.json", replace("manifest.json", b"\xff\xfe")),
    "inspect-manifest-missing": on_ds("has no manifest.json", replace("manifest.json", None)),
    "inspect-entry-without-rows": on_ds("lacks path, rows",
                                        edit(lambda m: m["files"][0].pop("rows"))),
    "inspect-wrong-sha256": on_ds("sha256", edit(lambda m: m["files"][0].update(sha256="0" * 64))),
    "inspect-edited-rows": on_ds("the manifest says 999",
                                 edit(lambda m: m["files"][0].update(rows=999))),
    "inspect-edited-counts": on_ds("steps", edit(lambda m: m["tasks"][TASK].update(steps=1))),
    "inspect-flipped-byte": on_ds("part-00000.parquet", flip_a_byte),
    "inspect-truncated-file": on_ds("part-00000.parquet", truncate(DATA, 3000)),
    "train-truncated-data": on_ds("does not match its manifest", truncate(DATA, 3000),
                                  "train @TMP/m.yaml --out @TMP/run"),
    "train-edited-rows": on_ds("does not match its manifest",
                               edit(lambda m: m["files"][0].update(rows=999)),
                               "train @TMP/m.yaml --out @TMP/run"),
    "train-manifest-a-list": on_ds("no list of", manifest_is_a_list,
                                   "train @TMP/m.yaml --out @TMP/run"),
    "train-flipped-byte": on_ds("row group 0 is damaged", flip_a_byte,
                                "train @TMP/m.yaml --out @TMP/run"),
    # --- checkpoints: `kibble eval`, resuming `kibble train` ------------------------------
    "eval-no-checkpoint": Bad("eval @TMP/empty --task gym/CartPole-v1 --episodes 1",
                              "no kibble checkpoint", {"empty/": ""}),
    "eval-missing-run": Bad("eval @TMP/nothing --task gym/CartPole-v1 --episodes 1",
                            "no kibble checkpoint"),
    "eval-truncated-model": Bad("eval @TMP/run --task gym/CartPole-v1 --episodes 1",
                                "model.safetensors",
                                copy=("run",), setup=truncate(MODEL_FILE, 1000, "run")),
    "eval-damaged-state": Bad("eval @TMP/run --task gym/CartPole-v1 --episodes 1", "state.json",
                              copy=("run",), setup=truncate("checkpoint/state.json", 10, "run")),
    "eval-task-not-trained": Bad("eval @RUN --task gym/Acrobot-v1 --episodes 1", "was not in"),
    "eval-missing-card": Bad("eval @RUN --task gym/CartPole-v1 --card @TMP/none.json",
                             "does not exist"),
    "train-resume-truncated-optimizer": Bad(
        "train @TMP/m.yaml --out @TMP/run --steps 3", "optimizer.safetensors",
        mix(), copy=("run",), setup=truncate(OPTIMIZER_FILE, 1000, "run")),
    # --- command-line flags ----------------------------------------------------------------
    "flag-unknown-option": Bad("train @TMP/m.yaml --out @TMP/run --bogus",
                               "no such option: --bogus"),
    "flag-missing-argument": Bad("train --out @TMP/run", "missing argument"),
    "flag-missing-option": Bad("eval @RUN", "missing option '--task'"),
    "flag-unknown-command": Bad("rolout", "no such command 'rolout'"),
    "flag-episodes-zero": Bad(f"{ROLL} --expert random".replace("--episodes 1", "--episodes 0"),
                              "invalid value for '--episodes'"),
    "flag-episodes-abc": Bad(f"{ROLL} --expert random".replace("--episodes 1", "--episodes abc"),
                             "invalid value for '--episodes'"),
    "flag-episodes-beyond-memory": Bad(
        f"{ROLL} --expert random".replace("--episodes 1", "--episodes 100000000000"), "allowed"),
    "flag-expert-eval-episodes-zero": Bad(
        "expert eval gym/CartPole-v1 --expert random --episodes 0 --out @TMP/c.json",
        "--episodes"),
    "flag-seed-negative": Bad(
        "expert eval gym/CartPole-v1 --expert random --episodes 1 --out @TMP/c.json --seed -1",
        "invalid value for '--seed'"),
    "flag-max-steps-zero": Bad(f"{ROLL} --expert random --max-steps 0", "--max-steps"),
    "flag-fraction-above-one": Bad(f"{ROLL} --expert random --fraction 2", "fraction"),
    "flag-train-steps-zero": Bad("train @TMP/m.yaml --out @TMP/run --steps 0", "--steps"),
    "flag-train-out-a-file": Bad("train @TMP/m.yaml --out @TMP/afile", "is a file",
                                 mix() | {"afile": "x"}),
    "flag-rollout-out-a-file": Bad(f"{ROLL} --expert random".replace("@TMP/out", "@TMP/afile"),
                                   "is a file", {"afile": "x"}),
    "flag-card-out-a-dir": Bad(
        "expert eval gym/CartPole-v1 --expert random --episodes 1 --out @TMP",
        "is a directory"),
    "flag-demo-out-a-file": Bad("demo --out @TMP/afile", "is a file", {"afile": "x"}),
    "flag-unknown-family": Bad("tasks --family nope", "unknown task family 'nope'"),
    "flag-unknown-task": Bad("rollout gym/Nope-v1 --expert random --episodes 1 --out @TMP/o",
                             "unknown task 'gym/Nope-v1'"),
    # --- expert sources ----------------------------------------------------------------
    "source-sb3-no-path": Bad(f"{ROLL} --expert sb3:", "names no file"),
    "source-sb3-missing-zip": Bad(f"{ROLL} --expert sb3:@TMP/none.zip", "does not exist"),
    "source-sb3-not-a-zip": Bad(f"{ROLL} --expert sb3:@TMP/x.zip", "not a readable zip",
                                {"x.zip": "not a zip"}),
    "source-scripted-without-one": Bad(f"{ROLL} --expert scripted", "has no scripted expert"),
    "source-sb3-no-path-eval": Bad(
        "expert eval gym/CartPole-v1 --expert sb3: --episodes 1 --out @TMP/c.json",
        "names no file"),
    "source-card-missing": Bad(f"{ROLL} --expert random --card @TMP/none.json", "does not exist"),
    "source-card-not-a-card": Bad(f"{ROLL} --expert random --card @TMP/afile",
                                  "not a kibble expert card", {"afile": "x"}),
    # --- operating-system refusals ---------------------------------------------------------
    "os-name-too-long": Bad(f"{ROLL} --expert random".replace("@TMP/out", f"@TMP/{LONG}/out"),
                            "file name too long"),
    "os-parent-is-a-file": Bad(f"{ROLL} --expert random".replace("@TMP/out", "@TMP/afile/out"),
                               "afile is a file where kibble needs a directory", {"afile": "x"}),
    "os-card-parent-is-a-file": Bad(
        "expert eval gym/CartPole-v1 --expert random --episodes 1 --out @TMP/afile/c.json",
        "not a directory", {"afile": "x"}),
}  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict[str, Callable[[], Path]]:
    """@DS and @RUN, each made once and only when a row asks for it."""
    made: dict[str, Path] = {}

    def dataset() -> Path:
        if "ds" not in made:
            from kibble.pipelines.in_process import curate_tasks
            from kibble.pipelines.stages import TaskJob

            out = tmp_path_factory.mktemp("shared") / "ds"
            curate_tasks("ds", [TaskJob("gym/CartPole-v1", "random", 6)], out, fraction=0.05)
            made["ds"] = out
        return made["ds"]

    def run() -> Path:
        if "run" not in made:
            folder = tmp_path_factory.mktemp("shared")
            (folder / "m.yaml").write_text(
                MIX.replace("@DS", str(dataset())) + "steps: 1\nlearning_rate: 1.0e-3\n"
            )
            out = folder / "run"
            result = CliRunner().invoke(app, ["train", str(folder / "m.yaml"), "--out", str(out)])
            assert result.exit_code == 0, result.output
            made["run"] = out
        return made["run"]

    return {"@DS": dataset, "@RUN": run}


def _fill(text: str, tmp: Path, shared: dict[str, Callable[[], Path]]) -> str:
    text = text.replace("@TMP", str(tmp))
    for key, make in shared.items():
        if key in text:
            text = text.replace(key, str(make()))
    return text


def _over_time(signum, frame) -> None:
    raise TimeoutError(f"the command ran for over {ROW_SECONDS} s")


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_bad_input_is_a_clear_error(row: Bad, tmp_path: Path, shared) -> None:
    for name, content in row.files.items():
        path = tmp_path / name
        if name.endswith("/"):
            path.mkdir(parents=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(_fill(content, tmp_path, shared))
    for name in row.copy:
        shutil.copytree(shared[f"@{name.upper()}"](), tmp_path / name)
    if row.setup is not None:
        row.setup(tmp_path)
    args = shlex.split(_fill(row.args, tmp_path, shared))

    # A row that hangs fails (TimeoutError, caught by CliRunner) instead of stalling.
    previous = signal.signal(signal.SIGALRM, _over_time)
    signal.alarm(ROW_SECONDS)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    out = result.output
    # An exception that escaped the CLI is what a user sees as a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{out}"
    )
    assert "Traceback" not in out, out
    assert result.exit_code == row.status, out
    phrase = _fill(row.phrase, tmp_path, shared)
    assert phrase.lower() in out.lower(), out
    if row.error_line:
        error = result.stderr[result.stderr.find("kibble: error: ") :].strip()
        assert error.startswith("kibble: error: "), result.stderr
        assert "\n" not in error, f"not one paragraph: {error!r}"
        assert not any(c in out for c in "╭╰│"), out  # no Rich box


def test_the_table_covers_every_kind_with_at_least_60_rows():
    kinds = {name.split("-")[0] for name in ROWS}
    assert {"cfg", "mix", "inspect", "eval", "flag", "source", "os", "train"} <= kinds
    assert len(ROWS) >= 60
    assert not re.search(r"\s", "".join(ROWS))  # ids are usable with -k
