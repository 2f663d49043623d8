"""Unbounded untrusted inputs and numbers that are not finite (issue 25 §3, §6), through
the command line as a user meets them: each row is one clear paragraph, in bounded time
and memory, never a traceback or gigabytes allocated.

One guard closes each class: :mod:`kibble.limits` for sizes (SB3 zip members, spaces and
networks an SB3 zip declares, a checkpoint's declared model, YAML files and their
aliases), :func:`kibble.trainer.config.number_in` for every number of a mixture, and
``kibble.trainer.checkpoint._save`` for a full disk at a checkpoint. Rows that need a
small machine set the guard's memory reading (``kibble.limits.memory_available``) low,
so no test allocates what it refuses. The rows reuse ``tests/test_bad_inputs.py``'s
table machinery (``Bad``, ``@TMP``, ``@DS``, ``@RUN``).
"""

from __future__ import annotations

import importlib.util
import io
import json
import random
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kibble import limits
from kibble.cli import app
from kibble.errors import KibbleError

_spec = importlib.util.spec_from_file_location(
    "_bad_inputs_table", Path(__file__).with_name("test_bad_inputs.py")
)
bad = sys.modules.setdefault("_bad_inputs_table", importlib.util.module_from_spec(_spec))
if not hasattr(bad, "ROWS"):
    _spec.loader.exec_module(bad)
Bad, MIX, CFG, MODEL_FILE = bad.Bad, bad.MIX, bad.CFG, bad.MODEL_FILE
shared = bad.shared  # the @DS and @RUN fixture, made once for this module

MiB = 1 << 20
EXPERT = "expert eval gym/CartPole-v1 --expert sb3:@TMP/x.zip --episodes 1"
EVAL = "eval @TMP/run --task gym/CartPole-v1 --episodes 1"
TRAIN = "train @TMP/m.yaml --out @TMP/run"


# --- SB3 zips: a real one saved by SB3, then edited ---------------------------------------

_BASE: dict[str, bytes] = {}


def _base_zip() -> bytes:
    """An untrained PPO CartPole agent's zip, as ``model.save`` wrote it (made once)."""
    if "zip" not in _BASE:
        pytest.importorskip("stable_baselines3")
        import stable_baselines3 as sb3

        with tempfile.TemporaryDirectory() as folder:
            model = sb3.PPO("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs={"net_arch": [8]})
            model.save(Path(folder) / "ppo.zip")
            _BASE["zip"] = (Path(folder) / "ppo.zip").read_bytes()
    return _BASE["zip"]


def sb3_zip(
    edit: Callable[[dict], object] | None = None,
    members: dict[str, bytes] | None = None,
    compress: int = zipfile.ZIP_DEFLATED,
) -> Callable[[Path], None]:
    """A setup writing @TMP/x.zip: the base zip with ``edit`` applied to its ``data`` and
    ``members`` replacing (or adding) members, written with ``compress``."""

    def setup(tmp: Path) -> None:
        out = io.BytesIO()
        with (
            zipfile.ZipFile(io.BytesIO(_base_zip())) as zin,
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout,
        ):
            for item in zin.infolist():
                blob = zin.read(item.filename)
                if item.filename == "data" and edit is not None:
                    data = json.loads(blob)
                    edit(data)
                    blob = json.dumps(data).encode()
                if item.filename in (members or {}):
                    continue
                zout.writestr(item.filename, blob)
            for name, blob in (members or {}).items():
                zout.writestr(name, blob, compress_type=compress)
        (tmp / "x.zip").write_bytes(out.getvalue())

    return setup


def net_arch(value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["policy_kwargs"]["net_arch"] = value

    return edit


def observation_box(shape: list[int]) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        space = data["observation_space"]
        space["_shape"] = shape
        space["low_repr"], space["high_repr"] = "-1.0", "1.0"

    return edit


def action_n(n: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["action_space"]["n"] = n

    return edit


def _inflating_data() -> bytes:
    """Valid JSON ``data`` padded with 100 MiB of spaces: deflated, about 100 KiB."""
    data = json.loads(zipfile.ZipFile(io.BytesIO(_base_zip())).read("data"))
    return json.dumps(data).encode() + b" " * (100 * MiB)


def zip_bomb(tmp: Path) -> None:
    sb3_zip(members={"data": _inflating_data()})(tmp)


def big_weights(tmp: Path) -> None:
    """A policy.pth member of 40 MiB, as incompressible as real weights."""
    weights = random.Random(0).randbytes(40 * MiB)
    sb3_zip(members={"policy.pth": weights}, compress=zipfile.ZIP_STORED)(tmp)


def weights_bomb(tmp: Path) -> None:
    """A policy.pth member of 200 MiB of zeros: deflated, 200 KiB."""
    sb3_zip(members={"policy.pth": bytes(200 * MiB)})(tmp)


# --- checkpoints and YAML ----------------------------------------------------------------


def state_model(**keys: int) -> Callable[[Path], None]:
    """Edit the run copy's state.json model config."""

    def setup(tmp: Path) -> None:
        path = tmp / "run" / "checkpoint" / "state.json"
        state = json.loads(path.read_text())
        state["config"]["model"].update(keys)
        path.write_text(json.dumps(state))

    return setup


def laughs(levels: int = 9, head: str = "") -> str:
    """A "billion laughs": each alias list names the previous one 9 times (9**levels)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return head + "\n".join(lines) + "\n"


def mix(extra: str) -> dict[str, str]:
    return {"m.yaml": MIX + "steps: 2\n" + extra}


MODEL = "{layers: 1, heads: 2, width: 32, ff: 64, patch_hidden: 8"

ROWS: dict[str, Bad] = {
    # --- SB3 zips: members by their declared size, declared spaces and networks ---------
    "sb3-data-inflates-to-100MiB": Bad(EXPERT, "over kibble's limit of 64.0 MiB",
                                       setup=zip_bomb),
    "sb3-net-arch-30000": Bad(EXPERT, "net_arch [30000, 30000]",
                              setup=sb3_zip(net_arch([30000, 30000]))),
    "sb3-net-arch-1e6": Bad(EXPERT, "policy.pth holds",
                            setup=sb3_zip(net_arch([1e6, 1e6]))),
    "sb3-net-arch-dict": Bad(EXPERT, "net_arch.pi",
                             setup=sb3_zip(net_arch({"pi": [4096, 4096], "vf": [8]}))),
    "sb3-box-30000x30000": Bad(EXPERT, "900,000,000 values",
                               setup=sb3_zip(observation_box([30000, 30000]))),
    "sb3-box-dimension-1e30": Bad(EXPERT, "shape", setup=sb3_zip(observation_box([1e30, 2]))),
    "sb3-discrete-1e30": Bad(EXPERT, "Discrete action space's n", setup=sb3_zip(action_n(1e30))),
    "sb3-discrete-1e30-text": Bad(EXPERT, "Discrete action space's n",
                                  setup=sb3_zip(action_n("1" + "0" * 30))),
    "sb3-discrete-half": Bad(EXPERT, "not a whole number", setup=sb3_zip(action_n(2.5))),
    # with the machine's free memory read as 64 MiB (see MEMORY_ROWS)
    "sb3-weights-beyond-memory": Bad(EXPERT, "more than the 64.0 MiB this machine has free",
                                     setup=big_weights),
    "sb3-weights-inflate-1000-times": Bad(EXPERT, "a zip bomb", setup=weights_bomb),
    # --- checkpoints: state.json's model against model.safetensors and memory -----------
    "eval-state-width-131072": Bad(EVAL, "width 131072", copy=("run",),
                                   setup=state_model(width=131072)),
    "eval-state-layers-1e6": Bad(EVAL, "model.safetensors", copy=("run",),
                                 setup=state_model(layers=10**6)),
    "eval-weights-beyond-memory": Bad(EVAL, "this machine has free", copy=("run",)),
    "mix-width-131072": Bad(TRAIN, "weights alone would need",
                            mix(f"model: {MODEL.replace('width: 32', 'width: 131072')}}}\n")),
    "mix-max-observation-tokens-huge": Bad(
        TRAIN, "weights alone", mix(f"model: {MODEL}, max_observation_tokens: 10000000000}}\n")),
    # --- YAML: the one reader bounds bytes and expanded aliases -------------------------
    "cfg-billion-laughs": Bad("pipeline run @TMP/c.yaml", "aliases",
                              {"c.yaml": laughs(head=CFG + "}\n")}),
    "mix-billion-laughs": Bad(TRAIN, "aliases", mix(laughs())),
    "mix-billion-laughs-as-datasets": Bad(
        TRAIN, "aliases", {"m.yaml": laughs() + "datasets: *l8\nsteps: 2\n"}),
    "cfg-endless-file": Bad("pipeline run /dev/zero", "holds more than 16.0 MiB"),
    "cfg-17MiB": Bad("pipeline run @TMP/c.yaml", "over kibble's limit of 16.0 MiB",
                     {"c.yaml": CFG + "}\n#" + "x" * (17 * MiB) + "\n"}),
    "sb3-sidecar-billion-laughs": Bad(EXPERT, "aliases", {"x.kibble.yaml": laughs()},
                                      setup=sb3_zip()),
    # --- numbers: finite and in range, every key ------------------------------------------
    "mix-task-weight-inf": Bad(TRAIN, "task_weights[gym/CartPole-v1]: expected a finite",
                               mix("task_weights: {gym/CartPole-v1: .inf}\n")),
    "mix-task-weight-nan": Bad(TRAIN, "task_weights[gym/CartPole-v1]: expected a finite",
                               mix("task_weights: {gym/CartPole-v1: .nan}\n")),
    "mix-dataset-weight-inf": Bad(TRAIN, "datasets[0].weight: expected a finite",
                                  {"m.yaml": MIX.replace("1.0}", ".inf}") + "steps: 2\n"}),
    "mix-dataset-weight-nan": Bad(TRAIN, "datasets[0].weight: expected a finite",
                                  {"m.yaml": MIX.replace("1.0}", ".nan}") + "steps: 2\n"}),
    "mix-learning-rate-nan": Bad(TRAIN, "learning_rate: expected a finite",
                                 mix("learning_rate: .nan\n")),
    "mix-learning-rate-inf-text": Bad(TRAIN, "learning_rate: expected a finite",
                                      mix("learning_rate: inf\n")),
    "mix-grad-clip-inf": Bad(TRAIN, "grad_clip: expected a finite", mix("grad_clip: .inf\n")),
    "mix-weight-decay-nan": Bad(TRAIN, "weight_decay", mix("weight_decay: .nan\n")),
    "mix-max-minutes-inf": Bad(TRAIN, "max_minutes", mix("max_minutes: .inf\n")),
    "mix-prompt-fraction-nan": Bad(TRAIN, "prompt_fraction", mix("prompt_fraction: .nan\n")),
    "mix-betas-nan": Bad(TRAIN, "betas", mix("betas: [.nan, 0.95]\n")),
    "mix-dropout-5": Bad(TRAIN, "model.dropout: expected a number in [0, 1)",
                         {"m.yaml": MIX.replace("patch_hidden: 8}", "patch_hidden: 8, dropout: 5}")
                          + "steps: 2\n"}),
    "mix-dropout-lots": Bad(TRAIN, "model.dropout: expected a number in [0, 1)",
                            {"m.yaml": MIX.replace("patch_hidden: 8}",
                                                   "patch_hidden: 8, dropout: lots}")
                             + "steps: 2\n"}),
    "mix-dropout-nan": Bad(TRAIN, "model.dropout",
                           {"m.yaml": MIX.replace("patch_hidden: 8}",
                                                  "patch_hidden: 8, dropout: .nan}")
                            + "steps: 2\n"}),
    "flag-set-learning-rate-nan": Bad(TRAIN + " --set learning_rate=.nan", "learning_rate",
                                      mix("")),
}  # fmt: skip

MEMORY_ROWS = {"sb3-weights-beyond-memory": 64 * MiB, "eval-weights-beyond-memory": 1 * MiB}
"""Rows run with the guard's reading of free memory set to this many bytes."""


@pytest.mark.parametrize("name", ROWS)
def test_an_unbounded_or_non_finite_input_is_one_paragraph(name, tmp_path, shared, monkeypatch):
    if name.startswith("sb3-"):
        pytest.importorskip("stable_baselines3")
    if name in MEMORY_ROWS:
        monkeypatch.setattr(limits, "memory_available", lambda: MEMORY_ROWS[name])
    bad.test_bad_input_is_a_clear_error(ROWS[name], tmp_path, shared)


def test_the_rows_reach_every_class():
    kinds = {name.split("-")[0] for name in ROWS}
    assert {"sb3", "eval", "mix", "cfg"} <= kinds
    assert len(ROWS) >= 30


# --- the guard itself, in bounded memory -----------------------------------------------


def test_a_reader_stops_one_block_past_the_cap_whatever_the_size_claims():
    """/dev/zero claims 0 bytes and never ends: reading stops just past the cap."""
    with open("/dev/zero", "rb") as f:
        with pytest.raises(limits.TooLarge, match=r"holds more than 3\.0 MiB"):
            limits.read_capped(f, 3 * MiB, "zeros", "give a file")
        assert f.tell() <= 3 * MiB + 1


def test_a_zip_member_that_inflates_past_its_header_is_not_read_past_it(tmp_path):
    """A member whose header declares 1 KiB but whose data inflates to 10 MiB: zipfile's
    reader stops at the declared size, and the bytes do not match its CRC."""
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", b"x" * (10 * MiB))
    raw = bytearray(path.read_bytes())
    # Both headers' uncompressed size fields: the local one at 22, the central one at 24
    # past its signature.
    raw[22:26] = (1024).to_bytes(4, "little")
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (1024).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as z, pytest.raises(zipfile.BadZipFile, match="CRC"):
        limits.read_member(z, "data", "liar's data", 4 * MiB, "give another")


def test_a_billion_laughs_is_refused_before_python_objects_are_built(tmp_path):
    """Counted on the node graph: refused in well under a second, memory untouched."""
    import resource
    import time

    from kibble.yaml_file import read_yaml

    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(levels=12))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(limits.TooLarge, match=r"aliases .* expanded"):
        read_yaml(path, "config file")
    assert time.perf_counter() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    # Aliases within the limit still work, recursive ones and merge keys included.
    path.write_text("base: &b {k: 1}\nuse: {<<: *b, j: 2}\nloop: &x [1, *x]\n")
    parsed = read_yaml(path, "config file")
    assert parsed["use"] == {"k": 1, "j": 2}


def test_every_yaml_read_goes_through_the_one_reader():
    """No module but kibble.yaml_file calls PyYAML's loaders (the command line's --set
    KEY=VALUE goes through its parse_yaml too)."""
    root = Path(__file__).resolve().parents[1]
    found = subprocess.run(
        ["git", "grep", "-n", "-E", r"yaml\.(safe_)?load\(|yaml\.load_all|yaml\.compose",
         "--", "*.py", ":!tests", ":!benchmarks", ":!build"],
        cwd=root, capture_output=True, text=True, check=False,
    ).stdout.splitlines()  # fmt: skip
    readers = {line.split(":", 1)[0] for line in found}
    assert readers == set(), found


def test_the_memory_guard_names_the_input_the_limit_and_what_to_do(monkeypatch):
    monkeypatch.setattr(limits, "memory_available", lambda: 2 * MiB)
    with pytest.raises(limits.TooLarge) as e:
        limits.check_memory(3 * MiB, "the thing", "use a smaller one")
    assert str(e.value) == (
        "the thing would need 3.0 MiB of memory, more than the 2.0 MiB this machine has "
        "free, so kibble refuses it before allocating anything; use a smaller one"
    )
    assert isinstance(e.value, KibbleError)
    monkeypatch.setattr(limits, "memory_available", lambda: None)  # unknown: not refused
    limits.check_memory(10**15, "the thing", "")


def test_the_free_memory_reading_is_the_machines(monkeypatch):
    have = limits.memory_available()
    physical = limits.os.sysconf("SC_PHYS_PAGES") * limits.os.sysconf("SC_PAGE_SIZE")
    assert have is not None and 0 < have <= physical


# --- a full disk at a training checkpoint --------------------------------------------


_ENOSPC = "Error while serializing: I/O error: No space left on device (os error 28)"


def test_a_full_disk_at_a_checkpoint_is_the_disk_full_paragraph(tmp_path, shared, monkeypatch):
    """safetensors reports a full disk in a SafetensorError of its own (its exact words
    on a full tmpfs); the checkpoint raises it as the OSError it is, which the command
    line reports as for any other write, and no staging folder is left."""
    from safetensors import SafetensorError

    import kibble.trainer.checkpoint as checkpoint

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # a part was written, then the disk filled
        raise SafetensorError(_ENOSPC)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    (tmp_path / "m.yaml").write_text(MIX.replace("@DS", str(shared["@DS"]())) + "steps: 1\n")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "m.yaml"), "--out",
                                      str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("kibble: error: no space left on device: "), result.stderr
    assert "model.safetensors; free some space, or give a path on another disk" in error
    assert not list((tmp_path / "run").glob(".checkpoint.staging-*"))


def test_a_full_disk_for_real_at_a_checkpoint(tmp_path, shared, small_disk):
    """The same on a real 2 MiB tmpfs (where this process may mount one)."""
    disk = small_disk("2m")
    (tmp_path / "m.yaml").write_text(MIX.replace("@DS", str(shared["@DS"]())) + "steps: 1\n")
    run = subprocess.run(
        [sys.executable, "-m", "kibble", "train", str(tmp_path / "m.yaml"), "--out",
         str(disk / "run")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("kibble: error: no space left on device"), run.stderr
    assert "free some space" in last


def test_a_manifest_past_its_cap_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    from kibble.limits import TooLarge
    from kibble.schemas import layout

    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text('{"files": [' + '"x", ' * 5000 + '"x"]}')
    assert layout.read_manifest(tmp_path / "ds")["files"][0] == "x"
    monkeypatch.setattr(layout, "MANIFEST_BYTES", 1024)
    with pytest.raises(TooLarge, match=r"manifest.json holds more than 1.0 KiB"):
        layout.read_manifest(tmp_path / "ds")
