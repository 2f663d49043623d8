"""An Atari agent's training dynamics, compared with the task's.

kibble's sb3 view changes what an agent sees, never how the game moves: frame skip,
max-pooling, sticky actions, no-op starts, life loss as episode end, FIRE at reset,
the action set, mode and difficulty of the agent's training environment (as its
:class:`~kibble.experts.sb3_setup.TrainingSetup` describes it) must be the task's
(:func:`kibble.envs.family_atari.dynamics`); :func:`dynamics_differences` names each
one that is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kibble.errors import KibbleError

if TYPE_CHECKING:
    from kibble.experts.sb3_setup import TrainingSetup

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
