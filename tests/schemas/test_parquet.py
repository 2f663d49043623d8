import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gymnasium import spaces

from kibble.errors import SchemaError
from kibble.pipelines.stages import tokenize_episode
from kibble.schemas import (
    RAW_EPISODE_SCHEMA,
    SCHEMA_VERSION,
    TOKENIZED_EPISODE_SCHEMA,
    Episode,
    EpisodeFileWriter,
    check_file,
    raw_episode_to_table,
    read_schema_version,
    tokenized_episode_to_table,
    validate_file,
    write_episode_tables,
)
from kibble.schemas.arrow import list_column_to_numpy
from kibble.schemas.parquet import WINDOW_TOKENS
from kibble.tokenize.episode import EpisodeTokenizer

OBS_SPACE = spaces.Dict(
    {"pixels": spaces.Box(0, 255, (20, 24, 3), np.uint8), "state": spaces.Box(-1, 1, (3,))}
)
ACT_SPACE = spaces.Tuple((spaces.Box(-1, 1, (2,)), spaces.Discrete(4)))


def make_episode(t: int, index: int = 0, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        task="test/pixels",
        episode_id=f"test/pixels#{index:06d}",
        observations={
            "pixels": rng.integers(0, 256, (t, 20, 24, 3), dtype=np.uint8),
            "state": rng.standard_normal((t, 3)),
        },
        actions=(rng.uniform(-1, 1, (t, 2)), rng.integers(0, 4, t)),
        rewards=rng.standard_normal(t),
        terminated=np.arange(t) == t - 1,
        truncated=np.zeros(t, bool),
    )


TOKENIZER = EpisodeTokenizer(OBS_SPACE, ACT_SPACE)


def tokenized_table(t: int, index: int = 0) -> pa.Table:
    return tokenized_episode_to_table(tokenize_episode(make_episode(t, index), TOKENIZER))


def test_tokenized_round_trip_with_pyarrow_and_duckdb(tmp_path):
    path = tmp_path / "part-00000.parquet"
    tables = [tokenized_table(7, 0), tokenized_table(3, 1)]
    write_episode_tables(path, tables, TOKENIZED_EPISODE_SCHEMA)

    expected = pa.concat_tables(tables)
    back = pq.read_table(path)
    assert back.equals(expected)
    via_duckdb = duckdb.sql(
        f"SELECT * FROM read_parquet('{path}') ORDER BY episode_id, step"
    ).to_arrow_table()
    assert via_duckdb.column_names == expected.column_names
    assert via_duckdb.to_pylist() == expected.to_pylist()


def test_tokenized_rows_hold_what_the_trainer_needs(tmp_path):
    episode = make_episode(5)
    steps = TOKENIZER.tokenize(episode.observations, episode.actions)
    table = tokenized_episode_to_table(tokenize_episode(episode, TOKENIZER))
    n_obs = 4 + 3  # 20x24 pads to 32x32: 2x2 patches, then 3 state values
    assert table["n_observation_tokens"].to_pylist() == [n_obs] * 5
    assert table["n_action_tokens"].to_pylist() == [3] * 5
    assert table["token_offset"].to_pylist() == [i * (n_obs + 1 + 3) for i in range(5)]
    np.testing.assert_array_equal(
        list_column_to_numpy(table["observation_tokens"]), steps.observation_tokens
    )
    # Pixels are stored as uint8 bytes, padded to multiples of 16, one entry per image.
    first = table["images"][0].as_py()
    assert len(first) == 1 and len(first[0]) == 32 * 32 * 3
    assert table["image_shapes"][0].as_py() == [[32, 32, 3]]
    pixels = np.frombuffer(first[0], np.uint8).reshape(32, 32, 3)
    np.testing.assert_array_equal(pixels[:20, :24], episode.observations["pixels"][0])
    assert table["episode_return"][0].as_py() == pytest.approx(episode.rewards.sum())
    assert table["terminated"].to_pylist() == [False] * 4 + [True]


def test_raw_episode_round_trip(tmp_path):
    episode = make_episode(6)
    path = tmp_path / "raw.parquet"
    write_episode_tables(
        path, raw_episode_to_table(episode, OBS_SPACE, ACT_SPACE), RAW_EPISODE_SCHEMA
    )
    back = pq.read_table(path)
    np.testing.assert_array_equal(
        list_column_to_numpy(back["observation"]), episode.observations["state"]
    )
    actions = list_column_to_numpy(back["action"])
    np.testing.assert_array_equal(actions[:, :2], episode.actions[0])
    np.testing.assert_array_equal(actions[:, 2], episode.actions[1])
    np.testing.assert_array_equal(back["reward"].to_numpy(), episode.rewards)
    raw_pixels = np.frombuffer(back["images"][2].as_py()[0], np.uint8).reshape(20, 24, 3)
    np.testing.assert_array_equal(raw_pixels, episode.observations["pixels"][2])


def test_schema_version_is_in_every_file(tmp_path):
    path = tmp_path / "x.parquet"
    write_episode_tables(path, tokenized_table(2), TOKENIZED_EPISODE_SCHEMA)
    assert read_schema_version(path) == SCHEMA_VERSION
    assert validate_file(path) == []
    check_file(path)


def test_validation_names_column_expected_and_found_types(tmp_path):
    table = tokenized_table(3)
    bad = (
        table.set_column(
            table.schema.get_field_index("action_tokens"),
            "action_tokens",
            table["action_tokens"].cast(pa.list_(pa.int64())),
        )
        .drop_columns(["reward"])
        .append_column("extra", pa.array([1, 2, 3]))
    )
    path = tmp_path / "bad.parquet"
    pq.write_table(bad, path)
    mismatches = {m.column: m for m in validate_file(path, TOKENIZED_EPISODE_SCHEMA)}
    assert str(mismatches["action_tokens"]) == (
        "action_tokens: expected list<item: int32>, found list<item: int64>"
    )
    assert mismatches["reward"].found == "no such column"
    assert mismatches["extra"].expected == "no such column"
    with pytest.raises(SchemaError, match="action_tokens: expected list<item: int32>"):
        check_file(path, TOKENIZED_EPISODE_SCHEMA)


def test_file_of_another_schema_version_is_named(tmp_path):
    table = tokenized_table(2)
    path = tmp_path / "old.parquet"
    metadata = {"kibble.schema": "tokenized_episode", "kibble.schema_version": "0"}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    (mismatch,) = validate_file(path, TOKENIZED_EPISODE_SCHEMA)
    assert str(mismatch) == f"metadata kibble.schema_version: expected {SCHEMA_VERSION}, found 0"


def test_files_that_are_not_kibble_parquet_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(SchemaError, match="not a readable Parquet file"):
        validate_file(junk)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    with pytest.raises(SchemaError, match="names no kibble schema"):
        validate_file(plain)


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    path = tmp_path / "out" / "part-00000.parquet"
    with pytest.raises(RuntimeError), EpisodeFileWriter(path, TOKENIZED_EPISODE_SCHEMA) as w:
        w.write(tokenized_table(3))
        raise RuntimeError("killed midway")
    assert list((tmp_path / "out").iterdir()) == []


def test_row_groups_hold_whole_windows_and_short_episodes_share_them(tmp_path):
    path = tmp_path / "groups.parquet"
    tables = [tokenized_table(40, i) for i in range(30)]
    write_episode_tables(path, tables, TOKENIZED_EPISODE_SCHEMA)
    meta = pq.ParquetFile(path).metadata
    tokens_per_step = tables[0]["n_observation_tokens"][0].as_py() + 1 + 3
    window_rows = -(-WINDOW_TOKENS // tokens_per_step)
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 1200
    assert 1 < len(sizes) < 30  # neither one group per episode nor one for all
    assert all(n >= window_rows for n in sizes[:-1])
    # A window is read from its row groups alone, columns chosen, without the rest.
    f = pq.ParquetFile(path)
    window = f.read_row_group(1, columns=["episode_id", "step", "action_tokens"])
    assert window.num_rows == sizes[1]


def test_a_failed_final_move_leaves_no_temporary_file(tmp_path):
    # The final name is taken by a non-empty directory, so moving the file there fails.
    path = tmp_path / "out" / "part.parquet"
    (path / "occupied").mkdir(parents=True)
    with pytest.raises(OSError), EpisodeFileWriter(path, TOKENIZED_EPISODE_SCHEMA) as writer:
        writer.write(tokenized_table(2))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["part.parquet"]
    assert path.is_dir()
