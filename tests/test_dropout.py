"""Dropout: scaling, gradients, eval identity, and PyTorch's own dropout in reference mode.

On a CPU the masks come from a different random stream than `torch.nn.functional.dropout`
(tests/test_speedups.py checks their statistics), so the parity here is statistical and exact
where both are deterministic; tests/test_layers.py replays PyTorch's own stream to prove where
dropout sits in a layer.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minigpt import speedups
from minigpt.dropout import Dropout, dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_survivors_are_scaled_and_mean_is_kept(dtype: torch.dtype) -> None:
    torch.manual_seed(2)
    x = torch.ones(200_000, dtype=dtype)
    y = dropout(x, 0.2)
    assert y.dtype == dtype
    survivors = y[y != 0]
    torch.testing.assert_close(survivors, torch.full_like(survivors, 1 / 0.8))
    assert abs(y.float().mean().item() - 1.0) < 0.01  # inverted dropout keeps the expectation


def test_gradient_is_the_same_mask_times_scale() -> None:
    torch.manual_seed(3)
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout(x, 0.3)
    y.sum().backward()
    expected = (y.detach() != 0).float() / 0.7
    torch.testing.assert_close(x.grad, expected)


def test_seeded_masks_repeat() -> None:
    torch.manual_seed(4)
    a = dropout(torch.ones(1000), 0.5)
    torch.manual_seed(4)
    b = dropout(torch.ones(1000), 0.5)
    assert torch.equal(a, b)


def test_module_is_identity_in_eval_and_equals_pytorch_at_the_edges() -> None:
    x = torch.randn(8, 16)
    layer = Dropout(0.4)
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(layer.eval()(x), F.dropout(x, 0.4, training=False))
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), F.dropout(x, 1.0, training=True))
    assert "p=0.4" in repr(layer)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_probability_is_a_clear_error(p: float) -> None:
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        Dropout(p)
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\]"):
        dropout(torch.ones(2), p)


def test_reference_mode_is_pytorchs_dropout_bit_for_bit() -> None:
    x = torch.randn(300, 7)
    torch.manual_seed(5)
    with speedups.reference_mode():
        ours = dropout(x, 0.3)
    torch.manual_seed(5)
    assert torch.equal(ours, F.dropout(x, 0.3, training=True))
    torch.manual_seed(5)
    assert not torch.equal(dropout(x, 0.3), ours)  # outside it, the fast masks are drawn
