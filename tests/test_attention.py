"""Attention is proven equal to PyTorch's: nn.MultiheadAttention, F.scaled_dot_product_attention.

Our masks are KEEP masks (True = may attend); nn.MultiheadAttention's boolean masks mean the
opposite (True = blocked), so these tests, and only these tests, invert them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_float_close
from torch import nn

import minigpt.attention
from minigpt import speedups
from minigpt.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    length_mask,
    padding_mask,
    scaled_dot_product_attention,
)

D_MODEL, N_HEADS = 32, 4


@pytest.fixture(params=["fused", "separate"])
def projection(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the q/k/v projections fused into one matmul, then with three."""
    monkeypatch.setattr(speedups, "FUSE_MIN_ROWS", 0 if request.param == "fused" else 10**9)
    return request.param


def make_pair(bias: bool = True, seed: int = 0) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    """Our module and PyTorch's with identical weights, both in eval mode."""
    torch.manual_seed(seed)
    ours = MultiHeadAttention(D_MODEL, N_HEADS, bias=bias).eval()
    ref = nn.MultiheadAttention(D_MODEL, N_HEADS, bias=bias, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        if bias:
            ref.in_proj_bias.copy_(
                torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias])
            )
            ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ours, ref


def ref_grads(ref: nn.MultiheadAttention) -> dict[str, torch.Tensor]:
    """PyTorch's gradients split into our parameter names."""
    wq, wk, wv = ref.in_proj_weight.grad.chunk(3)
    grads = {
        "q_proj.weight": wq,
        "k_proj.weight": wk,
        "v_proj.weight": wv,
        "out_proj.weight": ref.out_proj.weight.grad,
    }
    if ref.in_proj_bias is not None:
        bq, bk, bv = ref.in_proj_bias.grad.chunk(3)
        grads |= {"q_proj.bias": bq, "k_proj.bias": bk, "v_proj.bias": bv}
        grads["out_proj.bias"] = ref.out_proj.bias.grad
    return grads


def test_causal_mask_aligned_to_end() -> None:
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())
    # two queries after three cached keys: query 0 is absolute position 3
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool()
    assert torch.equal(causal_mask(2, 5), expected)
    with pytest.raises(ValueError, match="t_k=2"):
        causal_mask(3, 2)


def test_padding_helpers() -> None:
    ids = torch.tensor([[5, 6, 0, 0], [7, 8, 9, 0]])
    mask = padding_mask(ids, pad_id=0)
    assert mask.shape == (2, 1, 1, 4)
    assert torch.equal(mask, length_mask(torch.tensor([2, 3]), max_len=4))
    assert length_mask(torch.tensor([1, 3])).shape == (2, 1, 1, 3)


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "both"])
def test_explicit_equals_torch_sdpa(mask_kind: str) -> None:
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 6, 8) for _ in range(3))
    keep = None
    if mask_kind in ("causal", "both"):
        keep = causal_mask(6)
    if mask_kind in ("padding", "both"):
        pad = length_mask(torch.tensor([6, 4]))
        keep = pad if keep is None else keep & pad
    out, weights = scaled_dot_product_attention(q, k, v, keep)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert_float_close(out, ref)
    assert weights.shape == (2, 3, 6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6))


def test_float_mask_is_added() -> None:
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    bias = torch.randn(4, 4)
    out, _ = scaled_dot_product_attention(q, k, v, bias)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


def test_fully_masked_rows_give_zeros_not_nan() -> None:
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 1, 3, 4, requires_grad=True) for _ in range(3))
    keep = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    out, weights = scaled_dot_product_attention(q, k, v, keep)
    assert torch.equal(weights[0, 0, 1], torch.zeros(3))
    assert torch.equal(out[0, 0, 1], torch.zeros(4))
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 3, 8)
    for record in (False, True):
        mha.record_weights = record
        assert torch.isfinite(mha(x, mask=keep)).all()


def test_gradcheck_explicit_float64() -> None:
    torch.manual_seed(4)
    q, k, v = (torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    keep = causal_mask(3) & torch.tensor([True, True, False])  # includes a key nobody sees

    def fn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return scaled_dot_product_attention(q, k, v, keep)[0]

    assert torch.autograd.gradcheck(fn, (q, k, v))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "both"])
def test_self_attention_matches_pytorch(mask_kind: str, bias: bool, projection: str) -> None:
    ours, ref = make_pair(bias=bias)
    torch.manual_seed(5)
    x = torch.randn(2, 7, D_MODEL)
    x_ref = x.clone()
    x.requires_grad_(True)
    x_ref.requires_grad_(True)
    lengths = torch.tensor([7, 4])
    is_causal = mask_kind in ("causal", "both")
    keep = length_mask(lengths) if mask_kind in ("padding", "both") else None
    out = ours(x, mask=keep, is_causal=is_causal)

    attn_mask = ~causal_mask(7) if is_causal else None  # PyTorch: True = blocked
    key_padding_mask = ~keep[:, 0, 0, :] if keep is not None else None
    expected, _ = ref(
        x_ref,
        x_ref,
        x_ref,
        attn_mask=attn_mask,
        key_padding_mask=key_padding_mask,
        need_weights=False,
        is_causal=is_causal,
    )
    assert_float_close(out, expected)

    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected.backward(grad_out)
    assert_float_close(x.grad, x_ref.grad)
    grads = ref_grads(ref)
    for name, param in ours.named_parameters():
        assert_float_close(param.grad, grads[name], msg=name)


@pytest.mark.parametrize("padded", [False, True])
def test_cross_attention_matches_pytorch(padded: bool, projection: str) -> None:
    ours, ref = make_pair()
    torch.manual_seed(6)
    x = torch.randn(2, 5, D_MODEL, requires_grad=True)
    memory = torch.randn(2, 9, D_MODEL, requires_grad=True)
    keep = length_mask(torch.tensor([9, 6])) if padded else None
    out = ours(x, context=memory, mask=keep)
    x_ref = x.detach().clone().requires_grad_(True)
    m_ref = memory.detach().clone().requires_grad_(True)
    kpm = ~keep[:, 0, 0, :] if keep is not None else None
    expected, _ = ref(x_ref, m_ref, m_ref, key_padding_mask=kpm, need_weights=False)
    assert_float_close(out, expected)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected.backward(grad_out)
    assert_float_close(x.grad, x_ref.grad)
    assert_float_close(memory.grad, m_ref.grad)
    grads = ref_grads(ref)
    for name, param in ours.named_parameters():
        assert_float_close(param.grad, grads[name], msg=name)


@pytest.mark.parametrize("cross", [False, True])
def test_explicit_path_equals_fast_path(cross: bool, projection: str) -> None:
    ours, _ = make_pair()
    torch.manual_seed(7)
    x = torch.randn(3, 6, D_MODEL)
    context = torch.randn(3, 8, D_MODEL) if cross else None
    t_k = 8 if cross else 6
    keep = length_mask(torch.tensor([t_k, 5, 3]), max_len=t_k)
    for is_causal in (False, True):
        ours.record_weights = False
        xs = x.clone().requires_grad_(True)
        fast = ours(xs, context=context, mask=keep, is_causal=is_causal)
        fast.sum().backward()
        fast_grads = [xs.grad] + [p.grad.clone() for p in ours.parameters()]
        ours.zero_grad()
        ours.record_weights = True
        xe = x.clone().requires_grad_(True)
        explicit = ours(xe, context=context, mask=keep, is_causal=is_causal)
        explicit.sum().backward()
        explicit_grads = [xe.grad] + [p.grad.clone() for p in ours.parameters()]
        ours.zero_grad()
        assert_float_close(explicit, fast)
        for a, b in zip(explicit_grads, fast_grads, strict=True):
            assert_float_close(a, b)
        assert ours.last_weights is not None
        assert ours.last_weights.shape == (3, N_HEADS, 6, t_k)


def test_bf16_on_cpu_takes_explicit_path_and_matches_fused_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under CPU bf16 autocast the module writes attention out (the fused CPU bf16 kernel is
    slow); the result must match the fused kernel to bf16 precision, gradients included."""
    calls = []

    def counting_sdpa(*args, **kwargs):
        calls.append(1)
        return scaled_dot_product_attention(*args, **kwargs)

    monkeypatch.setattr(minigpt.attention, "scaled_dot_product_attention", counting_sdpa)
    ours, _ = make_pair()
    torch.manual_seed(3)
    x = torch.randn(2, 7, D_MODEL, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ours(x, is_causal=True)
        q, k, v = (ours._split_heads(p(x)) for p in (ours.q_proj, ours.k_proj, ours.v_proj))
        fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        fused = ours.out_proj(fused.transpose(1, 2).reshape(2, 7, D_MODEL))
    assert out.dtype == torch.bfloat16 and ours.last_weights is None and len(calls) == 1
    assert_float_close(out.float(), fused.float(), ulps=4, resolution_of=torch.bfloat16)
    (grad_ours,) = torch.autograd.grad(out.float().sum(), x)
    (grad_fused,) = torch.autograd.grad(fused.float().sum(), x)
    assert_float_close(grad_ours, grad_fused, ulps=4, resolution_of=torch.bfloat16)


def test_recorded_weights_match_pytorch_average() -> None:
    ours, ref = make_pair()
    ours.record_weights = True
    x = torch.randn(2, 5, D_MODEL)
    ours(x, is_causal=True)
    _, ref_weights = ref(x, x, x, attn_mask=~causal_mask(5), average_attn_weights=False)
    assert_float_close(ours.last_weights, ref_weights)
    assert torch.all(ours.last_weights.triu(diagonal=1) == 0)


def test_three_dim_mask_is_per_batch() -> None:
    ours, _ = make_pair()
    x = torch.randn(2, 4, D_MODEL)
    keep = torch.stack([causal_mask(4), torch.ones(4, 4, dtype=torch.bool)])  # (B, T_q, T_k)
    out = ours(x, mask=keep)
    assert_float_close(out[0], ours(x[:1], is_causal=True)[0])
    assert_float_close(out[1], ours(x[1:])[0])


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 3], [2, 5]])
def test_kv_cache_matches_full_causal_pass(
    chunks: list[int], record: bool, projection: str
) -> None:
    ours, _ = make_pair()
    ours.record_weights = record
    torch.manual_seed(8)
    x = torch.randn(2, sum(chunks), D_MODEL)
    full = ours(x, is_causal=True)
    cache = KVCache()
    outs, start = [], 0
    for size in chunks:
        outs.append(ours(x[:, start : start + size], is_causal=True, cache=cache))
        start += size
    assert cache.length == sum(chunks)
    assert cache.k.shape == (2, N_HEADS, sum(chunks), D_MODEL // N_HEADS)
    assert_float_close(torch.cat(outs, dim=1), full)
    cache.reset()
    assert cache.length == 0 and cache.k is None


@pytest.mark.parametrize("chunks", [[1] * 6, [2, 4]])
def test_rotary_attention_cache_and_fast_path_agree(chunks: list[int]) -> None:
    from minigpt.embeddings import RotaryPositionalEmbedding

    torch.manual_seed(10)
    rope = RotaryPositionalEmbedding(D_MODEL // N_HEADS, max_len=16)
    mha = MultiHeadAttention(D_MODEL, N_HEADS, rotary=rope).eval()
    x = torch.randn(2, sum(chunks), D_MODEL)
    full = mha(x, is_causal=True)
    mha.record_weights = True  # the explicit path
    assert_float_close(mha(x, is_causal=True), full)
    mha.record_weights = False
    cache, outs, start = KVCache(), [], 0
    for size in chunks:
        outs.append(mha(x[:, start : start + size], is_causal=True, cache=cache))
        start += size
    assert_float_close(torch.cat(outs, dim=1), full)
    # the rotation is really applied: without it the same weights give another answer
    mha.rotary = None
    assert not torch.allclose(mha(x, is_causal=True), full, atol=1e-3)


def test_kv_cache_with_padding_mask() -> None:
    ours, _ = make_pair()
    torch.manual_seed(9)
    x = torch.randn(2, 6, D_MODEL)
    keep = length_mask(torch.tensor([6, 6]))
    keep[1, ..., 0] = False  # second sequence: first position is left padding
    full = ours(x, mask=keep, is_causal=True)
    cache = KVCache()
    outs = [ours(x[:, :2], mask=keep[..., :2], is_causal=True, cache=cache)]
    for i in range(2, 6):
        outs.append(ours(x[:, i : i + 1], mask=keep[..., : i + 1], is_causal=True, cache=cache))
    assert_float_close(torch.cat(outs, dim=1), full)


def test_cross_attention_cache_reuses_memory() -> None:
    ours, _ = make_pair()
    x = torch.randn(1, 4, D_MODEL)
    memory = torch.randn(1, 5, D_MODEL)
    full = ours(x, context=memory)
    cache = KVCache()
    outs = [ours(x[:, i : i + 1], context=memory, cache=cache) for i in range(4)]
    assert cache.length == 5  # projected once, then reused
    assert_float_close(torch.cat(outs, dim=1), full)


def test_dropout_only_in_training() -> None:
    torch.manual_seed(10)
    mha = MultiHeadAttention(D_MODEL, N_HEADS, dropout=0.5)
    x = torch.randn(2, 5, D_MODEL)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))
    mha.train()
    assert not torch.allclose(mha(x), mha(x))


def test_bad_head_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="n_heads=5"):
        MultiHeadAttention(32, 5)
