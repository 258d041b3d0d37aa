"""Lesson 01 (tokenization) runs in quick mode and its figures tell the lesson's story."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load_lesson

from minigpt.tokenizer import BPETokenizer, load_tokenizer, train_bpe


@pytest.mark.slow
def test_lesson_01_quick(tmp_path):
    lesson = load_lesson("01_tokenization")
    result = lesson.main(quick=True, out_dir=tmp_path)

    bpt = result["bytes_per_token"]
    sizes = result["vocab_sizes"]
    assert bpt["byte"] == 1.0 and bpt["bpe_256"] == 1.0  # no merges = plain bytes
    assert 1.0 <= bpt["char"] < 1.1  # the docs are nearly all ASCII
    curve = [bpt[f"bpe_{v}"] for v in sizes]
    assert all(a < b for a, b in zip(curve, curve[1:], strict=False)), curve
    assert curve[-1] > 3.0 > bpt["char"]  # BPE beats bytes and characters by far
    gains = [b - a for a, b in zip(curve[1:], curve[2:], strict=False)]
    assert all(x > y for x, y in zip(gains, gains[1:], strict=False))  # diminishing returns

    assert result["first_merges"][0] == ("␣", "␣")  # indentation is the docs' commonest pair
    assert len(result["first_merges"]) >= 10
    assert "␣the" in result["sentence_tokens"] and "␣with" in result["sentence_tokens"]
    assert result["sentence_roundtrip"]
    tok = load_tokenizer(result["tokenizer_path"])
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == sizes[-1]
    assert tok.decode(result["sentence_ids"]) == lesson.SENTENCE
    for plot in result["plots"]:
        assert Path(plot).is_file() and Path(plot).stat().st_size > 1000


def test_truncated_ranks_equal_training_a_smaller_vocabulary():
    """The lesson trains once and truncates: merges are greedy, so that is exact."""
    lesson = load_lesson("01_tokenization")
    text = lesson.load_corpus("pydoc")[:30_000]
    big = train_bpe(text, 600)
    assert lesson.truncate(big, 400) == train_bpe(text, 400)
