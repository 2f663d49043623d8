"""Reading a Stable-Baselines3 ``.zip`` without unpickling anything in it.

An SB3 zip holds ``data`` (JSON: the algorithm's attributes; every value JSON cannot
hold is a cloudpickle under a ``:serialized:`` key, next to plain-text descriptions
of it), ``policy.pth`` (the policy's ``state_dict``), ``policy.optimizer.pth``,
``pytorch_variables.pth``, ``_stable_baselines3_version`` and ``system_info.txt``.
``Algo.load`` unpickles every ``:serialized:`` value. This module reads only:

- from ``data``: the plain-text fields next to the pickles: the policy class's module
  and name (from the names of the functions its class body defines), the spaces'
  dtype, shape, bounds, ``n``/``nvec``, and ``policy_kwargs`` whose values are plain
  JSON or name a class on a short whitelist (activation functions, SB3's own feature
  extractors);
- ``policy.pth`` with ``torch.load(..., weights_only=True)``: tensors only;
- ``_stable_baselines3_version``: text.

The policy is rebuilt from a whitelisted SB3 / sb3-contrib class with those
arguments, then given the weights (``strict``: every tensor must fit). Anything that
cannot be rebuilt that way is a :class:`~kibble.errors.KibbleError` that names it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from kibble.envs.registry import describe_space
from kibble.errors import KibbleError

# (module, class) -> (algorithm family, the algorithms it serves)
POLICY_CLASSES: dict[tuple[str, str], str] = {
    ("stable_baselines3.common.policies", "ActorCriticPolicy"): "actor-critic",
    ("stable_baselines3.common.policies", "ActorCriticCnnPolicy"): "actor-critic",
    ("stable_baselines3.dqn.policies", "DQNPolicy"): "DQN",
    ("stable_baselines3.dqn.policies", "CnnPolicy"): "DQN",
    ("stable_baselines3.sac.policies", "SACPolicy"): "SAC",
    ("stable_baselines3.sac.policies", "CnnPolicy"): "SAC",
    ("stable_baselines3.td3.policies", "TD3Policy"): "TD3",
    ("stable_baselines3.td3.policies", "CnnPolicy"): "TD3",
    ("sb3_contrib.qrdqn.policies", "QRDQNPolicy"): "QR-DQN",
    ("sb3_contrib.qrdqn.policies", "CnnPolicy"): "QR-DQN",
    ("sb3_contrib.tqc.policies", "TQCPolicy"): "TQC",
    ("sb3_contrib.tqc.policies", "CnnPolicy"): "TQC",
}
SUPPORTED = "PPO, A2C, TRPO, DQN, QR-DQN, SAC, TQC, TD3 and DDPG with Mlp or Cnn policies"

# Known policy classes kibble refuses, with the reason.
_REFUSED_CLASSES = {
    "MultiInputActorCriticPolicy": "Dict observations (MultiInputPolicy) are not supported",
    "MultiInputPolicy": "Dict observations (MultiInputPolicy) are not supported",
    "RecurrentActorCriticPolicy": "recurrent policies (RecurrentPPO) keep a hidden state "
    "kibble's sb3 source does not carry",
    "RecurrentActorCriticCnnPolicy": "recurrent policies (RecurrentPPO) are not supported",
    "MaskableActorCriticPolicy": "maskable policies need action masks kibble's tasks do not give",
    "MaskableActorCriticCnnPolicy": "maskable policies are not supported",
    "ARSPolicy": "ARS policies are not supported",
    "ARSLinearPolicy": "ARS policies are not supported",
}

_ACTIVATIONS = (
    "ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Softplus", "SELU", "Mish",
    "Identity", "ReLU6", "Hardtanh", "Hardswish", "CELU", "PReLU",
)  # fmt: skip
_EXTRACTORS = ("FlattenExtractor", "NatureCNN")
_TRAINING_ONLY_KWARGS = ("optimizer_class", "optimizer_kwargs")
_CLASS_TEXT = re.compile(r"^<class '([\w.]+)'>$")
_FUNCTION_TEXT = re.compile(r"^<function ([\w.]+)\.\w+ at 0x[0-9a-fA-F]+>$")


@dataclass
class Sb3Checkpoint:
    """What kibble knows of an SB3 zip, all of it read without unpickling."""

    path: Path
    sha256: str
    sb3_version: str
    algorithm: str
    policy_module: str
    policy_class: str
    observation_space: spaces.Space | None
    """None when the zip's bounds cannot be read back (see ``observation_note``)."""
    observation_shape: tuple[int, ...]
    observation_dtype: str
    action_space: spaces.Space
    policy_kwargs: dict[str, Any]
    use_sde: bool
    exploration_rate: float | None
    state_dict: dict[str, Any] = field(repr=False)
    dropped_kwargs: list[str] = field(default_factory=list)
    observation_note: str = ""

    def describe(self) -> dict[str, Any]:
        """JSON-able: what an expert card records about the checkpoint."""
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "algorithm": self.algorithm,
            "policy_class": f"{self.policy_module}.{self.policy_class}",
            "sb3_version": self.sb3_version,
            "observation_space": self.describe_observations(),
            "action_space": describe_space(self.action_space),
            "policy_kwargs": {k: _jsonable(v) for k, v in self.policy_kwargs.items()},
            "ignored_training_kwargs": self.dropped_kwargs,
        }

    def describe_observations(self) -> str:
        if self.observation_space is not None:
            return describe_space(self.observation_space)
        return f"Box{self.observation_shape} {self.observation_dtype} (bounds unreadable)"


def _jsonable(value: Any) -> Any:
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> Sb3Checkpoint:
    """Read ``path`` (an SB3 ``.zip``): everything but the network itself."""
    path = Path(path)
    if not path.exists():
        raise KibbleError(
            f"SB3 checkpoint {path} does not exist; give the .zip that model.save() wrote "
            "(or that huggingface_sb3's load_from_hub downloaded)"
        )
    if path.is_dir():
        raise KibbleError(f"SB3 checkpoint {path} is a directory; give the .zip file inside it")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [n for n in ("data", "policy.pth") if n not in names]
            if missing:
                held = ", ".join(sorted(names)[:6]) or "nothing"
                raise KibbleError(
                    f"{path} is a zip but not a Stable-Baselines3 checkpoint: it has no "
                    f"{' and no '.join(missing)} (it holds {held})"
                )
            data_text = archive.read("data")
            weights = archive.read("policy.pth")
            version = ""
            if "_stable_baselines3_version" in names:
                version = archive.read("_stable_baselines3_version").decode(errors="replace")
    except zipfile.BadZipFile as e:
        raise KibbleError(
            f"{path} is not a readable zip file ({e}); an SB3 checkpoint is the .zip that "
            "model.save() writes. Download it again if it was cut short"
        ) from e
    except (OSError, EOFError, zipfile.LargeZipFile) as e:
        raise KibbleError(f"cannot read SB3 checkpoint {path}: {e}") from e
    try:
        data = json.loads(data_text)
    except (ValueError, UnicodeDecodeError) as e:
        raise KibbleError(
            f"{path}: its 'data' entry is not JSON ({e}); not an SB3 checkpoint"
        ) from e
    if not isinstance(data, dict) or "policy_class" not in data:
        raise KibbleError(f"{path}: its 'data' names no policy_class; not an SB3 checkpoint")

    module, name = _policy_class(data["policy_class"], path)
    family = POLICY_CLASSES[(module, name)]
    obs_space, obs_note = _space(data.get("observation_space"), "observation", path)
    act_space, act_note = _space(data.get("action_space"), "action", path)
    if act_space is None:
        raise KibbleError(f"{path}: cannot read its action space back: {act_note}")
    kwargs, dropped = _policy_kwargs(data.get("policy_kwargs", {}), path)
    state = _weights(weights, path)
    shape, dtype = _shape_and_dtype(data["observation_space"])
    exploration = data.get("exploration_rate")
    return Sb3Checkpoint(
        path=path,
        sha256=sha256_of(path),
        sb3_version=version.strip(),
        algorithm=_algorithm(family, data),
        policy_module=module,
        policy_class=name,
        observation_space=obs_space,
        observation_shape=shape,
        observation_dtype=dtype,
        action_space=act_space,
        policy_kwargs=kwargs,
        use_sde=bool(data.get("use_sde", False)),
        exploration_rate=float(exploration) if isinstance(exploration, int | float) else None,
        state_dict=state,
        dropped_kwargs=dropped,
        observation_note=obs_note,
    )


def _policy_class(entry: Any, path: Path) -> tuple[str, str]:
    """(module, class name) from the plain fields next to the pickled class."""
    if not isinstance(entry, dict) or not isinstance(entry.get("__module__"), str):
        raise KibbleError(
            f"{path}: its policy_class has no plain __module__; cannot tell the policy"
        )
    module = entry["__module__"]
    owners = {
        m.group(1) for v in entry.values() if isinstance(v, str) and (m := _FUNCTION_TEXT.match(v))
    }
    if len(owners) != 1:
        raise KibbleError(
            f"{path}: cannot tell the policy class from its data (module {module}, methods of "
            f"{sorted(owners) or 'no class'}); kibble loads {SUPPORTED}"
        )
    name = owners.pop()
    if name in _REFUSED_CLASSES:
        raise KibbleError(f"{path}: policy {module}.{name}: {_REFUSED_CLASSES[name]}")
    if (module, name) not in POLICY_CLASSES:
        raise KibbleError(
            f"{path}: policy class {module}.{name} is not one kibble rebuilds without "
            f"unpickling (custom policy classes would need their code to run); kibble loads "
            f"{SUPPORTED}"
        )
    return module, name


def policy_class(module: str, name: str) -> type:
    import importlib

    return getattr(importlib.import_module(module), name)


def _algorithm(family: str, data: dict) -> str:
    """The algorithm's name: the zip does not store it, its attributes tell."""
    if family == "actor-critic":
        if "cg_max_steps" in data:
            return "TRPO"
        return "PPO" if "clip_range" in data else "A2C"
    if family == "TD3":
        ddpg = data.get("policy_delay") == 1 and data.get("target_policy_noise") == 0.0
        return "DDPG" if ddpg else "TD3"
    return family


def _shape_and_dtype(entry: Any) -> tuple[tuple[int, ...], str]:
    if not isinstance(entry, dict):
        return (), "?"
    shape = entry.get("_shape", entry.get("shape"))
    dims = tuple(int(s) for s in shape) if isinstance(shape, list) else ()
    return dims, str(entry.get("dtype"))


def _space(entry: Any, what: str, path: Path) -> tuple[spaces.Space | None, str]:
    """A space from its plain description.

    (None, why) only for a Box whose bounds were saved shortened (see :func:`_array`);
    any other space that cannot be read back is an error.
    """
    if not isinstance(entry, dict):
        raise KibbleError(f"{path}: its data has no {what}_space entry; not an SB3 checkpoint")
    kind_text = str(entry.get(":type:", ""))
    m = re.match(r"^<class '(?:gymnasium|gym)\.spaces\.[\w.]+\.(\w+)'>$", kind_text)
    if not m:
        raise KibbleError(f"{path}: its {what} space is of an unknown type {kind_text!r}")
    kind = m.group(1)
    try:
        if kind == "Box":
            shape, dtype = _shape_and_dtype(entry)
            low = _array(entry.get("low_repr", entry.get("low")), shape)
            high = _array(entry.get("high_repr", entry.get("high")), shape)
            if low is None or high is None:
                return None, (
                    f"Box{shape} {dtype}: its bounds were saved as a shortened text and "
                    "cannot be read back"
                )
            return spaces.Box(low.astype(dtype), high.astype(dtype), shape, np.dtype(dtype)), ""
        if kind == "Discrete":
            return spaces.Discrete(int(entry["n"]), start=int(entry.get("start", 0))), ""
        if kind == "MultiDiscrete":
            nvec = _array(entry["nvec"], None)
            start = _array(entry.get("start", "0"), None)
            if nvec is not None:
                start = None if start is None else np.broadcast_to(start, nvec.shape)
                return spaces.MultiDiscrete(nvec.astype(np.int64), start=start), ""
        if kind == "MultiBinary":
            n = entry["n"]
            return spaces.MultiBinary(n if isinstance(n, int) else [int(k) for k in n]), ""
        if kind in ("Dict", "Tuple"):
            raise KibbleError(
                f"{path}: {kind} {what}s are not supported (kibble's sb3 source loads agents "
                "on array observations: Box, Discrete, MultiDiscrete, MultiBinary)"
            )
    except (KeyError, TypeError, ValueError) as e:
        raise KibbleError(f"{path}: its {kind} {what} space has unreadable fields ({e})") from e
    raise KibbleError(f"{path}: {kind} {what} spaces are not supported")


def _array(text: Any, shape: tuple[int, ...] | None) -> np.ndarray | None:
    """A numpy array from its ``str()``; a scalar broadcasts to ``shape``.

    numpy shortens arrays of over 1,000 values with ``...``: when every value shown is
    the same (an image's 0 and 255), that value is taken for all; otherwise None.
    """
    if isinstance(text, int | float):
        values = np.array([float(text)])
        truncated = False
    elif isinstance(text, list):
        values = np.asarray(text, np.float64).ravel()
        truncated = False
    elif isinstance(text, str):
        truncated = "..." in text
        tokens = text.replace("[", " ").replace("]", " ").replace("...", " ").replace(",", " ")
        try:
            values = np.array([float(t) for t in tokens.split()], np.float64)
        except ValueError:
            return None
    else:
        return None
    if values.size == 0:
        return None
    if truncated:
        if not np.all(values == values[0]):
            return None
        values = values[:1]
    if shape is None:
        return values
    if values.size == 1:
        return np.full(shape, values[0])
    if values.size != int(np.prod(shape)):
        return None
    return values.reshape(shape)


def _policy_kwargs(entry: Any, path: Path) -> tuple[dict[str, Any], list[str]]:
    """policy_kwargs from plain JSON and whitelisted class names; training-only keys dropped."""
    import torch

    if entry is None:
        return {}, []
    if not isinstance(entry, dict):
        raise KibbleError(f"{path}: policy_kwargs is {entry!r}, not a mapping")
    out: dict[str, Any] = {}
    dropped = []
    for key, value in entry.items():
        if key in (":type:", ":serialized:"):
            continue
        if key in _TRAINING_ONLY_KWARGS:
            dropped.append(key)  # the optimizer: only training uses it
            continue
        if isinstance(value, str) and (m := _CLASS_TEXT.match(value)):
            qualified = m.group(1)
            module, _, name = qualified.rpartition(".")
            if key == "activation_fn" and module.startswith("torch.nn") and name in _ACTIVATIONS:
                out[key] = getattr(torch.nn, name)
                continue
            if (
                key == "features_extractor_class"
                and module == "stable_baselines3.common.torch_layers"
                and name in _EXTRACTORS
            ):
                from stable_baselines3.common import torch_layers

                out[key] = getattr(torch_layers, name)
                continue
            raise KibbleError(
                f"{path}: policy_kwargs[{key!r}] is the class {qualified}, which kibble does "
                "not rebuild without running the checkpoint's pickles (it accepts torch.nn "
                "activation functions and SB3's FlattenExtractor and NatureCNN)"
            )
        if isinstance(value, str) and value.startswith("<"):
            raise KibbleError(
                f"{path}: policy_kwargs[{key!r}] is a Python object ({value[:80]}) that only "
                "unpickling could rebuild; kibble does not unpickle checkpoints"
            )
        out[key] = value
    return out, dropped


def _weights(blob: bytes, path: Path) -> dict[str, Any]:
    import pickle

    import torch

    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as e:
        raise KibbleError(
            f"{path}: policy.pth is not a plain tensor state_dict that torch.load("
            f"weights_only=True) accepts ({str(e).splitlines()[0][:200]})"
        ) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KibbleError(f"{path}: policy.pth holds no state_dict of tensors")
    return state


def build_policy(ckpt: Sb3Checkpoint, observation_space: spaces.Space) -> Any:
    """The SB3 policy network, rebuilt from the checkpoint and given its weights."""
    cls = policy_class(ckpt.policy_module, ckpt.policy_class)
    kwargs = dict(ckpt.policy_kwargs)
    if POLICY_CLASSES[(ckpt.policy_module, ckpt.policy_class)] == "actor-critic":
        kwargs["use_sde"] = ckpt.use_sde  # on-policy algorithms pass it outside policy_kwargs
    try:
        policy = cls(observation_space, ckpt.action_space, lambda _: 0.0, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as e:
        raise KibbleError(
            f"{ckpt.path}: cannot rebuild {ckpt.policy_class} from its policy_kwargs "
            f"{ {k: _jsonable(v) for k, v in kwargs.items()} }: {e}"
        ) from e
    try:
        policy.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as e:
        raise KibbleError(
            f"{ckpt.path}: policy.pth does not fit the {ckpt.algorithm} network rebuilt from "
            f"the zip's data: {str(e).splitlines()[0][:300]}"
        ) from e
    policy.set_training_mode(False)
    return policy
