import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kibble.errors import TokenizeError
from kibble.tokenize import (
    bounded_to_tokens,
    continuous_to_tokens,
    tokens_to_bounded,
    tokens_to_continuous,
)
from kibble.tokenize.continuous import reference_continuous_to_tokens as formula
from kibble.tokenize.vocab import CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS

HALF_BIN = 1.0 / NUM_CONTINUOUS_BINS  # half a bin in [-1, 1] units (bins are 2/1024 wide)


@pytest.mark.parametrize(
    ("value", "token"), [(0.0, 32512), (1.0, 32744), (-3.0, 32224), (256.0, 33023)]
)
def test_spec_observation_examples(value, token):
    assert continuous_to_tokens(np.array([value]))[0] == token


@pytest.mark.parametrize(("value", "token"), [(0.3, 32665), (-1.0, 32000), (1.0, 33023)])
def test_spec_action_examples(value, token):
    assert bounded_to_tokens(np.array([value]), -1.0, 1.0)[0] == token
    assert continuous_to_tokens(np.array([value]), mu_law=False)[0] == token


def test_shape_is_kept_and_order_is_row_major():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 12
    tokens = continuous_to_tokens(x)
    assert tokens.shape == (2, 3, 4)
    assert tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens.reshape(-1), continuous_to_tokens(x.reshape(-1)))


def test_matches_the_formula_across_chunks_and_at_bin_edges():
    rng = np.random.default_rng(1)
    # More values than one internal chunk, over the whole mu-law range and beyond.
    x = rng.standard_normal(200_003) * np.exp(rng.uniform(-8, 8, 200_003))
    np.testing.assert_array_equal(continuous_to_tokens(x), formula(x))
    edges = np.linspace(-1, 1, NUM_CONTINUOUS_BINS + 1)
    np.testing.assert_array_equal(continuous_to_tokens(edges, mu_law=False), formula(edges, False))


def test_infinities_go_to_the_end_bins():
    tokens = continuous_to_tokens(np.array([np.inf, -np.inf]))
    assert tokens.tolist() == [CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS - 1, CONTINUOUS_OFFSET]


def test_nan_raises_naming_its_index():
    x = np.zeros((3, 4))
    x[2, 1] = np.nan
    with pytest.raises(TokenizeError, match=r"NaN at index \(2, 1\)"):
        continuous_to_tokens(x)


def test_non_numeric_input_is_refused():
    with pytest.raises(TokenizeError, match="numeric"):
        continuous_to_tokens(np.array(["a"]))


def test_decoding_refuses_tokens_outside_the_continuous_range():
    with pytest.raises(TokenizeError, match=r"\[32000, 33024\)"):
        tokens_to_continuous(np.array([5]))


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=8), elements=finite))
def test_any_finite_input_gives_tokens_in_range(x):
    for mu_law in (True, False):
        tokens = continuous_to_tokens(x, mu_law=mu_law)
        assert tokens.shape == x.shape
        assert np.all((tokens >= CONTINUOUS_OFFSET) & (tokens < CONTINUOUS_OFFSET + 1024))
        np.testing.assert_array_equal(tokens, formula(x, mu_law))


@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(max_dims=2, max_side=8),
        elements=st.floats(allow_nan=False, allow_infinity=False, width=32),
    )
)
def test_float32_input_is_tokenized_as_its_float64_value(x):
    np.testing.assert_array_equal(continuous_to_tokens(x), formula(x.astype(np.float64)))


@st.composite
def bounded_actions(draw):
    n = draw(st.integers(1, 6))
    low = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n)))
    width = np.array(draw(st.lists(st.floats(1e-3, 1e3), min_size=n, max_size=n)))
    high = low + width
    frac = np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    return low + frac * (high - low), low, high


@given(bounded_actions())
def test_bounded_actions_round_trip_within_half_a_bin(case):
    a, low, high = case
    decoded = tokens_to_bounded(bounded_to_tokens(a, low, high), low, high)
    half_bin = (high - low) * HALF_BIN
    assert np.all(np.abs(decoded - a) <= half_bin * (1 + 1e-9) + 1e-12)


@given(hnp.arrays(np.float64, 16, elements=st.floats(-256, 256)))
def test_mu_law_round_trip_lands_in_the_same_bin(x):
    tokens = continuous_to_tokens(x)
    np.testing.assert_array_equal(continuous_to_tokens(tokens_to_continuous(tokens)), tokens)


@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=finite),
    st.data(),
)
def test_nan_anywhere_raises_naming_its_index(x, data):
    where = tuple(data.draw(st.integers(0, n - 1)) for n in x.shape)
    x[where] = np.nan
    with pytest.raises(TokenizeError, match=re.escape(f"NaN at index {where}")):
        continuous_to_tokens(x)
