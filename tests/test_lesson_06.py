"""Lesson 06 (BERT-style MLM) runs in quick mode and its numbers tell the lesson's story."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import load_lesson


@pytest.mark.slow
def test_lesson_06_quick(tmp_path):
    result = load_lesson("06_encoder_mlm").main(quick=True, device="cpu", out_dir=tmp_path)

    # The corruption statistics over 32,768 tokens (std of the 15% rate: 0.002).
    assert abs(result["selection_rate"] - 0.15) < 0.01
    assert abs(result["mask_share"] - 0.8) < 0.03
    assert abs(result["random_share"] - 0.1) < 0.03
    assert abs(result["kept_share"] - 0.1) < 0.03

    # An untrained model guesses about uniformly; a short training run must beat that clearly.
    assert abs(result["loss_before"] - math.log(1024)) < 0.3
    assert result["loss_after"] < result["loss_before"] - 0.5
    # ... and go below word frequencies alone (~5.9 nats): it has begun to read the context.
    assert result["loss_after"] < result["unigram_loss"] - 0.1
    assert result["steps"] > 0

    n = len(result["fills_before"])
    assert n == len(result["fills_after"]) >= 5
    assert all(len(f) == 5 for f in result["fills_before"] + result["fills_after"])
    assert result["fills_before"] != result["fills_after"]
    # The hidden words climb the model's ranking (random init: ~V/2 = 512).
    assert result["median_rank_after"] < result["median_rank_before"]
    for plot in result["plots"]:
        assert Path(plot).is_file() and Path(plot).stat().st_size > 1000
    assert (tmp_path / "data" / "train.bin").is_file()  # prepared data stays under out_dir
