"""Speed tricks, all in one marked place, each next to the measurement that justifies it.

The teaching code reads like the formulas: `attention.py` projects q, k and v with three
`nn.Linear`s and writes softmax(q k^T / sqrt(d_k)) v out; `dropout.py` multiplies by a
Bernoulli mask. Where a faster way to compute *the same numbers* pays off, that code asks this
file, and this file answers with the fast result or `None` ("take the plain path"). Nothing
here changes what a model computes beyond float rounding; the tests compare every trick with
its plain path, and `reference_mode()` turns all of them off at once (parity tests use it to
replay PyTorch's own random stream).

The tricks:

1. `project` — one matmul against the concatenated q/k/v weights instead of three (~10% of an
   attention forward+backward at training sizes, `benchmarks/attention.py`). Only for plain
   `nn.Linear`s: a quantized or sharded layer keeps its own forward.
2. `fused_attention` — PyTorch's fused `F.scaled_dot_product_attention` kernel, except under
   bf16 on a CPU, where it is 2-4x slower (forward+backward) than the written-out formula
   (torch 2.13, 2 cores), and except for causal masks the kernel cannot express (queries that
   do not end at the last key, or a causal mask combined with another mask).
3. `fast_keep_mask` — CPU dropout masks from one 32-bit random word per *two* elements: with
   dropout 0.1 PyTorch's per-element Mersenne-Twister draws took 36% of a `tiny` training step
   (bf16, 2 cores, torch 2.13); this is about 2x faster to draw.

Two more live where they must, and are only switches: the fused AdamW kernel
(`minigpt.training.optim.fused_adamw`, an optimizer flag: a `tiny` bf16 step 70 -> 64 ms)
and the OpenMP wait policy (`minigpt.cli`, which must be set before torch is imported: 2.3x
faster training when another job shares the two cores).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_enabled = True


@contextmanager
def reference_mode() -> Iterator[None]:
    """Inside the block every trick is off: the plain path (and PyTorch's own dropout) runs."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def enabled() -> bool:
    """Whether the tricks are on (they are, outside `reference_mode()`)."""
    return _enabled


# ------------------------------------------------------------------ 1. fused q/k/v projection

# Below this many rows (batch * tokens) the three projections stay separate: measured on CPU,
# concatenating the weights (a copy on every call) only pays off from a few hundred rows up, so
# token-by-token decoding keeps the three small matmuls.
FUSE_MIN_ROWS = 256


def project(x: Tensor, layers: Sequence[nn.Module]) -> list[Tensor]:
    """[layer(x) for layer in layers], computed as one matmul when that is faster.

    Autograd splits the gradient of the concatenated weight back into each `nn.Linear`, so
    training sees three ordinary layers.
    """
    rows = x.numel() // max(x.size(-1), 1)
    plain = type(layers[0]) is nn.Linear and all(type(m) is nn.Linear for m in layers)
    if not _enabled or not plain or len(layers) == 1 or rows < FUSE_MIN_ROWS:
        return [layer(x) for layer in layers]
    weight = torch.cat([m.weight for m in layers], dim=0)  # (n * d_out, d_in)
    bias = None if layers[0].bias is None else torch.cat([m.bias for m in layers], dim=0)
    sizes = [m.weight.size(0) for m in layers]
    return list(F.linear(x, weight, bias).split(sizes, dim=-1))


# ------------------------------------------------------------------ 2. attention kernel choice


def fused_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, dropout_p: float
) -> Tensor | None:
    """softmax(q k^T / sqrt(d_k) + mask) v by PyTorch's fused kernel, or None when the
    written-out formula should run instead (faster there, or a mask the kernel cannot take).

    q (B, H, T_q, d), k and v (B, H, T_k, d); `mask` a keep mask; `causal`: also hide future
    keys, with the queries aligned to the end of the keys.
    """
    if not _enabled:
        return None
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        return None  # the fused CPU kernel is 2-4x slower in bf16 (see the module docstring)
    if causal and (mask is not None or q.size(-2) != k.size(-2)):
        return None  # is_causal=True aligns queries to the *start* and takes no second mask
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal
    )


# ------------------------------------------------------------------ 3. fast CPU dropout masks

_LEVELS = 1 << 16  # distinct values of one 16-bit half: p is resolved to 1 / 65536


def resolved_p(p: float) -> float:
    """The drop probability `fast_keep_mask` actually draws: p rounded to a multiple of 2^-16."""
    return round(p * _LEVELS) / _LEVELS


def fast_keep_mask(
    shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str
) -> Tensor:
    """A boolean mask of `shape`, True with probability 1 - resolved_p(p), independently.

    One 32-bit random word is read as two 16-bit halves, each uniform on [-32768, 32767]; an
    element is kept when its half is at or above -32768 + round(p * 65536).
    """
    n = 1
    for size in shape:
        n *= size
    words = torch.empty((n + 1) // 2, dtype=torch.int32, device=device)
    words.random_(-(2**31), 2**31 - 1)  # uniform 32-bit words (one value of 2^32 missing)
    halves = words.view(torch.int16)[:n].view(shape)  # two uniform 16-bit draws per word
    return halves >= -(_LEVELS // 2) + round(p * _LEVELS)


def dropout_mask(x: Tensor, p: float) -> Tensor | None:
    """The fast keep mask for dropping `x` with probability p, or None for PyTorch's dropout
    (on a GPU its kernel is already fast, and `reference_mode` replays its random stream)."""
    if not _enabled or x.device.type != "cpu":
        return None
    return fast_keep_mask(x.shape, p, x.device)
