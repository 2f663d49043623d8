"""An SB3 expert's own view: how it was trained, and the observations it must see.

A community agent was trained on its own environment stack, which is rarely the
task's: an RL Zoo Atari agent sees 84x84 grayscale frames stacked 4 deep where
kibble records single 80x80 frames; a MuJoCo agent may have been trained behind
``VecNormalize``. This module

1. reads how the agent was trained (:class:`TrainingSetup`): from a kibble sidecar
   ``PATH.kibble.yaml`` beside ``PATH.zip``, else from the RL Zoo's own files
   (``config.yml``, ``args.yml``, ``env_kwargs.yml``, beside the zip or in a folder
   named as its stem), else, for Atari tasks only, the RL Zoo's Atari defaults;
2. for Atari tasks, compares the training environment's dynamics with the task's
   (:func:`kibble.envs.family_atari.dynamics`) and refuses any difference the sidecar
   does not accept by name;
3. builds a chain of observation adapters (:class:`View`): grayscale, resize, frame
   stack, channels-first, ``VecNormalize`` statistics, fed from the task's
   observation or, for Atari, from the environment's raw frames.

The sidecar, every key optional (the Zoo's files use the same vocabulary)::

    env: ALE/Pong-v5                # the environment id the agent was trained on
    env_kwargs: {frameskip: 1, repeat_action_probability: 0.25}
    atari_wrapper: {terminal_on_life_loss: false}   # SB3 AtariWrapper's arguments
    frame_stack: 4                  # VecFrameStack's n_stack
    vec_normalize: vec_normalize.json   # the safe form of VecNormalize's statistics, or none
    accept_differences: [sticky_actions]  # load despite these named dynamics differences

YAML files are read with ``yaml.safe_load``; the Zoo's files carry one Python tag
(``!!python/object/apply:collections.OrderedDict``), which is read as a plain mapping;
that tag and ``!!python/tuple`` (read as a list) are the only Python tags accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kibble.errors import KibbleError

SIDECAR_SUFFIX = ".kibble.yaml"
ZOO_FILES = ("config.yml", "args.yml", "env_kwargs.yml")
ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
ATARI_WRAPPER_DEFAULTS = {
    "noop_max": 30,
    "frame_skip": 4,
    "screen_size": 84,
    "terminal_on_life_loss": True,
    "clip_reward": True,
    "action_repeat_probability": 0.0,
}
DYNAMICS_KEYS = (
    "game", "frame_skip", "max_pool", "sticky_actions", "noop_max", "terminal_on_life_loss",
    "fire_reset", "full_action_space", "mode", "difficulty",
)  # fmt: skip
VEC_NORMALIZE_HOWTO = (
    "kibble does not unpickle vec_normalize.pkl. Where you trust the file, convert it once: "
    "python -c \"import json, pickle; v = pickle.load(open('vec_normalize.pkl', 'rb')); "
    "json.dump({'norm_obs': v.norm_obs, 'obs_mean': v.obs_rms.mean.tolist(), "
    "'obs_var': v.obs_rms.var.tolist(), 'clip_obs': v.clip_obs, 'epsilon': v.epsilon}, "
    "open('vec_normalize.json', 'w'))\" and name it in {sidecar} as "
    "'vec_normalize: vec_normalize.json'"
)


# --- how the agent was trained -------------------------------------------------------


class _ZooLoader(yaml.SafeLoader):
    """SafeLoader plus the RL Zoo's OrderedDict tag, read as a plain mapping."""


def _ordered_dict(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    (pairs,) = loader.construct_sequence(node, deep=True) or [[]]
    return {k: v for k, v in pairs}


def _tuple(loader: yaml.SafeLoader, node: yaml.Node) -> list:
    return loader.construct_sequence(node, deep=True)


_ZooLoader.add_constructor(
    "tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _ordered_dict
)
_ZooLoader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_ZooLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise KibbleError(
            f"{path} is not YAML kibble reads safely ({str(e).splitlines()[0]}); only plain "
            "YAML and the RL Zoo's OrderedDict tag are accepted. A sidecar NAME.kibble.yaml "
            "beside the zip takes precedence over the Zoo's files"
        ) from e
    except OSError as e:
        raise KibbleError(f"cannot read {path}: {e}") from e


@dataclass
class TrainingSetup:
    """How an SB3 agent's environment was built, as far as anything says."""

    source: str
    """Where this came from: the sidecar, the Zoo's files, or an assumption."""
    env_id: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    atari_wrapper: dict[str, Any] | None = None
    """AtariWrapper's keyword arguments, or None when it was not used (as far as known)."""
    frame_stack: int | None = None
    normalize: bool = False
    vec_normalize: Path | None = None
    """The safe (JSON) form of the VecNormalize statistics."""
    vec_normalize_none: bool = False
    """The sidecar says the agent needs no normalization (``vec_normalize: none``)."""
    pickled_stats: Path | None = None
    """A vec_normalize.pkl found beside the zip (never read)."""
    accept_differences: tuple[str, ...] = ()
    known: bool = False
    """False when nothing beside the zip described the training environment."""

    def describe(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "env": self.env_id,
            "env_kwargs": self.env_kwargs,
            "atari_wrapper": self.atari_wrapper,
            "frame_stack": self.frame_stack,
            "vec_normalize": str(self.vec_normalize) if self.vec_normalize else None,
        }


def sidecar_path(zip_path: Path) -> Path:
    return zip_path.with_name(zip_path.stem + SIDECAR_SUFFIX)


def companion_files(zip_path: str | Path) -> list[Path]:
    """The files beside ``zip_path`` that loading it reads (to ship with it to workers):
    its sidecar, the VecNormalize JSON the sidecar names, the RL Zoo's files.
    ``vec_normalize.pkl`` is never among them (it is only checked for)."""
    zip_path = Path(zip_path)
    out = []
    sidecar = sidecar_path(zip_path)
    if sidecar.is_file():
        out.append(sidecar)
        stats = _from_sidecar(sidecar).vec_normalize
        if stats is not None and stats.is_file():
            out.append(stats)
        return out
    for folder in (zip_path.parent, zip_path.parent / zip_path.stem):
        found = [folder / name for name in ZOO_FILES if (folder / name).is_file()]
        if found:
            return found
    return out


def read_setup(zip_path: Path) -> TrainingSetup:
    """The training setup of ``zip_path`` from its sidecar, else the Zoo's files."""
    folders = [zip_path.parent, zip_path.parent / zip_path.stem]
    pickled = next(
        (f / "vec_normalize.pkl" for f in folders if (f / "vec_normalize.pkl").is_file()), None
    )
    sidecar = sidecar_path(zip_path)
    if sidecar.is_file():
        setup = _from_sidecar(sidecar)
    else:
        setup = _from_zoo(folders) or TrainingSetup(source="nothing beside the zip")
    setup.pickled_stats = pickled
    return setup


def _from_sidecar(path: Path) -> TrainingSetup:
    raw = _read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise KibbleError(f"{path} must be a mapping (env, env_kwargs, atari_wrapper, ...)")
    allowed = {
        "env", "env_kwargs", "atari_wrapper", "frame_stack", "vec_normalize",
        "accept_differences",
    }  # fmt: skip
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise KibbleError(f"{path}: unknown keys {unknown}; known: {sorted(allowed)}")
    wrapper = raw.get("atari_wrapper")
    if wrapper is True:
        wrapper = {}
    if wrapper is not None and not isinstance(wrapper, dict):
        raise KibbleError(f"{path}: atari_wrapper must be a mapping of AtariWrapper arguments")
    accept = raw.get("accept_differences") or []
    if isinstance(accept, str):
        accept = [accept]
    bad = sorted(set(accept) - set(DYNAMICS_KEYS))
    if bad:
        raise KibbleError(
            f"{path}: accept_differences {bad} are not dynamics kibble compares; "
            f"those are {list(DYNAMICS_KEYS)}"
        )
    stats = raw.get("vec_normalize")
    stats_none = (isinstance(stats, str) and stats.lower() == "none") or stats is False
    stats_path = None
    if stats and not stats_none:
        stats_path = Path(stats) if Path(stats).is_absolute() else path.parent / stats
    return TrainingSetup(
        source=str(path),
        env_id=raw.get("env"),
        env_kwargs=dict(raw.get("env_kwargs") or {}),
        atari_wrapper=wrapper,
        frame_stack=_int_or_none(raw.get("frame_stack"), path, "frame_stack"),
        normalize=stats_path is not None,
        vec_normalize=stats_path,
        vec_normalize_none=stats_none,
        accept_differences=tuple(accept),
        known=True,
    )


def _int_or_none(value: Any, path: Path, key: str) -> int | None:
    if value is None or value is False:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise KibbleError(f"{path}: {key} must be an integer, got {value!r}") from e


def _from_zoo(folders: list[Path]) -> TrainingSetup | None:
    """The RL Zoo's config.yml / args.yml / env_kwargs.yml, if any are beside the zip."""
    for folder in folders:
        found = {name: folder / name for name in ZOO_FILES if (folder / name).is_file()}
        if not found:
            continue
        config = _read_yaml(found["config.yml"]) if "config.yml" in found else {}
        args = _read_yaml(found["args.yml"]) if "args.yml" in found else {}
        env_kwargs = _read_yaml(found["env_kwargs.yml"]) if "env_kwargs.yml" in found else {}
        config, args = config or {}, args or {}
        if not isinstance(config, dict) or not isinstance(args, dict):
            raise KibbleError(f"{folder}: the RL Zoo's config.yml / args.yml are not mappings")
        wrapper = _zoo_atari_wrapper(config.get("env_wrapper"), found.get("config.yml"))
        normalize = config.get("normalize", False)
        if isinstance(normalize, str):  # "{'norm_obs': True, 'norm_reward': False}" or "true"
            normalize = "norm_obs': false" not in normalize.lower() and normalize.lower() != "false"
        kwargs = env_kwargs or args.get("env_kwargs") or {}
        return TrainingSetup(
            source=", ".join(str(p) for p in found.values()),
            env_id=args.get("env"),
            env_kwargs=dict(kwargs) if isinstance(kwargs, dict) else {},
            atari_wrapper=wrapper,
            frame_stack=config.get("frame_stack") or None,
            normalize=bool(normalize),
            known=True,
        )
    return None


def _zoo_atari_wrapper(entry: Any, where: Path | None) -> dict[str, Any] | None:
    """AtariWrapper's arguments from the Zoo's env_wrapper; other wrappers are refused."""
    if not entry:
        return None
    items = entry if isinstance(entry, list) else [entry]
    out = None
    for item in items:
        name, kwargs = (item, {}) if isinstance(item, str) else next(iter(item.items()))
        if name != ATARI_WRAPPER:
            raise KibbleError(
                f"{where}: the agent was trained behind the wrapper {name}, which kibble's sb3 "
                f"view does not reproduce (it reproduces {ATARI_WRAPPER}, VecFrameStack and "
                "VecNormalize)"
            )
        out = dict(kwargs or {})
    return out


# --- Atari dynamics ------------------------------------------------------------------


def zoo_atari_default(game: str, frame_stack: int) -> TrainingSetup:
    """What the RL Zoo does for Atari: ``<Game>NoFrameskip-v4`` + AtariWrapper + stack."""
    return TrainingSetup(
        source="assumed: the RL Zoo's Atari setup (nothing beside the zip describes the "
        f"training environment), i.e. {game}NoFrameskip-v4 + AtariWrapper() + "
        f"VecFrameStack({frame_stack})",
        env_id=f"{game}NoFrameskip-v4",
        atari_wrapper={},
        frame_stack=frame_stack,
    )


def expert_atari_dynamics(setup: TrainingSetup, task_game: str) -> dict[str, Any]:
    """The dynamics of the agent's training environment, in family_atari.dynamics terms."""
    import gymnasium as gym

    from kibble.envs import family_atari

    family_atari.task_names()  # registers the ALE ids
    env_id = setup.env_id or f"ALE/{task_game}-v5"
    try:
        spec_kwargs = dict(gym.spec(env_id).kwargs)
    except gym.error.Error as e:
        raise KibbleError(
            f"the agent's training environment {env_id!r} ({setup.source}) is not an "
            f"environment ale-py registers: {e}"
        ) from e
    merged = {**spec_kwargs, **setup.env_kwargs}
    wrapper = None
    if setup.atari_wrapper is not None:
        wrapper = {**ATARI_WRAPPER_DEFAULTS, **setup.atari_wrapper}
    env_skip = merged.get("frameskip", 1)
    if isinstance(env_skip, list | tuple):
        frame_skip: Any = f"random in {list(env_skip)} (x{wrapper['frame_skip'] if wrapper else 1})"
    else:
        frame_skip = int(env_skip) * (int(wrapper["frame_skip"]) if wrapper else 1)
    sticky_env = float(merged.get("repeat_action_probability", 0.0))
    sticky_wrapper = float(wrapper["action_repeat_probability"]) if wrapper else 0.0
    sticky: Any = sticky_env or sticky_wrapper
    if sticky_env and sticky_wrapper:
        sticky = f"{sticky_env} (ALE) then {sticky_wrapper} (StickyActionEnv)"
    game = _task_game_of(merged.get("game"))
    meanings = family_atari._action_meanings(task_game)
    return {
        "game": game if game is not None else task_game,
        "frame_skip": frame_skip,
        "max_pool": bool(wrapper and int(wrapper["frame_skip"]) > 1),
        "sticky_actions": sticky,
        "noop_max": int(wrapper["noop_max"]) if wrapper else 0,
        "terminal_on_life_loss": bool(wrapper and wrapper["terminal_on_life_loss"]),
        "fire_reset": bool(wrapper is not None and "FIRE" in meanings),
        "full_action_space": bool(merged.get("full_action_space", False)),
        "mode": merged.get("mode"),
        "difficulty": merged.get("difficulty"),
    }


def _task_game_of(ale_game: str | None) -> str | None:
    """ale-py's game id ('space_invaders') -> kibble's task name ('SpaceInvaders')."""
    if ale_game is None:
        return None
    from kibble.envs import family_atari

    by_id = {name.lower(): name for name in family_atari.task_names()}
    return by_id.get(ale_game.replace("_", "").lower(), ale_game)


def dynamics_differences(expert: dict[str, Any], task: dict[str, Any]) -> dict[str, tuple]:
    """{key: (expert's, task's)} for every dynamics setting that differs."""
    out = {}
    for key in DYNAMICS_KEYS:
        a, b = expert.get(key), task.get(key)
        if a != b:
            out[key] = (a, b)
    return out


# --- observation adapters ------------------------------------------------------------


class Adapter:
    """One step of a view: a function of the observation, maybe with per-episode state."""

    def reset(self) -> None:
        """A new episode starts."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Grayscale(Adapter):
    """RGB -> luma with OpenCV's RGB2GRAY, as SB3's WarpFrame does."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)

    def describe(self) -> str:
        return "grayscale (OpenCV COLOR_RGB2GRAY)"


class Resize(Adapter):
    """(H, W) -> (size, size) with OpenCV's INTER_AREA, then a channel axis (WarpFrame)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.resize(x, (self.size, self.size), interpolation=cv2.INTER_AREA)[:, :, None]

    def describe(self) -> str:
        return f"resize to {self.size}x{self.size}x1 (OpenCV INTER_AREA)"


class FrameStack(Adapter):
    """The last ``n`` frames on the channel axis, newest last; zeros at episode start
    (SB3's VecFrameStack with channels last)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.stack: np.ndarray | None = None

    def reset(self) -> None:
        self.stack = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.stack is None:
            self.stack = np.zeros((*x.shape[:-1], x.shape[-1] * self.n), x.dtype)
        c = x.shape[-1]
        self.stack = np.roll(self.stack, -c, axis=-1)
        self.stack[..., -c:] = x
        return self.stack

    def describe(self) -> str:
        return f"stack the last {self.n} frames (zeros at episode start, newest last)"


class ChannelsFirst(Adapter):
    """(H, W, C) -> (C, H, W), as SB3's VecTransposeImage."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(x, -1, 0))

    def describe(self) -> str:
        return "channels first (HWC -> CHW)"


class Normalize(Adapter):
    """VecNormalize's observation normalization from its statistics (read from JSON)."""

    def __init__(self, mean: np.ndarray, var: np.ndarray, clip: float, epsilon: float, path: Path):
        self.mean, self.var, self.clip, self.epsilon, self.path = mean, var, clip, epsilon, path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / np.sqrt(self.var + self.epsilon)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def describe(self) -> str:
        return f"VecNormalize statistics from {self.path} (clip {self.clip})"


def read_vec_normalize(path: Path, shape: tuple[int, ...]) -> Normalize | None:
    """The safe form: JSON with obs_mean, obs_var, clip_obs, epsilon (and norm_obs)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise KibbleError(f"VecNormalize statistics {path} do not exist") from e
    except (OSError, ValueError) as e:
        raise KibbleError(
            f"VecNormalize statistics {path} are not JSON ({e}); kibble reads only the safe "
            "JSON form (obs_mean, obs_var, clip_obs, epsilon), never vec_normalize.pkl"
        ) from e
    if not isinstance(raw, dict):
        raise KibbleError(f"{path}: VecNormalize statistics must be a JSON object")
    if raw.get("norm_obs", True) is False:
        return None
    try:
        mean = np.asarray(raw["obs_mean"], np.float64)
        var = np.asarray(raw["obs_var"], np.float64)
        clip = float(raw.get("clip_obs", 10.0))
        eps = float(raw.get("epsilon", 1e-8))
    except (KeyError, TypeError, ValueError) as e:
        raise KibbleError(
            f"{path}: VecNormalize statistics need obs_mean and obs_var (lists), and may "
            f"give clip_obs and epsilon: {e}"
        ) from e
    if mean.shape != shape or var.shape != shape:
        raise KibbleError(
            f"{path}: VecNormalize statistics of shape {mean.shape} / {var.shape} do not fit "
            f"observations of shape {shape}"
        )
    return Normalize(mean, var, clip, eps, path)


@dataclass
class View:
    """What an expert sees: a source and a chain of adapters, one chain per slot.

    ``source`` is ``"observation"`` (the task's observation) or ``"raw_frames"`` (the
    Atari environment's max-pooled RGB screen, from ``RawFrames.raw_frame``).
    """

    source: str
    make_chain: Callable[[], list[Adapter]]
    setup: dict[str, Any] | None = None
    dynamics: dict[str, Any] | None = None
    accepted_differences: dict[str, tuple] = field(default_factory=dict)
    pool: bool = True
    """Raw frames: max-pool the last two emulator frames of a step (AtariWrapper's
    MaxAndSkipEnv does) or take the last one."""

    def describe(self) -> dict[str, Any]:
        """JSON-able, for the expert card."""
        out: dict[str, Any] = {
            "source": {
                "observation": "the task's observation",
                "raw_frames": "the emulator's RGB screen"
                + (", max-pooled over the last two skipped frames" if self.pool else "")
                + " (kibble.envs.family_atari.RawFrames)",
            }[self.source],
            "adapters": [a.describe() for a in self.make_chain()],
        }
        if self.setup is not None:
            out["training_setup"] = self.setup
        if self.dynamics is not None:
            out["dynamics"] = self.dynamics
        if self.accepted_differences:
            out["accepted_differences"] = {
                k: {"expert": a, "task": b} for k, (a, b) in self.accepted_differences.items()
            }
        return out
