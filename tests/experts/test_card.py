import pytest

from kibble.errors import KibbleError
from kibble.experts.card import make_card, read_card, write_card


def test_random_card_is_deterministic_for_a_seed():
    a = make_card("gym/CartPole-v1", "random", episodes=6, seed=3, num_envs=2)
    b = make_card("gym/CartPole-v1", "random", episodes=6, seed=3, num_envs=3)
    assert a == b
    assert a.seeds == [3, 4, 5, 6, 7, 8]
    assert a.random_return == a.expert_return
    assert a.expert_return.min <= a.expert_return.mean <= a.expert_return.max
    assert a.success_rate is None
    assert "gymnasium" in a.versions


def test_scripted_metaworld_card_measures_success_and_random_return(tmp_path):
    card = make_card("metaworld/reach-v3", "scripted", episodes=2, seed=0, num_envs=2)
    assert card.success_rate == 1.0
    assert card.random_success_rate is not None
    assert card.expert_return.mean > card.random_return.mean
    path = tmp_path / "cards" / "reach.json"
    write_card(card, path)
    assert read_card(path) == card


def test_scripted_expert_only_exists_for_metaworld():
    with pytest.raises(KibbleError, match="has no scripted expert"):
        make_card("gym/CartPole-v1", "scripted", episodes=1)


def test_bad_card_files_are_clear_errors(tmp_path):
    with pytest.raises(KibbleError, match="does not exist"):
        read_card(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(KibbleError, match="not a kibble expert card"):
        read_card(bad)


def test_episodes_must_be_positive():
    with pytest.raises(KibbleError, match="at least 1"):
        make_card("gym/CartPole-v1", "random", episodes=0)


def test_card_episodes_can_be_cut_to_match_a_dataset(tmp_path):
    card = make_card("gym/CartPole-v1", "random", episodes=3, seed=0, max_steps=5)
    assert card.max_steps == 5 and card.length_mean == 5
    write_card(card, tmp_path / "c.json")
    assert read_card(tmp_path / "c.json").max_steps == 5
