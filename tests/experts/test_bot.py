"""The BabyAI bot expert: one bot per slot, bound to its environment after each reset."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kibble.envs import get_task
from kibble.errors import KibbleError
from kibble.experts.bot import BotPolicy
from kibble.experts.evaluation import RolloutSettings, evaluate
from kibble.experts.policy import EnvironmentAware, Policy

KIBBLE = Path(sys.executable).parent / "kibble"


def test_the_bot_is_an_environment_aware_policy_for_babyai_only():
    bot = BotPolicy(get_task("babyai/GoToRedBall-v0"))
    assert isinstance(bot, Policy) and isinstance(bot, EnvironmentAware)
    assert bot.name == "bot"
    with pytest.raises(KibbleError, match="BabyAI levels"):
        BotPolicy(get_task("gym/CartPole-v1"))
    with pytest.raises(KibbleError, match="has no bot expert"):
        evaluate("gym/CartPole-v1", "bot", RolloutSettings(episodes=1))


def test_expert_eval_on_go_to_local_succeeds(tmp_path):
    out = tmp_path / "card.json"
    done = subprocess.run(
        [str(KIBBLE), "expert", "eval", "babyai/GoToLocal-v0", "--expert", "bot",
         "--episodes", "20", "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    card = json.loads(out.read_text())
    assert card["success_rate"] >= 0.95
    assert card["expert_return"]["mean"] > card["random_return"]["mean"]
    assert card["versions"]["minigrid"] == "3.2.0"
    assert "Sampling rejected" not in done.stdout


def test_bot_episodes_are_reproducible_and_independent_of_slots():
    one = evaluate("babyai/PickupLoc-v0", "bot", RolloutSettings(episodes=6, seed=10, num_envs=1))
    three = evaluate("babyai/PickupLoc-v0", "bot", RolloutSettings(episodes=6, seed=10, num_envs=3))
    assert [e.actions.tolist() for e in one] == [e.actions.tolist() for e in three]
    assert [e.observations["mission"][0] for e in one] == [
        e.observations["mission"][0] for e in three
    ]
    assert all(e.success for e in one)
    # A successful episode ends at its last step, terminated with a positive reward.
    assert all(e.terminated[-1] and e.rewards[-1] > 0 for e in one)
