"""Reading a Stable-Baselines3 ``.zip`` without unpickling anything in it.

An SB3 zip holds ``data`` (JSON: the algorithm's attributes; every value JSON cannot
hold is a cloudpickle under a ``:serialized:`` key, next to plain-text descriptions
of it), ``policy.pth`` (the policy's ``state_dict``), ``policy.optimizer.pth``,
``pytorch_variables.pth``, ``_stable_baselines3_version`` and ``system_info.txt``.
``Algo.load`` unpickles every ``:serialized:`` value. This module reads only:

- from ``data``: the plain-text fields next to the pickles: the policy class's module
  and name (from the names of the functions its class body defines), and, through
  :mod:`kibble.experts.sb3_fields`, the spaces' dtype, shape, bounds, ``n``/``nvec``,
  and ``policy_kwargs`` whose values are plain JSON or name a class on a short
  whitelist (activation functions, SB3's own feature extractors);
- ``policy.pth`` with ``torch.load(..., weights_only=True)``: tensors only;
- ``_stable_baselines3_version``: text.

The network itself is rebuilt from a whitelisted class by
:mod:`kibble.experts.sb3_network`. Anything that cannot be read that way is a
:class:`~kibble.errors.KibbleError` that names it.
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

from gymnasium import spaces

from kibble.envs.registry import space_summary
from kibble.errors import KibbleError
from kibble.experts.sb3_fields import jsonable, read_policy_kwargs, read_space, shape_and_dtype
from kibble.limits import SB3_DATA_BYTES, check_memory, read_member

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

_MEMORY_FIX = "free memory, or load it on a machine with more"

_FUNCTION_TEXT = re.compile(r"^<function ([\w.]+)\.\w+ at 0x[0-9a-fA-F]+>$")


@dataclass(kw_only=True)
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
            "action_space": space_summary(self.action_space),
            "policy_kwargs": {k: jsonable(v) for k, v in self.policy_kwargs.items()},
            "ignored_training_kwargs": self.dropped_kwargs,
        }

    def describe_observations(self) -> str:
        if self.observation_space is not None:
            return space_summary(self.observation_space)
        return f"Box{self.observation_shape} {self.observation_dtype} (bounds unreadable)"


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
            # Each member's declared size is checked before it is read, and reading stops
            # past that size (kibble.limits): a small zip can inflate to gigabytes.
            fix = "it is not an SB3 checkpoint kibble loads; give the .zip model.save() wrote"
            data_text = read_member(archive, "data", f"{path}: its 'data'", SB3_DATA_BYTES, fix)
            # torch.load holds the tensors beside the bytes read: twice the member's size.
            pth = archive.getinfo("policy.pth").file_size
            check_memory(2 * pth, f"{path}: loading its policy.pth", _MEMORY_FIX)
            weights = read_member(archive, "policy.pth", f"{path}: its policy.pth", None, fix)
            version = ""
            if "_stable_baselines3_version" in names:
                version = read_member(
                    archive, "_stable_baselines3_version", f"{path}: its version", 4096, fix
                ).decode(errors="replace")
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
    obs_space, obs_note = read_space(data.get("observation_space"), "observation", path)
    act_space, act_note = read_space(data.get("action_space"), "action", path)
    if act_space is None:
        raise KibbleError(f"{path}: cannot read its action space back: {act_note}")
    kwargs, dropped = read_policy_kwargs(data.get("policy_kwargs", {}), path)
    state = _weights(weights, path)
    shape, dtype = shape_and_dtype(data["observation_space"])
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
