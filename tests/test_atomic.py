"""Swapping a directory in: the path always holds the old or the new version."""

import multiprocessing as mp
import time

from kibble.atomic import _exchange, recover, swap_in


def _write(path, text):
    path.mkdir()
    (path / "v").write_text(text)


def test_swap_in_replaces_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "ds"
    _write(target, "old")
    _write(tmp_path / ".ds.staging", "new")
    swap_in(tmp_path / ".ds.staging", target)
    assert (target / "v").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_swap_in_to_a_new_path(tmp_path):
    _write(tmp_path / "s", "new")
    swap_in(tmp_path / "s", tmp_path / "ds")
    assert (tmp_path / "ds" / "v").read_text() == "new"


def test_exchange_is_atomic_here(tmp_path):
    # The one-step exchange is what makes kill -9 safe; it must work on this filesystem.
    _write(tmp_path / "a", "a")
    _write(tmp_path / "b", "b")
    assert _exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "v").read_text() == "b"


def _swap_forever(root, stop):
    i = 0
    while not stop.is_set():
        _write(root / f".s{i}", str(i))
        swap_in(root / f".s{i}", root / "ds")
        i += 1


def test_the_path_never_disappears_during_swaps(tmp_path):
    _write(tmp_path / "ds", "start")
    stop = mp.Event()
    proc = mp.get_context("fork").Process(target=_swap_forever, args=(tmp_path, stop))
    proc.start()
    missing = checks = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        checks += 1
        missing += not (tmp_path / "ds" / "v").exists()
    stop.set()
    proc.join(10)
    assert checks > 1000
    assert missing == 0


def test_recover_restores_a_parked_old_copy(tmp_path):
    _write(tmp_path / ".ds.old-1234abcd", "old")
    recover(tmp_path / "ds")
    assert (tmp_path / "ds" / "v").read_text() == "old"
