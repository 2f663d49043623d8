"""SB3 checkpoints as kibble experts (``sb3:PATH.zip``), with real Stable-Baselines3.

Models are trained here for a few seconds (or left untrained where only the network's
function matters), saved with ``model.save`` and loaded through kibble, which never
unpickles anything from the zip.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

import sb3_contrib
import stable_baselines3 as sb3
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.evaluation import RolloutSettings, evaluate
from kibble.experts.rollout import EpisodeJob, run_episodes
from kibble.experts.sb3 import describe_sb3_source
from kibble.experts.sb3_setup import companion_files
from kibble.experts.sources import load_expert


def _load(task_id: str, path: Path | str, sample: bool = False):
    task = get_task(task_id)
    return load_expert(task, f"sb3:{path}", *task.spaces(), sample=sample)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, object, str]]:
    """name -> (zip, SB3 model, task id): trained briefly, or untrained."""
    torch.set_num_threads(1)  # several threads on a busy 2-core machine: 10x slower
    root = tmp_path_factory.mktemp("sb3")
    specs = {  # about 12 s of training in all
        "PPO": (sb3.PPO, "CartPole-v1", 2048, dict(n_steps=512, batch_size=128, n_epochs=4)),
        "DQN": (sb3.DQN, "CartPole-v1", 2000, dict(learning_starts=500, train_freq=4)),
        "SAC": (sb3.SAC, "Pendulum-v1", 200, dict(learning_starts=100)),
        "TD3": (sb3.TD3, "Pendulum-v1", 200, dict(learning_starts=100)),
        "A2C": (sb3.A2C, "CartPole-v1", 0, dict(policy_kwargs=dict(activation_fn=torch.nn.ReLU))),
        "PPO-continuous": (sb3.PPO, "Pendulum-v1", 0, dict(policy_kwargs=dict(net_arch=[32]))),
        "QR-DQN": (sb3_contrib.QRDQN, "CartPole-v1", 0, dict(policy_kwargs=dict(n_quantiles=10))),
        "TQC": (sb3_contrib.TQC, "Pendulum-v1", 0, dict(policy_kwargs=dict(n_critics=1))),
    }
    out = {}
    for name, (algo, env_id, steps, kwargs) in specs.items():
        model = algo("MlpPolicy", env_id, seed=0, **kwargs)
        if steps:
            model.learn(steps)
        path = root / f"{name}.zip"
        model.save(path)
        out[name] = (path, model, f"gym/{env_id}")
    return out


@pytest.mark.parametrize(
    "name", ["PPO", "DQN", "SAC", "TD3", "A2C", "PPO-continuous", "QR-DQN", "TQC"]
)
def test_actions_equal_sb3_predict(models, name):
    path, model, task_id = models[name]
    policy = _load(task_id, path)
    obs_space = get_task(task_id).spaces()[0]
    obs_space.seed(1)
    batch = np.stack([obs_space.sample() for _ in range(64)])
    ours = np.stack(policy.act(list(batch), list(range(64))))
    theirs, _ = model.predict(batch, deterministic=True)
    np.testing.assert_array_equal(ours, theirs)
    assert policy.name == f"sb3:{path}"
    described = policy.description
    assert described["algorithm"] == name.split("-continuous")[0]
    assert described["sha256"] and described["sb3_version"] == sb3.__version__


def _sb3_returns(model, env_id: str, seeds: list[int]) -> list[float]:
    """SB3's evaluate_policy, one episode per seed (its VecEnv reseeds at reset)."""
    out = []
    for seed in seeds:
        venv = DummyVecEnv([lambda: gym.make(env_id)])
        venv.seed(seed)
        rewards, _ = evaluate_policy(
            model, venv, n_eval_episodes=1, deterministic=True, return_episode_rewards=True,
            warn=False,
        )  # fmt: skip
        out.append(float(rewards[0]))
    return out


@pytest.mark.parametrize("name", ["PPO", "DQN", "SAC", "TD3"])
def test_evaluate_equals_sb3_evaluate_policy(models, name):
    path, model, task_id = models[name]
    seeds = [0, 1, 2]
    theirs = _sb3_returns(model, task_id.split("/", 1)[1], seeds)
    # One environment: SB3's evaluate_policy on one env feeds the network batches of 1.
    ours = evaluate(task_id, f"sb3:{path}", RolloutSettings(episodes=3, seed=0, num_envs=1))
    assert [e.seed for e in ours] == seeds
    # SB3's DummyVecEnv keeps rewards in float32 (evaluate_policy then sums them in
    # float64); summed the same way, kibble's recorded rewards give SB3's returns exactly.
    assert [float(np.sum(e.rewards.astype(np.float32), dtype=np.float64)) for e in ours] == theirs
    # Batched (3 envs): torch's CPU kernels round a batch of 3 differently from a batch
    # of 1 in the last bit of float32, so continuous actions (and returns) agree closely,
    # not bit for bit.
    batched = evaluate(task_id, f"sb3:{path}", RolloutSettings(episodes=3, seed=0, num_envs=3))
    np.testing.assert_allclose([e.episode_return for e in batched], theirs, rtol=1e-3)


def test_sampled_actions_are_seeded_per_episode(models):
    path, _, task_id = models["PPO"]
    four_from_5 = RolloutSettings(episodes=4, seed=5, num_envs=1)
    a = evaluate(task_id, f"sb3:{path}", four_from_5, sample=True)
    b = evaluate(
        task_id, f"sb3:{path}", RolloutSettings(episodes=4, seed=5, num_envs=3), sample=True
    )
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.actions, y.actions)
    greedy = evaluate(task_id, f"sb3:{path}", four_from_5)
    assert any(not np.array_equal(x.actions, g.actions) for x, g in zip(a, greedy, strict=True))


# --- no code runs from a checkpoint ------------------------------------------------------


class _Plant:
    """Unpickling this creates ``marker`` (open(marker, 'w')): a stand-in for any code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _rewrite_data(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            blob = zin.read(item.filename)
            if item.filename == "data":
                data = json.loads(blob)
                edit(data)
                blob = json.dumps(data).encode()
            zout.writestr(item, blob)


def test_a_planted_pickle_never_runs_in_kibble_but_does_in_sb3(models, tmp_path, monkeypatch):
    path, model, task_id = models["PPO"]
    marker = tmp_path / "pwned"
    payload = base64.b64encode(pickle.dumps(_Plant(marker))).decode()
    planted = tmp_path / "planted.zip"

    def plant(data: dict) -> None:
        for key in ("policy_class", "observation_space", "action_space", "lr_schedule"):
            data[key][":serialized:"] = payload  # entries kibble reads the plain fields of

    _rewrite_data(path, planted, plant)

    # kibble: loads and acts, the payload untouched; no unpickler is even called
    # (torch.load(weights_only=True) uses torch's own restricted unpickler).
    import cloudpickle

    def forbidden(*_a, **_k):
        raise AssertionError("kibble unpickled something")

    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "loads", forbidden)
        monkeypatch.setattr(module, "load", forbidden)
    policy = _load(task_id, planted)
    obs = np.zeros(4, np.float32)
    assert policy.act([obs], [0]) == list(model.predict(obs[None], deterministic=True)[0])
    assert not marker.exists()
    monkeypatch.undo()

    # SB3's own load unpickles the same zip and runs the payload: the test is real.
    with contextlib.suppress(Exception):  # what the payload replaced is broken; it ran
        sb3.PPO.load(planted)
    assert marker.exists()


def test_custom_classes_in_the_zip_are_refused_not_run(models, tmp_path):
    path, _, task_id = models["A2C"]
    custom = tmp_path / "custom.zip"

    def extractor(data: dict) -> None:
        data["policy_kwargs"]["features_extractor_class"] = "<class 'evil.Extractor'>"

    _rewrite_data(path, custom, extractor)
    with pytest.raises(KibbleError, match=r"features_extractor_class.*evil\.Extractor"):
        _load(task_id, custom)

    def policy_class(data: dict) -> None:
        data["policy_class"]["__module__"] = "evil.policies"

    _rewrite_data(path, custom, policy_class)
    with pytest.raises(KibbleError, match=r"evil\.policies\.ActorCriticPolicy is not one kibble"):
        _load(task_id, custom)


# --- bad input ---------------------------------------------------------------------------


def test_an_agent_for_other_spaces_is_refused_naming_both(models):
    path, _, _ = models["PPO"]
    with pytest.raises(KibbleError) as e:
        _load("gym/Acrobot-v1", path)
    text = str(e.value)
    assert "\n" not in text
    assert "Box(4,) float32" in text and "Discrete(2)" in text  # the agent's
    assert "Box(6,) float32" in text and "Discrete(3)" in text  # Acrobot's
    assert "gym/Acrobot-v1" in text


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_non_sb3_and_missing_files_are_clear_errors(models, tmp_path):
    path, _, task_id = models["PPO"]
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(KibbleError, match="not a readable zip file"):
        _load(task_id, cut)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(KibbleError, match=r"not a Stable-Baselines3 checkpoint.*no data"):
        _load(task_id, other)
    with pytest.raises(KibbleError, match="does not exist"):
        _load(task_id, tmp_path / "missing.zip")
    with pytest.raises(KibbleError, match="is a directory"):
        _load(task_id, tmp_path)
    # weights that are code, not tensors: torch.load(weights_only=True) refuses them
    marker = tmp_path / "pwned"
    bad_weights = tmp_path / "bad_weights.zip"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad_weights, "w") as zout:
        for item in zin.infolist():
            blob = zin.read(item.filename)
            if item.filename == "policy.pth":
                blob = pickle.dumps(_Plant(marker))
            zout.writestr(item, blob)
    with pytest.raises(KibbleError, match=r"policy\.pth is not a plain tensor state_dict"):
        _load(task_id, bad_weights)
    assert not marker.exists()
    with pytest.raises(KibbleError, match="not implemented"):
        _load(task_id, "hub:sb3/ppo-CartPole-v1")


# --- VecNormalize: only a safe form --------------------------------------------------------


def test_vec_normalize_statistics_only_in_their_safe_form(models, tmp_path):
    src, model, task_id = models["PPO-continuous"]
    path = tmp_path / "normed.zip"
    path.write_bytes(src.read_bytes())
    mean, var = np.array([0.1, -0.2, 0.5]), np.array([0.4, 0.3, 4.0])
    (tmp_path / "vec_normalize.pkl").write_bytes(b"a pickle kibble must not read")
    with pytest.raises(KibbleError, match=r"vec_normalize\.pkl.*does not unpickle.*json\.dump"):
        _load(task_id, path)
    stats = {"obs_mean": mean.tolist(), "obs_var": var.tolist(), "clip_obs": 5.0, "epsilon": 1e-8}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    (tmp_path / "normed.kibble.yaml").write_text("vec_normalize: stats.json\n")
    policy = _load(task_id, path)
    obs = np.array([[0.9, 0.1, 3.0], [-1.0, 0.5, -8.0]], np.float32)
    normed = np.clip((obs - mean) / np.sqrt(var + 1e-8), -5.0, 5.0).astype(np.float32)
    ours = np.stack(policy.act(list(obs), [0, 1]))
    np.testing.assert_array_equal(ours, model.predict(normed, deterministic=True)[0])
    assert "VecNormalize" in policy.description["view"]["adapters"][0]
    # what a remote worker needs beside the zip (never the pickle)
    assert companion_files(path) == [tmp_path / "normed.kibble.yaml", tmp_path / "stats.json"]
    (tmp_path / "normed.kibble.yaml").write_text("vec_normalize: none\n")
    np.testing.assert_array_equal(
        np.stack(_load(task_id, path).act(list(obs), [0, 1])),
        model.predict(obs, deterministic=True)[0],
    )


# --- Atari: the expert's own view ---------------------------------------------------------


@pytest.fixture(scope="module")
def atari():
    pytest.importorskip("ale_py")
    import ale_py

    gym.register_envs(ale_py)


def _zoo_env(env_id: str, **wrapper_kwargs):
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    kwargs = {}
    if env_id.startswith("ALE/"):
        kwargs = dict(frameskip=1, repeat_action_probability=0.25, full_action_space=False)
    venv = make_atari_env(env_id, n_envs=1, env_kwargs=kwargs, wrapper_kwargs=wrapper_kwargs)
    return VecFrameStack(venv, 4)


SIDECAR = """\
env: ALE/MsPacman-v5
env_kwargs: {frameskip: 1, repeat_action_probability: 0.25}
atari_wrapper: {terminal_on_life_loss: false, clip_reward: false}
frame_stack: 4
"""


def _lockstep(policy, task, venv, model, seed: int, steps: int) -> list[int]:
    """kibble's expert on kibble's env beside SB3 on the Zoo-wrapped env, same actions."""
    env = task.make()
    obs, _ = env.reset(seed=seed)
    policy.start_episode(0, seed)
    policy.bind_environment(0, env)
    venv.seed(seed)
    zoo_obs = venv.reset()
    actions = []
    for _ in range(steps):
        action = policy.act([obs], [0])[0]
        # What the expert saw is exactly the Zoo's stacked 84x84 frames (channels first).
        np.testing.assert_array_equal(policy._seen[0][1], np.moveaxis(zoo_obs[0], -1, 0))
        assert action == model.predict(zoo_obs, deterministic=True)[0][0]
        actions.append(int(action))
        obs, *_ = env.step(action)
        zoo_obs, *_ = venv.step(np.array([action]))
    env.close()
    return actions


def test_atari_cnn_agent_acts_as_on_the_zoo_wrapped_env_step_for_step(atari, tmp_path):
    # The Zoo's wrappers (AtariWrapper + VecFrameStack(4), VecTransposeImage added by
    # SB3) on an environment that moves as kibble's task does: ALE v5 with sticky
    # actions 0.25, frame skip 4 in the wrapper, whole games as episodes. MsPacman has
    # no FIRE action, so AtariWrapper adds no FIRE at reset.
    venv = _zoo_env("ALE/MsPacman-v5", terminal_on_life_loss=False, clip_reward=False)
    model = sb3.PPO("CnnPolicy", venv, seed=0, n_steps=8, batch_size=8)
    with torch.no_grad():  # untrained, but with actions that depend on the frames
        torch.manual_seed(0)
        model.policy.action_net.weight.normal_(0, 3)
    path = tmp_path / "mspacman.zip"
    model.save(path)
    (tmp_path / "mspacman.kibble.yaml").write_text(SIDECAR)
    task = get_task("atari/MsPacman")
    policy = load_expert(task, f"sb3:{path}", *task.spaces())

    seeds, steps = [3, 4], 150
    expected = [_lockstep(policy, task, venv, model, seed, steps) for seed in seeds]
    assert len(set(expected[0] + expected[1])) > 1  # not a constant policy

    # Through kibble's rollout, one environment reused across episodes and two batched:
    # the same actions, while the frames recorded are kibble's own 80x80.
    jobs = [EpisodeJob(f"e{seed}", seed) for seed in seeds]
    for num_envs in (1, 2):
        episodes = run_episodes(
            task.make, policy, jobs, task=task.id, num_envs=num_envs, max_steps=steps
        )
        for episode in sorted(episodes, key=lambda e: e.seed):
            assert episode.observations.shape == (steps, 80, 80, 1)
            assert episode.observations.dtype == np.uint8
            np.testing.assert_array_equal(episode.actions, expected[seeds.index(episode.seed)])

    view = policy.description["view"]
    assert view["adapters"][:3] == [
        "grayscale (OpenCV COLOR_RGB2GRAY)",
        "resize to 84x84x1 (OpenCV INTER_AREA)",
        "stack the last 4 frames (zeros at episode start, newest last)",
    ]
    assert view["dynamics"]["agent"]["sticky_actions"] == 0.25
    assert json.loads(json.dumps(policy.description)) == policy.description  # card-ready


ZOO_CONFIG = """\
!!python/object/apply:collections.OrderedDict
- - - env_wrapper
    - - stable_baselines3.common.atari_wrappers.AtariWrapper
  - - frame_stack
    - 4
  - - n_envs
    - 8
  - - policy
    - CnnPolicy
"""
ZOO_ARGS = """\
!!python/object/apply:collections.OrderedDict
- - - algo
    - ppo
  - - env
    - PongNoFrameskip-v4
"""


@pytest.fixture(scope="module")
def zoo_pong(atari, tmp_path_factory) -> Path:
    """An untrained PPO CnnPolicy on the RL Zoo's own Pong setup (NoFrameskip-v4 defaults)."""
    root = tmp_path_factory.mktemp("zoo")
    model = sb3.PPO("CnnPolicy", _zoo_env("PongNoFrameskip-v4"), n_steps=8, batch_size=8)
    model.save(root / "ppo-PongNoFrameskip-v4.zip")
    return root / "ppo-PongNoFrameskip-v4.zip"


def test_atari_dynamics_differences_are_refused_by_name(zoo_pong):
    with pytest.raises(KibbleError) as e:
        _load("atari/Pong", zoo_pong)
    text = str(e.value)
    assert "assumed: the RL Zoo's Atari setup" in text
    assert "sticky_actions: agent 0.0, task 0.25" in text
    assert "terminal_on_life_loss: agent True, task False" in text
    assert "fire_reset: agent True, task False" in text
    assert "frame_skip" not in text and "noop_max" not in text  # those match


def test_atari_setup_from_the_zoo_files_and_accepted_differences(zoo_pong, tmp_path):
    folder = tmp_path  # the Zoo's layout: the zip and its config files side by side
    zoo_pong = Path(shutil.copy(zoo_pong, folder / zoo_pong.name))
    (folder / "config.yml").write_text(ZOO_CONFIG)
    (folder / "args.yml").write_text(ZOO_ARGS)
    assert companion_files(zoo_pong) == [folder / "config.yml", folder / "args.yml"]
    with pytest.raises(KibbleError, match=r"config\.yml.*args\.yml|sticky_actions") as e:
        _load("atari/Pong", zoo_pong)
    assert "config.yml" in str(e.value) and "sticky_actions: agent 0.0" in str(e.value)
    with pytest.raises(KibbleError, match=r"game: agent 'Pong', task 'SpaceInvaders'"):
        _load("atari/SpaceInvaders", zoo_pong)

    sidecar = folder / "ppo-PongNoFrameskip-v4.kibble.yaml"
    sidecar.write_text(
        "env: PongNoFrameskip-v4\natari_wrapper: {}\nframe_stack: 4\n"
        "accept_differences: [sticky_actions, terminal_on_life_loss, fire_reset]\n"
    )
    policy = _load("atari/Pong", zoo_pong)
    assert describe_sb3_source(str(zoo_pong), "atari/Pong") == policy.description
    accepted = policy.description["view"]["accepted_differences"]
    assert accepted["sticky_actions"] == {"expert": 0.0, "task": 0.25}
    assert set(accepted) == {"sticky_actions", "terminal_on_life_loss", "fire_reset"}
    (episode,) = evaluate(
        "atari/Pong", f"sb3:{zoo_pong}", RolloutSettings(episodes=1, max_steps=50)
    )
    assert episode.observations.shape == (50, 80, 80, 1)


# --- the CLI ---------------------------------------------------------------------------------


def test_kibble_expert_eval_cli_with_an_sb3_zip(models, tmp_path):
    from typer.testing import CliRunner

    from kibble.cli import app

    path, model, task_id = models["PPO"]
    out = tmp_path / "x" / "card.json"
    result = CliRunner().invoke(
        app,
        ["expert", "eval", task_id, "--expert", f"sb3:{path}", "--episodes", "3",
         "--num-envs", "1", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads(out.read_text())
    assert card["expert"] == f"sb3:{path}"
    # The card names the source exactly: the zip's content and what it holds.
    assert card["source"]["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert card["source"]["algorithm"] == "PPO"
    theirs = _sb3_returns(model, "CartPole-v1", [0, 1, 2])
    assert card["expert_return"]["mean"] == pytest.approx(np.mean(theirs))
