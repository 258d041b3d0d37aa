"""Lesson 07 runs in quick mode: a small GPT pretrains, its loss falls far below ln(V)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import load_lesson


@pytest.mark.slow
def test_lesson_07_quick(tmp_path: Path) -> None:
    r = load_lesson("07_decoder_clm").main(quick=True, device="cpu", out_dir=tmp_path)
    assert r["ln_vocab"] == pytest.approx(math.log(r["vocab_size"]))
    # an untrained model guesses (nearly) uniformly: its loss starts at ln V
    assert abs(r["initial_loss"] - r["ln_vocab"]) < 0.15
    # training drives the loss well below that
    assert r["final_loss"] < 0.7 * r["ln_vocab"]
    assert r["final_loss"] < r["initial_loss"] - 1.5
    assert 0 < r["val_bpb"] < 8
    # the causal mask: a change to the last token never reaches earlier positions
    assert r["causal_leak"] == 0.0 and r["last_position_change"] > 0
    assert r["sample_before"].startswith("The ") and r["sample_after"].startswith("The ")
    assert r["sample_before"] != r["sample_after"]
    assert Path(r["loss_curve"]).stat().st_size > 1000
    assert (tmp_path / "run" / "loss.png").exists() and Path(r["checkpoint"]).exists()
