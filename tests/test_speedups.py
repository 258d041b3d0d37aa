"""Every speed trick computes what its plain path computes, and `reference_mode` turns it off.

The fast dropout masks are checked statistically (their random stream differs from PyTorch's);
the fused projection, the attention kernel choice and the oneDNN linear are compared with the
plain path.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_float_close
from torch import nn

from minigpt import speedups
from minigpt.attention import causal_mask, scaled_dot_product_attention
from minigpt.config import ModelConfig
from minigpt.models import DecoderLM
from minigpt.speedups import fast_keep_mask as keep_mask


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


def _close(a: torch.Tensor, b: torch.Tensor, ulps: float = 16.0) -> None:
    """Equal to a few float32 roundings of the values' own size (any CPU's matmul order)."""
    eps = torch.finfo(a.dtype).eps
    torch.testing.assert_close(a, b, rtol=ulps * eps, atol=ulps * eps * b.abs().max().item())


def test_fused_projection_equals_three_linears_and_their_gradients() -> None:
    torch.manual_seed(0)
    layers = [nn.Linear(32, 32) for _ in range(3)]
    x = torch.randn(4, 100, 32, requires_grad=True)  # 400 rows: above FUSE_MIN_ROWS
    fused = speedups.project(x, layers)
    fused_grads = torch.autograd.grad(sum(o.square().sum() for o in fused), [x, layers[1].weight])
    plain = [m(x) for m in layers]
    plain_grads = torch.autograd.grad(sum(o.square().sum() for o in plain), [x, layers[1].weight])
    for a, b in zip(fused + list(fused_grads), plain + list(plain_grads), strict=True):
        _close(a, b)


def test_projection_keeps_a_subclassed_linear_own_forward() -> None:
    """A quantized or sharded Linear (here: one that doubles its output) is never bypassed."""

    class Doubling(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    layers = [Doubling(8, 8), nn.Linear(8, 8)]
    x = torch.randn(1000, 8)
    out = speedups.project(x, layers)
    torch.testing.assert_close(out[0], layers[0](x))
    torch.testing.assert_close(out[1], layers[1](x))


@pytest.mark.parametrize("causal", [False, True])
def test_fused_attention_equals_the_formula(causal: bool) -> None:
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    fused = speedups.fused_attention(q, k, v, None, causal, 0.0)
    assert fused is not None
    mask = causal_mask(10) if causal else None
    _close(fused, scaled_dot_product_attention(q, k, v, mask)[0])


def test_fused_attention_declines_what_it_cannot_or_should_not_do() -> None:
    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    long_k = torch.randn(1, 2, 6, 8)
    assert speedups.fused_attention(q, long_k, long_k, None, True, 0.0) is None  # cached keys
    keep = torch.ones(4, 4, dtype=torch.bool)
    assert speedups.fused_attention(q, k, v, keep, True, 0.0) is None  # causal + another mask
    bf16 = [t.bfloat16() for t in (q, k, v)]
    assert speedups.fused_attention(*bf16, None, False, 0.0) is None  # slow kernel on a CPU
    assert speedups.fused_attention(q, k, v, keep, False, 0.0) is not None


def test_reference_mode_turns_every_trick_off_and_back_on_even_after_an_error() -> None:
    q = torch.randn(1, 1, 2, 4)
    x = torch.randn(512, 4)
    with pytest.raises(RuntimeError), speedups.reference_mode():
        assert not speedups.enabled()
        assert speedups.fused_attention(q, q, q, None, False, 0.0) is None
        assert speedups.dropout_mask(x, 0.5) is None
        raise RuntimeError("boom")
    assert speedups.enabled()
    assert speedups.dropout_mask(x, 0.5) is not None


@pytest.fixture
def onednn_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn the oneDNN linear on for this machine's vendor, whatever it is, to test its numbers."""
    if not speedups._onednn_available():
        pytest.skip("this PyTorch build has no oneDNN linear op, so the trick never runs here")
    monkeypatch.setattr(speedups, "ONEDNN_VENDORS", (speedups.cpu_vendor(),))


def _runs_onednn(out: torch.Tensor) -> bool:
    return type(out.grad_fn).__name__ == "_OneDNNLinearBackward"


@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_equals_linear_and_its_gradients(onednn_here: None, bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(48, 80, bias=bias)
    x = torch.randn(3, 100, 48, requires_grad=True)  # 300 rows: above ONEDNN_MIN_ROWS
    fast = speedups.linear(x, layer)
    assert _runs_onednn(fast)
    params = [x, layer.weight] + ([layer.bias] if bias else [])
    fast_grads = torch.autograd.grad(fast.square().sum(), params)
    plain = layer(x)
    plain_grads = torch.autograd.grad(plain.square().sum(), params)
    assert fast.shape == plain.shape
    for a, b in zip([fast, *fast_grads], [plain, *plain_grads], strict=True):
        assert_float_close(a, b)


def test_onednn_linear_is_used_only_where_it_was_measured(
    onednn_here: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain path: another vendor, few rows, bf16, autocast, a subclassed Linear, reference mode."""
    layer, x = nn.Linear(16, 16), torch.randn(512, 16, requires_grad=True)
    assert _runs_onednn(speedups.linear(x, layer))
    assert not _runs_onednn(speedups.linear(x[:8], layer))  # decoding-sized: MKL
    assert speedups.linear(x.bfloat16(), layer.bfloat16()).dtype == torch.bfloat16
    layer.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert speedups.linear(x, layer).dtype == torch.bfloat16  # autocast's bf16 matmul
    with speedups.reference_mode():
        assert not _runs_onednn(speedups.linear(x, layer))

    class Doubling(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    doubling = Doubling(16, 16)
    torch.testing.assert_close(speedups.linear(x, doubling), 2 * nn.Linear.forward(doubling, x))
    monkeypatch.setattr(speedups, "ONEDNN_VENDORS", ("SomeOtherVendor",))
    assert not _runs_onednn(speedups.linear(x, layer))


def test_decoder_lm_trains_to_the_same_numbers_with_and_without_the_tricks(
    onednn_here: None,
) -> None:
    """Loss and every gradient of a training step: tricks on (oneDNN linears, fused q/k/v and
    attention kernel) vs `reference_mode` (plain nn.Linear and the written-out attention)."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, max_len=32, d_model=32, n_heads=2, n_layers=2, d_ff=64,
                         dropout=0.0)  # fmt: skip
    model = DecoderLM(config)
    idx, targets = torch.randint(0, 64, (2, 10, 32)).unbind(0)  # 320 rows per linear

    def step() -> list[torch.Tensor]:
        _, loss = model(idx, targets)
        return [loss, *torch.autograd.grad(loss, list(model.parameters()))]

    fast = step()
    with speedups.reference_mode():
        plain = step()
    for a, b in zip(fast, plain, strict=True):
        assert_float_close(a, b)
