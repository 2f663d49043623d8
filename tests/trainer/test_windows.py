"""``Dataset.to_torch``: the trainer's window sampler as a torch dataset, through a DataLoader."""

import itertools

import pytest
import torch
from torch.utils.data import DataLoader

import kibble
from kibble.errors import KibbleError
from kibble.tokenize.vocab import IMAGE_PATCH, SEPARATOR
from kibble.trainer.config import DatasetSpec, MixtureConfig, ModelConfig
from kibble.trainer.mixture_data import MixtureData
from kibble.trainer.model import Gato
from kibble.trainer.windows import WindowDataset


def test_a_dataloader_gives_the_trainers_batches(cartpole_dataset):
    windows = kibble.open_dataset(cartpole_dataset).to_torch(context=60, seed=3, num_samples=10)
    assert isinstance(windows, torch.utils.data.IterableDataset) and len(windows) == 10
    batches = list(DataLoader(windows, batch_size=4, collate_fn=windows.collate))
    assert [len(b["tokens"]) for b in batches] == [4, 4, 2]
    first = batches[0]
    assert first["tokens"].shape == first["loss_mask"].shape == (4, 60)
    assert first["tokens"].dtype == torch.int64 and first["loss_mask"].dtype == torch.bool
    assert first["task_index"].tolist() == [0] * 4 and windows.tasks == ["gym/CartPole-v1"]
    tokens = first["tokens"][:, : first["lengths"].min()].reshape(4, -1, 6)  # CartPole: 6 a step
    assert (tokens[:, :, 4] == SEPARATOR).all()
    # The same windows the trainer draws with the same seed: one sampler, not two.
    config = MixtureConfig([DatasetSpec(str(cartpole_dataset))], context=60, seed=3)
    trainer = MixtureData(config).sample_batch(4).to_torch()
    assert set(first) == set(trainer)
    for key in trainer:
        assert torch.equal(first[key], trainer[key]), key


def test_image_batches_feed_the_model(procgen_dataset):
    context = 18 * 3  # coinrun: 16 patches + separator + 1 action per timestep
    windows = kibble.open_dataset(procgen_dataset).to_torch(context=context, num_samples=3)
    (batch,) = windows.loader(batch_size=3)
    placeholders = (batch["tokens"].reshape(-1) == IMAGE_PATCH).nonzero().reshape(-1)
    assert len(placeholders) == len(batch["patches"]) > 0
    assert torch.equal(batch["patch_index"], placeholders)
    assert batch["patches"].shape[1:] == (16, 16, 3) and batch["patches"].dtype == torch.uint8
    assert batch["patch_rows"].shape == batch["patch_cols"].shape == (len(placeholders), 2)
    # Item by item, the tensors of one window.
    item = next(iter(windows))
    assert item["tokens"].shape[0] <= context and item["task_index"].shape == ()
    assert item["patches"].shape[0] == (item["tokens"] == IMAGE_PATCH).sum()
    with torch.no_grad():
        hidden = Gato(ModelConfig()).hidden(batch)  # the model takes the batch as it is
    assert hidden.shape[:2] == (3, context)


def test_workers_share_the_samples_and_draw_different_windows(cartpole_dataset):
    windows = kibble.open_dataset(cartpole_dataset).to_torch(context=30, num_samples=8)
    loader = DataLoader(windows, batch_size=2, collate_fn=windows.collate, num_workers=2)
    batches = list(loader)
    assert sum(len(b["tokens"]) for b in batches) == 8
    rows = {tuple(row.tolist()) for b in batches for row in b["tokens"]}
    assert len(rows) > 4  # the two workers do not repeat each other


def test_passes_repeat_until_the_epoch_changes(cartpole_dataset):
    windows = kibble.open_dataset(cartpole_dataset).to_torch(context=30, num_samples=4)

    def tokens() -> list:
        return [item["tokens"].tolist() for item in windows]

    first = tokens()
    assert tokens() == first
    windows.set_epoch(1)
    assert tokens() != first
    endless = kibble.open_dataset(cartpole_dataset).to_torch(context=30)
    assert len(list(itertools.islice(endless, 50))) == 50
    with pytest.raises(TypeError, match="no length"):
        len(endless)


def test_bad_arguments_are_clear_errors(cartpole_dataset, procgen_dataset):
    ds = kibble.open_dataset(cartpole_dataset)
    with pytest.raises(KibbleError, match=r"^to_torch: context: expected a positive integer"):
        ds.to_torch(context=0)
    with pytest.raises(KibbleError, match=r"^to_torch: sampling: expected timesteps or tasks"):
        ds.to_torch(context=64, sampling="episodes")
    with pytest.raises(KibbleError, match=r"^to_torch: num_samples: expected a positive"):
        ds.to_torch(context=64, num_samples=0)
    with pytest.raises(KibbleError, match="more than the context of 10"):
        kibble.open_dataset(procgen_dataset).to_torch(context=10)


def test_a_spawned_worker_reopens_the_dataset(cartpole_dataset):
    # What a "spawn" worker receives: the dataset without its open files.
    windows = kibble.open_dataset(cartpole_dataset).to_torch(context=30, num_samples=2)
    copy = WindowDataset.__new__(WindowDataset)
    copy.__dict__.update(windows.__getstate__())
    assert copy._data is None
    assert [i["tokens"].tolist() for i in copy] == [i["tokens"].tolist() for i in windows]
