import numpy as np
import pytest
import torch

from kibble.tokenize.episode import TokenizedSteps
from kibble.tokenize.vocab import IMAGE_PATCH, SEPARATOR
from kibble.trainer.config import MODEL_SIZES, ModelConfig
from kibble.trainer.model import Gato
from kibble.trainer.sequences import build_sequence, collate

CFG = ModelConfig(layers=2, heads=2, width=32, ff=64, patch_hidden=8)


def image_batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    steps = TokenizedSteps(
        np.array([[IMAGE_PATCH] * 4 + [32500]] * 3, np.int32),  # a 32x32 image and one float
        np.array([[2]] * 3, np.int32),
        [rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)],
    )
    seq = build_sequence(steps)
    return collate([seq, seq], len(seq) + 4, [0, 0]).to_torch()


def test_hidden_states_are_causal():
    torch.manual_seed(0)
    model = Gato(CFG).eval()
    batch = image_batch()
    h = model.hidden(batch)
    later = dict(batch)
    later["tokens"] = batch["tokens"].clone()
    later["tokens"][:, 10:] = 7
    h2 = model.hidden(later)
    assert torch.allclose(h[:, :10], h2[:, :10], atol=1e-6)
    assert not torch.allclose(h[:, 10:], h2[:, 10:])


def test_patches_replace_their_placeholders():
    torch.manual_seed(0)
    model = Gato(CFG).eval()
    a, b = image_batch(0), image_batch(0)
    b["patches"] = b["patches"].clone()
    b["patches"][0] = 255 - b["patches"][0]  # the first patch of the first sequence
    ha, hb = model.hidden(a), model.hidden(b)
    assert not torch.allclose(ha[0, 0], hb[0, 0])  # the patch's own position changes
    assert torch.allclose(ha[1], hb[1], atol=1e-6)  # the other sequence does not


def test_patch_positions_are_sampled_in_training_and_the_mean_in_evaluation():
    model = Gato(CFG)
    rows = torch.tensor([[0, 64], [64, 128]])
    model.train()
    drawn = torch.stack([model.patch._level(rows) for _ in range(200)])
    assert (
        (drawn[:, 0] >= 0).all() and (drawn[:, 0] < 64).all() and drawn[:, 0].unique().numel() > 10
    )
    model.eval()
    assert model.patch._level(rows).tolist() == [31, 95]


def test_the_loss_is_only_on_action_tokens():
    torch.manual_seed(0)
    model = Gato(CFG).eval()
    batch = image_batch()
    loss, per_seq = model(batch)
    assert per_seq[:, 1].tolist() == [3.0, 3.0]  # 3 timesteps, one action token each
    last_action = 20  # 3 timesteps of 5 observation tokens, a separator and an action
    assert batch["tokens"][0, last_action - 1].item() == SEPARATOR
    changed = {**batch, "tokens": batch["tokens"].clone()}
    changed["tokens"][:, last_action] = 3
    assert model(changed)[0].item() != pytest.approx(loss.item())
    padded = {**batch, "tokens": batch["tokens"].clone()}
    padded["tokens"][:, last_action + 1 :] = 5  # the padding is never a target
    assert model(padded)[0].item() == pytest.approx(loss.item())


def test_gato_sizes_match_the_paper():
    expect = {"79m": (8, 24, 768, 3072), "364m": (12, 12, 1536, 6144), "1.2b": (24, 16, 2048, 8192)}
    for name, (layers, heads, width, ff) in expect.items():
        cfg = MODEL_SIZES[name]
        assert (cfg.layers, cfg.heads, cfg.width, cfg.ff) == (layers, heads, width, ff)
    n = Gato(MODEL_SIZES["79m"]).num_parameters()
    assert 70e6 < n < 110e6  # the transformer's 57M plus embeddings and the patch ResNet


def test_decoding_with_the_cache_equals_running_the_whole_sequence():
    torch.manual_seed(0)
    model = Gato(CFG).eval()
    steps = TokenizedSteps(
        np.array([[32100, 32200, 32300]] * 3, np.int32),
        np.array([[32010, 32500, 33000]] * 3, np.int32),  # three action tokens a step
    )
    seq = build_sequence(steps)
    full = collate([seq, seq], len(seq), [0, 0]).to_torch()
    h_full = model.hidden(full)  # (2, 21, D)
    prefix = collate([seq, seq], len(seq) - 3, [0, 0]).to_torch()  # up to the last separator
    h, cache = model.prefill(prefix)
    assert torch.allclose(h, h_full[:, :-3], atol=1e-5)
    for j in range(2):  # feed action tokens 0 and 1 of the last step
        token = full["tokens"][:, -3 + j : -2 + j]
        out, cache = model.extend(token, torch.full((2, 1), j + 1), cache)
        assert torch.allclose(out[:, 0], h_full[:, -3 + j], atol=1e-5)


def _mixed_batch() -> dict:
    # One continuous-action sequence and one discrete-action sequence.
    cont = TokenizedSteps(np.array([[32500, 32600]] * 3, np.int32), np.array([[32010, 33000]] * 3))
    disc = TokenizedSteps(np.array([[32500, 32600]] * 3, np.int32), np.array([[3, 1000]] * 3))
    seqs = [build_sequence(cont), build_sequence(disc)]
    return collate(seqs, len(seqs[0]), [0, 1]).to_torch()


def test_legal_action_logits_are_a_softmax_over_the_targets_kind():
    torch.manual_seed(0)
    model = Gato(CFG).eval()
    batch = _mixed_batch()
    with torch.no_grad():
        loss, per_seq = model(batch, legal_actions=True)
        h = model.hidden(batch)
        b, t = batch["loss_mask"][:, 1:].nonzero(as_tuple=True)
        targets = batch["tokens"][b, t + 1]
        full = model.logits(h[b, t])  # (N, V)
        expected = []
        for logits, target in zip(full, targets.tolist(), strict=True):
            lo = 32000 if target >= 32000 else 0
            expected.append(
                torch.nn.functional.cross_entropy(logits[lo : lo + 1024], torch.tensor(target - lo))
            )
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    assert per_seq[:, 1].tolist() == [6.0, 6.0]
    # Over the whole vocabulary the same logits give a larger loss (more ids share the mass).
    assert model(batch)[0].item() > loss.item()
