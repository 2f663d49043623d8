"""Recovery data from a dataset config: `noise: {fraction, scale}` on a task."""

import pyarrow.parquet as pq
import pytest

from kibble.errors import KibbleError
from kibble.experts.rollout import ActionNoise
from kibble.pipelines.config import load_config
from kibble.pipelines.in_process import curate_tasks


def _config(tmp_path, noise: str):
    path = tmp_path / "d.yaml"
    path.write_text(
        f"output: {tmp_path / 'out'}\n"
        "tasks:\n"
        f"  - {{task: metaworld/reach-v3, expert: scripted, episodes: 2, max_steps: 20{noise}}}\n"
    )
    return path


def test_noise_is_read_and_recorded_in_the_config(tmp_path):
    cfg = load_config(_config(tmp_path, ", noise: {fraction: 0.5, scale: 0.2}"))
    assert cfg.tasks[0].noise == ActionNoise(0.5, 0.2)
    assert cfg.as_dict()["tasks"][0]["noise"] == {"fraction": 0.5, "scale": 0.2}


@pytest.mark.parametrize(
    ("noise", "phrase"),
    [
        (", noise: {fraction: 2}", "fraction: expected a number in [0, 1]"),
        (", noise: {fraction: 0.5, scale: -1}", "scale: expected a positive number"),
        (", noise: {fraction: 0.5, sigma: 1}", "sigma"),
        (", noise: 0.5", "a mapping like {fraction"),
    ],
)
def test_bad_noise_is_refused(tmp_path, noise, phrase):
    with pytest.raises(KibbleError, match=phrase.replace("[", r"\[").replace("{", r"\{")):
        load_config(_config(tmp_path, noise))


def test_noisy_episodes_differ_and_are_still_judged_and_kept(tmp_path):
    clean = load_config(_config(tmp_path, ""))
    noisy = load_config(_config(tmp_path, ", noise: {fraction: 1.0, scale: 0.3}"))
    a = curate_tasks("c", clean.tasks, tmp_path / "a", fraction=0.05)
    b = curate_tasks("n", noisy.tasks, tmp_path / "b", fraction=0.05)
    entry = b["tasks"]["metaworld/reach-v3"]
    assert entry["kept"] + sum(entry["rejected"].values()) == 2
    obs = [
        pq.read_table(next((root / "data").rglob("*.parquet")))["observation_tokens"]
        for root in (tmp_path / "a", tmp_path / "b")
    ]
    assert a["tasks"]["metaworld/reach-v3"]["kept"] == 2
    assert obs[0].to_pylist() != obs[1].to_pylist()
