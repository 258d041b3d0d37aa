"""Token embeddings and positional encodings: how a transformer turns ids into vectors.

A transformer sees a sequence of token ids. An embedding table turns each id into a learned
vector, but attention itself is blind to order (it treats its input as a set), so the model
also needs to know *where* each token sits. Two classic answers live here:

- fixed sinusoids ("Attention Is All You Need", Vaswani et al. 2017, section 3.5), where each
  position is a pattern of sines and cosines at geometrically spaced frequencies, and
- a learned table with one vector per position (BERT, GPT-2).

Both are *added* to the token vectors. A third answer, rotary position embedding (RoPE, Su et
al. 2021, "RoFormer"), adds nothing: it turns each query and key inside attention by an angle
proportional to its position, so a query-key dot product depends on how far apart the two tokens
are, not on where they sit. Lesson 02 (`lessons/02_embeddings_and_positions.py`) plots the
sinusoidal table, shows why the sum keeps word order and checks RoPE's relative property.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TokenEmbedding(nn.Module):
    """Look up one vector per token id, optionally scaled by sqrt(d_model).

    The original transformer multiplies embeddings by sqrt(d_model) (section 3.4) because the
    table is shared with the output projection, whose weights are small; scaling makes the
    looked-up vectors larger, so the positional encoding (values in [-1, 1]) does not drown them.
    GPT-style models skip the scaling (`scale=False`). How large they end up depends on the
    table's initialisation: this module's own (below) gives unit-variance scaled vectors, while
    the models in minigpt/models.py re-draw every table from N(0, 0.02) (GPT-2's rule), which
    makes scaled vectors std 0.02 * sqrt(d_model).
    """

    def __init__(self, vocab_size: int, d_model: int, scale: bool = True) -> None:
        super().__init__()
        if vocab_size <= 0 or d_model <= 0:
            raise ValueError(
                f"vocab_size={vocab_size} and d_model={d_model} must both be positive integers"
            )
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.scale = scale
        self.embedding = nn.Embedding(vocab_size, d_model)
        # Standalone: with scaling, std d_model^-0.5 makes scaled vectors ~unit variance;
        # without it, GPT-2's std of 0.02 is the usual choice. (The models re-initialise.)
        std = d_model**-0.5 if scale else 0.02
        nn.init.normal_(self.embedding.weight, mean=0.0, std=std)

    @property
    def weight(self) -> nn.Parameter:
        """The (vocab_size, d_model) table, exposed so an output layer can tie to it."""
        return self.embedding.weight

    def forward(self, ids: Tensor) -> Tensor:
        """Map ids (B, T) to vectors (B, T, d_model)."""
        out = self.embedding(ids)  # (B, T, d_model)
        if self.scale:
            out = out * math.sqrt(self.d_model)
        return out


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """Build the fixed (max_len, d_model) table PE(pos, 2i) = sin(pos / base^(2i/d_model)),
    PE(pos, 2i+1) = cos(pos / base^(2i/d_model)), base 10000 (Vaswani et al. 2017, section 3.5).

    Why sinusoids: each pair of columns is a clock hand turning at its own speed, so every
    position gets a unique pattern, nearby positions get similar patterns, and PE(pos + k) is a
    fixed rotation of PE(pos), which makes relative offsets easy to pick up. An odd d_model gets
    one more sine column than cosine columns. Computed in float64, returned as float32.
    """
    if max_len <= 0 or d_model <= 0:
        raise ValueError(f"max_len={max_len} and d_model={d_model} must both be positive integers")
    ### BEGIN SOLUTION sinusoidal
    position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)  # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d_model / 2),)
    inv_freq = torch.exp(-math.log(base) * two_i / d_model)  # 1 / base^(2i/d_model)
    angles = position * inv_freq  # (max_len, ceil(d_model / 2))
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])  # odd d_model: one cosine fewer
    return table.to(torch.float32)
    ### END SOLUTION


def _check_length(t: int, offset: int | Tensor, max_len: int) -> None:
    if isinstance(offset, Tensor):  # per-row positions (B, T) of a padded batch
        if offset.numel() and (int(offset.min()) < 0 or int(offset.max()) >= max_len):
            raise ValueError(
                f"positions must lie in [0, {max_len}), got {int(offset.min())}.."
                f"{int(offset.max())}; shorten the input or build the model with a larger max_len"
            )
        return
    if offset < 0:
        raise ValueError(f"offset={offset} must be >= 0")
    if t + offset > max_len:
        raise ValueError(
            f"sequence reaches position {t + offset} but max_len={max_len}; "
            "shorten the input or build the model with a larger max_len"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Add the fixed sinusoidal table to token vectors.

    No parameters: the table is a non-persistent buffer `pe` (max_len, d_model), rebuilt at
    construction, so checkpoints stay small and it follows the module across devices/dtypes.
    `offset` lets incremental decoding add the encoding of position `offset + t` to the t-th
    new token.
    """

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """x (B, T, d_model) -> x + pe[offset:offset+T]; a (B, T) tensor `offset` gives each
        token its own position (left-padded batches)."""
        t = x.size(-2)
        _check_length(t, offset, self.max_len)
        if isinstance(offset, Tensor):
            return x + self.pe[offset].to(x.dtype)  # (B, T, d_model)
        return x + self.pe[offset : offset + t].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Add a learned vector per position (GPT-2, BERT): flexible, but it cannot go past max_len.

    Same contract as `SinusoidalPositionalEncoding.forward(x, offset)`, so models can switch
    between the two with one config field.
    """

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        if max_len <= 0 or d_model <= 0:
            raise ValueError(
                f"max_len={max_len} and d_model={d_model} must both be positive integers"
            )
        self.max_len = max_len
        self.d_model = d_model
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=0.02)  # GPT-2's initialisation

    @property
    def weight(self) -> nn.Parameter:
        """The (max_len, d_model) table of position vectors."""
        return self.embedding.weight

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """x (B, T, d_model) -> x + weight[offset:offset+T] (or weight[positions] for a
        (B, T) tensor)."""
        t = x.size(-2)
        _check_length(t, offset, self.max_len)
        if isinstance(offset, Tensor):
            return x + self.embedding(offset)
        return x + self.embedding.weight[offset : offset + t]


def rotary_tables(max_len: int, d_head: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin tables (max_len, d_head // 2) of the angles pos * base^(-2i / d_head).

    These are exactly the sinusoidal table's columns for d_model = d_head (sines at even,
    cosines at odd columns): RoPE reuses the same clocks, but to turn vectors instead of being
    added to them, so the tables are read out of `sinusoidal_table`. float32.
    """
    if max_len <= 0 or d_head <= 0 or d_head % 2:
        raise ValueError(
            f"max_len={max_len} must be positive and d_head={d_head} a positive even number "
            "(RoPE turns pairs of coordinates); choose d_model / n_heads even"
        )
    table = sinusoidal_table(max_len, d_head, base)  # (max_len, d_head)
    return table[:, 1::2].contiguous(), table[:, 0::2].contiguous()


def rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Turn each coordinate pair (x_i, x_{i + d/2}) of x (..., T, d) by its position's angle.

    cos, sin: (T, d / 2), or broadcastable to x's (..., T, d / 2). The pair (a, b) becomes
    (a cos - b sin, a sin + b cos), a 2-D rotation.
    RoFormer pairs neighbouring coordinates (2i, 2i + 1); pairing i with i + d/2 is the same
    rotation up to a fixed reordering of the head's coordinates, which the learned projections
    absorb, and it works on two contiguous halves instead of strided elements.
    """
    half = x.size(-1) // 2
    a, b = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class RotaryPositionalEmbedding(nn.Module):
    """RoPE: rotate queries and keys (B, H, T, d_head) by angles that grow with the position.

    Why it encodes *relative* position: rotating q at position m by m*theta and k at n by
    n*theta leaves q.k depending on (m - n)*theta alone, because the dot product of two
    rotated vectors only sees the difference of their angles. Nothing is added to the token
    vectors, so the residual stream carries content only. Used inside self-attention
    (`MultiHeadAttention(rotary=...)`), never in cross-attention, where queries and keys come
    from two different sequences. No parameters: `cos` and `sin` are non-persistent buffers.
    `offset` places the first row at position `offset` (incremental decoding with a cache).
    """

    def __init__(self, d_head: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        self.d_head, self.max_len, self.base = d_head, max_len, base
        cos, sin = rotary_tables(max_len, d_head, base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """x (..., T, d_head) at positions offset..offset+T-1 -> rotated x, same shape.

        A (B, T) tensor `offset` gives each row its own positions, for x (B, H, T, d_head).
        """
        t = x.size(-2)
        _check_length(t, offset, self.max_len)
        if isinstance(offset, Tensor):
            cos, sin = self.cos[offset][:, None], self.sin[offset][:, None]  # (B, 1, T, d/2)
            return rotate_pairs(x, cos, sin)
        return rotate_pairs(x, self.cos[offset : offset + t], self.sin[offset : offset + t])

    def extra_repr(self) -> str:
        return f"d_head={self.d_head}, max_len={self.max_len}, base={self.base:g}"
