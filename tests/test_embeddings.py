"""Token embeddings and positional encodings: the formula's values, shapes and error messages."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.embeddings import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
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
    torch.testing.assert_close(table[:, 0::2], angles.sin().float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(table[:, 1::2], angles[:, :3].cos().float(), atol=1e-6, rtol=0)
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


def test_sinusoidal_dropout_only_in_training() -> None:
    enc = SinusoidalPositionalEncoding(d_model=8, max_len=10, dropout=0.5)
    x = torch.zeros(1, 10, 8)
    enc.eval()
    torch.testing.assert_close(enc(x), enc.pe[None])
    enc.train()
    torch.manual_seed(0)
    assert (enc(x) == 0).float().mean() > 0.3


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
