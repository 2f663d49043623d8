import json
import shutil
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from kibble.errors import KibbleError
from kibble.tokenize.vocab import IMAGE_PATCH, SEPARATOR
from kibble.trainer.config import DatasetSpec, MixtureConfig
from kibble.trainer.mixture_data import MixtureData, TaskInfo


def mixture(*paths, **kw) -> MixtureConfig:
    return MixtureConfig(datasets=[DatasetSpec(str(p)) for p in paths], **kw)


def rewrite(path, table, **kw) -> None:
    """Write ``table`` over a dataset's data file and record its new size in the manifest
    (as curating it so would): the loader checks sizes and rows against the manifest."""
    pq.write_table(table, path, **kw)
    root = path.parents[2]
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest["files"]:
        if root / entry["path"] == path:
            entry["bytes"], entry["rows"] = path.stat().st_size, table.num_rows
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_windows_are_timestep_aligned_and_train_only_on_actions(cartpole_dataset):
    data = MixtureData(mixture(cartpole_dataset, context=64, prompt_fraction=0.0))
    (task,) = data.tasks
    k = task.tokens_per_step  # CartPole: 4 obs + separator + 1 action
    assert (task.n_observation_tokens, task.n_action_tokens) == (4, 1)
    for _ in range(20):
        seq, t, _ = data.sample_sequence()
        assert t == 0
        n = len(seq)
        assert n % k == 0 and n <= 64
        tokens = seq.tokens.reshape(-1, k)
        assert (tokens[:, 4] == SEPARATOR).all()
        assert np.isin(tokens[:, 5], [0, 1]).all()  # CartPole's actions
        assert ((tokens[:, :4] >= 32000) & (tokens[:, :4] < 33024)).all()
        assert (seq.loss_mask.reshape(-1, k) == [0, 0, 0, 0, 0, 1]).all()
        assert (seq.observation_position.reshape(-1, k) == [1, 2, 3, 4, 0, 0]).all()
        assert (seq.action_position.reshape(-1, k) == [0, 0, 0, 0, 0, 1]).all()


def test_windows_match_the_stored_episode(cartpole_dataset):
    data = MixtureData(mixture(cartpole_dataset, context=60, prompt_fraction=0.0))
    table = pq.read_table(next((cartpole_dataset / "data").rglob("*.parquet")))
    rows = {
        (r["episode_id"], r["step"]): r["observation_tokens"] + [SEPARATOR] + r["action_tokens"]
        for r in table.to_pylist()
    }
    stream = {}
    for ep_id in table["episode_id"].unique().to_pylist():
        steps = sorted(s for e, s in rows if e == ep_id)
        stream[ep_id] = [tok for s in steps for tok in rows[(ep_id, s)]]
    for _ in range(10):
        seq, _, _ = data.sample_sequence()
        # Every window is a contiguous piece of one episode's token stream.
        assert any(_contains(episode, seq.tokens.tolist()) for episode in stream.values()), (
            "a window that is not a slice of an episode"
        )


def _contains(haystack: list, needle: list) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(0, len(haystack) - n + 1, 6))


def test_a_quarter_of_sequences_are_prompted_half_from_the_end(cartpole_dataset):
    data = MixtureData(mixture(cartpole_dataset, context=120))
    kinds = Counter(data.sample_sequence()[2] for _ in range(1000))
    assert 0.21 < (kinds["end"] + kinds["uniform"]) / 1000 < 0.29
    assert 0.35 < kinds["end"] / (kinds["end"] + kinds["uniform"]) < 0.65


def test_a_prompt_from_the_end_is_an_episode_end(cartpole_dataset):
    data = MixtureData(mixture(cartpole_dataset, context=60, prompt_fraction=1.0))
    seq, _, kind = data.sample_sequence()
    while kind != "end":
        seq, _, kind = data.sample_sequence()
    prompt = seq.tokens[:30].reshape(5, 6)  # 10 timesteps fit: 5 of prompt, 5 of window
    ends = set()
    for ep in range(data.num_episodes):
        length = int(data.episodes[0].length[ep])
        steps = data.episode_steps(0, ep, max(0, length - 5), length)
        ends.add(steps.observation_tokens.tobytes())
    assert prompt[:, :4].astype(np.int32).tobytes() in ends


def test_image_patches_fill_the_placeholders(procgen_dataset):
    context = 18 * 4  # coinrun: 16 patches + separator + 1 action per timestep
    data = MixtureData(mixture(procgen_dataset, context=context, prompt_fraction=0.0))
    batch = data.sample_batch(3)
    placeholders = np.flatnonzero(batch.tokens.reshape(-1) == IMAGE_PATCH)
    assert len(placeholders) == len(batch.patches) > 0
    assert (batch.patch_index == placeholders).all()
    assert batch.patches.shape[1:] == (16, 16, 3) and batch.patches.dtype == np.uint8
    assert (batch.patch_rows[:, 0] < batch.patch_rows[:, 1]).all()
    assert batch.patch_rows.max() <= 128 and batch.patch_cols.max() <= 128


def _stored_patches(dataset) -> list[list[bytes]]:
    """Per stored episode, the patches of its frames in step order, decoded from the Parquet
    files without the trainer: each 64x64x3 frame cut into 16 patches of 16x16 in raster
    order. The batch carries them as the stored uint8 pixels (the model normalizes them)."""
    episodes: dict[str, dict[int, list[bytes]]] = {}
    for path in sorted((dataset / "data").rglob("*.parquet")):
        table = pq.read_table(path, columns=["episode_id", "step", "images", "image_shapes"])
        for row in table.to_pylist():
            (image,), (shape,) = row["images"], row["image_shapes"]
            assert shape == [64, 64, 3]
            frame = np.frombuffer(image, np.uint8).reshape(64, 64, 3)
            patches = [frame[r : r + 16, c : c + 16].tobytes() for r in range(0, 64, 16)
                       for c in range(0, 64, 16)]  # fmt: skip
            episodes.setdefault(row["episode_id"], {})[row["step"]] = patches
    return [[p for step in sorted(e) for p in e[step]] for e in episodes.values()]


def test_image_patches_are_the_stored_pixels_in_order(procgen_dataset):
    context = 18 * 4
    data = MixtureData(mixture(procgen_dataset, context=context, prompt_fraction=0.0))
    stored = _stored_patches(procgen_dataset)
    assert len({p for episode in stored for p in episode}) > 16  # frames differ
    batch = data.sample_batch(8)
    row_of_patch = batch.patch_index // context
    for i in range(8):
        window = [p.tobytes() for p in batch.patches[row_of_patch == i]]
        assert window and len(window) % 16 == 0
        # The window's patches are the stored frames of consecutive timesteps of one episode.
        assert any(
            episode[s : s + len(window)] == window
            for episode in stored
            for s in range(0, len(episode) - len(window) + 1, 16)
        ), f"sequence {i}: its patches are not the stored frames of consecutive timesteps"


def _with_small_row_groups(dataset, out, rows_per_group: int):
    """A copy of ``dataset`` whose data files hold ``rows_per_group`` rows per row group."""
    shutil.copytree(dataset, out)
    for path in (out / "data").rglob("*.parquet"):
        rewrite(path, pq.read_table(path), row_group_size=rows_per_group)
    return out


def test_the_row_group_cache_is_a_bounded_lru(cartpole_dataset, tmp_path):
    copy = _with_small_row_groups(cartpole_dataset, tmp_path / "small_groups", 10)
    data = MixtureData(mixture(copy, context=64, cache_row_groups=2))
    starts = data.files[0].group_starts
    assert len(starts) - 1 >= 4  # several row groups to evict between
    reads = []
    read_group = data.files[0].read_group
    data.files[0].read_group = lambda g, columns: reads.append(g) or read_group(g, columns)
    for g in [0, 1, 0, 2, 0, 1]:  # capacity 2: group 2 evicts 1 (least recently used), not 0
        data.read_steps(0, int(starts[g]), int(starts[g]) + 1)
        assert len(data._cache) <= 2
    assert reads == [0, 1, 2, 1]
    # Sampling across many groups keeps at most two decoded, and evicted groups read right.
    table = pq.read_table(data.files[0].url, columns=["observation_tokens"])
    for _ in range(50):
        data.sample_sequence()
        assert len(data._cache) <= 2
    assert len(set(reads)) > 2
    steps = data.read_steps(0, 0, int(starts[-1]))
    assert steps.observation_tokens.tolist() == table["observation_tokens"].to_pylist()


def test_same_seed_same_batches(cartpole_dataset):
    a = MixtureData(mixture(cartpole_dataset, context=64, seed=3)).sample_batch(4)
    b = MixtureData(mixture(cartpole_dataset, context=64, seed=3)).sample_batch(4)
    assert (a.tokens == b.tokens).all() and (a.loss_mask == b.loss_mask).all()


def test_a_path_that_is_not_a_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # Nothing there: most often a dataset not made yet; a relative path shows where it is.
    with pytest.raises(KibbleError, match=r"^no dataset at nothing \(/.*/nothing\).*pipeline run"):
        MixtureData(mixture("nothing"))
    (tmp_path / "empty").mkdir()  # something there, but no manifest: not (yet) a dataset
    with pytest.raises(KibbleError, match=r"has no manifest\.json"):
        MixtureData(mixture(tmp_path / "empty"))


def test_files_of_another_schema_version_are_named(cartpole_dataset, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(cartpole_dataset, copy)
    path = next((copy / "data").rglob("*.parquet"))
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"kibble.schema_version"] = b"0"
    rewrite(path, table.replace_schema_metadata(meta))
    with pytest.raises(KibbleError, match=rf"{path.name}.*schema version '0'"):
        MixtureData(mixture(copy))


def test_a_corrupt_parquet_file_is_named(cartpole_dataset, tmp_path):
    copy = tmp_path / "corrupt"
    shutil.copytree(cartpole_dataset, copy)
    path = next((copy / "data").rglob("*.parquet"))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(KibbleError, match=path.name):
        MixtureData(mixture(copy))


def test_tasks_whose_spaces_disagree_are_an_error(cartpole_dataset, tmp_path):
    # Another dataset claiming the same task with a different observation size.
    copy = tmp_path / "other"
    shutil.copytree(cartpole_dataset, copy)
    path = next((copy / "data").rglob("*.parquet"))
    table = pq.read_table(path)
    n_obs = table.column("n_observation_tokens").to_numpy() + 1
    table = table.set_column(
        table.schema.get_field_index("n_observation_tokens"),
        table.schema.field("n_observation_tokens"),
        [n_obs.astype(np.int32)],
    )
    rewrite(path, table)
    with pytest.raises(KibbleError, match="spaces disagree"):
        MixtureData(mixture(cartpole_dataset, copy))


def test_a_dataset_with_no_kept_episodes_is_an_error(cartpole_dataset, tmp_path):
    copy = tmp_path / "empty"
    shutil.copytree(cartpole_dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for f in manifest["files"]:
        f["rows"] = 0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KibbleError, match="no kept episodes"):
        MixtureData(mixture(copy))


def test_a_timestep_longer_than_the_context_is_an_error(procgen_dataset):
    with pytest.raises(KibbleError, match="more than the context"):
        MixtureData(mixture(procgen_dataset, context=10))


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """One dataset, two tasks of very different sizes: 20 timesteps against about 700."""
    from kibble.pipelines.in_process import curate_tasks
    from kibble.pipelines.stages import TaskJob

    out = tmp_path_factory.mktemp("two") / "two"
    jobs = [
        TaskJob("gym/CartPole-v1", "random", 30),
        TaskJob("gym/Pendulum-v1", "random", 1, max_steps=20),
    ]
    curate_tasks("two", jobs, out, fraction=0.05)
    return out


def pendulum_share(dataset, n: int = 600, **kw) -> float:
    data = MixtureData(mixture(dataset, context=48, prompt_fraction=0.0, **kw))
    names = Counter(data.tasks[data.sample_sequence()[1]].task for _ in range(n))
    return names["gym/Pendulum-v1"] / n


def test_sampling_by_tasks_gives_each_task_an_equal_share(two_tasks):
    assert pendulum_share(two_tasks, sampling="timesteps") < 0.1  # a share that follows size
    assert 0.42 < pendulum_share(two_tasks, sampling="tasks") < 0.58  # an equal share


def test_task_weights_multiply_a_tasks_share(two_tasks):
    weights = {"gym/Pendulum-v1": 3.0}
    assert 0.68 < pendulum_share(two_tasks, sampling="tasks", task_weights=weights) < 0.82
    cartpole_steps = MixtureData(mixture(two_tasks)).num_steps - 20
    # By timesteps: 20 Pendulum steps weighing as much as all of CartPole's.
    weights = {"gym/Pendulum-v1": cartpole_steps / 20}
    assert 0.42 < pendulum_share(two_tasks, sampling="timesteps", task_weights=weights) < 0.58


def test_a_task_weight_for_a_task_not_in_the_mixture_is_an_error(two_tasks):
    with pytest.raises(KibbleError, match=r"task_weights: gym/Acrobot-v1 is not in .* gym/Pend"):
        MixtureData(mixture(two_tasks, task_weights={"gym/Acrobot-v1": 2.0}))


@pytest.mark.parametrize("raw", [{"gym/CartPole-v1": 0}, {"gym/CartPole-v1": "x"}, [1.0]])
def test_a_bad_task_weight_is_a_clear_error(raw):
    from kibble.trainer.config import parse_mixture

    with pytest.raises(KibbleError, match=r"m\.yaml: task_weights.*expected"):
        parse_mixture({"datasets": ["d"], "task_weights": raw}, "m.yaml")


def test_a_runs_task_records_read_back_as_typed_records(cartpole_dataset):
    """``tasks.json`` holds each TaskInfo's dict in its field order; evaluation reads them
    back as TaskInfo, and an entry that lacks a field is a clear error."""
    (info,) = MixtureData(mixture(cartpole_dataset)).tasks
    d = info.to_dict()
    assert list(d) == [
        "task", "dataset", "n_observation_tokens", "n_action_tokens", "expert_return",
        "random_return", "text_model",
    ]  # fmt: skip
    assert TaskInfo.from_dict(json.loads(json.dumps(d))) == info
    with pytest.raises(KibbleError, match="lacks n_action_tokens"):
        TaskInfo.from_dict({k: v for k, v in d.items() if k != "n_action_tokens"})
