import re

import numpy as np
from gymnasium import spaces

from kibble.pipelines.episode_validation import (
    ACTION_OUT_OF_SPACE,
    EMPTY,
    LENGTH_MISMATCH,
    NON_FINITE_OBSERVATION,
    NON_FINITE_REWARD,
    validate_episode,
)
from kibble.schemas.records import Episode

OBS = spaces.Dict({"state": spaces.Box(-np.inf, np.inf, (3,)), "mode": spaces.Discrete(2)})
ACT = spaces.Tuple((spaces.Box(-1, 1, (2,)), spaces.Discrete(3)))


def episode(t=5, **changes) -> Episode:
    e = Episode(
        task="test/x",
        episode_id="e",
        observations={"state": np.zeros((t, 3)), "mode": np.zeros(t, np.int64)},
        actions=(np.zeros((t, 2)), np.zeros(t, np.int64)),
        rewards=np.ones(t),
        terminated=np.zeros(t, bool),
        truncated=np.zeros(t, bool),
    )
    for key, value in changes.items():
        setattr(e, key, value)
    return e


def test_a_valid_episode_passes():
    assert validate_episode(episode(), OBS, ACT) is None


def test_each_reason():
    nan_obs = episode()
    nan_obs.observations["state"][3, 1] = np.nan
    bad_reward = episode()
    bad_reward.rewards[2] = np.inf
    bad_box = episode()
    bad_box.actions[0][4] = [0.0, 1.5]
    bad_discrete = episode()
    bad_discrete.actions[1][1] = 7
    short = episode(actions=(np.zeros((4, 2)), np.zeros(4, np.int64)))
    cases = [
        (episode(t=0), EMPTY, "no steps"),
        (short, LENGTH_MISMATCH, r"action\[0\] has 4 steps"),
        (nan_obs, NON_FINITE_OBSERVATION, r"observation\['state'\] at step 3"),
        (bad_reward, NON_FINITE_REWARD, "step 2"),
        (bad_box, ACTION_OUT_OF_SPACE, r"action\[0\] at step 4"),
        (bad_discrete, ACTION_OUT_OF_SPACE, r"action\[1\] at step 1"),
    ]
    for ep, reason, detail in cases:
        rejection = validate_episode(ep, OBS, ACT)
        assert rejection is not None and rejection.reason == reason
        assert re.search(detail, rejection.detail), rejection.detail
