import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kibble.errors import TokenizeError
from kibble.tokenize import discrete_to_tokens, tokens_to_discrete


@given(
    hnp.arrays(np.int64, hnp.array_shapes(max_dims=3, max_side=6), elements=st.integers(0, 1023))
)
def test_discrete_values_round_trip_exactly(x):
    tokens = discrete_to_tokens(x)
    assert tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens_to_discrete(tokens), x)


@pytest.mark.parametrize("bad", [-1, 1024, 5000])
def test_values_outside_0_1024_are_refused(bad):
    with pytest.raises(TokenizeError, match=r"\[0, 1024\)"):
        discrete_to_tokens(np.array([0, bad]), what="action")


def test_non_integer_floats_are_refused():
    with pytest.raises(TokenizeError, match="non-integer"):
        discrete_to_tokens(np.array([0.5]))
