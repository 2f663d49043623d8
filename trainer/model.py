"""The Gato-style generalist, in reading order: patch embedding, attention, MLP, block, model.

Inputs are the arrays of :class:`kibble.trainer.sequences.Batch` (as torch tensors):

- ids (docs/format.md §2) go through one shared embedding table (also the output head);
- each ``IMAGE_PATCH`` placeholder is replaced by its 16x16 patch embedded by one ResNet v2
  block (GroupNorm, GELU), plus learnable row and column patch position encodings
  (128 levels; a level drawn uniformly in the patch's interval in training, the rounded
  mean at evaluation);
- observation tokens get a learnable local position encoding (their index inside the
  timestep's observation); kibble adds the same for action tokens, so the model knows which
  action dimension comes next;
- a decoder-only transformer (pre-LayerNorm, causal ``scaled_dot_product_attention``).

The loss is next-token cross-entropy on action tokens only (docs/format.md §12), and logits are only
computed where they are needed: at the masked positions in training and at the last
position when acting, which avoids a (B, L, 33026) tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kibble.tokenize.vocab import (
    CONTINUOUS_OFFSET,
    DISCRETE_VOCAB_SIZE,
    NUM_CONTINUOUS_BINS,
    PATCH_POSITION_LEVELS,
    PATCH_SIZE,
    PIXEL_SCALE,
    SEPARATOR,
    VOCAB_SIZE,
)
from kibble.trainer.config import ModelConfig


class PatchEmbedding(nn.Module):
    """A 16x16 patch -> one width-sized vector through a single ResNet v2 block."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, h = cfg.patch_channels, cfg.patch_hidden
        self.stem = nn.Conv2d(c, h, 3, padding=1)
        groups = math.gcd(h, 8)
        self.norm1 = nn.GroupNorm(groups, h)
        self.conv1 = nn.Conv2d(h, h, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, h)
        self.conv2 = nn.Conv2d(h, h, 3, padding=1)
        self.out = nn.Linear(h * PATCH_SIZE * PATCH_SIZE, cfg.width)
        self.rows = nn.Embedding(PATCH_POSITION_LEVELS, cfg.width)
        self.cols = nn.Embedding(PATCH_POSITION_LEVELS, cfg.width)
        self.channels = c

    def forward(
        self, patches: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        # patches: (P, 16, 16, C) uint8; rows, cols: (P, 2) quantised [from, to)
        c = patches.shape[-1]
        if c > self.channels:
            raise ValueError(f"images have {c} channels; this model takes at most {self.channels}")
        x = patches.permute(0, 3, 1, 2).float()  # (P, C, 16, 16)
        if c < self.channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.channels - c))
        x = (x / 127.5 - 1.0) / PIXEL_SCALE  # docs/format.md §5: [-1, 1], then / sqrt(16)
        x = self.stem(x)  # (P, h, 16, 16)
        y = self.conv1(F.gelu(self.norm1(x)))  # pre-activation residual branch (v2)
        y = self.conv2(F.gelu(self.norm2(y)))
        x = (x + y).flatten(1)  # (P, h * 256)
        return self.out(x) + self.rows(self._level(rows)) + self.cols(self._level(cols))

    def _level(self, interval: torch.Tensor) -> torch.Tensor:
        lo, hi = interval[:, 0], interval[:, 1]
        if self.training:
            return lo + (torch.rand(lo.shape, device=lo.device) * (hi - lo)).long()
        return torch.div(lo + hi - 1, 2, rounding_mode="floor")  # rounded mean of [lo, hi)


KV = tuple[torch.Tensor, torch.Tensor]  # a layer's cached keys and values, (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        """Attention over ``x`` (B, T, D), after the cached keys and values ``past`` if any."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # each (B, T, D)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if past is not None:  # decoding: the new tokens see everything before them
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # (B, nh, T, hs); padding sits at the right end, so causality alone keeps it out
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=past is None,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, d)), (k, v)  # (B, T, D)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.width, cfg.ff)
        self.down = nn.Linear(cfg.ff, cfg.width)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, past: KV | None = None) -> tuple[torch.Tensor, KV]:
        y, kv = self.attn(self.ln1(x), past)
        x = x + y
        return x + self.mlp(self.ln2(x)), kv


def continuous_bin_features(width: int) -> torch.Tensor:
    """Initial embeddings of the 1024 continuous bins: sin/cos of the bin centre (1024, D).

    A freshly initialised table knows nothing of bin order, and learning that bin 500 is
    next to bin 501 for every observation dimension costs a small model most of a CPU
    training budget. Starting from Fourier features of the bin centre (frequencies from
    a half turn over [-1, 1] up to one per bin) makes neighbouring bins similar, as
    inputs and, through the tied output head, as predictions. Scaled to the 0.02 std of
    the other rows; training is free to move them.
    """
    centres = (torch.arange(NUM_CONTINUOUS_BINS) + 0.5) / (NUM_CONTINUOUS_BINS / 2) - 1  # (1024,)
    half = width // 2
    freqs = math.pi / 2 * (NUM_CONTINUOUS_BINS / 2) ** (torch.arange(half) / max(1, half - 1))
    angles = centres[:, None] * freqs[None, :]  # (1024, D/2)
    features = torch.cat([angles.sin(), angles.cos()], dim=1)  # (1024, 2 * (D/2))
    features = nn.functional.pad(features, (0, width - 2 * half))
    return 0.02 * features / features.std()


class Gato(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(VOCAB_SIZE, cfg.width)
        self.patch = PatchEmbedding(cfg)
        # Index 0 means "not an observation (action) token" and stays a zero vector.
        self.observation_position = nn.Embedding(cfg.max_observation_tokens + 1, cfg.width, 0)
        self.action_position = nn.Embedding(cfg.max_action_tokens + 1, cfg.width, 0)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "down.weight")):  # GPT-2's scaled residual init
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.layers))
        with torch.no_grad():
            self.embed.weight[CONTINUOUS_OFFSET:SEPARATOR] = continuous_bin_features(cfg.width)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def num_parameters(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.embed.weight.numel()

    def _inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token, patch and local position embeddings (B, L, D) of a batch."""
        tokens = batch["tokens"]  # (B, L)
        b, t = tokens.shape
        x = self.embed(tokens)  # (B, L, D)
        if batch["patch_index"].numel():
            patches = self.patch(batch["patches"], batch["patch_rows"], batch["patch_cols"])
            x = x.reshape(b * t, -1).index_copy(0, batch["patch_index"], patches.to(x.dtype))
            x = x.view(b, t, -1)  # (B, L, D)
        obs_pos = batch["observation_position"].clamp_max(self.cfg.max_observation_tokens)
        act_pos = batch["action_position"].clamp_max(self.cfg.max_action_tokens)
        return x + self.observation_position(obs_pos) + self.action_position(act_pos)

    def hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The final hidden states (B, L, D) of a batch (see module docstring)."""
        x = self.drop(self._inputs(batch))
        for block in self.blocks:
            x, _ = block(x)
        return self.ln_f(x)

    @torch.no_grad()
    def prefill(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[KV]]:
        """Acting: hidden states (B, L, D) of equal-length sequences and their key/value cache."""
        x = self._inputs(batch)
        cache = []
        for block in self.blocks:
            x, kv = block(x)
            cache.append(kv)
        return self.ln_f(x), cache

    @torch.no_grad()
    def extend(
        self, tokens: torch.Tensor, action_position: torch.Tensor, cache: list[KV]
    ) -> tuple[torch.Tensor, list[KV]]:
        """Acting: append one action token per sequence (B, 1); its hidden state (B, 1, D)."""
        pos = action_position.clamp_max(self.cfg.max_action_tokens)
        x = self.embed(tokens) + self.action_position(pos)  # (B, 1, D)
        new = []
        for block, past in zip(self.blocks, cache, strict=True):
            x, kv = block(x, past)
            new.append(kv)
        return self.ln_f(x), new

    def forward(
        self, batch: dict[str, torch.Tensor], legal_actions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (loss, per-sequence loss sums and counts (B, 2)) on action tokens.

        ``legal_actions``: the softmax of each target runs over the 1,024 ids of its kind
        (discrete values, or continuous bins) instead of the whole vocabulary (Gato).
        """
        h = self.hidden(batch)  # (B, L, D)
        # Position i predicts token i + 1: gather where the *next* token is trained on.
        target_mask = batch["loss_mask"][:, 1:]  # (B, L-1)
        b_idx, t_idx = target_mask.nonzero(as_tuple=True)
        targets = batch["tokens"][b_idx, t_idx + 1]  # (N,)
        if legal_actions:
            losses = self._legal_losses(h[b_idx, t_idx], targets)  # (N,)
        else:
            logits = self.logits(h[b_idx, t_idx])  # (N, V)
            losses = F.cross_entropy(logits.float(), targets, reduction="none")  # (N,)
        per_seq = torch.zeros(h.shape[0], 2, device=h.device)
        per_seq.index_add_(0, b_idx, torch.stack([losses, torch.ones_like(losses)], 1))
        return losses.mean(), per_seq

    def _legal_losses(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each target over its kind's 1,024 ids: (N, D), (N,) -> (N,)."""
        losses = torch.empty(targets.shape, device=h.device)
        continuous = targets >= CONTINUOUS_OFFSET
        for rows, lo, n in (
            (continuous, CONTINUOUS_OFFSET, NUM_CONTINUOUS_BINS),
            (~continuous, 0, DISCRETE_VOCAB_SIZE),
        ):
            if rows.any():
                logits = h[rows] @ self.embed.weight[lo : lo + n].T  # (n_rows, 1024)
                losses[rows] = F.cross_entropy(logits.float(), targets[rows] - lo, reduction="none")
        return losses

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) -> logits (..., V) through the shared embedding table."""
        return h @ self.embed.weight.T

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay matrices, conv kernels and embeddings; not biases or norms."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            (decay if p.dim() >= 2 and "norm" not in name else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
