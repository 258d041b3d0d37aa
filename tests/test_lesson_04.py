"""Lesson 04 in quick mode: heads split and merge, hand-made heads do their jobs, paths agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_lesson


@pytest.mark.slow
def test_lesson_04_quick(tmp_path: Path) -> None:
    r = load_lesson("04_multi_head_attention").main(quick=True, device="cpu", out_dir=tmp_path)
    assert r["split_shape"] == (1, 4, 9, 16)
    assert r["merged_shape"] == (1, 9, 64)
    assert r["split_merge_exact"] is True
    assert r["weights_shape"] == (1, 4, 9, 9)
    focus = r["head_focus"]
    assert focus["previous word"][1:] == [
        [w] for w in "The teacher taught the student with the book".split()
    ]
    assert focus["who did what"][2] == ["teacher", "student"]
    assert r["book_top2_head2"] == ["teacher", "student"]
    assert focus["same kind of word"][1] == ["teacher", "student"]
    assert r["heads_by_hand_max_diff"] < 1e-6
    assert r["explicit_vs_fast_max_diff"] < 1e-5
    assert r["ours_vs_torch_max_diff"] < 1e-5
    assert r["timing_max_abs_diff"] < 1e-5
    assert r["timing_grad_max_abs_diff"] < 1e-4
    assert r["timing_speed_ratio"] > 0  # a measured number; never assert on timings
    assert (tmp_path / "head_maps.png").stat().st_size > 1000
