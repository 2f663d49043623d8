"""The babyai family: every BabyAI level minigrid registers, observed as kibble tokenizes it."""

import gymnasium as gym
import numpy as np
import sentencepiece as spm

from kibble.envs import get_task, list_tasks, make_env
from kibble.envs.family_babyai import BOT_SUCCESS, WEAK_BOT_SUCCESS
from kibble.tokenize.episode import EpisodeTokenizer
from kibble.tokenize.text import DEFAULT_TEXT_MODEL


def test_every_babyai_level_is_a_task():
    names = {t.name for t in list_tasks("babyai")}
    registered = {i.removeprefix("BabyAI-") for i in gym.registry if i.startswith("BabyAI-")}
    assert names == registered and len(names) >= 90
    assert {"GoToRedBall-v0", "GoToLocal-v0", "BossLevel-v0"} <= names
    assert get_task("babyai/GoToRedBall-v0").expert_sources == ("bot", "random")


def test_weak_levels_carry_a_note():
    weak = [name for name, rate in BOT_SUCCESS.items() if rate < WEAK_BOT_SUCCESS]
    for name in weak:
        assert get_task(f"babyai/{name}").note.startswith("weak bot expert")
    assert get_task("babyai/GoToLocal-v0").note == ""


def test_observations_are_a_grid_a_direction_and_the_mission(capsys):
    env = make_env("babyai/GoToRedBall-v0")
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs["image"].shape == (7, 7, 3) and obs["image"].dtype == np.uint8
    assert obs["mission"] == "go to the red ball"
    # The grid is 147 discrete tokens (not an image), then the direction, then the text.
    tok = EpisodeTokenizer(*get_task("babyai/GoToRedBall-v0").spaces())
    batch = {k: np.asarray([v]) for k, v in obs.items()}
    tokens = tok.observation.encode(batch)[0]
    assert tokens[0] == obs["direction"]
    assert tokens[1:148].tolist() == obs["image"].reshape(-1).tolist()
    assert (tokens < 1024).all()
    assert not tok.observation.image_leaves
    # Level generators print while they resample; nothing reaches stdout.
    for seed in range(5):
        make_env("babyai/BossLevel-v0").reset(seed=seed)
    assert capsys.readouterr().out == ""


def test_episodes_are_reproducible_by_seed():
    def run(seed):
        env = make_env("babyai/GoToLocal-v0")
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(0)
        seen = [obs["mission"], obs["image"].tobytes()]
        for _ in range(10):
            obs, reward, *_ = env.step(env.action_space.sample())
            seen += [obs["image"].tobytes(), reward]
        return seen

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_success_is_a_terminating_step_with_reward():
    env = make_env("babyai/GoToRedBall-v0")
    env.reset(seed=0)
    # `done` never ends GoToRedBall; the step limit truncates it without success.
    for _ in range(1000):
        _, reward, terminated, truncated, info = env.step(6)
        assert info["success"] is False and reward == 0
        if truncated:
            break
    assert truncated and not terminated


def test_real_missions_of_every_level_encode_without_unknown_pieces():
    sp = spm.SentencePieceProcessor(model_file=str(DEFAULT_TEXT_MODEL))
    for task in list_tasks("babyai"):
        env = make_env(task.id)
        for seed in range(2):
            mission = env.reset(seed=seed)[0]["mission"]
            ids = sp.EncodeAsIds(mission)
            assert sp.unk_id() not in ids, (task.id, mission)
            # Byte pieces would mean a word the model never saw.
            assert not any(sp.IsByte(i) for i in ids), (task.id, mission)
            assert sp.DecodeIds(ids) == mission
        env.close()
