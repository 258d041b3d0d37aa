"""Number formats and int8 quantization: the course's table and pi, absmax rounding bounds,
Int8Linear equal to its dequantized matmul, and a quantized DecoderLM close to the float one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_float_close

from minigpt.config import ModelConfig
from minigpt.memory import tensor_bytes
from minigpt.models import DecoderLM
from minigpt.quantize import (
    PI,
    Int8Linear,
    bit_pattern,
    dequantize_int8,
    format_bits,
    quantize_int8,
    quantize_model,
    stored_value,
)


def test_formats_match_the_course_table():
    # (bits, exponent, fraction, bytes): FP32 32/8/23/4, FP16 16/5/10/2, BF16 16/8/7/2, INT8 8/-/7/1
    table = {"fp32": (32, 8, 23, 4), "fp16": (16, 5, 10, 2), "bf16": (16, 8, 7, 2),
             "int8": (8, 0, 7, 1)}  # fmt: skip
    for name, expected in table.items():
        b = format_bits(name)
        assert (b["bits"], b["exponent"], b["fraction"], b["bytes"]) == expected
        assert b["sign"] + b["exponent"] + b["fraction"] == b["bits"]
    with pytest.raises(ValueError, match="fp8"):
        format_bits("fp8")


def test_pi_in_each_format():
    assert stored_value(PI, "fp32") == pytest.approx(3.1415920257568359375, abs=0)
    assert stored_value(PI, "fp16") == 3.140625 == stored_value(PI, "bf16")
    # fp32 keeps ~7 significant digits, the 16-bit formats ~3
    assert abs(stored_value(PI, "fp32") - PI) < 1e-7
    assert abs(stored_value(PI, "fp16") - PI) == pytest.approx(0.000967, rel=1e-6)
    assert bit_pattern(PI, "fp32") == "0 10000000 10010010000111111011000"
    assert bit_pattern(PI, "fp16") == "0 10000 1001001000"
    assert bit_pattern(PI, "bf16") == "0 10000000 1001001"
    # bf16 keeps fp32's range, fp16 does not
    assert stored_value(1e20, "bf16") == pytest.approx(1e20, rel=1e-2)
    assert stored_value(1e20, "fp16") == float("inf")


@pytest.mark.parametrize("per_channel", [False, True])
def test_absmax_rounding_is_within_half_a_step(per_channel):
    torch.manual_seed(0)
    w = torch.randn(32, 48)
    w[5] *= 40.0  # one row with large weights
    w[7] = 0.0  # and one of zeros
    q, scale = quantize_int8(w, per_channel)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    assert scale.shape == ((32, 1) if per_channel else ())
    err = (dequantize_int8(q, scale) - w).abs()
    assert bool((err <= scale / 2 * (1 + 1e-6)).all())
    assert bool((dequantize_int8(q, scale)[7] == 0).all())


def test_per_channel_beats_per_tensor_when_rows_differ():
    torch.manual_seed(0)
    w = torch.randn(32, 48)
    w[5] *= 40.0
    per_tensor = (dequantize_int8(*quantize_int8(w)) - w).abs().mean()
    per_channel = (dequantize_int8(*quantize_int8(w, per_channel=True)) - w).abs().mean()
    assert per_channel < per_tensor / 10  # the other rows get their own, 40x finer, grid


def test_int8_linear_is_its_dequantized_matmul():
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 32)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(4, 10, 48)
    q, scale = quantize_int8(linear.weight, per_channel=True)
    expected = F.linear(x, dequantize_int8(q, scale), linear.bias)
    assert_float_close(layer(x), expected)
    assert torch.equal(layer.weight_int8, q)
    # and close to the float layer: the rounding error of 1/254 of each row's range
    assert (layer(x) - linear(x)).abs().max() < 0.02 * linear(x).abs().max()
    state = layer.state_dict()
    assert set(state) == {"weight_int8", "weight_scale", "bias"}


def test_quantized_decoder_is_close_and_smaller():
    torch.manual_seed(0)
    config = ModelConfig.from_preset("tiny", dropout=0.0, n_layers=2)
    model = DecoderLM(config).eval()
    ids = torch.randint(0, config.vocab_size, (2, 64))  # 128 rows
    ids_long = torch.randint(0, config.vocab_size, (8, 64))  # 512 rows: the fused-q/k/v size
    with torch.no_grad():
        before, before_long = model(ids)[0], model(ids_long)[0]
    size_before = tensor_bytes(model.state_dict().values())
    assert quantize_model(model) == 2 * 6  # q, k, v, out, fc1, fc2 per block
    assert type(model.lm_head) is torch.nn.Linear  # tied to the embedding: left in float
    assert model.lm_head.weight is model.embedding.token.weight
    with torch.no_grad():
        after, after_long = model(ids)[0], model(ids_long)[0]
    for a, b in ((after, before), (after_long, before_long)):
        rel = float((a - b).norm() / b.norm())
        assert 0 < rel < 0.05, rel
    size_after = tensor_bytes(model.state_dict().values())
    n_matrix = 2 * (4 * 256 * 256 + 2 * 256 * 1024)
    # each block matrix went from 4 bytes to 1 (+ 4 bytes of scale per output row)
    assert size_before - size_after == pytest.approx(3 * n_matrix, rel=0.01)
    # a fresh model given int8 linears loads the quantized state exactly
    fresh = DecoderLM(config).eval()
    quantize_model(fresh)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(ids)[0], after)
