"""Token embeddings and positional encodings: the formula's values, shapes and error messages."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.embeddings import (
    LearnedPositionalEmbedding,
    RotaryPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    rotary_tables,
    sinusoidal_table,
)


def test_token_embedding_scaling() -> None:
    torch.manual_seed(0)
    emb = TokenEmbedding(10, 16)
    ids = torch.tensor([[1, 2, 3], [4, 5, 9]])
    out = emb(ids)
    assert out.shape == (2, 3, 16)
    torch.testing.assert_close(out, emb.weight[ids] * 4.0)
    assert emb.weight is emb.embedding.weight
    plain = TokenEmbedding(10, 16, scale=False)
    torch.testing.assert_close(plain(ids), plain.weight[ids])


def test_sinusoidal_table_formula() -> None:
    d_model = 8
    table = sinusoidal_table(50, d_model)
    assert table.shape == (50, d_model) and table.dtype == torch.float32
    for pos in (0, 1, 7, 49):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    # position 0: sin(0) = 0 in even columns, cos(0) = 1 in odd ones
    assert torch.equal(table[0], torch.tensor([0.0, 1.0] * 4))


def test_sinusoidal_table_odd_width() -> None:
    table = sinusoidal_table(20, 7)
    assert table.shape == (20, 7)
    angle = 5 / 10000 ** (6 / 7)  # last column is a sine (i = 3)
    assert table[5, 6].item() == pytest.approx(math.sin(angle), abs=1e-6)
    pos = torch.arange(20, dtype=torch.float64)[:, None]
    i = torch.arange(4, dtype=torch.float64)  # 4 sine columns, 3 cosine columns
    angles = pos / 10000 ** (2 * i / 7)
    # computed in float64 and rounded once to float32: equal to that rounding
    assert torch.equal(table[:, 0::2], angles.sin().float())
    assert torch.equal(table[:, 1::2], angles[:, :3].cos().float())
    assert torch.isfinite(table).all()


def test_sinusoidal_encoding_adds_table_with_offset() -> None:
    enc = SinusoidalPositionalEncoding(d_model=6, max_len=12)
    assert list(enc.parameters()) == []
    assert enc.pe.shape == (12, 6)
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(enc(x), x + enc.pe[:4])
    torch.testing.assert_close(enc(x, offset=8), x + enc.pe[8:12])


def test_too_long_is_a_clear_error() -> None:
    enc = SinusoidalPositionalEncoding(d_model=6, max_len=12)
    with pytest.raises(ValueError, match="max_len=12"):
        enc(torch.zeros(1, 13, 6))
    with pytest.raises(ValueError, match="max_len=12"):
        enc(torch.zeros(1, 4, 6), offset=9)
    learned = LearnedPositionalEmbedding(max_len=5, d_model=6)
    with pytest.raises(ValueError, match="max_len=5"):
        learned(torch.zeros(1, 6, 6))


def test_sinusoidal_encoding_is_the_same_in_train_and_eval() -> None:
    """No randomness in the table itself: dropout belongs to the model's input embedding."""
    enc = SinusoidalPositionalEncoding(d_model=8, max_len=10)
    x = torch.randn(2, 6, 8)
    assert torch.equal(enc.train()(x, offset=3), enc.eval()(x, offset=3))
    torch.testing.assert_close(enc(x, offset=3), x + enc.pe[3:9])
    assert not list(enc.parameters()) and "pe" not in enc.state_dict()


def test_learned_positions_shapes_and_gradient() -> None:
    torch.manual_seed(1)
    learned = LearnedPositionalEmbedding(max_len=16, d_model=8)
    assert learned.weight.shape == (16, 8)
    x = torch.randn(3, 5, 8)
    out = learned(x, offset=2)
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out, x + learned.weight[2:7])
    out.sum().backward()
    grad = learned.weight.grad
    assert torch.all(grad[2:7] == 3.0) and torch.all(grad[:2] == 0) and torch.all(grad[7:] == 0)


def test_bad_sizes_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="d_model=0"):
        sinusoidal_table(4, 0)
    with pytest.raises(ValueError, match="vocab_size=0"):
        TokenEmbedding(0, 4)


# ------------------------------------------------------------------------------ rotary (RoPE)


def test_rotary_tables_and_one_pair_by_hand() -> None:
    cos, sin = rotary_tables(5, 4)
    assert cos.shape == sin.shape == (5, 2) and cos.dtype == torch.float32
    # angle of position 3, pair 1: 3 * 10000^(-2/4) = 0.03
    assert cos[3, 1].item() == pytest.approx(math.cos(0.03))
    rope = RotaryPositionalEmbedding(d_head=4, max_len=5)
    x = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(5, 4)  # pair 0 = (x_0, x_2) = (1, 0)
    out = rope(x)
    # pair 0 turns at 1 radian per position: (cos p, sin p) lands in coordinates 0 and 2
    positions = torch.arange(5, dtype=torch.float32)
    torch.testing.assert_close(out[:, 0], torch.cos(positions))
    torch.testing.assert_close(out[:, 2], torch.sin(positions))
    torch.testing.assert_close(out[:, [1, 3]], torch.zeros(5, 2))


def test_rotary_keeps_lengths_and_scores_depend_on_offset_only() -> None:
    torch.manual_seed(0)
    rope = RotaryPositionalEmbedding(d_head=16, max_len=64)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    rope = rope.double()

    def at(v: torch.Tensor, pos: int) -> torch.Tensor:
        return rope(v.expand(pos + 1, 16).clone())[pos]

    # a rotation: lengths unchanged, up to the float32 tables' rounding (cos^2 + sin^2 = 1 to
    # a few float32 ulps; everything else here is float64)
    f32 = torch.finfo(torch.float32).eps
    torch.testing.assert_close(at(q, 37).norm(), q.norm(), rtol=8 * f32, atol=0.0)
    # q at m, k at n: the score depends on m - n alone
    base = at(q, 10) @ at(k, 3)
    for shift in (1, 20, 50):
        score = at(q, 10 + shift) @ at(k, 3 + shift)  # |q||k| bounds the rounding's scale
        torch.testing.assert_close(score, base, rtol=0.0, atol=64 * f32 * q.norm() * k.norm())
    assert not torch.allclose(at(q, 10) @ at(k, 4), base)  # a different offset, another score


def test_rotary_offset_and_errors() -> None:
    torch.manual_seed(1)
    rope = RotaryPositionalEmbedding(d_head=8, max_len=10)
    x = torch.randn(2, 3, 10, 8)  # (B, H, T, d_head)
    full = rope(x)
    torch.testing.assert_close(rope(x[:, :, 4:7], offset=4), full[:, :, 4:7])
    with pytest.raises(ValueError, match="max_len=10"):
        rope(x[:, :, :4], offset=7)
    with pytest.raises(ValueError, match="even"):
        RotaryPositionalEmbedding(d_head=7, max_len=10)
    assert sum(b.numel() for b in rope.state_dict().values()) == 0  # nothing to save
