"""Text observations: the Text leaf codec, and the shipped BabyAI SentencePiece model."""

import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from gymnasium import spaces

from kibble.errors import TokenizeError
from kibble.tokenize.codecs import TextCodec, leaf_codecs
from kibble.tokenize.episode import EpisodeTokenizer, timestep_sequence
from kibble.tokenize.text import DEFAULT_TEXT_MODEL, TextTokenizer
from kibble.tokenize.vocab import SEPARATOR, TEXT_VOCAB_SIZE

ROOT = Path(__file__).resolve().parents[2]
SPACE = spaces.Dict(
    {"mission": spaces.Text(100, charset="abcdefghijklmnopqrstuvwxyz ,"), "x": spaces.Discrete(3)}
)


def _build_script():
    spec = importlib.util.spec_from_file_location(
        "build_babyai_spm", ROOT / "benchmarks" / "build_babyai_spm.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_text_leaf_becomes_the_models_ids_after_the_other_keys_in_key_order():
    tok = EpisodeTokenizer(SPACE, spaces.Discrete(2))
    assert tok.n_observation_tokens is None  # depends on the mission
    obs = {"mission": np.array(["go to the red ball"] * 3), "x": np.array([0, 1, 2])}
    steps = tok.tokenize(obs, np.array([1, 0, 1]))
    ids = TextTokenizer(DEFAULT_TEXT_MODEL).encode("go to the red ball")
    assert len(ids) == 5
    # Keys in lexicographic order: mission, then x.
    assert steps.observation_tokens.tolist() == [[*ids, x] for x in (0, 1, 2)]
    assert (steps.observation_tokens[:, :5] < TEXT_VOCAB_SIZE).all()
    assert timestep_sequence(steps)[:7].tolist() == [*ids, 0, SEPARATOR]


def test_missions_of_different_episodes_give_different_token_counts():
    tok = EpisodeTokenizer(SPACE, spaces.Discrete(2))
    short = tok.tokenize({"mission": np.array(["open the door"]), "x": np.array([0])}, [0])
    long = tok.tokenize(
        {"mission": np.array(["pick up the red ball, then open a door"]), "x": np.array([0])}, [0]
    )
    assert short.observation_tokens.shape[1] < long.observation_tokens.shape[1]


def test_text_that_changes_length_within_an_episode_is_an_error():
    tok = EpisodeTokenizer(SPACE, spaces.Discrete(2))
    obs = {"mission": np.array(["open the door", "go to the red ball"]), "x": np.array([0, 0])}
    with pytest.raises(TokenizeError, match="different numbers of tokens"):
        tok.tokenize(obs, np.array([0, 0]))


def test_text_cannot_be_an_action():
    with pytest.raises(TokenizeError, match="text observations only"):
        leaf_codecs(spaces.Text(10), "action")


def test_another_text_model_is_used_when_given(tmp_path):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["zebra zebra quokka", "quokka zebra"] * 20),
        model_writer=model,
        vocab_size=20,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path = tmp_path / "tiny.model"
    path.write_bytes(model.getvalue())
    ours = EpisodeTokenizer(SPACE, spaces.Discrete(2), text_model=str(path))
    default = EpisodeTokenizer(SPACE, spaces.Discrete(2))
    obs = {"mission": np.array(["go to the red ball"]), "x": np.array([0])}
    (leaf,) = [c for c in ours.observation.leaves if isinstance(c, TextCodec)]
    assert leaf.model_file == str(path)
    a = ours.tokenize(obs, [0]).observation_tokens
    b = default.tokenize(obs, [0]).observation_tokens
    assert a.tolist() != b.tolist()
    assert a[0, :-1].tolist() == TextTokenizer(path).encode("go to the red ball").tolist()


def test_every_word_of_the_babyai_grammar_is_one_known_piece():
    build = _build_script()
    words = build.vocabulary()
    # The grammar's words, read from minigrid's verifier (not a list written here).
    assert {"pick", "up", "then", "after", "behind", "front", "your", "purple", "key"} <= set(words)
    sp = spm.SentencePieceProcessor(model_file=str(DEFAULT_TEXT_MODEL))
    unk = sp.unk_id()
    for word in words:
        ids = sp.EncodeAsIds(word)
        assert unk not in ids, word
        if word != ",":
            assert len(ids) == 1, (word, sp.EncodeAsPieces(word))
    assert sp.GetPieceSize() <= TEXT_VOCAB_SIZE


def test_the_shipped_model_is_what_the_build_script_makes():
    build = _build_script()
    data = build.train(build.corpus())
    assert data == DEFAULT_TEXT_MODEL.read_bytes(), (
        "tokenize/models/babyai.model differs from a rebuild: run benchmarks/build_babyai_spm.py"
    )
