"""`kibble inspect` verifies a dataset against its manifest: nothing recorded goes unchecked."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob
from kibble.reading.inspection import inspect_dataset

DATA = "data/gym__CartPole-v1/part-00000.parquet"


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "ds"
    curate_tasks("t", [TaskJob("gym/CartPole-v1", "random", 12)], out)
    return out


@pytest.fixture
def ds(clean, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(clean, copy)
    return copy


def _flip_a_byte_in_the_middle(path):
    """Flip a byte in the middle of the data pages (the footer, whose length the file's
    last 8 bytes give, parses as before)."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[(4 + len(data) - 8 - footer) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest(ds, edit):
    manifest = json.loads((ds / "manifest.json").read_text())
    edit(manifest)
    (ds / "manifest.json").write_text(json.dumps(manifest))


def test_a_clean_dataset_has_no_problems(clean):
    assert inspect_dataset(clean).problems == []


def test_a_flipped_byte_is_caught_by_the_checksum_not_by_quick(ds):
    _flip_a_byte_in_the_middle(ds / DATA)
    problems = inspect_dataset(ds).problems
    assert any(DATA in p and "sha256" in p for p in problems), problems
    assert not any("sha256" in p for p in inspect_dataset(ds, quick=True).problems)


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda m: m["tasks"]["gym/CartPole-v1"].update(kept=11), "kept episodes"),
        (lambda m: m["tasks"]["gym/CartPole-v1"].update(steps=1), "steps"),
        (lambda m: m["tasks"]["gym/CartPole-v1"].update(tokens=1), "tokens"),
        (lambda m: m["files"][0].update(rows=m["files"][0]["rows"] + 1), "rows"),
        (lambda m: m["files"][0].update(bytes=1), "bytes"),
        (lambda m: m["files"][0].update(sha256="0" * 64), "sha256"),
        (lambda m: m["files"][0].pop("rows"), "lacks"),
        (lambda m: m["files"].pop(0), "not in the manifest"),
        (lambda m: m["tasks"]["gym/CartPole-v1"].pop("planned"), "lacks planned"),
        (lambda m: m.update(tasks=[1, 2]), "tasks"),
        (lambda m: m.update(files={}), "no list of files"),
    ],
)
def test_an_edited_manifest_is_caught(ds, edit, phrase):
    _edit_manifest(ds, edit)
    problems = inspect_dataset(ds).problems
    assert any(phrase in p for p in problems), problems


def test_the_command_exits_1_naming_each_mismatch(ds):
    _flip_a_byte_in_the_middle(ds / DATA)
    _edit_manifest(ds, lambda m: m["tasks"]["gym/CartPole-v1"].update(steps=1))
    from kibble.cli import app

    result = CliRunner().invoke(app, ["inspect", str(ds)])
    assert result.exit_code == 1
    assert "sha256" in result.output and "steps" in result.output
    assert "Traceback" not in result.output


def test_summary_prints_only_the_summary_and_the_verdict(clean):
    from kibble.cli import app

    full = CliRunner().invoke(app, ["inspect", str(clean)])
    short = CliRunner().invoke(app, ["inspect", str(clean), "--summary"])
    assert full.exit_code == short.exit_code == 0, full.output + short.output
    lines = full.output.splitlines()
    assert any(line.startswith("columns of data/") for line in lines)  # the default: all
    assert any(line.startswith("sample row of gym/CartPole-v1") for line in lines)
    # The schema version line, one line per task, the verdict.
    assert short.output.splitlines() == [lines[0], lines[1], lines[-1]]
    assert lines[1].startswith("  gym/CartPole-v1: kept ")
    assert lines[-1].startswith("every file matches its schema and the manifest")


@pytest.mark.parametrize("column", ["observation", "action_tokens"])
def test_raw_values_that_do_not_tokenize_to_the_tokens_are_found(ds, column):
    # Edit the first episode's raw values (or its tokens), rewrite the file with kibble's
    # schema and re-hash it in the manifest: every checksum passes, the cross-check fails.
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from kibble.schemas.arrow import TOKENIZED_EPISODE_SCHEMA
    from kibble.schemas.parquet import EpisodeFileWriter

    path = ds / DATA
    table = pq.read_table(path)
    values = table[column].to_pylist()
    values[0] = [v + 1 for v in values[0]]  # the first step, every leaf shifted
    table = table.set_column(
        table.schema.get_field_index(column),
        column,
        pa.array(values, table.schema.field(column).type),
    )
    with EpisodeFileWriter(path, TOKENIZED_EPISODE_SCHEMA) as writer:
        writer.write(table.cast(TOKENIZED_EPISODE_SCHEMA))
    data = path.read_bytes()

    def rehash(manifest):
        entry = next(f for f in manifest["files"] if f["path"] == DATA)
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())

    _edit_manifest(ds, rehash)
    problems = inspect_dataset(ds).problems
    assert len(problems) == 1, problems
    assert (
        problems[0].startswith(f"{DATA}: the raw values of ") and "do not tokenize" in problems[0]
    )
    assert "changed after kibble wrote it" in problems[0]


def test_the_raw_value_check_passes_a_dataset_as_written(clean):
    assert inspect_dataset(clean).problems == []
