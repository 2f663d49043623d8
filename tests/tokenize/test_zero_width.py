"""Action Boxes at the edges of "bounded": zero-width elements and widths that overflow.

Gymnasium allows ``low == high`` (an element with one legal value); before, its rescale
divided 0/0 and a legal action failed with "cannot tokenize NaN". Bounds such as +-1e308
are finite, yet ``high - low`` overflows float64; they are tokenized as unbounded.
docs/format.md section 3 states both rules.
"""

import re

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from kibble.errors import TokenizeError
from kibble.tokenize import bounded_to_tokens, tokens_to_bounded
from kibble.tokenize.codecs import BoundedCodec, ContinuousCodec, leaf_codecs
from kibble.tokenize.continuous import finite_width
from kibble.tokenize.episode import SpaceTokenizer
from kibble.tokenize.vocab import CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS

MIDDLE = CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS // 2  # 32512: the bin of v = 0
ALL_TOKENS = np.arange(CONTINUOUS_OFFSET, CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS)


def test_a_zero_width_element_gets_the_middle_bin_and_decodes_to_its_constant():
    low, high = np.array([0.5, -1.0]), np.array([0.5, 1.0])
    tokens = bounded_to_tokens(np.array([[0.5, 0.3], [0.5, -1.0]]), low, high)
    assert tokens.tolist() == [[MIDDLE, 32665], [MIDDLE, 32000]]  # the other element as before
    # Whatever bin a model emits for it, the element decodes to its one value.
    pairs = np.stack([ALL_TOKENS, ALL_TOKENS], axis=1)
    decoded = tokens_to_bounded(pairs, low, high)
    assert np.all(decoded[:, 0] == 0.5)
    assert np.all(np.isfinite(decoded))


def test_the_other_elements_are_bit_identical_to_the_formula():
    rng = np.random.default_rng(0)
    low = np.array([-2.0, 3.0, 0.0, -1.0])
    high = np.array([2.0, 3.0, 0.0, 5.0])
    a = rng.uniform(low, high, size=(500, 4))
    a[:, [1, 2]] = low[[1, 2]]
    tokens = bounded_to_tokens(a, low, high)
    ok = [0, 3]
    np.testing.assert_array_equal(tokens[:, ok], bounded_to_tokens(a[:, ok], low[ok], high[ok]))
    assert np.all(tokens[:, [1, 2]] == MIDDLE)


def test_nan_in_a_zero_width_element_is_still_refused():
    with pytest.raises(TokenizeError, match="NaN"):
        bounded_to_tokens(np.array([np.nan, 0.0]), np.array([1.0, -1.0]), np.array([1.0, 1.0]))


def test_a_box_with_a_zero_width_dimension_round_trips_through_its_codec():
    space = spaces.Box(low=np.array([-1.0, 0.25, 0.0]), high=np.array([1.0, 0.25, 2.0]))
    (codec,) = leaf_codecs(space, "action")
    assert isinstance(codec, BoundedCodec)
    space.seed(3)
    actions = np.stack([space.sample() for _ in range(64)])
    assert np.all(actions[:, 1] == np.float32(0.25))  # Gymnasium samples the constant
    tokens = codec.encode(actions)  # before: "cannot tokenize NaN"
    assert np.all(tokens[:, 1] == MIDDLE)
    decoded = codec.decode(tokens)
    assert decoded.dtype == space.dtype
    assert all(space.contains(d) for d in decoded)
    assert np.all(decoded[:, 1] == np.float32(0.25))
    assert np.all(np.abs(decoded - actions) <= (space.high - space.low) / 2048 + 1e-6)


def test_an_integer_box_of_zero_width_decodes_to_its_integer():
    space = spaces.Box(low=np.array([7, 0]), high=np.array([7, 3]), dtype=np.int64)
    tokenizer = SpaceTokenizer(space, "action")
    actions = np.array([[7, 0], [7, 3], [7, 2]])
    decoded = tokenizer.leaves[0].decode(tokenizer.encode(actions))
    np.testing.assert_array_equal(decoded, actions)


@st.composite
def boxes_with_zero_widths(draw):
    """A float64 Box where some elements have low == high, and legal actions in it."""
    n = draw(st.integers(1, 6))
    low = np.array(draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)))
    zero = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    width = np.array(draw(st.lists(st.floats(1e-3, 1e6), min_size=n, max_size=n)))
    high = np.where(zero, low, low + width)
    t = draw(st.integers(1, 5))
    frac = np.array(draw(st.lists(st.floats(0, 1), min_size=n * t, max_size=n * t)))
    actions = np.clip(low + frac.reshape(t, n) * (high - low), low, high)
    return spaces.Box(low=low, high=high, dtype=np.float64), actions, zero


@settings(deadline=None, max_examples=200)
@given(boxes_with_zero_widths())
def test_round_trip_property(case):
    space, actions, zero = case
    (codec,) = leaf_codecs(space, "action")
    tokens = codec.encode(actions)
    assert tokens.min() >= CONTINUOUS_OFFSET and tokens.max() < CONTINUOUS_OFFSET + 1024
    assert np.all(tokens[:, zero] == MIDDLE)
    decoded = codec.decode(tokens)
    assert np.all(decoded[:, zero] == space.low[zero])  # exactly the constant
    half_bin = (space.high - space.low) / 2048
    assert np.all(np.abs(decoded - actions) <= half_bin * (1 + 1e-9) + 1e-9)
    np.testing.assert_array_equal(codec.encode(decoded)[:, zero], tokens[:, zero])


# --- widths that overflow float64 ------------------------------------------------------------


def test_bounds_whose_width_overflows_are_tokenized_as_unbounded():
    space = spaces.Box(low=-1e308, high=1e308, shape=(2,), dtype=np.float64)
    assert space.is_bounded("both")  # Gymnasium calls it bounded; its width is inf
    assert not finite_width(space.low, space.high).any()
    (codec,) = leaf_codecs(space, "action")
    assert isinstance(codec, ContinuousCodec)  # mu-law, like an unbounded Box
    actions = np.array([[0.0, 1.0], [-3.0, 256.0], [1e300, -1e300]])
    tokens = codec.encode(actions)  # before: every value fell in bin 0, or NaN for large ones
    assert tokens[:2].tolist() == [[32512, 32744], [32224, 33023]]  # format.md's examples
    decoded = codec.decode(tokens)
    assert np.all(np.isfinite(decoded)) and all(space.contains(d) for d in decoded)
    np.testing.assert_array_equal(codec.encode(decoded), tokens)


def test_one_overflowing_element_makes_the_whole_leaf_unbounded():
    """As for infinite bounds: "bounded" is a property of the whole leaf."""
    space = spaces.Box(low=np.array([0.0, -1e308]), high=np.array([0.0, 1e308]), dtype=np.float64)
    (codec,) = leaf_codecs(space, "action")
    assert isinstance(codec, ContinuousCodec)
    decoded = codec.decode(codec.encode(np.array([[0.0, 5.0]])))
    assert decoded[0, 0] == 0.0  # the zero-width element is still its constant (clipped)


def test_bounded_to_tokens_refuses_an_overflowing_width_naming_the_element():
    low = np.array([-1.0, -1e308])
    high = np.array([1.0, 1e308])
    with pytest.raises(TokenizeError, match=re.escape("at element (1,)")) as e:
        bounded_to_tokens(np.zeros((3, 2)), low, high)
    assert "overflow" in str(e.value) or "finite" in str(e.value)
    assert "NaN" not in str(e.value)
