"""Faults a training run must survive or name: damaged data, divergence, damaged logs and
checkpoints, mixture mistakes. How the command line reports them is in test_stops.py."""

import json
import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from kibble.errors import KibbleError
from kibble.tokenize.vocab import IMAGE_PATCH, SEPARATOR
from kibble.trainer.checkpoint import NonFiniteWeights, read_state, save_checkpoint
from kibble.trainer.config import DatasetSpec, MixtureConfig, ModelConfig, load_mixture
from kibble.trainer.mixture_data import MixtureData
from kibble.trainer.model import Gato
from kibble.trainer.train import pick_device, train

TINY = ModelConfig(layers=2, heads=2, width=32, ff=64, patch_hidden=8)


def config(*paths, **kw) -> MixtureConfig:
    defaults = dict(
        model=TINY, model_name="custom", context=48, batch_size=4, steps=4, log_every=1,
        learning_rate=3e-3, warmup_steps=1,
    )  # fmt: skip
    return MixtureConfig(datasets=[DatasetSpec(str(p)) for p in paths], **{**defaults, **kw})


def copy_of(dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    return copy, next((copy / "data").rglob("*.parquet"))


def metric_steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def checkpoint_step(run) -> int:
    return json.loads((run / "checkpoint" / "state.json").read_text())["progress"]["step"]


# -- data files against the manifest and the vocabulary -----------------------------------


def _illegal(column: str, values: np.ndarray) -> np.ndarray:
    if column == "action_tokens":
        return (values < 0) | (values >= SEPARATOR)
    return (values < 0) | ((values >= SEPARATOR) & (values != IMAGE_PATCH))


def flip_a_byte_to_an_illegal_token(path, column: str) -> int:
    """Flip the first bit of ``column``'s compressed pages after which the file still
    decodes, to lists of the same lengths, with a token outside the vocabulary."""
    raw = path.read_bytes()
    meta = pq.ParquetFile(path).metadata.row_group(0)
    names = [meta.column(j).path_in_schema for j in range(meta.num_columns)]
    chunk = meta.column(names.index(f"{column}.list.element"))
    lengths = pq.read_table(path, columns=[column])[column].combine_chunks().value_lengths()
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    for pos in range(start, start + chunk.total_compressed_size):
        for bit in (0x01, 0x80):
            flipped = bytearray(raw)
            flipped[pos] ^= bit
            try:
                col = pq.read_table(pa.BufferReader(bytes(flipped)), columns=[column])[column]
            except (OSError, pa.ArrowException):
                continue
            col = col.combine_chunks()
            if col.value_lengths() == lengths and _illegal(column, col.flatten().to_numpy()).any():
                path.write_bytes(bytes(flipped))
                return pos
    raise AssertionError(f"no single-bit flip of {column} gives an illegal token")


@pytest.mark.parametrize("column", ["observation_tokens", "action_tokens"])
def test_a_flipped_byte_giving_an_illegal_token_is_named_with_its_row_group(
    cartpole_dataset, tmp_path, column
):
    copy, path = copy_of(cartpole_dataset, tmp_path)
    flip_a_byte_to_an_illegal_token(path, column)
    data = MixtureData(config(copy))  # same size and rows: nothing to see at open
    word = column.split("_")[0]
    with pytest.raises(
        KibbleError, match=rf"{path.name}: row group 0 is damaged \(row \d+ has {word} token"
    ):
        data.read_steps(0, 0, 10)
    # Training on it stops at the first read with that error, never an IndexError.
    with pytest.raises(KibbleError) as e:
        train(config(copy), tmp_path / "run")
    message = str(e.value)
    assert f"{path.name}: row group 0 is damaged" in message and "token" in message
    assert "kibble inspect" in message and "\n" not in message


def test_a_token_count_that_disagrees_with_its_column_is_named(cartpole_dataset, tmp_path):
    copy, path = copy_of(cartpole_dataset, tmp_path)
    table = pq.read_table(path)
    n_obs = table["n_observation_tokens"].to_numpy().copy()
    n_obs[5] += 1  # mid-episode: the episode index (read at open) sees only first steps
    i = table.schema.get_field_index("n_observation_tokens")
    pq.write_table(table.set_column(i, table.schema.field(i), [n_obs]), path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][0]["bytes"] = path.stat().st_size  # a consistent manifest
    (copy / "manifest.json").write_text(json.dumps(manifest))
    data = MixtureData(config(copy))
    with pytest.raises(KibbleError, match=r"row group 0 is damaged \(row 5 has 4 observation"):
        data.read_steps(0, 0, 10)


def test_a_truncated_file_is_named_at_open(cartpole_dataset, tmp_path):
    copy, path = copy_of(cartpole_dataset, tmp_path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size - 100])
    with pytest.raises(KibbleError, match=rf"{path.name} does not match its manifest") as e:
        MixtureData(config(copy))
    assert f"{size - 100} bytes, the manifest says {size}" in str(e.value)


def test_an_edited_manifest_row_count_is_named_at_open(cartpole_dataset, tmp_path):
    copy, _ = copy_of(cartpole_dataset, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    rows = manifest["files"][0]["rows"]
    manifest["files"][0]["rows"] = rows + 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KibbleError, match=f"{rows} rows, the manifest says {rows + 1}"):
        MixtureData(config(copy))


@pytest.mark.parametrize(
    "edit", [lambda m: m["files"], lambda m: {**m, "files": [{"path": "data/x.parquet"}]}]
)
def test_a_manifest_of_the_wrong_shape_is_named(cartpole_dataset, tmp_path, edit):
    copy, _ = copy_of(cartpole_dataset, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(edit(manifest)))
    with pytest.raises(KibbleError, match=r"manifest\.json"):
        MixtureData(config(copy))


# -- divergence ----------------------------------------------------------------------------


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(cartpole_dataset, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KibbleError) as e:
        train(config(cartpole_dataset, steps=30, learning_rate=1e6, checkpoint_every=1), run)
    message = str(e.value)
    assert "training diverged at step" in message and "the loss is nan" in message
    assert "gym/CartPole-v1" in message and "learning_rate (now 1e+06)" in message
    assert "grad_clip" in message and "\n" not in message
    failed = int(message.split("at step ")[1].split(":")[0])
    assert checkpoint_step(run) == failed - 1  # checkpoint_every 1: the step before
    weights = load_file(str(run / "checkpoint" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    losses = [
        json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().split("\n")[:-1]
    ]
    assert len(losses) == failed - 1 and all(np.isfinite(losses))


def test_a_learning_rate_that_overflows_float32_stops_the_run(cartpole_dataset, tmp_path):
    run = tmp_path / "run"
    train(config(cartpole_dataset, steps=2), run)
    with pytest.raises(KibbleError, match=r"diverged at step 3: the update overflows float32"):
        train(config(cartpole_dataset, steps=4, learning_rate=1e39, checkpoint_every=1), run)
    assert checkpoint_step(run) == 2


def test_weights_that_are_not_finite_are_never_saved(cartpole_dataset, tmp_path):
    model = Gato(TINY)
    optimizer = torch.optim.AdamW(model.parameters())
    cfg = config(cartpole_dataset)
    save_checkpoint(tmp_path, model, optimizer, cfg, {"step": 1})
    with torch.no_grad():
        model.blocks[0].mlp.up.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteWeights, match=r"1 weight tensors hold NaN or infinity \(blocks"):
        save_checkpoint(tmp_path, model, optimizer, cfg, {"step": 2})
    assert read_state(tmp_path)["progress"]["step"] == 1
    weights = load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]  # no staging folder


# -- metrics.jsonl and checkpoints on resume ----------------------------------------------


def test_a_kill_during_the_first_save_does_not_log_steps_twice(cartpole_dataset, tmp_path):
    run = tmp_path / "run"
    train(config(cartpole_dataset, steps=4, checkpoint_every=4), run)
    # What a kill during the first checkpoint's save leaves: the metrics of steps 1-4,
    # a staging folder, no checkpoint.
    (run / "checkpoint").rename(run / ".checkpoint.staging-killed")
    train(config(cartpole_dataset, steps=4, checkpoint_every=4), run)
    assert metric_steps(run) == [1, 2, 3, 4]
    assert not (run / ".checkpoint.staging-killed").exists()


def test_a_resume_drops_windows_past_the_checkpoint_and_a_torn_line(
    cartpole_dataset, tmp_path, caplog
):
    run = tmp_path / "run"
    train(config(cartpole_dataset, steps=2), run)
    with (run / "metrics.jsonl").open("a") as f:  # logged after the checkpoint, then killed
        f.write(json.dumps({"step": 3, "loss": 1.0, "family_loss": {}}) + "\n")
        f.write('{"step": 4, "lo')
    with caplog.at_level(logging.WARNING):
        train(config(cartpole_dataset, steps=4), run)
    assert metric_steps(run) == [1, 2, 3, 4]
    assert "line 4 is torn" in caplog.text


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "state.json"])
def test_a_truncated_checkpoint_file_is_named_on_resume(cartpole_dataset, tmp_path, name):
    run = tmp_path / "run"
    train(config(cartpole_dataset, steps=2), run)
    path = run / "checkpoint" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(KibbleError) as e:
        train(config(cartpole_dataset, steps=4), run)
    message = str(e.value)
    assert message.startswith(f"{path} cannot be read") and "damaged" in message
    assert "delete that folder to train the run again" in message and "\n" not in message


# -- mixture mistakes ---------------------------------------------------------------------

MIXTURE_MISTAKES = {
    "betas: [fast, slow]": "betas: expected two numbers in [0, 1)",
    "device: banana": "device: expected auto, cpu, cuda or cuda:N",
    "model: {layers: 2, heads: 3, width: 32, ff: 64}": "model: width 32 must be divisible by heads",
    "warmup_steps: 50": "warmup_steps: 50 is longer than the whole training (steps: 10)",
    "min_learning_rate: 0.01": "min_learning_rate: 0.01 is above the peak learning_rate 0.001",
}


@pytest.mark.parametrize("line", MIXTURE_MISTAKES)
def test_mixture_mistakes_name_the_file_and_field(tmp_path, line):
    path = tmp_path / "mix.yaml"
    path.write_text(f"datasets: [data/x]\nsteps: 10\nlearning_rate: 0.001\n{line}\n")
    with pytest.raises(KibbleError, match=f"^{path}: ") as e:
        load_mixture(path)
    assert MIXTURE_MISTAKES[line] in str(e.value)


def test_a_mixture_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_bytes("datasets: [data/caf\u00e9]\n".encode("latin-1"))
    with pytest.raises(KibbleError, match=f"^{path} is not UTF-8 text"):
        load_mixture(path)


def test_a_bad_override_is_blamed_on_the_option_not_the_file(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("datasets: [data/x]\n")
    with pytest.raises(KibbleError) as e:
        load_mixture(path, {"steps": "abc"})
    assert str(e.value) == "command-line option: steps: expected a positive integer, got 'abc'"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_names_the_file(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("datasets: [data/x]\ndevice: cuda\n")
    cfg = load_mixture(path)
    with pytest.raises(KibbleError, match=f"^{path}: device: cuda was asked for .* no CUDA GPU"):
        pick_device(cfg.device, cfg.source)


def test_a_context_too_large_for_memory_is_refused_before_allocating(
    cartpole_dataset, tmp_path, write_mixture
):
    path = write_mixture(
        tmp_path / "mix.yaml", [cartpole_dataset], context=10**9, batch_size=16, steps=2
    )
    with pytest.raises(KibbleError, match=f"^{path}: context 1000000000 x batch_size 16") as e:
        train(load_mixture(path), tmp_path / "run")
    assert "Lower context or batch_size" in str(e.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written
