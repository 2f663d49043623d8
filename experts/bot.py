"""The BabyAI bot as an expert: ``minigrid.utils.baby_ai_bot.BabyAIBot``, one per slot.

The bot plans on the level's full state (the grid, the mission's verifier), not on the
agent's 7x7 view, so it is an :class:`~kibble.experts.policy.EnvironmentAware` policy:
the rollout hands it each slot's environment right after the seeded reset, and a fresh
bot is built for that episode. It replans every step. It uses no randomness, so an
episode depends only on its seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kibble.envs.family_babyai import quiet_stdout
from kibble.envs.registry import Task
from kibble.errors import KibbleError
from kibble.experts.sources import BOT

log = logging.getLogger(__name__)

# minigrid's `done` action: what the bot asks for when it believes the mission is
# accomplished, and what a bot that failed to plan does for the rest of its episode.
DONE = 6
# Subgoals one replan may push before the bot counts as stuck: minigrid 3.2.0's bot can
# push and pop subgoals forever on some layouts (seen on GoToImpUnlock-v0, seed 6).
MAX_SUBGOALS_PER_STEP = 1000


class PlanningLoop(RuntimeError):
    """The bot kept pushing subgoals without choosing an action."""


class _GuardedStack(list):
    """The bot's subgoal stack, counting pushes per replan to break its endless loops."""

    pushes = 0

    def append(self, item: Any) -> None:
        self.pushes += 1
        if self.pushes > MAX_SUBGOALS_PER_STEP:
            raise PlanningLoop(f"{MAX_SUBGOALS_PER_STEP} subgoals pushed in one step")
        super().append(item)


class BotPolicy:
    """BabyAI's bot for one ``babyai/`` task, replanning every step."""

    name = BOT

    def __init__(self, task: Task) -> None:
        if task.family != "babyai":
            raise KibbleError(
                f"{task.id}: the bot expert plays BabyAI levels (babyai/...) only; "
                f"this task's expert sources are: {', '.join(task.expert_sources)}"
            )
        from minigrid.utils.baby_ai_bot import BabyAIBot

        self.task = task
        self._bot_class = BabyAIBot
        self._bots: dict[int, Any] = {}
        self.failures = 0
        """Episodes in which the bot raised while planning (it then acts ``done``)."""

    def start_episode(self, slot: int, seed: int) -> None:
        """The bot is built in ``bind_environment``, once the level exists."""
        self._bots.pop(slot, None)

    def bind_environment(self, slot: int, env: Any) -> None:
        with quiet_stdout():
            bot = self._bot_class(env.unwrapped)
        bot.stack = _GuardedStack(bot.stack)
        self._bots[slot] = bot

    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[Any]:
        return [self._act(slot) for slot in slots]

    def _act(self, slot: int) -> int:
        if slot not in self._bots:
            raise KibbleError(
                "the bot expert needs its environment: roll it out with kibble's rollouts "
                "(kibble rollout, kibble expert eval, kibble pipeline run), which bind it"
            )
        bot = self._bots[slot]
        if bot is None:
            return DONE
        try:
            bot.stack.pushes = 0
            with quiet_stdout():
                return int(bot.replan())
        except Exception as e:  # the bot's own planning errors vary
            # One failed plan must not stop a whole dataset: the episode goes on with
            # `done` (it then fails or times out) and the card's success rate shows it.
            log.warning(
                "%s: the BabyAI bot failed to plan (%s: %s)", self.task.id, type(e).__name__, e
            )
            self._bots[slot] = None
            self.failures += 1
            return DONE
