"""EncoderLayer, GPTBlock, DecoderLayer proven equal to nn.TransformerEncoderLayer / DecoderLayer.

Weights are copied from a randomly initialised PyTorch layer (LayerNorm gains and shifts
included, so a swapped norm would show), both run in fp32, and outputs and gradients must agree
to 1e-5. PyTorch's boolean masks mean "masked out"; ours are keep masks, so only here we invert.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_float_close
from torch import nn

from minigpt import speedups
from minigpt.attention import KVCache, causal_mask
from minigpt.layers import DecoderLayer, EncoderLayer, GPTBlock, LayerCache, load_pytorch_weights

D, H, FF, B, T, S = 32, 4, 64, 3, 7, 5
GRID = pytest.mark.parametrize(
    "norm_first,activation", [(nf, a) for nf in (False, True) for a in ("relu", "gelu")]
)


@torch.no_grad()
def randomize(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial weights everywhere (LayerNorm gain around 1, everything else around 0)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if "norm" in name and name.endswith("weight"):
            p.copy_(0.5 + torch.rand(p.shape, generator=g))
        else:
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def make_pair(kind: str, norm_first: bool, activation: str, **ours_kw):
    kw = dict(dropout=0.1, activation=activation, norm_first=norm_first)
    if kind == "encoder":
        ref = nn.TransformerEncoderLayer(D, H, FF, batch_first=True, **kw)
        ours = EncoderLayer(D, H, FF, **kw)
    elif kind == "decoder":
        ref = nn.TransformerDecoderLayer(D, H, FF, batch_first=True, **kw)
        ours = DecoderLayer(D, H, FF, **kw)
    else:  # a GPT block vs PyTorch's encoder layer run with a causal mask
        ref = nn.TransformerEncoderLayer(D, H, FF, batch_first=True, **kw)
        ours = GPTBlock(D, H, FF, **kw)
    randomize(ref)
    load_pytorch_weights(ours, ref)
    return ours.eval(), ref.eval()


def keep_lengths(lengths: list[int], t: int) -> torch.Tensor:
    """(B, t) keep mask: True for the first lengths[b] positions (padding at the end)."""
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]


def assert_grads_match(ours: nn.Module, ref: nn.Module, inputs: list[torch.Tensor]) -> None:
    """Compare gradients of q/v projections, FFN, norm and output-projection weights."""
    for x in inputs:
        assert x.grad is not None
    qv_ours = torch.cat([ours.self_attn.q_proj.weight.grad, ours.self_attn.v_proj.weight.grad])
    qv_ref = torch.cat(
        [ref.self_attn.in_proj_weight.grad[:D], ref.self_attn.in_proj_weight.grad[2 * D :]]
    )
    assert_float_close(qv_ours, qv_ref)
    assert_float_close(ours.ffn.fc1.weight.grad, ref.linear1.weight.grad)
    assert_float_close(ours.norm1.weight.grad, ref.norm1.weight.grad)
    assert_float_close(
        ours.self_attn.out_proj.bias.grad, ref.self_attn.out_proj.bias.grad)


@GRID
@pytest.mark.parametrize("masking", ["none", "padding", "causal", "causal+padding"])
def test_encoder_layer_matches_pytorch(norm_first: bool, activation: str, masking: str) -> None:
    ours, ref = make_pair("encoder", norm_first, activation)
    torch.manual_seed(1)
    x = torch.randn(B, T, D)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    keep = keep_lengths([T, 4, 2], T)
    mask, ref_kw = None, {}
    if "padding" in masking:
        mask = keep[:, None, None, :]  # (B, 1, 1, T)
        ref_kw["src_key_padding_mask"] = ~keep
    causal = "causal" in masking
    if causal:
        ref_kw["src_mask"] = ~causal_mask(T)
    out = ours(x_ours, mask=mask, is_causal=causal)
    expected = ref(x_ref, **ref_kw)
    assert_float_close(out, expected)

    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    assert_float_close(x_ours.grad, x_ref.grad)
    assert_grads_match(ours, ref, [x_ours])


@GRID
@pytest.mark.parametrize("padded", [False, True])
def test_decoder_layer_matches_pytorch(norm_first: bool, activation: str, padded: bool) -> None:
    ours, ref = make_pair("decoder", norm_first, activation)
    torch.manual_seed(2)
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    m_ours, m_ref = memory.clone().requires_grad_(), memory.clone().requires_grad_()
    ours_kw, ref_kw = {}, {"tgt_mask": ~causal_mask(T)}
    if padded:
        tgt_keep, mem_keep = keep_lengths([T, 5, 3], T), keep_lengths([S, 2, 4], S)
        ours_kw = dict(self_mask=tgt_keep[:, None, None, :], memory_mask=mem_keep[:, None, None, :])
        ref_kw.update(tgt_key_padding_mask=~tgt_keep, memory_key_padding_mask=~mem_keep)
    out = ours(x_ours, m_ours, **ours_kw)
    expected = ref(x_ref, m_ref, **ref_kw)
    assert_float_close(out, expected)

    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    assert_float_close(x_ours.grad, x_ref.grad)
    assert_float_close(m_ours.grad, m_ref.grad)
    assert_grads_match(ours, ref, [x_ours, m_ours])
    k_cross = ours.cross_attn.k_proj.weight.grad
    assert_float_close(
        k_cross, ref.multihead_attn.in_proj_weight.grad[D : 2 * D])
    assert_float_close(ours.norm3.weight.grad, ref.norm3.weight.grad)


@GRID
def test_gpt_block_matches_causal_pytorch_encoder_layer(norm_first: bool, activation: str) -> None:
    ours, ref = make_pair("gpt", norm_first, activation)
    names = [name for name, _ in ours.named_children()]
    assert [n for n in names if n.startswith("norm")] == ["norm1", "norm2"]  # no gaps
    x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(3))
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = ours(x_ours)
    expected = ref(x_ref, src_mask=~causal_mask(T), is_causal=True)
    assert_float_close(out, expected)
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()
    assert_float_close(x_ours.grad, x_ref.grad)
    assert_grads_match(ours, ref, [x_ours])


@pytest.mark.parametrize("norm_first", [False, True])
def test_dropout_sits_where_pytorch_puts_it(norm_first: bool) -> None:
    """Training mode, same RNG stream: PyTorch draws its dropout masks in the same order.

    One sequence (B=1), because PyTorch's attention output is laid out (T, B, D) in memory and a
    dropout mask is drawn in memory order; with B=1 both layouts coincide. Our fast CPU masks
    draw a different stream, so they are switched off here (tests/test_speedups.py covers them).
    """
    ours, ref = make_pair("encoder", norm_first, "gelu")
    ours.train(), ref.train()
    x = torch.randn(1, T, D, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(5)
    with speedups.reference_mode():
        out = ours(x)
    torch.manual_seed(5)
    expected = ref(x)
    assert not torch.allclose(out, ours.eval()(x))  # dropout really acted
    assert_float_close(out, expected)


@pytest.mark.parametrize("kind", ["gpt", "decoder"])
def test_cache_matches_full_forward(kind: str) -> None:
    torch.manual_seed(6)
    if kind == "gpt":
        layer, memory, empty = GPTBlock(D, H, FF, dropout=0.0, norm_first=True).eval(), (), KVCache
    else:
        layer = DecoderLayer(D, H, FF, dropout=0.0, norm_first=True).eval()
        memory, empty = (torch.randn(B, S, D),), LayerCache
    x = torch.randn(B, T, D)
    full = layer(x, *memory)
    cache = layer.new_cache()
    assert isinstance(cache, empty) and cache.length == 0
    steps = [layer(x[:, :3], *memory, cache=cache)]  # a prompt, then one token at a time
    steps += [layer(x[:, t : t + 1], *memory, cache=cache) for t in range(3, T)]
    assert_float_close(torch.cat(steps, dim=1), full)
    assert cache.length == T
    cache.reset()
    assert cache.length == 0


def test_layer_options_reach_the_norms() -> None:
    layer = EncoderLayer(D, H, FF, layer_norm_eps=1e-6, bias=False)
    assert layer.norm1.eps == 1e-6 and layer.norm1.bias is None
    assert layer.self_attn.q_proj.bias is None and layer.ffn.fc1.bias is None
