import io

import numpy as np
import pytest

from kibble.errors import KibbleError
from kibble.tokenize.text import TextTokenizer

spm = pytest.importorskip("sentencepiece")

CORPUS = [
    "the agent moves the cart to keep the pole upright",
    "reach the goal with the robot arm",
    "press the button and open the drawer",
    "a generalist agent plays many games",
] * 20


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=buffer, vocab_size=40, minloglevel=2
    )
    path = tmp_path_factory.mktemp("spm") / "tiny.model"
    path.write_bytes(buffer.getvalue())
    return path


def test_text_round_trips_with_ids_in_the_text_range(model_file):
    tok = TextTokenizer(model_file)
    ids = tok.encode("reach the goal")
    assert ids.dtype == np.int32
    assert ids.min() >= 0 and ids.max() < tok.vocab_size <= 32000
    assert tok.decode(ids) == "reach the goal"


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(KibbleError, match="not found"):
        TextTokenizer(tmp_path / "nope.model")


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_text("not a model")
    with pytest.raises(KibbleError, match="not a SentencePiece model"):
        TextTokenizer(bad)
