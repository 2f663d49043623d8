from dataclasses import replace

import pytest

from kibble.errors import KibbleError
from kibble.experts.card import (
    RolloutSettings,
    card_matches,
    make_card,
    read_card,
    write_card,
)


def test_random_card_is_deterministic_for_a_seed():
    a = make_card("gym/CartPole-v1", "random", RolloutSettings(episodes=6, seed=3, num_envs=2))
    b = make_card("gym/CartPole-v1", "random", RolloutSettings(episodes=6, seed=3, num_envs=3))
    assert a == b
    assert a.seeds == [3, 4, 5, 6, 7, 8]
    assert a.random_return == a.expert_return
    assert a.expert_return.min <= a.expert_return.mean <= a.expert_return.max
    assert a.success_rate is None
    assert "gymnasium" in a.versions


def test_scripted_metaworld_card_measures_success_and_random_return(tmp_path):
    card = make_card("metaworld/reach-v3", "scripted", RolloutSettings(episodes=2, num_envs=2))
    assert card.success_rate == 1.0
    assert card.random_success_rate is not None
    assert card.expert_return.mean > card.random_return.mean
    path = tmp_path / "cards" / "reach.json"
    write_card(card, path)
    assert read_card(path) == card


def test_scripted_expert_only_exists_for_metaworld():
    with pytest.raises(KibbleError, match="has no scripted expert"):
        make_card("gym/CartPole-v1", "scripted", RolloutSettings(episodes=1))


def test_bad_card_files_are_clear_errors(tmp_path):
    with pytest.raises(KibbleError, match="does not exist"):
        read_card(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(KibbleError, match="not a kibble expert card"):
        read_card(bad)


def test_episodes_must_be_positive():
    with pytest.raises(KibbleError, match="at least 1"):
        make_card("gym/CartPole-v1", "random", RolloutSettings(episodes=0))


def test_card_episodes_can_be_cut_to_match_a_dataset(tmp_path):
    card = make_card("gym/CartPole-v1", "random", RolloutSettings(episodes=3, max_steps=5))
    assert card.max_steps == 5 and card.length_mean == 5
    write_card(card, tmp_path / "c.json")
    assert read_card(tmp_path / "c.json").max_steps == 5


def test_settings_come_as_one_record_and_sample_only_by_name():
    """A bool and an int swapped (``sample`` for ``max_steps``) cannot pass silently: the
    rollout settings are one record and everything past it is keyword-only."""
    settings = RolloutSettings(episodes=2, seed=3, max_steps=5)
    with pytest.raises(TypeError):
        make_card("gym/CartPole-v1", "random", 2, 3)  # the old positional counts
    with pytest.raises(TypeError):
        make_card("gym/CartPole-v1", "random", settings, True)  # sample, positionally
    with pytest.raises(TypeError):
        RolloutSettings(2, 3)  # which is the seed? by name only
    card = make_card("gym/CartPole-v1", "random", settings)
    assert card_matches(card, "gym/CartPole-v1", "random", settings)
    with pytest.raises(TypeError):
        card_matches(card, "gym/CartPole-v1", "random", settings, False)
    with pytest.raises(TypeError):
        card_matches(card, "gym/CartPole-v1", "random", 2, 3, 5)  # the old positional order
    # What the card measured decides; how many environments ran it does not.
    assert card_matches(card, "gym/CartPole-v1", "random", replace(settings, num_envs=1))
    assert not card_matches(card, "gym/CartPole-v1", "random", replace(settings, seed=4))
    assert not card_matches(card, "gym/CartPole-v1", "random", replace(settings, max_steps=None))
    assert not card_matches(card, "gym/CartPole-v1", "random", replace(settings, episodes=3))


def test_bad_settings_are_refused_without_naming_a_command_line_flag():
    with pytest.raises(KibbleError, match=r"^max_steps must be at least 1") as e:
        RolloutSettings(episodes=1, max_steps=0)
    assert "--" not in str(e.value)
    with pytest.raises(KibbleError, match=r"^episodes must be at least 1"):
        RolloutSettings(episodes=-1)
