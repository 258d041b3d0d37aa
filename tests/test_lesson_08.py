"""Lesson 08 (T5-style span corruption, then words -> digits) runs in quick mode."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import load_lesson


@pytest.mark.slow
def test_lesson_08_quick(tmp_path):
    lesson = load_lesson("08_seq2seq_span_corruption")
    result = lesson.main(quick=True, device="cpu", out_dir=tmp_path)

    # T5's counts for 128-token windows: 19 noise tokens in 6 spans.
    assert abs(result["noise_fraction"] - 19 / 128) < 1e-9
    assert abs(result["mean_span_length"] - 19 / 6) < 1e-9

    assert abs(result["pretrain_loss_before"] - math.log(1024)) < 0.3
    assert result["pretrain_loss_after"] < result["pretrain_loss_before"] - 1.0
    assert len(result["span_examples"]) >= 1
    ex = result["span_examples"][0]
    assert "<extra_id_0>" in ex["input"] and ex["target"].startswith("<extra_id_0>")

    # Held-out exact match must clearly beat always answering the commonest output.
    assert result["baseline_accuracy"] < 0.02
    assert result["task_accuracy"] >= 0.5
    assert result["task_accuracy"] > result["baseline_accuracy"] + 0.4
    for plot in result["plots"]:
        assert Path(plot).is_file() and Path(plot).stat().st_size > 1000


def test_number_in_words():
    words = load_lesson("08_seq2seq_span_corruption").number_in_words
    assert words(0) == "zero" and words(13) == "thirteen" and words(40) == "forty"
    assert words(342) == "three hundred forty-two" and words(700) == "seven hundred"
    assert len({words(n) for n in range(1000)}) == 1000
    with pytest.raises(ValueError, match="0..999"):
        words(1000)
