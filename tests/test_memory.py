"""Memory formulas: the course's tables and the ZeRO paper reproduced, and every estimate
checked against what a real training step keeps and peaks at (tiny and the 384-wide `small`)."""

from __future__ import annotations

import pytest
import torch

from minigpt import memory
from minigpt.config import ModelConfig
from minigpt.memory import (
    GB,
    activation_bytes,
    course_deck_training_bytes,
    course_rule_bytes,
    logits_bytes,
    measure_training_step,
    model_bytes,
    peak_training_bytes,
    smallest_fitting_setting,
    training_bytes,
    zero_bytes_per_device,
)
from minigpt.models import DecoderLM
from minigpt.speedups import FUSE_MIN_ROWS

# Stated tolerances: the activation count is exact up to the loss scalar (4 bytes), so 0.1%;
# the peak formula ignores the optimizer's and the embedding's small temporaries: 10%.
ACTIVATION_RTOL = 1e-3
PEAK_RTOL = 0.10


def test_course_rules_of_thumb():
    assert model_bytes(1e9, "fp32") / GB == 4.0  # 1B parameters -> 4 GB to store
    assert [model_bytes(1e9, p) / GB for p in ("fp16", "bf16", "int8")] == [2.0, 2.0, 1.0]
    rule = course_rule_bytes(1e9)
    assert rule["total"] / GB == 24.0 and rule["total"] - rule["weights"] == 20 * 1e9
    assert course_rule_bytes(175e9)["total"] / GB == pytest.approx(4200)
    assert course_rule_bytes(500e9)["total"] / GB == pytest.approx(12000)
    # the other deck: ~80 GB for 1B (40 in 16-bit, 20 in 8-bit), 14,000 / 40,000 GB
    assert [course_deck_training_bytes(1e9, p) / GB for p in ("fp32", "bf16", "int8")] == [
        80.0, 40.0, 20.0,
    ]  # fmt: skip
    assert course_deck_training_bytes(175e9) / GB == pytest.approx(14000)
    assert course_deck_training_bytes(500e9) / GB == pytest.approx(40000)
    # our fp32 Adam accounting is the rule without its activation guess
    fp32 = training_bytes(1e9, "fp32")
    assert fp32.total == rule["total"] - rule["activations"] == 16e9
    with pytest.raises(ValueError, match="int8"):
        training_bytes(1e9, "int8")
    with pytest.raises(ValueError, match="fp8"):
        model_bytes(1, "fp8")


def test_zero_paper_figure_1():
    # Rajbhandari et al. 2020, Figure 1: 7.5B parameters, 64 devices, mixed-precision Adam.
    gb = [zero_bytes_per_device(7.5e9, 64, stage) / 1e9 for stage in range(4)]
    assert gb == pytest.approx([120.0, 31.4, 16.6, 1.9], abs=0.05)
    assert zero_bytes_per_device(100, 1, 3) == zero_bytes_per_device(100, 1, 0) == 1600
    # mixed precision's model states equal the paper's 2 + 2 + 12
    mixed = training_bytes(7.5e9, "bf16")
    assert mixed.total == zero_bytes_per_device(7.5e9, 64, 0)
    with pytest.raises(ValueError, match="stage=4"):
        zero_bytes_per_device(1, 1, 4)


def test_activations_grow_with_batch_and_quadratically_with_explicit_attention():
    c = ModelConfig.from_preset("small", dropout=0.0)
    one, two = activation_bytes(c, 1, fused_qkv=False), activation_bytes(c, 2, fused_qkv=False)
    assert two == pytest.approx(2 * one, rel=1e-3)  # linear in batch (ids aside)
    fused = activation_bytes(c, 4, 256) - activation_bytes(c, 4, 128)
    explicit = activation_bytes(c, 4, 256, fused_attention=False) - activation_bytes(
        c, 4, 128, fused_attention=False
    )
    assert explicit > fused * 1.2  # the t^2 attention maps
    ckpt = activation_bytes(c, 8, checkpointing=True)
    assert ckpt < activation_bytes(c, 8) / 2


@pytest.mark.parametrize(
    ("preset", "overrides", "batch"),
    [
        ("tiny", {}, 8),  # dropout 0.1, gelu, fused attention's fallback
        ("tiny", {"dropout": 0.0}, 2),  # 128 rows: unfused q/k/v, gradients set the peak
        ("small", {}, 2),  # 384 wide, no dropout, fused attention kernel
        ("small", {"dropout": 0.1, "activation": "relu"}, 2),
    ],
)
def test_estimates_match_a_measured_training_step(preset, overrides, batch):
    torch.manual_seed(0)
    config = ModelConfig.from_preset(preset, **overrides)
    model = DecoderLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, config.vocab_size, (batch, config.max_len))
    measured = measure_training_step(model, optimizer, ids, ids)
    n = model.num_parameters()
    acts = activation_bytes(config, batch, fused_qkv=batch * config.max_len >= FUSE_MIN_ROWS)
    est = training_bytes(n, "fp32", acts)
    assert measured["weights"] == est.weights and measured["gradients"] == est.gradients
    # Adam's moments are 8 bytes per parameter; each tensor also keeps a 4-byte step count
    n_tensors = len(list(model.parameters()))
    assert measured["optimizer"] == est.optimizer + 4 * n_tensors
    assert measured["activations"] == pytest.approx(est.activations, rel=ACTIVATION_RTOL)
    peak = peak_training_bytes(est, logits_bytes(config, batch))
    assert measured["peak"] == pytest.approx(peak, rel=PEAK_RTOL)
    # the usual sum of the parts is an upper bound on the real peak, and not a loose one
    assert peak <= est.total and 0.8 * est.total < measured["peak"] < est.total


def test_smallest_fitting_setting_tries_cheap_changes_first():
    c = ModelConfig.from_preset("gpt2-small")
    n = 124_439_808
    roomy = smallest_fitting_setting(c, n, 80 * memory.GIB, batch_size=8)
    assert roomy is not None and roomy.precision == "bf16" and roomy.micro_batch == 8
    tight = smallest_fitting_setting(c, n, 6 * memory.GIB, batch_size=64)
    assert tight is not None and tight.micro_batch < 64
    assert tight.micro_batch * tight.grad_accum >= 64 and tight.bytes <= 0.9 * 6 * memory.GIB
    assert smallest_fitting_setting(c, 7e9, 24 * memory.GIB, batch_size=8) is None
    sharded = smallest_fitting_setting(c, 7e9, 24 * memory.GIB, batch_size=8, n_devices=64)
    assert sharded is not None and sharded.zero_stage >= 1
    assert "ZeRO" in sharded.describe()
