"""BabyAI tasks: every ``BabyAI-*`` level minigrid registers, as ``babyai/<Level>``.

``babyai/GoToRedBall-v0`` builds ``gymnasium.make("BabyAI-GoToRedBall-v0")`` (minigrid's own
episode limit, reported as a truncation) with its observation re-declared so kibble
tokenizes it as JAT does (see docs/babyai.md):

- ``image``: the agent's 7x7 egocentric view, 3 symbolic values per cell (object type,
  color, state), declared ``MultiDiscrete([11, 6, 3] per cell)`` so it becomes 147
  discrete tokens, not an image (a 7x7 grid is not made of 16x16 pixel patches);
- ``direction``: ``Discrete(4)``;
- ``mission``: the instruction ("go to the red ball"), a ``Text`` space tokenized by a
  SentencePiece model into text ids in ``[0, 32000)``.

Rewards and episode ends are minigrid's: ``1 - 0.9 * steps / max_steps`` on success
(terminated), else 0. ``info["success"]`` is set on every step: True when the step ends
the episode with a positive reward, as Meta-World reports success.

Level generators print "Sampling rejected: ..." while they resample a layout; those
lines go to this module's logger at debug level instead of stdout.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import string
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from kibble.errors import KibbleError

log = logging.getLogger(__name__)

FAMILY = "babyai"
PREFIX = "BabyAI-"
# Bot success below this marks a level as weak in `kibble tasks`.
WEAK_BOT_SUCCESS = 0.8
# Bot success rates measured with benchmarks/babyai_bot.py (10 episodes per level, seeds
# 0..9, cut at 1000 steps; minigrid 3.2.0; the full table is in docs/babyai.md). Only the
# levels below WEAK_BOT_SUCCESS are listed: the other 89 of 96 scored >= 0.9.
BOT_SUCCESS: dict[str, float] = {
    "KeyInBox-v0": 0.0,  # the bot's planner asserts (it cannot open the box)
    "OpenDoorsOrderN2Debug-v0": 0.4,
    "OpenDoorsOrderN4Debug-v0": 0.2,
    "PutNextS5N2Carrying-v0": 0.0,  # starts carrying: "nothing left to explore"
    "PutNextS6N3Carrying-v0": 0.0,
    "PutNextS7N4Carrying-v0": 0.0,
    "UnlockToUnlock-v0": 0.7,
}
# Values per cell of minigrid's symbolic view: 11 object types, 6 colors, 3 door states.
GRID_VALUES = (11, 6, 3)
VIEW = 7
# Every character minigrid's missions use (letters, spaces, the comma of ", then"), and
# the rest of printable ASCII so a user's own level with other text still validates.
MISSION_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "
MISSION_MAX_LENGTH = 512


def available() -> bool:
    return (
        importlib.util.find_spec("minigrid") is not None
        and importlib.util.find_spec("pygame") is not None
    )


@cache
def task_names() -> list[str]:
    import minigrid  # noqa: F401  (registers the BabyAI-* ids)

    return sorted(i[len(PREFIX) :] for i in gym.registry if i.startswith(PREFIX))


def knows(name: str) -> bool:
    return name in task_names()


def describe(name: str) -> tuple[tuple[str, ...], str]:
    rate = BOT_SUCCESS.get(name)
    note = ""
    if rate is not None and rate < WEAK_BOT_SUCCESS:
        note = f"weak bot expert: success {rate:.0%} in 10 episodes"
    return ("bot", "random"), note


def static_spaces(name: str) -> tuple[spaces.Space, spaces.Space]:
    """Every level has the same spaces: no need to build one to know them."""
    return observation_space(), spaces.Discrete(7)


def observation_space() -> spaces.Dict:
    """The 7x7x3 symbolic view, the direction, and the mission as text."""
    nvec = np.broadcast_to(np.asarray(GRID_VALUES, np.int64), (VIEW, VIEW, 3))
    return spaces.Dict(
        {
            "direction": spaces.Discrete(4),
            "image": spaces.MultiDiscrete(nvec, dtype=np.uint8),
            "mission": spaces.Text(MISSION_MAX_LENGTH, min_length=1, charset=MISSION_CHARSET),
        }
    )


def make(name: str, **options: Any) -> gym.Env:
    """``BabyAI-<name>`` with kibble's observation space and ``info["success"]``."""
    if not knows(name):
        raise KibbleError(
            f"babyai/{name}: minigrid registers no level BabyAI-{name}; "
            "`kibble tasks --family babyai` lists them"
        )
    return BabyAIEnv(gym.make(PREFIX + name, **options))


@contextlib.contextmanager
def quiet_stdout() -> Any:
    """Send what minigrid prints (level resampling, bot notes) to the debug log."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    if buffer.getvalue():
        log.debug("minigrid printed: %s", buffer.getvalue().strip())


class BabyAIEnv(gym.Wrapper):
    """A BabyAI level seen as kibble tokenizes it (see the module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = observation_space()

    def _observation(self, obs: dict) -> dict:
        # int() because minigrid's direction is a numpy or Python int depending on version.
        return {
            "direction": int(obs["direction"]),
            "image": np.asarray(obs["image"], np.uint8),
            "mission": str(obs["mission"]),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        with quiet_stdout():
            obs, info = self.env.reset(seed=seed, options=options)
        return self._observation(obs), info

    def step(self, action: Any) -> Any:
        with quiet_stdout():
            obs, reward, terminated, truncated, info = self.env.step(int(action))
        info = {**info, "success": bool(terminated and reward > 0)}
        return self._observation(obs), float(reward), terminated, truncated, info
