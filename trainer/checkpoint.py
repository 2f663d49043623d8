"""Run checkpoints: the config as JSON, weights and optimizer state in safetensors.

Nothing is pickled, so loading a checkpoint someone else wrote runs no code. A checkpoint
is a folder ``RUN_DIR/checkpoint`` with:

- ``state.json``: the mixture config (model included), step, tokens seen, RNG states,
  the optimizer's per-group hyper-parameters and step counts;
- ``model.safetensors``: the weights;
- ``optimizer.safetensors``: AdamW's moments as ``{param index}.{name}`` tensors.

It is written into a fresh folder (``.checkpoint.staging-*``) and swapped in
(:func:`kibble.atomic.swap_in`), so a killed run keeps the last one; the staging folder is
removed if the save fails, and by the next run (:func:`kibble.atomic.hold`) after a kill.
Weights that are not finite are never written: a diverged run keeps its last good
checkpoint. A damaged file is an error that says what to do, never a traceback.

A checkpoint is an untrusted input too (:mod:`kibble.limits`): ``state.json`` is read
bounded, the model its config declares is sized (:func:`~kibble.trainer.config.
parameter_count`) against ``model.safetensors`` before anything is built, and each
safetensors file against free memory before it is loaded. A write the operating system
refuses (a full disk, a quota) is the ``OSError`` safetensors wrapped in its own error,
raised again as that ``OSError``: the command line's one paragraph for a full disk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kibble.atomic import recover, swap_in
from kibble.errors import KibbleError
from kibble.limits import check_memory, read_text, size_text
from kibble.trainer.config import MixtureConfig, ModelConfig, parameter_count
from kibble.trainer.model import Gato

CHECKPOINT = "checkpoint"
STATE = "state.json"
MODEL = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
FORMAT = 1


class NonFiniteWeights(KibbleError):
    """The model's weights hold NaN or infinity: the run diverged; nothing was saved."""


def damaged(path: Path, detail: str) -> KibbleError:
    """The error for a checkpoint file that cannot be read back."""
    folder = Path(path).parent
    return KibbleError(
        f"{path} cannot be read ({detail}): the checkpoint is damaged (a file was truncated "
        f"or changed after it was written). Restore {folder} from a copy, or delete that "
        "folder to train the run again from step 0"
    )


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    state = optimizer.state_dict()
    tensors, scalars = {}, []
    for index, values in state["state"].items():
        entry = {}
        for name, v in values.items():
            if torch.is_tensor(v) and v.dim() > 0:
                tensors[f"{index}.{name}"] = v.detach().cpu().contiguous()
            else:
                entry[name] = float(v)
        scalars.append([index, entry])
    return tensors, scalars


def save_checkpoint(
    run_dir: Path,
    model: Gato,
    optimizer: torch.optim.Optimizer,
    config: MixtureConfig,
    progress: dict[str, Any],
) -> Path:
    """Write ``run_dir/checkpoint`` atomically; ``progress`` holds step, tokens, RNG states."""
    run_dir = Path(run_dir)
    weights = {k: v.detach().cpu().contiguous() for k, v in _plain_state_dict(model).items()}
    bad = [k for k, v in weights.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise NonFiniteWeights(
            f"{len(bad)} weight tensors hold NaN or infinity ({', '.join(bad[:3])}, ...)"
        )
    tmp = run_dir / f".{CHECKPOINT}.staging-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        _write(tmp, weights, optimizer, config, progress)
        swap_in(tmp, run_dir / CHECKPOINT)
    except BaseException:  # a full disk, a signal: leave no staging folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run_dir / CHECKPOINT


def _save(tensors: dict, path: Path) -> None:
    """``save_file``, with an operating system's refusal raised as the ``OSError`` it is
    (safetensors reports a full disk as "... I/O error: No space left on device (os
    error 28)" in a SafetensorError of its own)."""
    try:
        save_file(tensors, str(path))
    except SafetensorError as e:
        code = re.search(r"\(os error (\d+)\)", str(e))
        if code is None:
            raise
        number = int(code.group(1))
        raise OSError(number, os.strerror(number), str(path)) from e


def _write(tmp: Path, weights: dict, optimizer, config: MixtureConfig, progress: dict) -> None:
    _save(weights, tmp / MODEL)
    tensors, scalars = _optimizer_tensors(optimizer)
    _save(tensors, tmp / OPTIMIZER)
    groups = [
        {k: v for k, v in g.items() if k != "params"}
        for g in optimizer.state_dict()["param_groups"]
    ]
    for g in groups:
        g["betas"] = list(g["betas"])
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        "progress": progress,
        "optimizer": {"param_groups": groups, "scalars": scalars},
        "torch_rng": torch.get_rng_state().tolist(),
    }
    (tmp / STATE).write_text(json.dumps(state) + "\n")


def _plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # torch.compile wraps the module; checkpoints always hold the plain names.
    inner = getattr(model, "_orig_mod", model)
    return inner.state_dict()


def read_state(run_dir: Path) -> dict:
    """The checkpoint's state.json, with a clear error when there is none."""
    recover(Path(run_dir) / CHECKPOINT)  # a swap killed on a filesystem without exchange
    path = Path(run_dir) / CHECKPOINT / STATE
    if not path.exists():
        raise KibbleError(
            f"{run_dir} holds no kibble checkpoint ({path} is missing); "
            "give the --out folder of a `kibble train` run"
        )
    fix = f"the checkpoint is damaged: restore {path.parent} from a copy, or delete it"
    try:
        state = json.loads(read_text(path, "checkpoint state", fix=fix))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise damaged(path, f"not valid JSON: {e}") from e
    if not isinstance(state, dict):
        raise damaged(path, "not a JSON object")
    if state.get("format") != FORMAT:
        raise KibbleError(f"{path} has checkpoint format {state.get('format')}, expected {FORMAT}")
    missing = [k for k in ("config", "progress", "optimizer", "torch_rng") if k not in state]
    if missing:
        raise damaged(path, f"it lacks {', '.join(missing)}")
    _check_declared_model(path, state)
    return state


def _check_declared_model(path: Path, state: dict) -> None:
    """Refuse a state.json whose model config declares more weights than its
    model.safetensors holds (a checkpoint edited by hand, or another run's state.json):
    sized from the config alone, before any model is built."""
    raw = state["config"].get("model") if isinstance(state["config"], dict) else None
    weights = path.parent / MODEL
    try:
        declared = parameter_count(ModelConfig(**raw))
        held = weights.stat().st_size
    except (TypeError, ValueError, ZeroDivisionError, KibbleError, OSError):
        return  # a config that is not one: parse_mixture names what is wrong with it
    if 4 * declared > held:
        raise damaged(
            weights,
            f"it holds {size_text(held)}, less than the {size_text(4 * declared)} of float32 "
            f"weights ({declared:,} at least) that {path.name}'s model config (layers "
            f"{raw.get('layers')}, width {raw.get('width')}, ff {raw.get('ff')}) declares: "
            "the two are not one checkpoint, and kibble builds no model from it",
        )


def _load_file(path: Path) -> dict:
    """A safetensors file's tensors, its size checked against free memory first."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise damaged(path, f"not a safetensors file: {e}") from e
    check_memory(size, f"loading {path}", "free memory, or load it on a machine with more")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise damaged(path, f"not a safetensors file: {e}") from e


def model_config_of(state: dict) -> ModelConfig:
    return ModelConfig(**state["config"]["model"])


def load_model(run_dir: Path, model: Gato) -> None:
    """Load the checkpoint's weights into ``model``; a different shape is a clear error."""
    path = Path(run_dir) / CHECKPOINT / MODEL
    weights = _load_file(path)
    inner = getattr(model, "_orig_mod", model)
    expected = inner.state_dict()
    problems = [
        f"{k}: checkpoint {tuple(weights[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if problems or missing or extra:
        detail = "; ".join(problems[:3] + [f"missing {m}" for m in missing[:3]])
        detail += "".join(f"; unexpected {e}" for e in extra[:3])
        raise KibbleError(
            f"{path} was written by another model config than {asdict(inner.cfg)}: {detail}. "
            "Use a new --out folder, or the mixture's model that wrote this checkpoint"
        )
    inner.load_state_dict(weights)


def load_optimizer(run_dir: Path, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load AdamW's state; a damaged file (or one that does not fit) is a clear error."""
    path = Path(run_dir) / CHECKPOINT / OPTIMIZER
    tensors = _load_file(path)
    try:
        _load_optimizer(optimizer, state, tensors)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise damaged(path, f"it does not fit the model's optimizer: {e}") from e


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict, tensors: dict) -> None:
    opt_state: dict[int, dict] = {}
    for index, scalars in state["optimizer"]["scalars"]:
        entry: dict[str, Any] = {k: torch.tensor(v) for k, v in scalars.items()}
        opt_state[int(index)] = entry
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = value
    current = optimizer.state_dict()
    groups = []
    for g, saved in zip(current["param_groups"], state["optimizer"]["param_groups"], strict=True):
        groups.append({**saved, "betas": tuple(saved["betas"]), "params": g["params"]})
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
