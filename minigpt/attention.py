"""Scaled dot-product attention, masks, a key/value cache and multi-head attention.

Attention lets every position build its output as a weighted average of the other positions'
values, with weights given by how well its query matches their keys:
softmax(Q K^T / sqrt(d_k)) V  ("Attention Is All You Need", Vaswani et al. 2017, eq. 1).

Two paths give one answer. The explicit path below writes the formula out and returns the
attention weights (for reading and plotting, lessons 03 and 04); the fast path calls
`torch.nn.functional.scaled_dot_product_attention`, a fused kernel that never materialises
the weights and is what training uses (`minigpt.speedups.fused_attention` says when: not under
bf16 on a CPU, where it is the slower of the two). Tests prove both equal to
`nn.MultiheadAttention`.

Masks are KEEP masks: True means "may attend", as in `F.scaled_dot_product_attention`.
They broadcast to (B, H, T_q, T_k): a (T_q, T_k) causal mask and a (B, 1, 1, T_k) padding
mask both work, and `&` combines them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from minigpt import speedups
from minigpt.dropout import dropout


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d_k) + mask) v, written out; returns (output, weights).

    q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v) -> output (..., T_q, d_v),
    weights (..., T_q, T_k). `mask` is a boolean keep mask or a float mask added to the scores.

    Why divide by sqrt(d_k): the dot product of two random unit-variance vectors has variance
    d_k, so unscaled scores grow with the head size and push softmax into a near one-hot regime
    with vanishing gradients. Why -inf: exp(-inf) = 0, so masked keys get exactly zero weight.
    A row with every key masked would be softmax of all -inf = NaN; such rows are given
    zero weights (and a zero output) instead, like the fused kernel does.
    """
    ### BEGIN SOLUTION attention
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T_q, T_k)
    row_has_key = None
    if mask is not None:
        if mask.dtype == torch.bool:
            # Un-mask fully masked rows before the softmax (finite, no NaN in forward or
            # backward) and zero their weights afterwards.
            row_has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1)
            scores = scores.masked_fill(~(mask | ~row_has_key), float("-inf"))
        else:
            scores = scores + mask
    weights = torch.softmax(scores, dim=-1)
    if row_has_key is not None:
        weights = weights * row_has_key
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    return weights @ v, weights
    ### END SOLUTION


def causal_mask(
    t_q: int, t_k: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Boolean (t_q, t_k) keep mask where query i may see keys j <= i + (t_k - t_q).

    The queries are aligned with the END of the keys, which is what incremental decoding needs:
    with a cache of t_k - t_q earlier tokens, the new query i sits at absolute position
    i + (t_k - t_q) and may see everything up to and including itself.
    """
    t_k = t_q if t_k is None else t_k
    if t_k < t_q:
        raise ValueError(f"t_k={t_k} < t_q={t_q}: queries must not outnumber the keys they follow")
    ### BEGIN SOLUTION attention
    ones = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    return torch.tril(ones, diagonal=t_k - t_q)
    ### END SOLUTION


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """Keep mask (B, 1, 1, T_k) that hides padding keys: True where ids (B, T_k) != pad_id."""
    ### BEGIN SOLUTION attention
    return (ids != pad_id)[:, None, None, :]
    ### END SOLUTION


def length_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Keep mask (B, 1, 1, T_k) from true lengths (B,): key j is kept when j < lengths[b]."""
    ### BEGIN SOLUTION attention
    t_k = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(t_k, device=lengths.device)  # (T_k,)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]
    ### END SOLUTION


class KVCache:
    """Keys and values already computed by ONE attention module, for incremental decoding.

    When generating token by token, the keys and values of earlier tokens never change, so
    recomputing them each step would cost O(T^2) projections; the cache keeps them and each
    step only projects the new token. Holds k, v of shape (B, H, T, d_head).
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    @property
    def length(self) -> int:
        """How many positions are cached (0 when empty)."""
        return 0 if self.k is None else self.k.size(-2)

    def append(self, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor]:
        """Add k_new, v_new (B, H, T_new, d_head); return all cached (B, H, T, d_head)."""
        if self.k is None or self.v is None:
            self.k, self.v = k_new, v_new
        else:
            self.k = torch.cat([self.k, k_new], dim=-2)
            self.v = torch.cat([self.v, v_new], dim=-2)
        return self.k, self.v

    def reset(self) -> None:
        """Forget everything (start a new sequence)."""
        self.k = None
        self.v = None

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` (B_new,), in that order: beam search follows its beams."""
        if self.k is not None and self.v is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


class StaticKVCache:
    """A KV cache written in place into buffers preallocated for `capacity` positions.

    Same interface as `KVCache` (`length`, `append`, `reset`, `reorder`), same numbers; only
    the memory traffic differs. The growing cache's `torch.cat` copies every cached key at every
    step (O(T^2) bytes over a generation) and allocates a new tensor each time; here a step
    writes just its new keys into the buffer and returns views of the filled part. The
    buffers are allocated at the first `append`, when batch size, heads and dtype are known.
    Writing past `capacity` is an error (the caller sized the cache: prompt + new tokens).
    `benchmarks/generation.py` compares the two.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1 (prompt + new tokens)")
        self.capacity = capacity
        self.k_buffer: Tensor | None = None  # (B, H, capacity, d_head)
        self.v_buffer: Tensor | None = None
        self._length = 0

    @property
    def length(self) -> int:
        """How many positions are filled (0 when empty)."""
        return self._length

    @property
    def k(self) -> Tensor | None:
        """The filled keys (B, H, length, d_head), a view of the buffer, or None when empty."""
        if self.k_buffer is None or not self._length:
            return None
        return self.k_buffer[:, :, : self._length]

    @property
    def v(self) -> Tensor | None:
        """The filled values, a view of the buffer, or None when empty."""
        if self.v_buffer is None or not self._length:
            return None
        return self.v_buffer[:, :, : self._length]

    def append(self, k_new: Tensor, v_new: Tensor) -> tuple[Tensor, Tensor]:
        """Write k_new, v_new (B, H, T_new, d_head) after the filled part; return views of all."""
        b, h, t_new, d = k_new.shape
        end = self._length + t_new
        if end > self.capacity:
            raise ValueError(
                f"static KV cache holds {self.capacity} positions, {end} needed; "
                "make it with a larger capacity (prompt + max_new_tokens)"
            )
        if self.k_buffer is None or self.k_buffer.shape != (b, h, self.capacity, d):
            self.k_buffer = k_new.new_empty(b, h, self.capacity, d)
            self.v_buffer = v_new.new_empty(b, h, self.capacity, v_new.size(-1))
        assert self.v_buffer is not None
        self.k_buffer[:, :, self._length : end] = k_new  # in place: no copy of earlier keys
        self.v_buffer[:, :, self._length : end] = v_new
        self._length = end
        return self.k_buffer[:, :, :end], self.v_buffer[:, :, :end]

    def reset(self) -> None:
        """Forget the contents (the buffers are kept for the next sequence)."""
        self._length = 0

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` (B_new,), in that order (beam search)."""
        if self.k_buffer is not None and self.v_buffer is not None:
            self.k_buffer = self.k_buffer.index_select(0, index)
            self.v_buffer = self.v_buffer.index_select(0, index)


def padded_positions_and_mask(key_mask: Tensor, t_q: int) -> tuple[Tensor, Tensor]:
    """Per-row positions (B, t_q) and an attention keep mask (B, 1, t_q, T_k) for a batch whose
    rows carry padding, e.g. prompts of different lengths left-padded to one length.

    `key_mask` (B, T_k) is True at real tokens over every position so far (cached ones and the
    t_q new ones, which are the last t_q). A token's position counts only the real tokens before
    it, so a row left-padded by p sees exactly the positions it would see alone. Queries attend
    causally to real keys; a padding query also sees itself, so no row of the mask is empty
    (its output is never used, but an all-masked row would be NaN in some kernels).
    """
    t_k = key_mask.size(1)
    positions = (key_mask.long().cumsum(dim=1) - 1).clamp(min=0)[:, t_k - t_q :]  # (B, t_q)
    keep = causal_mask(t_q, t_k, device=key_mask.device) & key_mask[:, None, :]  # (B, t_q, T_k)
    query_is_pad = ~key_mask[:, t_k - t_q :]  # (B, t_q)
    self_key = torch.eye(t_q, t_k, dtype=torch.bool, device=key_mask.device).roll(t_k - t_q, 1)
    keep |= query_is_pad[:, :, None] & self_key
    return positions, keep[:, None]


class MultiHeadAttention(nn.Module):
    """H attention heads in parallel, each over its own d_model / H slice, then mixed.

    One head can only produce one weighted average per position; several heads let a position
    look for different things at once (a previous word, a matching bracket...). The heads are
    not separate modules: q/k/v are projected once to d_model and reshaped to (B, H, T, d_head).

    Self-attention when `context` is None, cross-attention (queries from x, keys and values from
    `context`) otherwise. With `rotary` (RoPE), self-attention turns q and k by their positions
    before the scores are taken; cached keys are stored already turned. Set
    `record_weights = True` to take the explicit path and keep the weights in `last_weights`
    (B, H, T_q, T_k) for plots; by default the fused kernel is used.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        rotary: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if d_model <= 0 or n_heads <= 0 or d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} must be a positive multiple of n_heads={n_heads}; "
                "choose d_model = n_heads * d_head"
            )
        self.d_model = d_model
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        # Rotary position embedding (minigpt.embeddings.RotaryPositionalEmbedding, or any
        # module called as rotary(x, offset)): turns q and k in self-attention only.
        self.rotary = rotary
        self.record_weights = False
        self.last_weights: Tensor | None = None

    def _split_heads(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION multihead
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, d_head)
        ### END SOLUTION

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | StaticKVCache | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (B, T_q, d_model) [, context (B, T_k, d_model)] -> (B, T_q, d_model).

        `mask`: keep mask broadcastable to (B, H, T_q, T_k); a 3-D mask is read as
        (B, T_q, T_k). `is_causal`: also hide future keys. `cache`: for self-attention the new
        keys/values are appended and the queries sit after the cached positions; for
        cross-attention the projected `context` is stored on the first call and reused after.
        `positions` (B, T_q): per-row positions for RoPE (padded batches); default: the
        cache length onwards.
        """
        b, t_q, _ = x.shape
        offset = 0 if cache is None else cache.length  # position of x's first token
        if context is None:  # self-attention: queries, keys and values all from x
            q, k, v = speedups.project(x, (self.q_proj, self.k_proj, self.v_proj))
            q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
            if self.rotary is not None:
                at = offset if positions is None else positions
                q, k = self.rotary(q, at), self.rotary(k, at)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H, offset + T_q, d_head)
        else:  # cross-attention: keys and values from the context (the encoder's memory)
            q = self._split_heads(self.q_proj(x))
            if cache is not None and cache.length > 0:
                k, v = cache.k, cache.v
            else:
                k, v = speedups.project(context, (self.k_proj, self.v_proj))
                k, v = self._split_heads(k), self._split_heads(v)
                if cache is not None:
                    cache.append(k, v)
        t_k = k.size(-2)
        if mask is not None and mask.dim() == 3:
            mask = mask.unsqueeze(1)  # (B, T_q, T_k) -> (B, 1, T_q, T_k)
        dropout_p = self.dropout if self.training else 0.0
        # A single new query at the end of the cache sees every key: no causal mask needed.
        causal = is_causal and not (t_q == 1 and t_k == offset + 1)

        out = None
        if not self.record_weights:
            out = speedups.fused_attention(q, k, v, mask, causal, dropout_p)
        if out is None:  # the written-out formula, with the causal mask made explicit
            if causal:
                future_hidden = causal_mask(t_q, t_k, device=x.device)
                mask = future_hidden if mask is None else mask & future_hidden
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
            if self.record_weights:
                self.last_weights = weights.detach()
        ### BEGIN SOLUTION multihead
        out = out.transpose(1, 2).reshape(b, t_q, self.d_model)  # merge heads: (B, T_q, d_model)
        ### END SOLUTION
        return speedups.linear(out, self.out_proj)  # self.out_proj(out), faster (speedups.py)
