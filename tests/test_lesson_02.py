"""Lesson 02 runs in quick mode and its numbers say what the lesson claims."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_lesson


@pytest.mark.slow
def test_lesson_02_quick(tmp_path: Path) -> None:
    r = load_lesson("02_embeddings_and_positions").main(quick=True, device="cpu", out_dir=tmp_path)
    d = r["d_model"]
    assert r["embedded_shape"] == (9, d)
    assert r["lookup_vs_onehot_max_diff"] < 1e-5
    assert r["mean_abs_cosine_random"] < 0.3  # random vectors are nearly perpendicular
    # the dot product depends on distance only, peaks at k = 0 with d_model / 2
    assert r["dot_same_distance_spread"] < 1e-3
    dots = r["dot_at_distance"]
    assert abs(dots[0] - d / 2) < 1e-4
    assert dots[0] > dots[1] > dots[2] > dots[5]
    assert r["rotation_max_error"] < 1e-5
    # attention alone is blind to order; positions fix it
    assert r["order_blind_diff_without_positions"] < 1e-4
    assert r["order_diff_with_positions"] > 0.05
    assert r["token_recovery"] > 0.95 and r["position_recovery"] > 0.95
    assert r["learned_shape"] == (1, 9, d)
    assert r["learned_parameters"] == r["max_len"] * d
    for name in ("sinusoidal_heatmap.png", "position_dot_vs_distance.png"):
        assert (tmp_path / name).stat().st_size > 1000
