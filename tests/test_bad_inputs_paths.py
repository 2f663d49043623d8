"""Nothing outside a dataset is read, written or deleted (issue 25, sections 1, 2, 4, 5).

Three mechanisms, each tested through every command it guards, on real datasets made by
the real pipeline:

* **One path rule** (:func:`kibble.schemas.layout.file_entries`): a manifest's file paths
  are relative, normalized, under ``data/`` or ``rejected/``, listed once; anything else
  is refused by ``kibble.open_dataset``, ``inspect``, ``view``, ``export`` and ``train``
  before any file is opened, and no message shows the size or content of a file outside.
* **Regular files only** (:func:`kibble.schemas.layout.dataset_file`, and listings that
  never enter a link, :func:`kibble.schemas.layout.list_entries`): a link, a FIFO, a
  device in a dataset is refused before ``open()`` (a FIFO would block it for ever).
* **No link in an output** (:func:`kibble.schemas.outputs.check_no_links`): publishing
  over an old dataset that holds a link is refused on a plain path and on a ``file://``
  URL (whose pyarrow filesystem follows links), and the folder it points to is untouched;
  an export or a view into the dataset it reads is refused.

A watchdog opens every FIFO for writing after a while, so a reader that blocked in
``open()`` returns and its test fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kibble
from kibble.cli import app
from kibble.errors import KibbleError
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob

TASK = "gym/CartPole-v1"
DATA = "data/gym__CartPole-v1/part-00000.parquet"
JOBS = [TaskJob(TASK, "random", 4)]
MIX = (
    "datasets:\n  - {path: @DS, weight: 1.0}\n"
    "model: {layers: 1, heads: 2, width: 32, ff: 64, patch_hidden: 8}\n"
    "context: 48\nbatch_size: 2\nsteps: 2\n"
)
SECRET = b"TOP-SECRET " * 898  # 9878 bytes: neither its size nor its text may be shown
HANG_SECONDS = 30


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paths") / "ds"
    curate_tasks("t", JOBS, out, fraction=0.05)
    return out


@pytest.fixture
def ds(clean, tmp_path) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(clean, copy)
    return copy


# --- what a careless or hostile user does to a dataset ---------------------------------


def _edit(ds: Path, change: Callable[[dict], object]) -> None:
    path = ds / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _data_entry(manifest: dict) -> dict:
    return next(f for f in manifest["files"] if f["path"] == DATA)


def _outside(ds: Path) -> Path:
    """A file beside the dataset (a stand-in for /etc/passwd)."""
    path = ds.parent / "outside" / "part-00000.parquet"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(SECRET)
    return path


def dotdot(ds: Path) -> None:
    _outside(ds)
    _edit(ds, lambda m: _data_entry(m).update(path=f"{DATA.rsplit('/', 1)[0]}/../../../outside/"
                                                   "part-00000.parquet"))  # fmt: skip


def absolute(ds: Path) -> None:
    target = _outside(ds)
    shutil.copy(ds / DATA, target)  # a valid data file: read silently without the rule
    _edit(ds, lambda m: _data_entry(m).update(path=str(target)))


def url(ds: Path) -> None:
    target = _outside(ds)
    shutil.copy(ds / DATA, target)
    _edit(ds, lambda m: _data_entry(m).update(path=f"file://{target}"))


def duplicated(ds: Path) -> None:
    _edit(ds, lambda m: m["files"].append(dict(_data_entry(m))))


def backslash(ds: Path) -> None:
    _edit(ds, lambda m: _data_entry(m).update(path=DATA.replace("/", "\\")))


def dot(ds: Path) -> None:
    _edit(ds, lambda m: _data_entry(m).update(path="data/./gym__CartPole-v1/part-00000.parquet"))


def symlinked_data(ds: Path) -> None:
    """data/ moved beside the dataset, a link left in its place."""
    elsewhere = ds.parent / "elsewhere"
    shutil.move(ds / "data", elsewhere)
    (ds / "data").symlink_to(elsewhere)


def symlink_in_data(ds: Path) -> None:
    """The data file moved beside the dataset, a link left in its place."""
    elsewhere = ds.parent / "elsewhere"
    elsewhere.mkdir()
    shutil.move(ds / DATA, elsewhere / "part-00000.parquet")
    (ds / DATA).symlink_to(elsewhere / "part-00000.parquet")


def fifo(ds: Path) -> None:
    (ds / DATA).unlink()
    os.mkfifo(ds / DATA)


def fifo_manifest(ds: Path) -> None:
    (ds / "manifest.json").unlink()
    os.mkfifo(ds / "manifest.json")


@dataclass(frozen=True)
class Case:
    damage: Callable[[Path], None]
    phrase: str
    manifest_rule: bool = False
    """Refused by the path rule: ``open_dataset`` itself refuses, before any file is opened."""


CASES = {
    "dotdot": Case(dotdot, "has a '..' part", manifest_rule=True),
    "absolute": Case(absolute, "is absolute", manifest_rule=True),
    "url": Case(url, "is a url", manifest_rule=True),
    "duplicated": Case(duplicated, "is listed twice", manifest_rule=True),
    "backslash": Case(backslash, "backslash", manifest_rule=True),
    "dot": Case(dot, "has a '.' part", manifest_rule=True),
    "symlinked-data": Case(symlinked_data, "data is a symbolic link"),
    "symlink-in-data": Case(symlink_in_data, f"{DATA} is a symbolic link"),
    "fifo": Case(fifo, f"{DATA} is a fifo"),
    "fifo-manifest": Case(fifo_manifest, "manifest.json is a fifo", manifest_rule=True),
}


@contextlib.contextmanager
def watchdog(ds: Path, seconds: float = HANG_SECONDS) -> Iterator[threading.Event]:
    """After ``seconds``, keep opening every FIFO under ``ds`` for reading and for writing
    (and closing it), so a reader blocked in ``open()`` gets end-of-file and a writer a
    broken pipe; the event says it had to."""
    fired, stop = threading.Event(), threading.Event()
    fifos = [p for p in ds.rglob("*") if p.is_fifo()]

    def unblock() -> None:
        if stop.wait(seconds):
            return
        fired.set()
        while not stop.is_set():
            for path, mode in itertools.product(fifos, (os.O_RDONLY, os.O_WRONLY)):
                with contextlib.suppress(OSError):
                    os.close(os.open(path, mode | os.O_NONBLOCK))
            time.sleep(0.05)

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        stop.set()
        thread.join(5)


def _cli(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}"
    )
    assert "Traceback" not in result.output, result.output
    return result


def _refused_paragraph(result, phrase: str) -> None:
    assert result.exit_code == 1, result.output
    error = result.stderr[result.stderr.find("kibble: error: ") :].strip()
    assert error.startswith("kibble: error: "), result.stderr
    assert "\n" not in error, f"not one paragraph: {error!r}"
    assert phrase.lower() in error.lower(), error


def _shows_nothing_outside(text: str) -> None:
    assert str(len(SECRET)) not in text.replace(",", ""), text
    assert "TOP-SECRET" not in text, text


READERS = ("api", "inspect", "view", "export", "train")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_path_out_of_the_dataset_is_refused_by_every_reader(case, reader, ds, tmp_path):
    case.damage(ds)
    with watchdog(ds) as hung:
        if reader == "api":
            if case.manifest_rule:
                with pytest.raises(KibbleError) as refused:
                    kibble.open_dataset(ds)  # before any data file is opened
            else:
                opened = kibble.open_dataset(ds)
                with pytest.raises(KibbleError) as refused:
                    list(opened.episodes())
            text = str(refused.value)
            assert case.phrase.lower() in text.lower(), text
            assert "\n" not in text
        elif reader == "inspect":
            result = _cli(["inspect", str(ds)])
            text = result.output
            assert result.exit_code == 1, text
            assert case.phrase.lower() in text.lower(), text
        else:
            out = tmp_path / "out"
            args = {
                "view": ["view", str(ds), "--out", f"{out}.png"],
                "export": ["export", str(ds), "--out", str(out)],
                "train": ["train", str(tmp_path / "m.yaml"), "--out", str(out)],
            }[reader]
            (tmp_path / "m.yaml").write_text(MIX.replace("@DS", str(ds)))
            result = _cli(args)
            text = result.output
            _refused_paragraph(result, case.phrase)
            if reader != "train":  # a run directory may be made before the data is read
                assert not out.exists() and not Path(f"{out}.png").exists()
    assert not hung.is_set(), f"{reader} blocked in open() on a FIFO"
    _shows_nothing_outside(text)


# --- publishing never follows a link out of the output -----------------------------------


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


LINKED = {
    "symlinked-data": (symlinked_data, "data is a symbolic link"),
    "symlink-in-data": (symlink_in_data, f"{DATA} is a symbolic link"),
    "fifo": (fifo, f"{DATA} is a fifo"),
}


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
@pytest.mark.parametrize("name", LINKED)
def test_publishing_over_an_output_holding_a_link_is_refused_and_touches_nothing(
    ds, tmp_path, name, as_url
):
    damage, phrase = LINKED[name]
    damage(ds)
    elsewhere = tmp_path / "elsewhere"
    if elsewhere.exists():
        (elsewhere / "keep.txt").write_text("precious")  # a file the new dataset lacks
    before, old = (_tree(elsewhere) if elsewhere.exists() else {}), _tree(ds)
    out = f"file://{ds}" if as_url else str(ds)
    with watchdog(ds) as hung, pytest.raises(KibbleError) as refused:
        curate_tasks("t", JOBS, out, seed=1, fraction=0.05)
    assert not hung.is_set()
    text = str(refused.value)
    assert phrase.lower() in text.lower() and "never deletes or writes through a link" in text, text
    assert (_tree(elsewhere) if elsewhere.exists() else {}) == before  # not a file touched
    if name != "fifo":
        assert _tree(ds) == old  # the old dataset as it was, its link included
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_publishing_by_copy_itself_refuses_a_link_made_after_the_check(ds, tmp_path):
    """The last line of defence: a link that appeared while the job ran (after
    check_output looked) stops the copy before anything is deleted."""
    import pyarrow.fs as pafs

    from kibble.pipelines.publish import publish_by_copy

    staging = tmp_path / ".ds.staging-test"
    shutil.copytree(ds, staging)
    symlinked_data(ds)
    (tmp_path / "elsewhere" / "keep.txt").write_text("precious")
    before = _tree(tmp_path / "elsewhere")
    with pytest.raises(KibbleError, match="symbolic link"):
        publish_by_copy(pafs.LocalFileSystem(), str(staging), str(ds))
    assert _tree(tmp_path / "elsewhere") == before
    assert (ds / "manifest.json").is_file()  # nothing deleted yet


def test_listing_a_local_tree_never_enters_a_link(ds, tmp_path):
    from kibble.schemas.layout import list_files

    symlinked_data(ds)
    (tmp_path / "elsewhere" / "keep.txt").write_text("precious")
    for location in (ds, f"file://{ds}"):
        listed = list_files(location)
        assert "manifest.json" in listed
        assert not [rel for rel in listed if rel.startswith("data")], listed


# --- an export or a view into the dataset it reads ---------------------------------------


@pytest.mark.parametrize("alias", [False, True], ids=["same-path", "through-a-link"])
def test_an_export_into_the_dataset_it_reads_is_refused(ds, tmp_path, alias):
    source = ds
    if alias:
        source = tmp_path / "alias"
        source.symlink_to(ds)
    before = _tree(ds)
    result = _cli(["export", str(source), "--out", str(ds / "inside")])
    _refused_paragraph(result, "inside the dataset")
    assert _tree(ds) == before and not (ds / "inside").exists()
    result = _cli(["export", f"file://{ds}", "--out", str(ds / "data" / "x")])
    _refused_paragraph(result, "inside the dataset")


def test_a_view_into_the_dataset_it_reads_is_refused(ds):
    result = _cli(["view", str(ds), "--out", str(ds / "views" / "mine.png")])
    _refused_paragraph(result, "inside the dataset")
    assert not (ds / "views" / "mine.png").exists()


def test_an_export_beside_the_dataset_still_works(ds, tmp_path):
    result = _cli(["export", str(ds), "--out", str(tmp_path / "ds-minari")])
    assert result.exit_code == 0, result.output


def test_open_file_opens_only_the_manifests_own_entries(ds):
    opened = kibble.open_dataset(ds)
    with pytest.raises(KibbleError, match="not a file entry"):
        opened.open_file({"path": "data/../manifest.json", "rows": 1, "bytes": 1, "sha256": ""})


def test_a_gs_url_gives_up_in_seconds_not_minutes():
    # Cloud Storage's client retries for 15 minutes by default: with no network,
    # `kibble inspect gs://...` printed nothing for that long (issue 25 §4).
    from datetime import timedelta

    from kibble.schemas.parquet import GCS_RETRY_SECONDS, filesystem_and_path

    fs, path = filesystem_and_path("gs://bucket/ds/manifest.json")
    assert path == "bucket/ds/manifest.json"
    assert fs.__reduce__()[1][0]["retry_time_limit"] == timedelta(seconds=GCS_RETRY_SECONDS)
    fs, _ = filesystem_and_path("gs://bucket/ds?retry_limit_seconds=3")  # the URL's own
    assert fs.__reduce__()[1][0]["retry_time_limit"] == timedelta(seconds=3)


def test_an_unreachable_bucket_is_one_paragraph(tmp_path):
    # No network here (or no credentials): the cloud SDK's error, as one paragraph.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "kibble", "inspect", "gs://kibble-no-such-bucket/ds?retry_limit_seconds=1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kibble: error: "), done.stderr
