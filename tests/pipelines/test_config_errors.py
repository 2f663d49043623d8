"""Every mistake in a dataset config is refused on the launcher, before any work, with a
message naming the file, the field and what to do; `kibble rollout` checks the same."""

import json

import pytest

from kibble.errors import KibbleError
from kibble.pipelines.checks import max_episodes
from kibble.pipelines.config import load_config
from kibble.pipelines.in_process import curate_tasks
from kibble.pipelines.stages import TaskJob

CARTPOLE = "{task: gym/CartPole-v1, expert: random, episodes: 2%s}"


def config(top: str = "", task: str = "") -> str:
    return f"output: out\n{top}\ntasks: [{CARTPOLE % task}]\n"


CASES = [
    # types and ranges of every field
    (config(task=", max_steps: -5"), r"max_steps: expected a positive integer, got -5"),
    (config(task=", max_steps: 0"), r"max_steps: expected a positive integer, got 0"),
    (config(task=", max_steps: ten"), r"max_steps: expected a positive integer, got 'ten'"),
    (config(task=", max_steps: 2.5"), r"max_steps: expected a positive integer, got 2.5"),
    (config(task=", max_steps: true"), r"max_steps: expected a positive integer, got True"),
    (config().replace("episodes: 2", "episodes: 1e11"), r"episodes: expected a positive integer"),
    (config().replace("episodes: 2", "episodes: 1.0e+11"), r"episodes: expected a positive int"),
    (config().replace("episodes: 2", "episodes: 100000000000"), r"100,000,000,000 is more than"),
    (config().replace("episodes: 2", "episodes: 0"), r"episodes: expected a positive integer"),
    (config().replace("episodes: 2", "episodes: -3"), r"episodes: expected a positive integer"),
    (config("filter: {fraction: 0}"), r"filter.fraction: expected a number in \(0, 1\]"),
    (config("filter: {fraction: 1.5}"), r"filter.fraction: expected a number in \(0, 1\]"),
    (config("filter: {fraction: .nan}"), r"filter.fraction: expected a number in \(0, 1\]"),
    (config("filter: {fraction: high}"), r"filter.fraction: expected a number in \(0, 1\]"),
    (config("seed: -1"), r"seed: expected a non-negative integer, got -1"),
    (config("seed: 1.5"), r"seed: expected a non-negative integer"),
    (config("num_envs: 0"), r"num_envs: expected a positive integer, got 0"),
    (config("num_envs: 100000"), r"num_envs: 100,000 is more than the 256 allowed"),
    (config("episodes_per_shard: 0"), r"episodes_per_shard: expected a positive integer"),
    (config("name: 5"), r"name: expected a string, got 5"),
    ("output: ''\n" + config().split("\n", 1)[1], r"output: empty"),
    (config(task=", sample: 'yes'"), r"sample: expected true or false"),
    (config(task=", card: 3"), r"card: expected a card path"),
    ("output: out\ntasks: [gym/CartPole-v1]", r"tasks\[0\]: expected a mapping"),
    # unknown keys, top level, per task and in filter, with the closest known name
    (config("seeds: 1"), r"unknown key 'seeds' \(closest: seed\)"),
    (config("episode_per_shard: 5"), r"unknown key 'episode_per_shard' \(closest: episodes_"),
    (config(task=", max_step: 5"), r"tasks\[0\]: unknown key 'max_step' \(closest: max_steps\)"),
    (config(task=", exprt: scripted"), r"unknown key 'exprt' \(closest: expert\)"),
    (config("filter: {fractoin: 0.5}"), r"filter: unknown key 'fractoin' \(closest: fraction\)"),
    (config("zzzz: 1"), r"unknown key 'zzzz'; the known keys are name, output"),
    # expert sources resolved for the task
    (
        config().replace("expert: random", "expert: scripted"),
        r"gym/CartPole-v1 has no scripted expert; its expert sources are: rllib, random",
    ),
    (config().replace("expert: random", "expert: bot"), r"has no bot expert"),
    (config().replace("expert: random", "expert: /no/such/ckpt"), r"/no/such/ckpt does not exist"),
    (config().replace("expert: random", "expert: 'sb3:/no/such.zip'"), r"/no/such.zip"),
    (config(task=", sample: true"), r"sample: true needs a learned expert"),
    (config(task=", card: /no/such/card.json"), r"expert card /no/such/card.json does not exist"),
]


@pytest.mark.parametrize(("text", "message"), CASES)
def test_a_bad_config_is_refused_naming_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(KibbleError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)  # one paragraph


def test_a_config_path_that_is_a_folder_or_not_utf8_is_refused(tmp_path):
    with pytest.raises(KibbleError, match="is a folder; give the dataset config YAML file"):
        load_config(tmp_path)
    path = tmp_path / "latin1.yaml"
    path.write_bytes(config("name: caf\xe9").encode("latin-1"))
    with pytest.raises(KibbleError, match="is not UTF-8 text"):
        load_config(path)


def test_a_good_config_keeps_its_notes_and_checks_pass(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(config("notes: {why: a test}", ", max_steps: 7"))
    cfg = load_config(path)
    assert cfg.extra == {"notes": {"why": "a test"}}
    assert cfg.tasks[0].max_steps == 7


def _rllib_dir(tmp_path, observation_space: str):
    """A checkpoint layout as `kibble expert train` writes it: the module directory and
    kibble_expert.json (the launcher reads only those, never the pickles)."""
    root = tmp_path / "expert"
    module = root / "checkpoint" / "learner_group" / "learner" / "rl_module" / "default_policy"
    module.mkdir(parents=True)
    (module / "class_and_ctor_args.pkl").write_bytes(b"")
    meta = {
        "task": "gym/Acrobot-v1",
        "observation_space": observation_space,
        "action_space": "Discrete(2)",
    }
    (root / "kibble_expert.json").write_text(json.dumps(meta))
    return root


def test_an_rllib_checkpoint_of_other_spaces_is_refused_on_the_launcher(tmp_path):
    from kibble.envs import get_task
    from kibble.envs.registry import space_summary

    obs = space_summary(get_task("gym/CartPole-v1").spaces()[0])
    path = tmp_path / "c.yaml"
    expert = _rllib_dir(tmp_path, "Box(6,)")
    path.write_text(config().replace("expert: random", f"expert: {expert}"))
    with pytest.raises(KibbleError, match=r"trained on another observation space .*Box\(6,\)"):
        load_config(path)
    (tmp_path / "expert" / "kibble_expert.json").write_text(
        json.dumps({"observation_space": obs, "action_space": "Discrete(2)"})
    )
    assert load_config(path).tasks[0].expert.endswith("expert")
    plain = tmp_path / "plain"
    plain.mkdir()
    path.write_text(config().replace("expert: random", f"expert: {plain}"))
    with pytest.raises(KibbleError, match="is not an RLlib checkpoint"):
        load_config(path)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (TaskJob("gym/CartPole-v1", "scripted", 2), "has no scripted expert"),
        (TaskJob("gym/CartPole-v1", "/no/such/ckpt", 2), "does not exist"),
        (TaskJob("gym/CartPole-v1", "random", 2, max_steps=0), "max_steps: expected a positive"),
        (TaskJob("gym/CartPole-v1", "scripted", max_episodes() + 1), "is more than the"),
        (TaskJob("gym/CartPole-v1", "random", 2, sample=True), "needs a learned expert"),
    ],
)
def test_rollout_checks_the_same_before_any_work(tmp_path, job, message):
    with pytest.raises(KibbleError, match=message):
        curate_tasks("t", [job], tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []  # nothing made: no staging, no lock
