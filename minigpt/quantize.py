"""Number formats and int8 quantization: what each format keeps, and a model stored in 8 bits.

A float is a sign, an exponent (the range: how large or small a number can be) and a fraction
(the precision: how many significant bits). FP32 spends 8 + 23 bits, FP16 5 + 10, BF16 8 + 7:
BF16 keeps FP32's whole range and gives up precision, which is why it trains without loss
scaling (`format_bits` reads these from PyTorch; `stored_value` shows what pi becomes in each).

int8 has no exponent at all: 256 evenly spaced values. Symmetric absmax quantization maps a
tensor's largest magnitude to 127, so x ~ q * scale with scale = max|x| / 127 and q an integer
in [-127, 127]; the rounding error is at most scale / 2. One scale per tensor is simplest;
one per output channel (a row of a Linear's weight) is better, because one row with a large
weight no longer coarsens every other row's grid. A model quantized this way stores its
matrices in 1 byte per weight instead of 4 and is run by dequantizing each weight just before
its matmul (`Int8Linear`): the memory shrinks, the arithmetic stays in float. Lesson 10
measures the size and the quality (validation bits per byte) this costs; `minigpt quantize
CKPT --int8` writes such a model as a checkpoint that `sample` and `eval` load.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FLOAT_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
}  # fmt: skip
INT8_MAX = 127  # symmetric: -127..127, so that 0 is exact and the grid is the same both ways
PI = 3.141592  # the course's example value


def format_bits(name: str) -> dict[str, int]:
    """Sign / exponent / fraction bits and bytes of `name` (fp32, fp16, bf16, int8).

    Floats are read from `torch.finfo`: eps = 2^-fraction_bits. int8 is a sign and 7 bits of
    magnitude (two's complement), no exponent.
    """
    if name == "int8":
        return {"bits": 8, "sign": 1, "exponent": 0, "fraction": 7, "bytes": 1}
    if name not in FLOAT_DTYPES:
        raise ValueError(f"unknown format {name!r}; use fp32, fp16, bf16 or int8")
    info = torch.finfo(FLOAT_DTYPES[name])
    fraction = round(-math.log2(info.eps))
    return {"bits": info.bits, "sign": 1, "exponent": info.bits - 1 - fraction,
            "fraction": fraction, "bytes": info.bits // 8}  # fmt: skip


def stored_value(x: float, name: str) -> float:
    """The value a float format actually stores for `x` (round to nearest), as a Python float."""
    if name not in FLOAT_DTYPES:
        raise ValueError(f"unknown float format {name!r}; use fp32, fp16 or bf16")
    return float(torch.tensor(x, dtype=torch.float64).to(FLOAT_DTYPES[name]).double())


def bit_pattern(x: float, name: str) -> str:
    """`x` stored in `name` as 'sign exponent fraction' bits (fp16 pi: '0 10000 1001001000')."""
    bits = format_bits(name)
    as_int = {"fp32": torch.int32, "fp16": torch.int16, "bf16": torch.int16}[name]
    raw = int(torch.tensor(x, dtype=torch.float64).to(FLOAT_DTYPES[name]).view(as_int))
    word = format(raw & ((1 << bits["bits"]) - 1), f"0{bits['bits']}b")
    e = 1 + bits["exponent"]
    return f"{word[0]} {word[1:e]} {word[e:]}"


def quantize_int8(tensor: Tensor, per_channel: bool = False) -> tuple[Tensor, Tensor]:
    """Symmetric absmax int8: (q, scale) with tensor ~ q * scale, |q| <= 127.

    `per_channel=True` gives each row (dim 0: a Linear's output channel) its own scale, of shape
    (rows, 1, ...); otherwise one scale for the whole tensor (a 0-d tensor). An all-zero row
    gets scale 1 (any scale represents zeros exactly). Scales are float32.
    """
    x = tensor.detach().float()
    ### BEGIN SOLUTION quantize
    if per_channel:
        if x.dim() < 1:
            raise ValueError("per-channel quantization needs a tensor with at least one dim")
        absmax = x.abs().reshape(x.size(0), -1).amax(dim=1)
        absmax = absmax.reshape(-1, *([1] * (x.dim() - 1)))
    else:
        absmax = x.abs().max()
    scale = torch.where(absmax > 0, absmax / INT8_MAX, torch.ones_like(absmax))
    q = torch.round(x / scale).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale
    ### END SOLUTION


def dequantize_int8(q: Tensor, scale: Tensor) -> Tensor:
    """q * scale as float32: the values the int8 tensor stands for."""
    ### BEGIN SOLUTION quantize
    return q.float() * scale
    ### END SOLUTION


class Int8Linear(nn.Module):
    """A Linear whose weight is stored as int8 + float32 scales and dequantized on each call.

    The bias (small) stays a float parameter. Not an `nn.Linear`, so `minigpt.speedups.project`
    leaves it alone: it runs its own forward. State-dict keys: `weight_int8`, `weight_scale`,
    `bias`, which is what a quantized checkpoint stores.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 per_channel: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.per_channel = per_channel
        q = torch.zeros(out_features, in_features, dtype=torch.int8)
        self.register_buffer("weight_int8", q)
        scale_shape = (out_features, 1) if per_channel else ()
        self.register_buffer("weight_scale", torch.ones(scale_shape))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, per_channel: bool = True) -> Int8Linear:
        """Quantize a trained `nn.Linear` (its weight rounded to int8, its bias copied)."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, per_channel)
        q, scale = quantize_int8(linear.weight, per_channel)
        layer.weight_int8.copy_(q)
        layer.weight_scale = scale.to(linear.weight.device)
        layer.to(linear.weight.device)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach().float())
        return layer

    @property
    def weight(self) -> Tensor:
        """The dequantized weight (out_features, in_features), float32."""
        return dequantize_int8(self.weight_int8, self.weight_scale)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in_features) -> (..., out_features), with the weight in x's dtype."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)

    def extra_repr(self) -> str:
        kind = "per-channel" if self.per_channel else "per-tensor"
        return f"in={self.in_features}, out={self.out_features}, int8 {kind}"


def quantize_model(model: nn.Module, per_channel: bool = True) -> int:
    """Replace every `nn.Linear` of `model` (in place) by an `Int8Linear`; returns how many.

    A Linear whose weight is shared with an embedding (a tied LM head) is left as it is: its
    matrix is the token table, which the embedding looks up in float. The weights are the
    model's current ones, so quantize a trained model; call it on a fresh one (to load a
    quantized state dict into) and the zeros are overwritten by `load_state_dict`.
    """
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    targets = [
        (name, m) for name, m in model.named_modules()
        if type(m) is nn.Linear and id(m.weight) not in tables
    ]  # fmt: skip
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear.from_linear(linear, per_channel))
    return len(targets)


def quantization_error(tensor: Tensor, per_channel: bool = False) -> float:
    """Largest |x - dequantize(quantize(x))| relative to max|x|: what int8 rounding costs."""
    q, scale = quantize_int8(tensor, per_channel)
    err = (dequantize_int8(q, scale) - tensor.float()).abs().max()
    return float(err / tensor.float().abs().max().clamp_min(1e-30))
