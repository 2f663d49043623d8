"""Build the SentencePiece model for BabyAI missions: ``tokenize/models/babyai.model``.

    python benchmarks/build_babyai_spm.py [--out tokenize/models/babyai.model]

No tokenizer can be downloaded here, so the model is trained on the BabyAI grammar
itself. The words come from minigrid's source: the string literals of every
``surface()`` method in ``minigrid/envs/babyai/core/verifier.py`` (verbs, articles,
"in front of you", ", then", "after you", ...) and its ``COLOR_NAMES``, ``OBJ_TYPES``
and ``LOC_NAMES``. A corpus of missions is generated from that grammar (every object
description with every verb, then compound instructions drawn with a fixed seed),
sorted, and a small BPE model (no Unicode normalization: missions are ASCII) is
trained on it with one thread and no sampling, so the same minigrid gives a
byte-identical model. Byte fallback keeps any other text
lossless (unknown characters become byte pieces, never ``<unk>``). Its 400-odd ids lie
far inside Gato's text range ``[0, 32000)``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import io
import itertools
import logging
import random
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tokenize" / "models" / "babyai.model"
VOCAB_SIZE = 400
COMPOUND_SENTENCES = 20_000
SEED = 0


def surface_literals() -> list[str]:
    """Every string literal inside a ``surface`` method of minigrid's BabyAI verifier."""
    from minigrid.envs.babyai.core import verifier

    tree = ast.parse(inspect.getsource(verifier))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "surface":
            # Not docstrings or assertion messages: only text that reaches a mission.
            skip = {
                id(sub.value if isinstance(sub, ast.Expr) else sub.msg)
                for sub in ast.walk(node)
                if isinstance(sub, ast.Expr | ast.Assert)
            }
            for sub in ast.walk(node):
                is_text = isinstance(sub, ast.Constant) and isinstance(sub.value, str)
                if is_text and id(sub) not in skip:
                    out.add(sub.value)
    return sorted(out)


def vocabulary() -> list[str]:
    """Every word (and the comma) a BabyAI mission can contain."""
    from minigrid.core.constants import COLOR_NAMES
    from minigrid.envs.babyai.core.verifier import LOC_NAMES, OBJ_TYPES

    words = set(COLOR_NAMES) | set(OBJ_TYPES) | set(LOC_NAMES)
    for literal in surface_literals():
        words |= set(literal.replace(",", " , ").split())
    return sorted(words)


def object_descriptions() -> list[str]:
    """``the red ball``, ``a box on your left``, ``the object behind you``, ..."""
    from minigrid.core.constants import COLOR_NAMES
    from minigrid.envs.babyai.core.verifier import LOC_NAMES, OBJ_TYPES

    locations = {"front": " in front of you", "behind": " behind you"}
    out = []
    for article, color, kind, loc in itertools.product(
        ("the", "a"), [None, *COLOR_NAMES], [*OBJ_TYPES, "object"], [None, *LOC_NAMES]
    ):
        s = kind if color is None else f"{color} {kind}"
        if loc is not None:
            s += locations.get(loc, f" on your {loc}")
        out.append(f"{article} {s}")
    return out


def corpus(compound: int = COMPOUND_SENTENCES, seed: int = SEED) -> list[str]:
    """Missions from the grammar: sorted, without duplicates."""
    rng = random.Random(seed)
    descs = object_descriptions()
    simple = []
    for d in descs:
        simple += [f"go to {d}", f"pick up {d}", f"open {d}"]
        simple.append(f"put {d} next to {rng.choice(descs)}")
    sentences = set(simple)
    for _ in range(compound):
        a, b = rng.choice(simple), rng.choice(simple)
        sentences.add(rng.choice((f"{a}, then {b}", f"{a} after you {b}", f"{a} and {b}")))
    return sorted(sentences)


def train(sentences: list[str], vocab_size: int = VOCAB_SIZE) -> bytes:
    """A BPE SentencePiece model trained deterministically on ``sentences``."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",  # missions are plain ASCII; keeps the file small
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    return model.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sentences = corpus()
    data = train(sentences)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    log.info(
        "%s: %d bytes, sha256 %s, from %d missions over %d words",
        args.out,
        len(data),
        hashlib.sha256(data).hexdigest(),
        len(sentences),
        len(vocabulary()),
    )


if __name__ == "__main__":
    main()
