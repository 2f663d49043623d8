import json

import pytest
import torch

from kibble.errors import KibbleError
from kibble.trainer.config import DatasetSpec, MixtureConfig, ModelConfig
from kibble.trainer.train import learning_rate, train

TINY = ModelConfig(layers=2, heads=2, width=32, ff=64, patch_hidden=8)


def config(*paths, **kw) -> MixtureConfig:
    defaults = dict(
        model=TINY, model_name="custom", context=48, batch_size=4, steps=8, log_every=1,
        learning_rate=3e-3, warmup_steps=2,
    )  # fmt: skip
    return MixtureConfig(datasets=[DatasetSpec(str(p)) for p in paths], **{**defaults, **kw})


def losses(run_dir) -> list[float]:
    return [
        json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def test_warm_up_then_cosine_to_a_tenth():
    cfg = MixtureConfig(datasets=[], steps=100, warmup_steps=10, learning_rate=1e-3)
    assert learning_rate(0, cfg) == pytest.approx(1e-4)
    assert learning_rate(9, cfg) == pytest.approx(1e-3)
    assert learning_rate(55, cfg) == pytest.approx(0.55e-3)
    assert learning_rate(100, cfg) == pytest.approx(1e-4)


def test_training_lowers_the_loss_and_writes_a_checkpoint(cartpole_dataset, tmp_path):
    run = tmp_path / "run"
    summary = train(config(cartpole_dataset, steps=30), run)
    assert summary.step == 30 and summary.tasks == ["gym/CartPole-v1"]
    assert summary.final_loss == pytest.approx(sum(losses(run)[-3:]) / 3)  # the last tenth
    curve = losses(run)
    assert len(curve) == 30
    # From ln(33026) ~ 10.4 (a uniform guess) down towards CartPole's two actions.
    assert curve[0] > 9.5 and sum(curve[-5:]) / 5 < curve[0] - 2
    files = {p.name for p in (run / "checkpoint").iterdir()}
    assert files == {"state.json", "model.safetensors", "optimizer.safetensors"}
    assert (run / "tensorboard").is_dir() and (run / "tasks.json").exists()


def test_resuming_continues_the_same_loss_curve(cartpole_dataset, procgen_dataset, tmp_path):
    datasets = (cartpole_dataset, procgen_dataset)
    straight = tmp_path / "straight"
    train(config(*datasets, context=72, steps=6), straight)
    resumed = tmp_path / "resumed"
    train(config(*datasets, context=72, steps=6, checkpoint_every=3, max_minutes=0), resumed)
    assert len(losses(resumed)) == 1  # max_minutes=0 stops after one step, with a checkpoint
    summary = train(config(*datasets, context=72, steps=6), resumed)
    assert summary.resumed
    assert losses(resumed) == losses(straight)


def test_a_checkpoint_of_another_model_config_is_an_error(cartpole_dataset, tmp_path):
    run = tmp_path / "run"
    train(config(cartpole_dataset, steps=1), run)
    other = ModelConfig(layers=3, heads=2, width=32, ff=64, patch_hidden=8)
    with pytest.raises(KibbleError, match="another model config"):
        train(config(cartpole_dataset, steps=2, model=other), run)


def test_bfloat16_precision_trains_on_a_cpu_with_float32_weights(cartpole_dataset, tmp_path):
    from safetensors.torch import load_file

    train(config(cartpole_dataset, steps=6), tmp_path / "f32")
    train(config(cartpole_dataset, steps=6, precision="bfloat16"), tmp_path / "bf16")
    f32, bf16 = losses(tmp_path / "f32"), losses(tmp_path / "bf16")
    assert all(abs(a - b) < 0.1 for a, b in zip(f32, bf16, strict=True))  # the same training
    assert f32 != bf16  # computed with bfloat16 products: not bit-equal
    weights = load_file(str(tmp_path / "bf16" / "checkpoint" / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}


def test_an_unknown_precision_is_a_clear_error():
    from kibble.trainer.config import parse_mixture

    with pytest.raises(KibbleError, match="precision: expected auto or float32 or bfloat16"):
        parse_mixture({"datasets": ["d"], "precision": "fp8"}, "m.yaml")
