"""FeedForward equals the feed-forward half of PyTorch's nn.TransformerEncoderLayer."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_float_close
from torch import nn

from minigpt.feedforward import FeedForward


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_matches_pytorch_encoder_layer_ffn(activation: str) -> None:
    torch.manual_seed(0)
    ffn = FeedForward(16, 48, activation=activation).eval()
    ref = nn.TransformerEncoderLayer(16, 2, 48, dropout=0.0, activation=activation).eval()
    with torch.no_grad():
        ref.linear1.weight.copy_(ffn.fc1.weight)
        ref.linear1.bias.copy_(ffn.fc1.bias)
        ref.linear2.weight.copy_(ffn.fc2.weight)
        ref.linear2.bias.copy_(ffn.fc2.bias)
    x = torch.randn(2, 5, 16)
    # PyTorch's feed-forward block (without the residual and norm around it)
    expected = ref.linear2(ref.dropout(ref.activation(ref.linear1(x))))
    assert_float_close(ffn(x), expected)


def test_gelu_is_exact_erf_form() -> None:
    ffn = FeedForward(4, 8, activation="gelu")
    with torch.no_grad():
        ffn.fc1.weight.copy_(torch.eye(8, 4))
        ffn.fc1.bias.zero_()
        ffn.fc2.weight.copy_(torch.eye(4, 8))
        ffn.fc2.bias.zero_()
    x = torch.tensor([[-1.0, 0.5, 1.0, 2.0]], dtype=torch.float32)
    expected = x * 0.5 * (1 + torch.erf(x / 2**0.5))
    # one float32 rounding apart at most (erf's implementations differ by an ulp across CPUs)
    assert_float_close(ffn(x), expected, ulps=4)


def test_shapes_bias_and_errors() -> None:
    ffn = FeedForward(8, 32, bias=False)
    assert ffn.fc1.bias is None and ffn.fc2.bias is None
    assert ffn(torch.randn(3, 8)).shape == (3, 8)
    assert ffn(torch.randn(2, 4, 8)).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="swish"):
        FeedForward(8, 32, activation="swish")


def test_dropout_only_in_training() -> None:
    torch.manual_seed(1)
    ffn = FeedForward(8, 64, dropout=0.5)
    x = torch.randn(4, 8)
    ffn.eval()
    torch.testing.assert_close(ffn(x), ffn(x))
    ffn.train()
    assert not torch.allclose(ffn(x), ffn(x))
