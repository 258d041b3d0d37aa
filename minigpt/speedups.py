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

4. `linear` — an `nn.Linear` (forward and both backward matmuls) by oneDNN's matmul instead of
   MKL's sgemm, in float32 on AMD CPUs, where oneDNN's kernels ran the linears of a training
   step 8-27% faster; a whole 6x384 training step 2285 -> 1949 ms (1.17x), a `tiny` one
   176 -> 171 ms (1.03x: less of it is matmul). `project` uses it for the fused q/k/v matmul.

Two more live where they must, and are only switches: the fused AdamW kernel
(`minigpt.training.optim.fused_adamw`, an optimizer flag: a `tiny` bf16 step 70 -> 64 ms)
and the OpenMP wait policy (`minigpt.cli`, which must be set before torch is imported: 2.3x
faster training when another job shares the two cores).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.device import cpu_info

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
    out = _OneDNNLinear.apply(x, weight, bias) if _use_onednn(x, weight) else None
    return list((F.linear(x, weight, bias) if out is None else out).split(sizes, dim=-1))


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


# ------------------------------------------------------------------ 4. oneDNN linear on AMD CPUs

# Where oneDNN's float32 matmul beat MKL's: an AMD EPYC (Zen 4, AVX-512, torch 2.13 with MKL
# 2024.2 and oneDNN 3.12). Forward + both backward matmuls of each linear of the `tiny` and
# 6x384 training steps (512 and 2048 rows), 1 thread, CPU time, interleaved medians: oneDNN
# 1.08-1.27x MKL (the forward and grad-input matmuls gain, the grad-weight one is even). Whole
# fp32 training steps, tricks on vs this one off, same run (load ~17 on 2 cores): 6x384
# 2285 -> 1949 ms, tiny 176 -> 171 ms. On Intel CPUs MKL is Intel's own tuned library (and their
# bf16 runs go to AMX, which this trick never touches), and nothing was measured there, so they
# keep MKL: the trick is on only where it was measured to pay.
ONEDNN_VENDORS = ("AuthenticAMD",)
# Below this many rows the plain path runs (token-by-token decoding: not measured, not needed).
ONEDNN_MIN_ROWS = 256


@functools.cache
def cpu_vendor() -> str:
    """The CPU's vendor id ("AuthenticAMD", "GenuineIntel", ...; "" when unknown)."""
    vendor = cpu_info("vendor_id")
    if vendor is not None:
        return vendor
    return "" if platform.system() != "Darwin" else platform.processor()


@functools.cache
def _onednn_available() -> bool:
    ops = torch.ops.mkldnn
    return torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise")


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    """Whether x @ weight^T (+ bias) should go to oneDNN: float32 on a CPU in ONEDNN_VENDORS,
    tricks on, no autocast (which would want bf16), and not while torch.compile traces."""
    return (
        _enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and type(weight) in (torch.Tensor, nn.Parameter)  # not a DTensor / FSDP shard
        and x.numel() >= ONEDNN_MIN_ROWS * x.size(-1) > 0
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and cpu_vendor() in ONEDNN_VENDORS
        and _onednn_available()
    )


def _onednn_matmul(a: Tensor, b_t: Tensor, bias: Tensor | None = None) -> Tensor:
    """a (M, K) @ b_t (N, K)^T + bias by oneDNN (the op PyTorch's CPU compiler emits)."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """F.linear(x, weight, bias) with its forward and grad-input matmuls run by oneDNN.

    Backward: grad_x = g @ W (the linear of g by W^T, oneDNN), grad_W = g^T @ x and grad_b = g
    summed over rows: the same formulas autograd uses for F.linear. grad_W stays PyTorch's own
    matmul: it runs as fast as oneDNN's (above), and MKL reads g^T and x^T in place, where
    oneDNN's op first copies both. Measured against the all-oneDNN version (1 process,
    alternating, idle AMD EPYC, 2 threads): 6x384 training step 908 -> 898 ms (median of
    per-round ratios 1.054x), `tiny` even (0.994x).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        x2 = x.reshape(-1, x.size(-1))  # (rows, d_in)
        ctx.save_for_backward(x2, weight)
        ctx.has_bias = bias is not None
        out = _onednn_matmul(x2, weight, bias)  # (rows, d_out)
        return out.view(*x.shape[:-1], weight.size(0))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x2, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.size(0))  # (rows, d_out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_matmul(g, weight.t()).view(*grad.shape[:-1], weight.size(1))
        if ctx.needs_input_grad[1]:
            grad_w = g.t().mm(x2)  # (d_out, d_in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b


def linear(x: Tensor, layer: nn.Module) -> Tensor:
    """layer(x), by oneDNN where that is faster (see ONEDNN_VENDORS); any other module, or a
    subclassed (quantized, LoRA) Linear, runs its own forward."""
    if type(layer) is not nn.Linear or not _use_onednn(x, layer.weight):
        return layer(x)
    return _OneDNNLinear.apply(x, layer.weight, layer.bias)
