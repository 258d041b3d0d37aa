"""Lesson 05 in quick mode: FFN per position, LayerNorm, post- vs pre-norm, PyTorch parity."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_lesson


@pytest.mark.slow
def test_lesson_05_quick(tmp_path: Path) -> None:
    r = load_lesson("05_transformer_blocks").main(quick=True, device="cpu", out_dir=tmp_path)
    # The FFN acts on each position alone and outweighs attention two to one.
    moved = r["ffn_moved"]
    assert moved[3] > 0.01 and all(v == 0 for t, v in enumerate(moved) if t != 3)
    assert r["ffn_params"] == 2 * 64 * 256 + 256 + 64 and r["ffn_params"] > 1.9 * r["attn_params"]
    mean, std = r["layernorm_out"]
    assert abs(mean) < 1e-5 and abs(std - 1) < 1e-3
    assert r["block_relative_change"] < 0.1  # a fresh residual block is close to the identity
    # Post-norm: gradients grow toward the output, the stream stays at sqrt(d_model).
    # Pre-norm: the stream grows with depth and the top layers get relatively less gradient.
    assert r["post_norm_ratio"] > r["pre_norm_ratio"]
    assert r["post_norm_ratio"] > 1.0
    post, pre = r["post_norm_stream_norms"], r["pre_norm_stream_norms"]
    assert len(post) == len(pre) == r["n_layers"]
    assert max(post) - min(post) < 0.5 and abs(post[0] - 8.0) < 0.5
    assert pre[-1] > 1.2 * pre[0]
    assert r["post_norm_parity"] < 1e-5 and r["pre_norm_parity"] < 1e-5
    for plot in r["plots"]:
        assert Path(plot).exists() and Path(plot).stat().st_size > 1000
    assert (tmp_path / "post_vs_pre_norm.png").exists()
