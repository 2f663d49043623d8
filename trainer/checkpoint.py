"""Run checkpoints: the config as JSON, weights and optimizer state in safetensors.

Nothing is pickled, so loading a checkpoint someone else wrote runs no code. A checkpoint
is a folder ``RUN_DIR/checkpoint`` with:

- ``state.json``: the mixture config (model included), step, tokens seen, RNG states,
  the optimizer's per-group hyper-parameters and step counts;
- ``model.safetensors``: the weights;
- ``optimizer.safetensors``: AdamW's moments as ``{param index}.{name}`` tensors.

It is written into a fresh folder and swapped in, so a killed run keeps the last one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kibble.atomic import recover, swap_in
from kibble.errors import KibbleError
from kibble.trainer.config import MixtureConfig, ModelConfig
from kibble.trainer.model import Gato

CHECKPOINT = "checkpoint"
STATE = "state.json"
MODEL = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
FORMAT = 1


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
    tmp = run_dir / f".{CHECKPOINT}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in _plain_state_dict(model).items()}
    save_file(weights, str(tmp / MODEL))
    tensors, scalars = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / OPTIMIZER))
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
    final = run_dir / CHECKPOINT
    swap_in(tmp, final)
    return final


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
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise KibbleError(f"{path} is not valid JSON: {e}") from e
    if state.get("format") != FORMAT:
        raise KibbleError(f"{path} has checkpoint format {state.get('format')}, expected {FORMAT}")
    return state


def model_config_of(state: dict) -> ModelConfig:
    return ModelConfig(**state["config"]["model"])


def load_model(run_dir: Path, model: Gato) -> None:
    """Load the checkpoint's weights into ``model``; a different shape is a clear error."""
    path = Path(run_dir) / CHECKPOINT / MODEL
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise KibbleError(f"{path} cannot be read as safetensors: {e}") from e
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
    tensors = load_file(str(Path(run_dir) / CHECKPOINT / OPTIMIZER))
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
