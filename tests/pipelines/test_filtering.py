import pytest

from kibble.pipelines.filtering import (
    FRACTION_OF_EXPERT,
    RANDOM_PLUS_GAP,
    threshold,
    window_size,
    windowed_expert_return,
)


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
    # No random return known: measured from 0.
    assert threshold(-20.0, None, 0.8) == (-16.0, RANDOM_PLUS_GAP)
