"""Raw values beside tokens: space descriptions, flatten/unflatten, the Parquet round trip."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from gymnasium import spaces

from kibble.errors import KibbleError, SchemaError
from kibble.pipelines.stages import tokenize_episode
from kibble.schemas import (
    SCHEMA_VERSION,
    TOKENIZED_EPISODE_SCHEMA,
    Episode,
    EpisodeFileWriter,
    tokenized_episode_to_table,
    write_episode_tables,
)
from kibble.schemas.layout import check_schema_version
from kibble.schemas.raw_values import (
    as_native,
    describe_space,
    flatten,
    space_from_description,
    table_values,
    unflatten,
)
from kibble.tokenize.episode import EpisodeTokenizer

# Every kind of leaf, nested: a padded RGB image, a grayscale (H, W) image, text, a
# half-bounded float32 Box, an int Box, Discrete with a start, MultiDiscrete, MultiBinary.
OBS_SPACE = spaces.Dict(
    {
        "pixels": spaces.Box(0, 255, (20, 24, 3), np.uint8),
        "gray": spaces.Box(0, 255, (17, 16), np.uint8),
        "mission": spaces.Text(20, min_length=1, charset="abcdefgh "),
        "state": spaces.Box(np.array([-1.0, 0.0, -np.inf], np.float32), np.inf, (3,), np.float32),
        "grid": spaces.MultiDiscrete(np.array([[3, 4], [5, 6]]), dtype=np.uint8),
        "nested": spaces.Tuple((spaces.Discrete(5, start=-2), spaces.Box(-10, 10, (2,), np.int32))),
        "bits": spaces.MultiBinary(3),
    }
)
ACT_SPACE = spaces.Tuple(
    (spaces.Box(-1, 1, (2,), np.float32), spaces.Discrete(4), spaces.Box(-np.inf, np.inf, (1,)))
)


def batch(space: spaces.Space, t: int, seed: int = 0):
    """T samples of ``space`` stacked like an episode (leading T axis)."""
    space.seed(seed)
    samples = [space.sample() for _ in range(t)]

    def stack(values, s):
        if isinstance(s, spaces.Dict):
            return {k: stack([v[k] for v in values], s[k]) for k in s.spaces}
        if isinstance(s, spaces.Tuple):
            return tuple(stack([v[i] for v in values], x) for i, x in enumerate(s.spaces))
        if isinstance(s, spaces.Text):
            mission = values[0]  # one mission an episode, as BabyAI
            return np.array([mission] * len(values))
        return np.stack(values)

    return stack(samples, space)


def leaves(value, path=()):
    if isinstance(value, dict):
        return {p: v for k in value for p, v in leaves(value[k], (*path, k)).items()}
    if isinstance(value, tuple):
        return {p: v for i, x in enumerate(value) for p, v in leaves(x, (*path, i)).items()}
    return {path: value}


def assert_same_leaves(a, b):
    la, lb = leaves(a), leaves(b)
    assert la.keys() == lb.keys()
    for path, x in la.items():
        y = np.asarray(lb[path])
        x = np.asarray(x)
        assert x.dtype == y.dtype or x.dtype.kind in "OU", (path, x.dtype, y.dtype)
        assert x.shape == y.shape, (path, x.shape, y.shape)
        assert (x == y).all(), path


def test_a_description_is_strict_json_and_rebuilds_the_space():
    for space, role in ((OBS_SPACE, "observation"), (ACT_SPACE, "action")):
        text = json.dumps(describe_space(space, role), allow_nan=False)  # no Infinity
        assert space_from_description(json.loads(text)) == space


def test_a_description_lists_the_leaves_in_token_order_and_where_they_are():
    d = describe_space(OBS_SPACE)
    by_path = {tuple(leaf["path"]): leaf for leaf in d["leaves"]}
    assert [tuple(leaf["path"]) for leaf in d["leaves"]] == [
        ("bits",), ("gray",), ("grid",), ("mission",), ("nested", 0), ("nested", 1),
        ("pixels",), ("state",),
    ]  # fmt: skip
    assert by_path[("gray",)] == {"path": ["gray"], "kind": "image", "dtype": "uint8",
                                  "shape": [17, 16], "column": "images", "index": 0}  # fmt: skip
    assert by_path[("pixels",)]["index"] == 1
    assert by_path[("mission",)]["column"] == "texts"
    assert by_path[("grid",)] == {"path": ["grid"], "kind": "discrete", "dtype": "uint8",
                                  "shape": [2, 2], "column": "observation", "offset": 3,
                                  "size": 4}  # fmt: skip
    assert d["size"] == 3 + 4 + 1 + 2 + 3
    assert d["space"]["spaces"]["state"]["low"] == [-1.0, 0.0, "-inf"]
    assert d["space"]["spaces"]["state"]["high"] == "inf"
    assert d["space"]["spaces"]["pixels"]["image"] is True
    kinds = [leaf["kind"] for leaf in describe_space(ACT_SPACE, "action")["leaves"]]
    assert kinds == ["bounded", "discrete", "continuous"]


def test_flatten_then_unflatten_gives_back_every_leaf_with_its_dtype():
    obs, act = batch(OBS_SPACE, 5), batch(ACT_SPACE, 5, seed=1)
    tok = EpisodeTokenizer(OBS_SPACE, ACT_SPACE)
    d_obs, d_act = describe_space(OBS_SPACE), describe_space(ACT_SPACE, "action")
    flat, texts = flatten(obs, OBS_SPACE, "observation")
    assert flat.shape == (5, d_obs["size"]) and flat.dtype == np.float64
    assert texts.shape == (5, 1)
    images = tok.observation.images(obs)  # as stored: padded to multiples of 16
    assert images[0].shape == (5, 32, 16, 1)
    assert_same_leaves(unflatten(flat, d_obs, images, list(texts.T)), obs)
    act_flat, _ = flatten(act, ACT_SPACE, "action")
    assert_same_leaves(unflatten(act_flat, d_act), act)
    # One step: no leading axis.
    one = unflatten(flat[2], d_obs, [img[2] for img in images], [texts[2, 0]])
    assert_same_leaves(one, {k: (v[2] if not isinstance(v, tuple) else tuple(x[2] for x in v))
                             for k, v in obs.items()})  # fmt: skip
    # Not given: image and text leaves are None.
    assert unflatten(flat, d_obs)["pixels"] is None


def test_as_native_casts_to_the_space_dtype_and_leaves_non_integers_to_the_tokenizer():
    act = (np.array([[0.1, 0.2]]), np.array([3.0]), np.array([[1e-40]]))
    native = as_native(act, ACT_SPACE)
    assert native[0].dtype == np.float32 and native[1].dtype == np.int64
    assert native[2].dtype == np.float32  # a float64 Box would have stayed float64
    kept = as_native((act[0], np.array([2.5]), act[2]), ACT_SPACE)[1]
    assert kept.dtype == np.float64  # 2.5 is no Discrete value: not silently truncated


def test_integers_float64_cannot_hold_exactly_are_refused():
    space = spaces.Box(-(2**62), 2**62, (1,), np.int64)
    with pytest.raises(SchemaError, match=r"2\*\*53.*raw_values: false"):
        flatten(np.array([[2**60]]), space, "observation")


def test_flat_values_of_the_wrong_size_say_raw_values_may_be_off():
    with pytest.raises(SchemaError, match="without raw values"):
        unflatten(np.zeros((3, 0)), describe_space(OBS_SPACE))


def episode(t: int, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        task="test/all",
        episode_id=f"test/all#{seed:06d}",
        observations=batch(OBS_SPACE, t, seed),
        # float64 actions for a float32 Box, as many policies give them.
        actions=(rng.uniform(-1, 1, (t, 2)), rng.integers(0, 4, t), rng.normal(size=(t, 1))),
        rewards=rng.standard_normal(t),
        terminated=np.arange(t) == t - 1,
        truncated=np.zeros(t, bool),
    )


@pytest.mark.parametrize("raw_values", [True, False])
def test_parquet_round_trip_retokenizes_bit_for_bit(tmp_path, raw_values):
    tok = EpisodeTokenizer(OBS_SPACE, ACT_SPACE)
    path = tmp_path / "part-00000.parquet"
    episodes = [tokenize_episode(episode(t, i), tok, raw_values) for i, t in enumerate((6, 3))]
    write_episode_tables(path, [tokenized_episode_to_table(e) for e in episodes],
                         TOKENIZED_EPISODE_SCHEMA)  # fmt: skip
    table = pq.read_table(path)
    d_obs, d_act = describe_space(OBS_SPACE), describe_space(ACT_SPACE, "action")
    for i, e in enumerate(episodes):
        rows = table.filter(table["episode_id"].to_numpy(zero_copy_only=False) == e.episode_id)
        if not raw_values:
            assert rows["observation"].to_pylist() == [[]] * e.length
            assert rows["texts"].to_pylist() == [[]] * e.length
            with pytest.raises(SchemaError, match="curated without raw values"):
                table_values(rows, d_obs, d_act)
            continue
        obs, act = table_values(rows, d_obs, d_act)
        again = tok.tokenize(obs, act)
        assert (again.observation_tokens == e.steps.observation_tokens).all()
        assert (again.action_tokens == e.steps.action_tokens).all()
        assert all((a == b).all() for a, b in zip(again.images, e.steps.images, strict=True))
        source = episode(e.length, i)
        # The raw values are the episode's own, in the space's dtype.
        assert_same_leaves(obs, as_native(source.observations, OBS_SPACE))
        assert_same_leaves(act, as_native(source.actions, ACT_SPACE))


def test_an_older_schema_version_says_to_rebuild_the_dataset():
    assert SCHEMA_VERSION == "2"
    check_schema_version("2", "x")
    with pytest.raises(KibbleError, match=r"'1': an older kibble.*kibble pipeline run"):
        check_schema_version("1", "ds/manifest.json")
    with pytest.raises(KibbleError, match=r"'3': a newer kibble"):
        check_schema_version(3, "ds/manifest.json")
    with pytest.raises(KibbleError, match="no kibble writes"):
        check_schema_version(None, "ds/data/part-00000.parquet")


def test_each_file_picks_the_smallest_encoding_for_its_raw_columns(tmp_path):
    rng = np.random.default_rng(0)
    t = 600
    state = EpisodeTokenizer(spaces.Box(-5, 5, (6,)), spaces.Discrete(3))
    grid = EpisodeTokenizer(spaces.MultiDiscrete(np.full(40, 6)), spaces.Discrete(3))
    cases = {
        # float32 state: four of float64's eight byte streams are zeros.
        "byte_stream_split": (state, rng.normal(size=(t, 6)).astype(np.float32)),
        # small integers out of a handful of values: a dictionary.
        "dictionary": (grid, rng.integers(0, 6, (t, 40))),
    }
    for expected, (tok, obs) in cases.items():
        e = Episode("test/x", "test/x#000000", obs, rng.integers(0, 3, t), np.zeros(t),
                    np.zeros(t, bool), np.zeros(t, bool))  # fmt: skip
        path = tmp_path / f"{expected}.parquet"
        with EpisodeFileWriter(path, TOKENIZED_EPISODE_SCHEMA) as writer:
            writer.write(tokenized_episode_to_table(tokenize_episode(e, tok)))
        assert writer.encodings["observation"] == expected
        column = (
            pq.ParquetFile(path)
            .metadata.row_group(0)
            .column(TOKENIZED_EPISODE_SCHEMA.names.index("observation"))
        )
        assert column.path_in_schema == "observation.list.element"
        wanted = "BYTE_STREAM_SPLIT" if expected == "byte_stream_split" else "RLE_DICTIONARY"
        assert wanted in column.encodings
