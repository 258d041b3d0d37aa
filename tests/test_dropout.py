"""Dropout's fast CPU masks: the right drop rate, independence, scaling, gradients, eval identity.

The masks come from a different random stream than `torch.nn.functional.dropout`, so the
parity here is statistical (and exact where both are deterministic); tests/test_layers.py
replays PyTorch's own stream to prove where dropout sits in a layer.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_drop_rate_matches_p(p: float) -> None:
    torch.manual_seed(0)
    n = 400_000
    kept = keep_mask((n,), p, "cpu").float().mean().item()
    # 6 standard deviations of a Bernoulli mean: fails for a wrong rate, not by chance
    assert abs(kept - (1 - p)) < 6 * math.sqrt(p * (1 - p) / n)


def test_mask_entries_are_independent_and_cover_odd_sizes() -> None:
    """Neighbours share one 32-bit word; their halves must still be independent draws."""
    torch.manual_seed(1)
    mask = keep_mask((1001, 333), 0.5, "cpu").float()  # odd element count
    assert mask.shape == (1001, 333)
    even, odd = mask.flatten()[:-1:2], mask.flatten()[1::2]
    both = (even * odd).mean().item()
    assert abs(both - 0.25) < 0.01  # P(both kept) = P(kept)^2 when independent
    assert abs(mask.mean().item() - 0.5) < 0.01


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
