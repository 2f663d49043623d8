"""``kibble train`` and ``kibble eval`` as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

from kibble.trainer.scores import EvalRow

KIBBLE = Path(sys.executable).parent / "kibble"
SMALL_MODEL = "{layers: 2, heads: 2, width: 32, ff: 64, patch_hidden: 8}"


def kibble(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(KIBBLE), *map(str, args)], capture_output=True, text=True)


def one_paragraph_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("kibble: error: ")
    for w in words:
        assert w in done.stderr, done.stderr


def test_train_then_eval(cartpole_dataset, write_mixture, tmp_path):
    mixture = write_mixture(
        tmp_path / "mix.yaml", [cartpole_dataset], model=SMALL_MODEL, context=48,
        batch_size=4, steps=4, learning_rate="1e-3",
    )  # fmt: skip
    run = tmp_path / "run"
    done = kibble("train", mixture, "--out", run)
    assert done.returncode == 0, done.stderr
    assert "4/4 steps (done)" in done.stdout
    done = kibble("train", mixture, "--out", run, "--steps", "6")  # resumes to 6
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "checkpoint" / "state.json").read_text())["progress"]["step"] == 6
    done = kibble("eval", run, "--task", "gym/CartPole-v1", "--episodes", "2")
    assert done.returncode == 0, done.stderr
    assert "| gym/CartPole-v1 |" in done.stdout and "IQM" in done.stdout
    assert (run / "eval" / "gym__CartPole-v1.json").exists()
    done = kibble("eval", run, "--task", "gym/CartPole-v1", "--episodes", "1", "--past-steps", "0")
    assert done.returncode == 0, done.stderr
    assert "timesteps the model saw when acting" in done.stdout and "CartPole-v1 (0)" in done.stdout
    assert (
        "acting on the present observation alone"
        in EvalRow.from_dict(
            json.loads((run / "eval" / "gym__CartPole-v1.json").read_text())
        ).line()
    )
    saved = json.loads((run / "eval" / "gym__CartPole-v1.json").read_text())
    assert saved["past_steps"] == 0


def test_mixture_mistakes_are_one_paragraph_errors(cartpole_dataset, write_mixture, tmp_path):
    nothing = write_mixture(tmp_path / "a.yaml", [tmp_path / "missing"])
    one_paragraph_error(kibble("train", nothing, "--out", tmp_path / "r"), "no dataset at")
    bad_model = write_mixture(tmp_path / "b.yaml", [cartpole_dataset], model="huge")
    one_paragraph_error(kibble("train", bad_model, "--out", tmp_path / "r"), "b.yaml: model:")
    bad_key = write_mixture(tmp_path / "c.yaml", [cartpole_dataset], stepz=3)
    one_paragraph_error(kibble("train", bad_key, "--out", tmp_path / "r"), "stepz")
    missing = tmp_path / "none.yaml"
    one_paragraph_error(kibble("train", missing, "--out", tmp_path / "r"), "does not exist")


def test_eval_mistakes_are_one_paragraph_errors(tmp_path):
    done = kibble("eval", tmp_path, "--task", "gym/CartPole-v1", "--episodes", "1")
    one_paragraph_error(done, "no kibble checkpoint")
