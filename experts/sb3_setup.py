"""How an SB3 agent was trained, as far as the files beside its zip say.

kibble reads the agent's training setup (:class:`TrainingSetup`) from a kibble sidecar
``PATH.kibble.yaml`` beside ``PATH.zip``, else from the RL Zoo's own files
(``config.yml``, ``args.yml``, ``env_kwargs.yml``, beside the zip or in a folder named
as its stem), else, for Atari tasks only, assumes the RL Zoo's Atari defaults
(:func:`zoo_atari_default`). :func:`companion_files` lists the files loading reads, for
shipping a zip to remote workers.

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kibble.errors import KibbleError
from kibble.experts.sb3_dynamics import DYNAMICS_KEYS
from kibble.limits import TooLarge
from kibble.yaml_file import read_yaml

SIDECAR_SUFFIX = ".kibble.yaml"
ZOO_FILES = ("config.yml", "args.yml", "env_kwargs.yml")
ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
VEC_NORMALIZE_HOWTO = (
    "kibble does not unpickle vec_normalize.pkl. Where you trust the file, convert it once: "
    "python -c \"import json, pickle; v = pickle.load(open('vec_normalize.pkl', 'rb')); "
    "json.dump({'norm_obs': v.norm_obs, 'obs_mean': v.obs_rms.mean.tolist(), "
    "'obs_var': v.obs_rms.var.tolist(), 'clip_obs': v.clip_obs, 'epsilon': v.epsilon}, "
    "open('vec_normalize.json', 'w'))\" and name it in {sidecar} as "
    "'vec_normalize: vec_normalize.json'"
)


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
    """``path`` through kibble's one YAML reader (bounded: :mod:`kibble.limits`)."""
    try:
        return read_yaml(path, "YAML file", loader=_ZooLoader)  # a SafeLoader subclass
    except TooLarge:
        raise
    except KibbleError as e:
        raise KibbleError(
            f"{e}; kibble reads only plain YAML and the RL Zoo's OrderedDict tag. A sidecar "
            "NAME.kibble.yaml beside the zip takes precedence over the Zoo's files"
        ) from e
    except UnicodeDecodeError as e:
        raise KibbleError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise KibbleError(f"cannot read {path}: {e}") from e


@dataclass(kw_only=True)
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


def check_portable(zip_path: str | Path) -> None:
    """Refuse what would load differently on a remote worker that gets ``zip_path`` and
    its :func:`companion_files` only: a sidecar naming its VecNormalize statistics by an
    absolute path (the worker has no such file), and a ``vec_normalize.pkl`` that decides
    the load (it is never shipped: here the load refuses it, while a worker without it
    would load the agent without its normalization)."""
    zip_path = Path(zip_path)
    sidecar = sidecar_path(zip_path)
    if sidecar.is_file():
        stats = (_read_yaml(sidecar) or {}).get("vec_normalize")
        if isinstance(stats, str) and Path(stats).is_absolute():
            raise KibbleError(
                f"{sidecar} names its VecNormalize statistics by the absolute path {stats}, "
                "which remote workers do not have; give the path relative to the sidecar "
                "(e.g. put the file beside the zip) so it ships with the zip"
            )
    setup = read_setup(zip_path)
    if setup.pickled_stats is not None and not (setup.vec_normalize or setup.vec_normalize_none):
        raise KibbleError(
            f"sb3:{zip_path} cannot be shipped to remote workers: {setup.pickled_stats} is "
            "beside it, and loading refuses an agent trained on VecNormalize-d observations "
            "without their safe form; "
            + VEC_NORMALIZE_HOWTO.replace("{sidecar}", str(sidecar))
            + " (or write 'vec_normalize: none' there if it needs none)"
        )


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
