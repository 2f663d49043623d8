import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from kibble.envs import get_task, list_tasks, make_env, space_summary
from kibble.errors import KibbleError


def test_every_family_is_listed_at_full_size():
    import ale_py
    from dm_control import suite

    gym.register_envs(ale_py)
    counts = {}
    for task in list_tasks():
        counts[task.family] = counts.get(task.family, 0) + 1
    ale_games = [k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")]
    assert counts["atari"] == len(ale_games) >= 100
    assert counts["dmc"] == len(suite.BENCHMARKING) == 28
    assert counts["metaworld"] == 50
    assert counts["procgen"] == 16
    assert counts["gym"] == 16  # 5 classic control + 11 MuJoCo


def test_unknown_task_names_the_closest_ids():
    with pytest.raises(KibbleError, match=r"unknown task 'atari/Pongg'.*atari/Pong"):
        get_task("atari/Pongg")
    with pytest.raises(KibbleError, match="family/name"):
        get_task("CartPole-v1")
    with pytest.raises(KibbleError, match="unknown task family 'nes'"):
        get_task("nes/Mario")


def test_any_registered_gymnasium_id_is_a_task():
    env = make_env("gym/FrozenLake-v1")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_atari_frames_are_80x80_grayscale_images():
    env = make_env("atari/Breakout")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (80, 80, 1) and obs.dtype == np.uint8
    assert space_summary(env.observation_space) == "image 80x80x1"
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == (80, 80, 1)


def test_dmc_state_observations_and_truncation_at_1000_steps():
    env = make_env("dmc/cartpole-swingup")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,) and env.action_space.shape == (1,)
    steps, truncated, terminated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 1000 and truncated and not terminated


def test_dmc_reset_seed_reproduces_the_initial_state():
    a, b = make_env("dmc/walker-walk"), make_env("dmc/walker-walk")
    np.testing.assert_array_equal(a.reset(seed=7)[0], b.reset(seed=7)[0])
    assert not np.array_equal(a.reset(seed=8)[0], b.reset(seed=7)[0])


def test_metaworld_variation_is_chosen_by_the_reset_seed():
    env = make_env("metaworld/reach-v3")
    first, info = env.reset(seed=3)
    again, info_again = env.reset(seed=3)
    np.testing.assert_array_equal(first, again)
    assert info["variation"] == info_again["variation"]
    variations = {env.reset(seed=s)[1]["variation"] for s in range(10)}
    assert len(variations) > 1


def _play_scripted_reach(steps: int, **options) -> list[tuple[bool, bool, bool]]:
    """(terminated, truncated, success) per step of Meta-World's scripted reach-v3 policy
    on the seed-0 goal, until the episode ends."""
    from metaworld.policies import ENV_POLICY_MAP

    policy = ENV_POLICY_MAP["reach-v3"]()
    env = make_env("metaworld/reach-v3", max_episode_steps=steps, **options)
    obs, _ = env.reset(seed=0)
    trace = []
    terminated = truncated = False
    while not (terminated or truncated):
        action = np.clip(policy.get_action(obs), -1, 1).astype(np.float32)
        obs, _, terminated, truncated, info = env.step(action)
        trace.append((terminated, truncated, bool(info["success"])))
    env.close()
    return trace


@pytest.mark.filterwarnings("ignore:Constant.*may be too high")
def test_metaworld_end_on_success_option():
    # Off (the default): the episode plays on past its first success, to the time limit.
    off = _play_scripted_reach(150)
    assert len(off) == 150 and off[-1][:2] == (False, True)
    first_success = next(t for t, (_, _, success) in enumerate(off) if success)
    assert first_success < 100  # the scripted expert reaches the goal well before the limit
    # On: the same episode ends, terminated, at that first success.
    on = _play_scripted_reach(150, end_on_success=True)
    assert len(on) == first_success + 1
    assert on[-1] == (True, False, True)
    assert not any(terminated for terminated, _, _ in on[:-1])
    # With no success, the option leaves the time limit alone.
    env = make_env("metaworld/reach-v3", max_episode_steps=20, end_on_success=True)
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(np.zeros(4, np.float32))  # the hand stays put
        steps += 1
    assert steps == 20 and truncated and not terminated


def test_procgen_reset_seed_reproduces_the_level():
    a, b = make_env("procgen/coinrun"), make_env("procgen/coinrun")
    oa, ia = a.reset(seed=5)
    ob, ib = b.reset(seed=5)
    np.testing.assert_array_equal(oa, ob)
    assert ia["level_seed"] == ib["level_seed"]
    assert oa.shape == (64, 64, 3)


def test_listing_descriptions_come_from_the_real_spaces(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    task = get_task("gym/CartPole-v1")
    assert task.space_descriptions() == ("Box(4,) float32 unbounded", "Discrete(2)")


def test_dmc_pixels_option_renders_uint8_frames():
    env = make_env("dmc/cartpole-swingup", pixels=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert obs.std() > 0  # a rendered scene, not a blank frame


def test_weak_scripted_metaworld_experts_are_marked():
    assert "weak scripted expert" in get_task("metaworld/soccer-v3").note
    assert get_task("metaworld/reach-v3").note == ""


def test_unseeded_metaworld_resets_still_vary_the_goal():
    # RLlib's vector envs reset without seeds after the first episode.
    env = make_env("metaworld/reach-v3")
    env.reset(seed=0)
    variations = {env.reset()[1]["variation"] for _ in range(20)}
    assert len(variations) > 5


def test_module_entry_points_are_tasks():
    env = make_env("gym/gymnasium.envs.classic_control:CartPole-v1")
    assert env.observation_space.shape == (4,)


def test_procgen_plays_without_the_old_gyms_banner():
    """procgen imports the unmaintained ``gym``, whose import prints a notice to stderr;
    kibble blanks that notice (and only it) so rollouts do not repeat it."""
    import importlib.metadata

    notices = pytest.importorskip("gym_notices.notices")
    banner = notices.notices.get(importlib.metadata.version("gym"))
    assert banner, "this gym prints no notice: the test would prove nothing"
    play = (
        "from kibble.envs import make_env\n"
        "env = make_env('procgen/coinrun')\n"
        "env.reset(seed=0)\n"
        "import gym_notices.notices as n, sys\n"
        "assert n.notices, 'the notices must be put back'\n"
        "print('played', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", play], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not any(line in done.stderr for line in banner.splitlines()), done.stderr
    assert "played" in done.stderr
