"""RLlib experts end to end on a tiny budget: train -> checkpoint -> resume -> load -> eval.

Slow (Ray starts, PPO builds): one CartPole expert is trained once for the module.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.card import RolloutSettings, make_card
from kibble.experts.rllib_policy import load_rllib_policy

pytestmark = pytest.mark.slow
KIBBLE = Path(sys.executable).parent / "kibble"


def kibble(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(KIBBLE), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def expert_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("expert") / "cartpole"
    done = kibble(
        "expert", "train", "gym/CartPole-v1", "--out", str(out),
        "--timesteps", "500", "--set", "train_batch_size_per_learner=500",
        "--set", "minibatch_size=100", "--set", "num_epochs=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_training_writes_checkpoint_metadata_and_progress(expert_dir):
    assert (expert_dir / "checkpoint").is_dir()
    meta = json.loads((expert_dir / "kibble_expert.json").read_text())
    assert meta["task"] == "gym/CartPole-v1" and meta["algorithm"] == "PPO"
    assert meta["progress"]["env_steps"] >= 500
    lines = (expert_dir / "progress.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["iteration"] == len(lines)


def test_training_resumes_from_the_checkpoint(expert_dir, tmp_path):
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(expert_dir, copy)
    before = json.loads((copy / "kibble_expert.json").read_text())["progress"]
    done = kibble(
        "expert", "train", "gym/CartPole-v1", "--out", str(copy), "--timesteps", "1000",
        "--set", "train_batch_size_per_learner=500", "--set", "minibatch_size=100",
        "--set", "num_epochs=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = json.loads((copy / "kibble_expert.json").read_text())["progress"]
    assert after["iteration"] > before["iteration"]
    assert after["env_steps"] > before["env_steps"]


# Loads the checkpoint in a fresh interpreter (this test process may have started Ray for
# another test), checks kibble's actions are the RLModule's own greedy actions, and that
# nothing started Ray on the way.
LOAD_WITHOUT_RAY = """
import json, sys
import numpy as np, ray, torch
from ray.rllib.core.rl_module.rl_module import RLModule
from kibble.envs import get_task
from kibble.experts.rllib_policy import find_module_dir, load_rllib_policy

task = get_task("gym/CartPole-v1")
obs_space, act_space = task.spaces()
policy = load_rllib_policy(sys.argv[1], obs_space, act_space, task=task.id)
obs_space.seed(0)
obs = [obs_space.sample() for _ in range(64)]
actions = np.asarray(policy.act(obs, list(range(64))))
again = np.asarray(policy.act(obs, list(range(64))))
module = RLModule.from_checkpoint(str(find_module_dir(sys.argv[1]).resolve()))
with torch.no_grad():
    logits = module.forward_inference({"obs": torch.from_numpy(np.stack(obs))})
print(json.dumps({
    "ray_initialized": ray.is_initialized(),
    "actions": actions.tolist(),
    "again": again.tolist(),
    "module_actions": logits["action_dist_inputs"].argmax(-1).tolist(),
    "valid": all(act_space.contains(int(a)) for a in actions),
}))
"""


def test_checkpoint_loads_without_ray_and_acts_batched(expert_dir):
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_RAY, str(expert_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["ray_initialized"] is False
    assert seen["valid"] and len(seen["actions"]) == 64
    # The checkpoint's network decides: one batched call gives each observation the
    # argmax of the module's own forward pass, the same every time.
    assert seen["actions"] == seen["module_actions"] == seen["again"]


def _module_returns(expert_dir: Path, seeds: list[int]) -> list[float]:
    """Episode returns of the checkpoint's RLModule acting greedily, in a bare loop."""
    import torch
    from ray.rllib.core.rl_module.rl_module import RLModule

    from kibble.experts.rllib_policy import find_module_dir

    module = RLModule.from_checkpoint(str(find_module_dir(expert_dir).resolve()))
    env = get_task("gym/CartPole-v1").make()
    returns = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                out = module.forward_inference({"obs": torch.from_numpy(obs[None])})
            action = int(out["action_dist_inputs"].argmax(-1)[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return returns


def test_expert_card_from_the_checkpoint(expert_dir, tmp_path):
    card_path = tmp_path / "card.json"
    done = kibble(
        "expert", "eval", "gym/CartPole-v1", "--expert", str(expert_dir),
        "--episodes", "3", "--out", str(card_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    card = json.loads(card_path.read_text())
    assert card["expert"] == str(expert_dir) and card["episodes"] == 3
    # The card measured the checkpoint's policy: the same returns, seed for seed, as
    # the RLModule acting greedily in a bare loop on the card's seeds.
    returns = _module_returns(expert_dir, card["seeds"])
    stats = card["expert_return"]
    assert stats["mean"] == pytest.approx(np.mean(returns))
    assert (stats["min"], stats["max"]) == (min(returns), max(returns))


def test_checkpoint_loads_from_a_relative_path(expert_dir, monkeypatch):
    monkeypatch.chdir(expert_dir.parent)  # RLlib itself takes only absolute paths (URIs)
    obs_space, act_space = get_task("gym/CartPole-v1").spaces()
    policy = load_rllib_policy(Path(expert_dir.name), obs_space, act_space)
    assert len(policy.act([obs_space.sample()], [0])) == 1


def test_checkpoint_of_other_spaces_is_refused(expert_dir):
    task = get_task("gym/Acrobot-v1")
    with pytest.raises(KibbleError, match="trained on another observation space"):
        load_rllib_policy(expert_dir, *task.spaces(), task=task.id)


@pytest.mark.parametrize("make_bad", ["missing", "not_a_checkpoint"])
def test_bad_checkpoint_paths_are_one_paragraph_errors(tmp_path, make_bad):
    path = tmp_path / "expert"
    if make_bad == "not_a_checkpoint":
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    done = kibble(
        "expert", "eval", "gym/CartPole-v1", "--expert", str(path), "--episodes", "1",
        "--out", str(tmp_path / "c.json"),
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    expected = "does not exist" if make_bad == "missing" else "is not an RLlib checkpoint"
    assert expected in done.stderr


def test_card_with_mismatched_checkpoint_via_api(expert_dir):
    with pytest.raises(KibbleError, match="another"):
        make_card("gym/MountainCar-v0", str(expert_dir), RolloutSettings(episodes=1))


def test_image_task_trains_and_loads(tmp_path):
    # A CNN expert on 80x80 uint8 frames: fed to RLlib as floats in [0, 1], both in
    # training and when loaded for rollouts.
    out = tmp_path / "breakout"
    done = kibble(
        "expert", "train", "atari/Breakout", "--out", str(out), "--timesteps", "64",
        "--num-envs", "1", "--set", "train_batch_size_per_learner=64",
        "--set", "minibatch_size=32", "--set", "num_epochs=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    task = get_task("atari/Breakout")
    obs_space, act_space = task.spaces()
    policy = load_rllib_policy(out, obs_space, act_space, task=task.id)
    actions = policy.act([obs_space.sample(), obs_space.sample()], [0, 1])
    assert all(act_space.contains(int(a)) for a in actions)


def test_sampled_actions_are_reproducible_per_episode_seed(expert_dir):
    one, three = (RolloutSettings(episodes=3, seed=5, num_envs=n) for n in (1, 3))
    a = make_card("gym/CartPole-v1", str(expert_dir), one, sample=True)
    b = make_card("gym/CartPole-v1", str(expert_dir), three, sample=True)
    assert a == b and a.sampled


def test_sampling_an_unsupported_action_space_is_refused(expert_dir):
    from gymnasium import spaces

    from kibble.experts.rllib_policy import RLlibPolicy

    with pytest.raises(KibbleError, match="sampled actions support Discrete and Box"):
        RLlibPolicy(None, spaces.Box(-1, 1, (2,)), spaces.MultiBinary(3), name="x", sample=True)


def test_unknown_set_keys_are_named_with_suggestions():
    from kibble.experts.rllib_train import ExpertTrainConfig, build_algorithm_config

    obs_space, act_space = get_task("gym/CartPole-v1").spaces()
    cfg = ExpertTrainConfig("gym/CartPole-v1", Path("x"), overrides={"lrr": 0.1})
    with pytest.raises(
        KibbleError, match=r"--set names no RLlib PPO setting: lrr \(did you mean lr"
    ):
        build_algorithm_config(cfg, "kibble:test", obs_space, act_space)


def test_pipeline_with_an_rllib_expert_and_a_scripted_one(expert_dir, tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(
        f"name: two\noutput: {tmp_path / 'ds'}\nepisodes_per_shard: 2\ntasks:\n"
        f"  - {{task: gym/CartPole-v1, expert: {expert_dir}, episodes: 4}}\n"
        "  - {task: metaworld/reach-v3, expert: scripted, episodes: 2, max_steps: 30}\n"
    )
    done = kibble("pipeline", "run", str(config), "--direct_num_workers=2")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    for task in ("gym/CartPole-v1", "metaworld/reach-v3"):
        t = manifest["tasks"][task]
        assert t["kept"] + sum(t["rejected"].values()) == t["planned"]
        assert t["kept"] >= 1
