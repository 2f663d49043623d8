import numpy as np

from kibble.envs import get_task
from kibble.experts.random import RandomPolicy
from kibble.experts.rollout import EpisodeJob, run_episodes


def _episodes(num_envs: int):
    task = get_task("gym/CartPole-v1")
    env = task.make()
    jobs = [EpisodeJob(f"e{i}", seed=100 + i) for i in range(7)]
    out = run_episodes(
        task.make, RandomPolicy(env.action_space), jobs, task=task.id, num_envs=num_envs
    )
    return {e.episode_id: e for e in out}


def test_episodes_do_not_depend_on_how_many_envs_run_together():
    one, three = _episodes(1), _episodes(3)
    assert one.keys() == three.keys() == {f"e{i}" for i in range(7)}
    for key in one:
        np.testing.assert_array_equal(one[key].actions, three[key].actions)
        np.testing.assert_array_equal(one[key].observations, three[key].observations)
        np.testing.assert_array_equal(one[key].rewards, three[key].rewards)


def test_episodes_record_flags_and_seed():
    episodes = _episodes(2)
    for e in episodes.values():
        assert e.terminated[-1] or e.truncated[-1]
        assert not e.terminated[:-1].any() and not e.truncated[:-1].any()
        assert len(e.observations) == len(e.actions) == e.length
        assert e.seed == 100 + int(e.episode_id[1:])
        assert e.success is None  # CartPole reports no success


def test_reusing_an_environment_pool_does_not_change_episodes():
    task = get_task("metaworld/reach-v3")
    env = task.make()
    from kibble.experts.scripted import ScriptedPolicy

    policy = ScriptedPolicy("reach-v3", env.action_space)
    jobs = [EpisodeJob(f"e{i}", seed=i) for i in range(3)]
    fresh = list(run_episodes(task.make, policy, jobs, task=task.id, num_envs=2, max_steps=15))
    pool: list = []
    list(
        run_episodes(
            task.make, policy, jobs[::-1], task=task.id, num_envs=2, max_steps=15, env_pool=pool
        )
    )
    reused = list(
        run_episodes(task.make, policy, jobs, task=task.id, num_envs=2, max_steps=15, env_pool=pool)
    )
    assert len(pool) == 2  # built once, kept by the caller
    by_id = {e.episode_id: e for e in reused}
    for e in fresh:
        np.testing.assert_array_equal(e.observations, by_id[e.episode_id].observations)
        np.testing.assert_array_equal(e.actions, by_id[e.episode_id].actions)
    for env in pool:
        env.close()


def test_noisy_rollouts_execute_perturbed_actions_but_record_the_experts():
    from kibble.experts.rollout import ActionNoise
    from kibble.experts.sources import load_expert

    task = get_task("metaworld/reach-v3")
    expert = load_expert(task, "scripted", *task.spaces())
    jobs = [EpisodeJob(f"e{i}", seed=i) for i in range(3)]
    noise = ActionNoise(fraction=0.5, scale=0.3)

    def run(noise, num_envs):
        out = run_episodes(
            task.make, expert, jobs, task=task.id, num_envs=num_envs, max_steps=30, noise=noise
        )
        return {e.episode_id: e for e in out}

    clean, noisy, noisy2 = run(None, 1), run(noise, 1), run(noise, 3)
    for key, e in noisy.items():
        # Every recorded action is the expert's own action for the recorded state ...
        for obs, action in zip(e.observations, e.actions, strict=True):
            np.testing.assert_array_equal(action, expert.act([obs], [0])[0])
        # ... while the states show that something else was executed.
        assert not np.array_equal(e.observations, clean[key].observations)
        # And the noise depends on the episode's seed only.
        np.testing.assert_array_equal(e.observations, noisy2[key].observations)
