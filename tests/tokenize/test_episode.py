import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from kibble.errors import TokenizeError
from kibble.tokenize import IMAGE_PATCH, SEPARATOR
from kibble.tokenize.episode import EpisodeTokenizer, SpaceTokenizer, loss_mask, timestep_sequence

T = 4


def batch(space: spaces.Space, t: int = T, seed: int = 0):
    """t samples of ``space`` stacked along a leading axis, nested like the space."""
    space.seed(seed)
    samples = [space.sample() for _ in range(t)]

    def stack(values, sp):
        if isinstance(sp, spaces.Dict):
            return {k: stack([v[k] for v in values], sp[k]) for k in sp.spaces}
        if isinstance(sp, spaces.Tuple):
            return tuple(stack([v[i] for v in values], s) for i, s in enumerate(sp.spaces))
        return np.stack(values)

    return stack(samples, space)


def test_timestep_layout_is_observation_separator_action():
    tok = EpisodeTokenizer(spaces.Box(-5, 5, (2,)), spaces.Discrete(3))
    steps = tok.tokenize(np.array([[0.0, 1.0], [-3.0, 0.0]]), np.array([2, 0]))
    assert timestep_sequence(steps).tolist() == [
        32512, 32744, SEPARATOR, 2,
        32224, 32512, SEPARATOR, 0,
    ]  # fmt: skip
    assert loss_mask(steps).tolist() == [False, False, False, True] * 2


def test_dict_observations_are_ordered_by_key():
    space = spaces.Dict({"b": spaces.Box(-1, 1, (1,)), "a": spaces.Discrete(5)})
    tok = SpaceTokenizer(space, "observation")
    tokens = tok.encode({"b": np.array([[0.0]]), "a": np.array([4])})
    assert tokens.tolist() == [[4, 32512]]  # "a" first, then "b"


def test_bounded_and_unbounded_action_boxes():
    bounded = SpaceTokenizer(spaces.Box(-2, 2, (1,)), "action")
    assert bounded.encode(np.array([[0.6]])).tolist() == [[32665]]  # 0.6 in [-2, 2] is 0.3
    unbounded = SpaceTokenizer(spaces.Box(-np.inf, np.inf, (1,)), "action")
    assert unbounded.encode(np.array([[1.0]])).tolist() == [[32744]]  # mu-law


def test_observations_are_always_mu_law_even_when_bounded():
    tok = SpaceTokenizer(spaces.Box(-1, 1, (1,)), "observation")
    assert tok.encode(np.array([[1.0]])).tolist() == [[32744]]


@pytest.mark.parametrize(
    "space",
    [
        spaces.Discrete(7),
        spaces.Discrete(5, start=-2),
        spaces.MultiDiscrete([3, 1024, 2]),
        spaces.MultiBinary(6),
        spaces.MultiBinary((2, 3)),
        spaces.Box(-3, 3, (2, 2), np.float32),
        spaces.Box(-np.inf, np.inf, (3,), np.float64),
        spaces.Dict({"x": spaces.Box(-1, 1, (2,)), "k": spaces.MultiBinary(3)}),
        spaces.Tuple((spaces.Discrete(4), spaces.Box(0, 10, (1,)))),
    ],
    ids=repr,
)
def test_actions_decode_to_values_the_space_accepts(space):
    tok = SpaceTokenizer(space, "action")
    actions = batch(space)
    tokens = tok.encode(actions)
    assert tokens.shape == (T, tok.n_tokens)
    for t in range(T):
        decoded = tok.decode(tokens[t])
        assert space.contains(decoded), f"{decoded!r} not in {space}"
    # Discrete parts round-trip exactly.
    if isinstance(space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary):
        np.testing.assert_array_equal(tok.decode(tokens), actions)


def test_image_observations_become_patch_placeholders_and_padded_pixels():
    space = spaces.Dict(
        {"pixels": spaces.Box(0, 255, (84, 84, 3), np.uint8), "state": spaces.Box(-1, 1, (2,))}
    )
    tok = EpisodeTokenizer(space, spaces.Discrete(2))
    obs = batch(space)
    steps = tok.tokenize(obs, np.zeros(T, np.int64))
    assert tok.n_observation_tokens == 36 + 2
    assert np.all(steps.observation_tokens[:, :36] == IMAGE_PATCH)  # "pixels" < "state"
    assert len(steps.images) == 1 and steps.images[0].shape == (T, 96, 96, 3)
    np.testing.assert_array_equal(steps.images[0][:, :84, :84], obs["pixels"])


def test_grayscale_image_space_without_channel_axis():
    tok = SpaceTokenizer(spaces.Box(0, 255, (32, 32), np.uint8), "observation")
    obs = np.zeros((T, 32, 32), np.uint8)
    assert tok.encode(obs).shape == (T, 4)
    assert tok.images(obs)[0].shape == (T, 32, 32, 1)


def test_nan_error_names_the_key_and_timestep():
    space = spaces.Dict({"state": spaces.Box(-1, 1, (3,))})
    obs = {"state": np.zeros((5, 3))}
    obs["state"][3, 2] = np.nan
    with pytest.raises(
        TokenizeError, match=r"observation\['state'\] is NaN at timestep 3, element \(2,\)"
    ):
        SpaceTokenizer(space, "observation").encode(obs)


def test_discrete_space_too_large_is_an_error_naming_the_space():
    with pytest.raises(TokenizeError, match=r"Discrete\(2000\)"):
        SpaceTokenizer(spaces.Discrete(2000), "action")


def test_unsupported_space_is_named():
    with pytest.raises(TokenizeError, match="Sequence"):
        SpaceTokenizer(spaces.Sequence(spaces.Discrete(2)), "observation")


def test_image_action_is_refused():
    with pytest.raises(TokenizeError, match="image cannot be an action"):
        SpaceTokenizer(spaces.Box(0, 255, (16, 16, 3), np.uint8), "action")


def test_wrong_batch_shape_is_named():
    tok = SpaceTokenizer(spaces.Box(-1, 1, (3,)), "observation")
    with pytest.raises(TokenizeError, match=r"expected a batch of shape \(T, 3\)"):
        tok.encode(np.zeros((4, 2)))


def test_cartpole_episode_round_trips_actions():
    env = gym.make("CartPole-v1")
    tok = EpisodeTokenizer(env.observation_space, env.action_space)
    obs, _ = env.reset(seed=0)
    observations, actions = [], []
    for _ in range(50):
        a = int(env.action_space.sample())
        observations.append(obs)
        actions.append(a)
        obs, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            break
    steps = tok.tokenize(np.stack(observations), np.array(actions))
    assert tok.tokens_per_timestep == 6
    assert tok.decode_action(steps.action_tokens).tolist() == actions


def test_decoded_actions_stay_in_the_space_whatever_the_tokens():
    # A model may emit any id in a leaf's range; decoding must give a valid action.
    discrete = SpaceTokenizer(spaces.Discrete(3, start=-1), "action")
    assert discrete.decode(np.array([1000])) == 1  # clipped to the last value, 1
    binary = SpaceTokenizer(spaces.MultiBinary(2), "action")
    assert binary.decode(np.array([5, 0])).tolist() == [1, 0]
    half_bounded = SpaceTokenizer(spaces.Box(0, np.inf, (1,)), "action")
    assert half_bounded.decode(np.array([32000]))[0] == 0.0
    integer_box = SpaceTokenizer(spaces.Box(0, 10, (3,), np.int64), "action")
    tokens = integer_box.encode(np.array([[0, 5, 10]]))
    assert integer_box.decode(tokens[0]).tolist() == [0, 5, 10]
