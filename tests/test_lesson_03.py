"""Lesson 03 runs in quick mode: the step-by-step attention matches the library and the story."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_lesson


def test_lesson_03_quick(tmp_path: Path) -> None:
    r = load_lesson("03_self_attention").main(quick=True, device="cpu", out_dir=tmp_path)
    assert r["weights_shape"] == (9, 9)
    assert r["row_sums"] == pytest.approx([1.0] * 9, abs=1e-6)
    assert r["manual_vs_library_max_diff"] < 1e-6
    # "book" attends to the two people, equally: the ambiguity attention alone cannot settle
    assert r["book_top2"] == ["teacher", "student"]
    assert r["book_weights"]["teacher"] == pytest.approx(r["book_weights"]["student"])
    assert r["book_person_feature"] > 0.5
    # scaling keeps scores at unit size and softmax away from one-hot
    assert 6.0 < r["score_std_unscaled"] < 10.0
    assert 0.8 < r["score_std_scaled"] < 1.2
    assert r["max_weight_unscaled"] > r["max_weight_scaled"] + 0.3
    # causal mask: nothing above the diagonal, the first word sees only itself
    assert r["causal_upper_max"] == 0.0
    assert r["causal_first_row"] == pytest.approx([1.0] + [0.0] * 8)
    for name in ("attention_map.png", "causal_attention_map.png"):
        assert (tmp_path / name).stat().st_size > 1000
