"""The task registry: ids ``family/name`` -> how to build the environment, and experts.

Each family module provides ``FAMILY``, ``available()`` (its package imports),
``task_names()``, ``knows(name)``, ``describe(name)`` (expert sources and a note),
``make(name, **options)`` and optionally ``static_spaces(name)``; families
whose package is not installed are simply absent from listings, and asking for
one of their tasks says which extra to install.
"""

from __future__ import annotations

import atexit
import difflib
import functools
import importlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from kibble.errors import KibbleError
from kibble.tokenize.codecs import is_image_space
from kibble.versions import package_versions

log = logging.getLogger(__name__)

# family -> (module, the pip extra that installs it)
FAMILIES: dict[str, tuple[str, str]] = {
    "gym": ("kibble.envs.family_gym", "mujoco"),
    "atari": ("kibble.envs.family_atari", "atari"),
    "dmc": ("kibble.envs.family_dmc", "dmc"),
    "metaworld": ("kibble.envs.family_metaworld", "metaworld"),
    "procgen": ("kibble.envs.family_procgen", "procgen"),
    "babyai": ("kibble.envs.family_babyai", "babyai"),
}


@dataclass(frozen=True)
class Task:
    """One task: its id, how to build it, and which expert sources it has."""

    family: str
    name: str
    expert_sources: tuple[str, ...]
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}"

    def make(self, **options: Any) -> gym.Env:
        """Build the environment with the family's standard preprocessing."""
        return _family(self.family).make(self.name, **options)

    def spaces(self) -> tuple[spaces.Space, spaces.Space]:
        """(observation space, action space), building the environment once if needed."""
        return _spaces(self.family, self.name)

    def space_descriptions(self) -> tuple[str, str]:
        """``space_summary`` of both spaces, from an on-disk cache when it has them.

        Building every environment to list its spaces takes about half a minute (Atari
        ROMs, MuJoCo models); the cache is keyed by the installed package versions.
        """
        cache = _DescriptionCache.load()
        key = f"{self.id}|{cache.versions}"
        if key not in cache.entries:
            obs, act = self.spaces()
            cache.entries[key] = [space_summary(obs), space_summary(act)]
            cache.dirty = True
        obs_text, act_text = cache.entries[key]
        return obs_text, act_text


class _DescriptionCache:
    """``$XDG_CACHE_HOME/kibble/spaces.json`` (default ``~/.cache``); saved at exit."""

    _instance: _DescriptionCache | None = None

    def __init__(self, path: Path, entries: dict, versions: str) -> None:
        self.path, self.entries, self.versions, self.dirty = path, entries, versions, False

    @classmethod
    def load(cls) -> _DescriptionCache:
        if cls._instance is None:
            root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            path = root / "kibble" / "spaces.json"
            try:
                entries = json.loads(path.read_text())
            except (OSError, ValueError):
                entries = {}
            cls._instance = cls(path, entries, _package_versions())
            atexit.register(cls._instance.save)
        return cls._instance

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only home only costs speed
            log.debug("could not save %s: %s", self.path, e)


def _package_versions() -> str:
    packages = ("kibble", "gymnasium", "ale-py", "dm-control", "metaworld", "procgen2", "mujoco")
    return ",".join(f"{k}={v}" for k, v in package_versions((*packages, "minigrid")).items())


@functools.cache
def _spaces(family: str, name: str) -> tuple[spaces.Space, spaces.Space]:
    module = _family(family)
    static = getattr(module, "static_spaces", None)
    if static is not None:
        return static(name)
    env = module.make(name)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _family(family: str) -> ModuleType:
    if family not in FAMILIES:
        raise KibbleError(f"unknown task family {family!r}; families are {', '.join(FAMILIES)}")
    module_name, extra = FAMILIES[family]
    module = importlib.import_module(module_name)
    if not module.available():
        raise KibbleError(
            f"the {family} family needs packages that are not installed: "
            f"pip install 'kibble[{extra}]'"
        )
    return module


def _families(family: str | None) -> Iterator[ModuleType]:
    if family is not None:
        yield _family(family)
        return
    for module_name, _extra in FAMILIES.values():
        module = importlib.import_module(module_name)
        if module.available():
            yield module


def list_tasks(family: str | None = None) -> list[Task]:
    """Every task of the installed families (or of one family), in a stable order."""
    out = []
    for module in _families(family):
        for name in module.task_names():
            out.append(Task(module.FAMILY, name, *module.describe(name)))
    return out


def get_task(task_id: str) -> Task:
    """Look a task id up; an unknown id is an error naming the closest known ids."""
    family, sep, name = task_id.partition("/")
    if not sep or not name:
        raise KibbleError(f"a task id is family/name (e.g. gym/CartPole-v1), got {task_id!r}")
    module = _family(family)
    if module.knows(name):
        return Task(module.FAMILY, name, *module.describe(name))
    known = [t.id for t in list_tasks()]
    close = difflib.get_close_matches(task_id, known, n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise KibbleError(f"unknown task {task_id!r}{hint}. `kibble tasks` lists them all")


def make_env(task_id: str, **options: Any) -> gym.Env:
    """Build the environment of ``task_id`` with its family's preprocessing."""
    return get_task(task_id).make(**options)


def space_summary(space: spaces.Space) -> str:
    """A short description for people: ``Box(4,) float32``, ``Discrete(2)``, ``image
    80x80x1``. (The manifest's JSON description is ``kibble.schemas.raw_values.describe_space``.)
    """
    if isinstance(space, spaces.Box):
        if is_image_space(space):
            return "image " + "x".join(map(str, space.shape))
        bounded = "bounded" if space.is_bounded("both") else "unbounded"
        return f"Box{tuple(space.shape)} {space.dtype} {bounded}"
    if isinstance(space, spaces.Discrete):
        return f"Discrete({space.n})"
    if isinstance(space, spaces.MultiDiscrete):
        if space.nvec.ndim > 1:  # a grid (BabyAI's 7x7x3 view): its shape and largest value
            return f"MultiDiscrete{space.shape} <{int(space.nvec.max())}"
        return f"MultiDiscrete({space.nvec.tolist()})"
    if isinstance(space, spaces.Text):
        return f"Text(<={space.max_length})"
    if isinstance(space, spaces.MultiBinary):
        return f"MultiBinary({space.n})"
    if isinstance(space, spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {space_summary(s)}" for k, s in space.items()) + ")"
    if isinstance(space, spaces.Tuple):
        return "Tuple(" + ", ".join(space_summary(s) for s in space.spaces) + ")"
    return repr(space)
