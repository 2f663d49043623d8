"""The pinned environment set installs and runs together (pyproject's `all` extra).

One short random rollout per environment family: if a pin drifts (mujoco vs
dm-control vs Meta-World, numpy vs procgen2), this is where it shows first.
"""

import gymnasium as gym
import numpy as np


def test_numpy_stays_below_2_for_procgen():
    assert int(np.__version__.split(".")[0]) < 2


def test_atari_roms_ship_with_ale_py():
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == (210, 160, 3)


def test_dm_control_steps():
    from dm_control import suite

    env = suite.load("cartpole", "swingup", task_kwargs={"random": 0})
    env.reset()
    step = env.step(np.zeros(env.action_spec().shape))
    assert set(step.observation) == {"position", "velocity"}


def test_metaworld_scripted_policy_acts():
    import metaworld  # noqa: F401  (registers the Meta-World environments)
    from metaworld.policies import SawyerReachV3Policy

    env = gym.make("Meta-World/MT1", env_name="reach-v3", seed=0)
    obs, _ = env.reset(seed=0)
    policy = SawyerReachV3Policy()
    for _ in range(5):
        obs, *_ = env.step(policy.get_action(obs))
    assert policy.get_action(obs).shape == env.action_space.shape


def test_procgen_steps():
    from procgen import ProcgenGym3Env

    env = ProcgenGym3Env(num=1, env_name="coinrun", rand_seed=0)
    env.act(np.zeros(1, dtype=np.int32))
    _, obs, _ = env.observe()
    assert obs["rgb"].shape == (1, 64, 64, 3)


def test_rllib_beam_and_torch_import():
    import apache_beam
    import ray.rllib
    import torch

    assert torch.__version__.startswith("2.13.0")
    assert ray.__version__.startswith("2.60")
    assert apache_beam.__version__.startswith("2.77")
