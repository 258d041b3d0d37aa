"""Transformer layers: attention and a feed-forward network, wrapped in residuals + norms.

Three kinds, one per family: `EncoderLayer` (BERT: bidirectional self-attention, FFN),
`GPTBlock` (GPT: the same with causal self-attention and a KV cache) and `DecoderLayer` (T5:
causal self-attention, cross-attention to the encoder, FFN). A block has two or three
sub-layers. Each one is wrapped the same way: its output is added back to its input (a residual
connection, so a deep stack starts close to the identity and gradients have a short path to
every layer) and a LayerNorm keeps the scale of the residual stream in check. Where the norm
sits is the one real design choice:

- post-norm, the original paper's `x = norm(x + sublayer(x))` ("Attention Is All You Need",
  Vaswani et al. 2017, section 5.4 for the dropout), `norm_first=False`;
- pre-norm, `x = x + sublayer(norm(x))` (GPT-2 and most models since; Xiong et al. 2020, "On
  Layer Normalization in the Transformer Architecture"), `norm_first=True`. The residual stream
  is never normalised, so the stack needs one final LayerNorm (added by `models.py`).

Dropout sits where `nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer` put it (on the
attention weights, after the FFN activation, and on each sub-layer's output before the residual
add), so the parity tests can prove these layers equal to PyTorch's. `rotary` (a RoPE module,
see `minigpt.embeddings`) is handed to self-attention only; cross-attention never rotates. Lesson 05
(`lessons/05_transformer_blocks.py`) builds a block piece by piece and compares the two norms.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from minigpt.attention import KVCache, MultiHeadAttention, StaticKVCache
from minigpt.dropout import Dropout
from minigpt.feedforward import FeedForward


class EncoderLayer(nn.Module):
    """Bidirectional self-attention then a feed-forward network, each residual + LayerNorm.

    Submodules: `self_attn`, `ffn`, `norm1` (around self-attention), `norm2` (around the FFN).
    Called as `layer(x, mask=None, is_causal=False)` on x (B, T, d_model); `mask` is a keep mask
    (True = may attend), e.g. a (B, 1, 1, T) padding mask. `is_causal=True` turns the layer into
    a decoder-only (GPT) block, which is how PyTorch users build GPTs from this class and what
    `GPTBlock` below is.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        rotary: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, dropout=dropout, bias=bias, rotary=rotary
        )
        self.ffn = FeedForward(d_model, d_ff, activation=activation, dropout=dropout, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        # Residual dropout: applied to each sub-layer's output before it joins the residual.
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | StaticKVCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (B, T, d_model) -> (B, T, d_model). `cache`: keys/values of earlier positions;
        `positions` (B, T): per-row positions for RoPE (padded batches)."""

        how = dict(mask=mask, is_causal=is_causal, cache=cache, positions=positions)
        ### BEGIN SOLUTION residual
        if self.norm_first:  # x + sublayer(norm(x))
            x = x + self.dropout1(self.self_attn(self.norm1(x), **how))
            return x + self.dropout2(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, **how)))  # norm(x + sublayer(x))
        return self.norm2(x + self.dropout2(self.ffn(x)))
        ### END SOLUTION


class GPTBlock(EncoderLayer):
    """The GPT block: causal self-attention then a feed-forward network, residual + LayerNorm.

    It is an encoder layer whose attention may not look ahead, which is all a decoder-only
    model's block is (same submodules: `self_attn`, `norm1`, `ffn`, `norm2`), and so it is
    proven equal to `nn.TransformerEncoderLayer` run with a causal mask. Called as
    `block(x, cache=None)`: with a `KVCache`, x holds only the new tokens, which attend to
    every earlier position kept in the cache.
    """

    def new_cache(self, capacity: int | None = None) -> KVCache | StaticKVCache:
        """An empty key/value cache for incremental decoding through this block: growing, or
        preallocated for `capacity` positions (`StaticKVCache`)."""
        return KVCache() if capacity is None else StaticKVCache(capacity)

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        cache: KVCache | StaticKVCache | None = None,
        mask: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (B, T, d_model) -> (B, T, d_model), each position seeing itself and the past.

        `mask` (a keep mask, e.g. from `attention.padded_positions_and_mask`) further hides
        keys such as padding; `positions` (B, T) are per-row positions for RoPE.
        """
        return super().forward(x, mask=mask, is_causal=True, cache=cache, positions=positions)


class LayerCache:
    """What one decoder layer remembers between incremental decoding steps.

    `self_attn` grows by the new tokens at every call; `cross_attn` holds the projected encoder
    memory, computed at the first call and reused, because the memory does not change while the
    decoder generates.
    """

    def __init__(self) -> None:
        self.self_attn = KVCache()
        self.cross_attn = KVCache()

    @property
    def length(self) -> int:
        """How many decoder positions are cached (the next token's position)."""
        return self.self_attn.length

    def reset(self) -> None:
        """Forget everything, to start a new sequence."""
        self.self_attn.reset()
        self.cross_attn.reset()

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` in both caches (beam search follows its beams)."""
        self.self_attn.reorder(index)
        self.cross_attn.reorder(index)


class DecoderLayer(nn.Module):
    """The encoder-decoder's decoder layer: causal self-attention, cross-attention to the
    encoder's memory, then an FFN, each residual + LayerNorm.

    Submodules: `self_attn` + `norm1`, `cross_attn` + `norm2`, `ffn` + `norm3` — the same names
    and order as `nn.TransformerDecoderLayer` (its `multihead_attn` is our `cross_attn`). A
    decoder-only model has no memory to attend to and uses `GPTBlock` instead.

    Called as `layer(x, memory, self_mask=None, memory_mask=None, is_causal=True, cache=None)`.
    Self-attention is causal unless `is_causal=False`; `self_mask` (a keep mask) is combined
    with it. `cache` (from `new_cache()`) enables incremental decoding: pass only the new tokens
    and they attend to every earlier position kept in the cache.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        rotary: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(
            d_model, n_heads, dropout=dropout, bias=bias, rotary=rotary
        )
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout2 = Dropout(dropout)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, dropout=dropout, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout3 = Dropout(dropout)

    def new_cache(self) -> LayerCache:
        """An empty cache for incremental decoding through this layer."""
        return LayerCache()

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        is_causal: bool = True,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """x (B, T, d_model), memory (B, S, d_model) -> (B, T, d_model)."""
        self_cache = cache.self_attn if cache is not None else None
        cross_cache = cache.cross_attn if cache is not None else None

        def self_block(h: Tensor) -> Tensor:
            out = self.self_attn(h, mask=self_mask, is_causal=is_causal, cache=self_cache)
            return self.dropout1(out)

        def cross_block(h: Tensor) -> Tensor:
            out = self.cross_attn(h, context=memory, mask=memory_mask, cache=cross_cache)
            return self.dropout2(out)

        ### BEGIN SOLUTION residual
        if self.norm_first:  # x + sublayer(norm(x))
            x = x + self_block(self.norm1(x))
            x = x + cross_block(self.norm2(x))
            return x + self.dropout3(self.ffn(self.norm3(x)))
        x = self.norm1(x + self_block(x))  # norm(x + sublayer(x))
        x = self.norm2(x + cross_block(x))
        return self.norm3(x + self.dropout3(self.ffn(x)))
        ### END SOLUTION


@torch.no_grad()
def load_pytorch_weights(
    layer: EncoderLayer | GPTBlock | DecoderLayer, reference: nn.Module
) -> None:
    """Copy the weights of an `nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer` into ours.

    Why it exists: to *prove* a layer correct, build PyTorch's reference, copy its weights here
    and compare outputs (tests, lesson 05). A `GPTBlock` takes an `nn.TransformerEncoderLayer`
    (how a GPT block is usually built from PyTorch's classes: run with a causal mask).
    PyTorch keeps q, k, v stacked in one `in_proj_weight` (3 * d_model, d_model); we keep three
    `nn.Linear`s, so it is cut in three.
    """
    pairs = [(layer.self_attn, reference.self_attn)]
    if isinstance(layer, DecoderLayer):
        pairs.append((layer.cross_attn, reference.multihead_attn))
    for ours, theirs in pairs:
        projections = (ours.q_proj, ours.k_proj, ours.v_proj)
        for proj, w in zip(projections, theirs.in_proj_weight.chunk(3), strict=True):
            proj.weight.copy_(w)
        if theirs.in_proj_bias is not None:
            for proj, b in zip(projections, theirs.in_proj_bias.chunk(3), strict=True):
                proj.bias.copy_(b)
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())
    layer.ffn.fc1.load_state_dict(reference.linear1.state_dict())
    layer.ffn.fc2.load_state_dict(reference.linear2.state_dict())
    norms = ("norm1", "norm2", "norm3") if isinstance(layer, DecoderLayer) else ("norm1", "norm2")
    for name in norms:
        getattr(layer, name).load_state_dict(getattr(reference, name).state_dict())
