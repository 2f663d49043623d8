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


def _card_dict(**changes) -> dict:
    """A valid card as JSON values, with ``changes`` (dotted keys reach into returns)."""
    import json

    card = make_card("gym/CartPole-v1", "random", RolloutSettings(episodes=2, num_envs=2))
    d = json.loads(card.to_json())
    for key, value in changes.items():
        where, _, leaf = key.rpartition(".")
        (d[where] if where else d)[leaf] = value
    return d


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expert_return.mean", float("nan")),
        ("random_return.mean", float("inf")),
        ("expert_return.std", "lots"),
        ("random_return.max", True),
        pytest.param("expert_return.min", 10**400, id="expert_return.min-beyond-float"),
        ("length_mean", None),
        ("success_rate", 1.5),
    ],
)
def test_a_card_number_that_is_not_finite_is_refused_naming_card_and_field(tmp_path, field, value):
    import json

    path = tmp_path / "card.json"
    # json.dumps writes NaN and Infinity, which Python's json reads back: a hand edit.
    path.write_text(json.dumps(_card_dict(**{field: value})))
    with pytest.raises(KibbleError) as e:
        read_card(path)
    assert str(path) in str(e.value) and field in str(e.value), e.value


def test_a_card_of_another_task_is_refused_where_a_task_is_given(tmp_path):
    import json

    path = tmp_path / "card.json"
    path.write_text(json.dumps(_card_dict(task="gym/Acrobot-v1")))
    assert read_card(path).task == "gym/Acrobot-v1"  # reading alone names no task
    with pytest.raises(KibbleError, match="card of gym/Acrobot-v1, not of gym/CartPole-v1"):
        read_card(path, task="gym/CartPole-v1")
    assert read_card(path, task="gym/Acrobot-v1").task == "gym/Acrobot-v1"


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"\xff\xfe{not text", "not UTF-8"),
        (b"{ not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b'{"task": "gym/CartPole-v1", "expert_return": 5}', "not an object"),
        (b" " * (2 << 20), "over 1,048,576 bytes"),
    ],
)
def test_a_card_file_that_is_not_a_card_is_one_kibble_error(tmp_path, content, phrase):
    path = tmp_path / "card.json"
    path.write_bytes(content)
    with pytest.raises(KibbleError, match=phrase) as e:
        read_card(path)
    assert str(path) in str(e.value)


def test_a_card_must_be_a_local_regular_file(tmp_path):
    import os

    with pytest.raises(KibbleError, match="not a regular file"):
        read_card(tmp_path)
    os.mkfifo(tmp_path / "fifo.json")  # opening it would wait for a writer forever
    with pytest.raises(KibbleError, match="not a regular file"):
        read_card(tmp_path / "fifo.json")
    with pytest.raises(KibbleError, match="not URLs"):
        read_card("gs://bucket/card.json")
