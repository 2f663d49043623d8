"""Tasks: ``family/name`` ids, each a Gymnasium environment with its family's preprocessing.

Families: ``gym`` (Gymnasium classic control, MuJoCo where installed, and any other
registered Gymnasium id as ``gym/<id>``), ``atari`` (every game ale-py ships),
``dmc`` (DeepMind Control Suite benchmarking tasks), ``metaworld`` (the 50 v3 tasks)
and ``procgen`` (the 16 games).
"""

from kibble.envs.registry import (
    FAMILIES,
    Task,
    get_task,
    list_tasks,
    make_env,
    space_summary,
)

__all__ = ["FAMILIES", "Task", "get_task", "list_tasks", "make_env", "space_summary"]
