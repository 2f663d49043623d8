"""The mixture's numbers and model sizes as untrusted input (issue 25 §3, §6): every
number is finite and in its range (one check, ``number_in``), and a model is sized from
its table (``parameter_count``) before anything is built."""

from __future__ import annotations

import math

import pytest

from kibble import limits
from kibble.errors import KibbleError
from kibble.trainer.config import MODEL_SIZES, ModelConfig, parameter_count, parse_mixture
from kibble.trainer.model import Gato

NUMBER_KEYS = {  # key -> a value it accepts
    "learning_rate": 1e-3,
    "min_learning_rate": 1e-4,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "max_minutes": 5,
    "prompt_fraction": 0.5,
}


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, "inf", "nan", "lots"])
def test_every_number_key_is_finite_and_named(key, value):
    with pytest.raises(KibbleError, match=rf"^m\.yaml: {key}: expected a"):
        parse_mixture({"datasets": ["d"], key: value}, "m.yaml", schedule=False)
    parse_mixture({"datasets": ["d"], key: NUMBER_KEYS[key]}, "m.yaml", schedule=False)


@pytest.mark.parametrize("value", [math.inf, math.nan, 0, -1, "x"])
def test_weights_are_finite_and_positive(value):
    with pytest.raises(KibbleError, match=r"datasets\[0\]\.weight: expected a finite number"):
        parse_mixture({"datasets": [{"path": "d", "weight": value}]}, "m.yaml")
    with pytest.raises(KibbleError, match=r"task_weights\[gym/X\]: expected a finite number"):
        parse_mixture({"datasets": ["d"], "task_weights": {"gym/X": value}}, "m.yaml")


@pytest.mark.parametrize("value", [5, 1, -0.1, math.nan, "lots", True])
def test_dropout_is_a_number_in_0_1(value):
    model = {"layers": 1, "heads": 2, "width": 32, "ff": 64, "dropout": value}
    with pytest.raises(KibbleError, match=r"model\.dropout: expected a number in \[0, 1\)"):
        parse_mixture({"datasets": ["d"], "model": model}, "m.yaml")
    model["dropout"] = 0.1
    assert parse_mixture({"datasets": ["d"], "model": model}, "m.yaml").model.dropout == 0.1


CONFIGS = [
    MODEL_SIZES["tiny"],
    MODEL_SIZES["small"],
    ModelConfig(layers=1, heads=2, width=32, ff=64, patch_hidden=8),
    ModelConfig(layers=2, heads=1, width=16, ff=200, max_observation_tokens=5000),
    ModelConfig(layers=1, heads=4, width=64, ff=64, patch_channels=1, patch_hidden=4),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"w{c.width}-l{c.layers}")
def test_the_parameter_count_is_a_close_lower_bound_of_the_real_model(cfg):
    """A lower bound (a real checkpoint is never refused as smaller than its config),
    and a close one (a config that lies is caught)."""
    real = sum(p.numel() for p in Gato(cfg).parameters())
    assert 0.9 * real <= parameter_count(cfg) <= real


def test_a_model_larger_than_memory_is_refused_before_it_is_built(monkeypatch):
    monkeypatch.setattr(limits, "memory_available", lambda: 8 << 20)
    model = {"layers": 1, "heads": 2, "width": 64, "ff": 64}  # 2.2M weights, 8.6 MiB
    with pytest.raises(limits.TooLarge, match=r"^m\.yaml: model \(layers 1, width 64, ff 64\)"):
        parse_mixture({"datasets": ["d"], "model": model}, "m.yaml")
    parse_mixture({"datasets": ["d"], "model": "tiny"}, "m.yaml")  # kibble's own sizes


@pytest.mark.parametrize(
    "second",
    ["ds", "./ds", "ds/", "{tmp}/ds", "{tmp}/link"],
    ids=["same", "dot", "slash", "abs", "link"],
)
def test_a_dataset_listed_twice_is_refused(tmp_path, monkeypatch, second):
    # Listed twice, every episode would be trained on twice, silently (issue 25).
    (tmp_path / "ds").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "ds")
    monkeypatch.chdir(tmp_path)
    raw = {"datasets": ["ds", second.format(tmp=tmp_path)]}
    with pytest.raises(KibbleError, match=r"datasets\[1\]\.path: .* is datasets\[0\] again"):
        parse_mixture(raw, "m.yaml")
    (tmp_path / "other").mkdir()
    assert len(parse_mixture({"datasets": ["ds", "other"]}, "m.yaml").datasets) == 2
    urls = {"datasets": ["gs://b/ds", "gs://b/ds/"]}
    with pytest.raises(KibbleError, match="again"):
        parse_mixture(urls, "m.yaml")
