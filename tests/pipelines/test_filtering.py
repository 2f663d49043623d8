import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kibble.pipelines.filtering import (
    FRACTION_OF_EXPERT,
    LOWEST_PLUS_GAP,
    RANDOM_PLUS_GAP,
    best_window,
    threshold,
    window_size,
    windowed_expert_return,
)
from kibble.pipelines.stages import EpisodeOutcome, TaskJob, is_kept, task_threshold


@pytest.mark.parametrize(
    ("n", "w"),
    [(1, 1), (9, 1), (10, 1), (19, 1), (20, 2), (999, 99), (10_000, 1000), (50_000, 1000)],
)
def test_window_size_is_ten_percent_capped_at_1000_at_least_1(n, w):
    assert window_size(n) == w


def test_expert_return_is_the_best_window_mean_in_collection_order():
    # N = 20 -> W = 2: windows (1,1) (1,9) (9,9) ... best mean is 9 only where two 9s touch.
    returns = [1.0] * 10 + [9.0, 9.0] + [1.0] * 8
    assert windowed_expert_return(returns) == 9.0
    spread = [1.0, 9.0] * 10  # never two 9s in a row: best window mean is 5
    assert windowed_expert_return(spread) == 5.0


def test_a_single_episode_is_its_own_expert_return():
    assert windowed_expert_return([-3.5]) == -3.5


def test_threshold_rules_and_edges():
    assert threshold(100.0, None, 0.8) == (80.0, FRACTION_OF_EXPERT)
    # Not positive: random + fraction * (expert - random), whatever the fraction of 0 is.
    assert threshold(0.0, -10.0, 0.8) == pytest.approx((-2.0, RANDOM_PLUS_GAP))
    assert threshold(-20.0, -100.0, 0.5) == (-60.0, RANDOM_PLUS_GAP)
    # No random return known: measured from the lowest valid return, never from 0
    # (from 0 the bar would be -400 for Acrobot's -500 episodes: all rejected).
    assert threshold(-500.0, None, 0.8, lowest_return=-500.0) == (-500.0, LOWEST_PLUS_GAP)
    assert threshold(-20.0, None, 0.5, lowest_return=-100.0) == (-60.0, LOWEST_PLUS_GAP)


def test_best_window_is_where_the_expert_return_comes_from():
    returns = [1.0] * 10 + [9.0, 9.0] + [1.0] * 8  # W = 2
    assert best_window(returns) == range(10, 12)


_returns = st.lists(
    st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False), min_size=1, max_size=200
)


@given(_returns, st.floats(0.0, 1.0), st.sets(st.integers(0, 199), max_size=20))
# W = 2: the best window is (1, 10), mean 5.5, bar 4.4: its 1.0 must still be kept.
@example(returns=[1.0] * 18 + [10.0, 0.0], fraction=0.8, invalid=set())
def test_the_episodes_that_define_the_expert_return_pass_their_own_filter(
    returns, fraction, invalid
):
    # Gato's filter must never reject the episodes its expert return comes from, whatever
    # the returns' signs and the fraction (with base 0, Acrobot's -500s were all rejected).
    outcomes = [
        EpisodeOutcome(
            task="t/x",
            episode_id=f"e{i}",
            index=i,
            episode_return=r,
            episode_length=1,
            reason="non_finite" if i in invalid else None,
        )
        for i, r in enumerate(returns)
    ]
    valid = [o for o in outcomes if o.reason is None]
    t = task_threshold(TaskJob("t/x", "random", len(returns)), outcomes, fraction)
    if not valid:
        assert t.threshold is None
        return
    window = best_window([o.episode_return for o in valid])
    assert t.expert_return == pytest.approx(
        windowed_expert_return([o.episode_return for o in valid])
    )
    for position in window:
        assert is_kept(valid[position], t)
    assert not any(is_kept(o, t) for o in outcomes if o.reason is not None)


def test_every_threshold_rule_is_said_in_words():
    from kibble.pipelines.filtering import LOWEST_PLUS_GAP, RANDOM_PLUS_GAP, rule_text

    assert rule_text("fraction_of_expert", 0.8) == "fraction_of_expert: 0.8 x expert return"
    assert rule_text(RANDOM_PLUS_GAP, 0.5).endswith("random + 0.5 x (expert - random)")
    assert rule_text(LOWEST_PLUS_GAP, 0.8).endswith("lowest return + 0.8 x (expert - lowest)")
    assert rule_text("no_valid_episodes", 0.8) == "no_valid_episodes"  # nothing to say
