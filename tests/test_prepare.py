"""Streaming prepare: the text index, parallel encoding, atomic replacement, bounded memory.

Everything here is checked against the in-memory answer it replaces: `scan`/`read` against
slicing the whole string, N worker processes against one, the sampled BPE against training on
the sample directly. The memory test runs prepare in fresh subprocesses on a small and an 8x
larger file and compares their peak resident memory.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minigpt import data, token_files
from minigpt.data import TOKENIZER_SAMPLE_BYTES, load_prepared, prepare
from minigpt.text_index import scan
from minigpt.token_files import encode_to_file
from minigpt.tokenizer import EOT, BPETokenizer, CharTokenizer

WORDS = ["word", " ", "  ", "\n", "\n\n", " \n", "\t", "x.", "é", "'s", "42", "日本", "🙂", EOT]


def tricky_text(n: int, seed: int = 0) -> str:
    """Random mix of what streaming must not cut wrongly: whitespace runs, multi-byte
    characters (2, 3 and 4 UTF-8 bytes), contractions, digits and special tokens."""
    return "".join(np.random.default_rng(seed).choice(WORDS, size=n))


# ----------------------------------------------------------------------------- text index


def test_scan_and_read_equal_the_whole_text(tmp_path: Path) -> None:
    a, b = tricky_text(3_000, 1), tricky_text(2_000, 2)
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbf" + a.encode())  # the BOM is dropped
    (tmp_path / "b.txt").write_text(b, encoding="utf-8")
    parts = [tmp_path / "a.txt", "\n\n", tmp_path / "b.txt"]
    whole = a + "\n\n" + b
    index = scan(parts, block_bytes=97)  # tiny blocks: most cut inside a multi-byte character
    assert len(index.blocks) > 100
    assert index.n_chars == len(whole) and index.n_bytes == len(whole.encode())
    assert index.sha256 == hashlib.sha256(whole.encode()).hexdigest()
    assert "".join(index.read()) == whole
    rng = np.random.default_rng(0)
    for start, end in rng.integers(0, len(whole), size=(40, 2)):
        start, end = sorted((int(start), int(end)))
        assert "".join(index.read(start, end)) == whole[start:end]
        assert index.utf8_offset(end) == len(whole[:end].encode())
        assert index.line_start_before(end) == whole.rfind("\n", 0, end) + 1
    assert index.first_nonspace == len(whole) - len(whole.lstrip())
    assert index.last_nonspace == len(whole.rstrip()) - 1


def test_scan_refuses_bad_utf8_at_its_offset_and_blank_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a" * 5000 + "é".encode() + b"\xff tail")
    with pytest.raises(ValueError, match=r"bad\.txt is not valid UTF-8 \(bad byte at offset 5002"):
        scan([bad], block_bytes=64)
    truncated = tmp_path / "cut.txt"
    truncated.write_bytes(b"abc" + "é".encode()[:1])  # a character cut off by the end
    with pytest.raises(ValueError, match="offset 3"):
        scan([truncated])
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\t\n")
    with pytest.raises(ValueError, match="blank.txt is empty"):
        scan([blank])


# ----------------------------------------------------------------------------- encoding


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(tricky_text(20_000, 5), 300, special_tokens=(EOT,))


def test_workers_and_piece_sizes_give_the_ids_of_the_whole(tmp_path: Path, bpe) -> None:
    text = tricky_text(60_000, 3)  # ~170 KB: dozens of 4 KB pieces
    whole = bpe.encode(text, allowed_special={EOT})
    blocks = [text[i : i + 999] for i in range(0, len(text), 999)]
    for workers in (1, 2):
        path = tmp_path / f"w{workers}.bin"
        n = encode_to_file(bpe, blocks, path, "uint16", workers, {EOT}, piece_chars=1 << 12)
        assert n == len(whole) and np.fromfile(path, np.uint16).tolist() == whole
    chars = CharTokenizer.train(text, special_tokens=(EOT,))
    n = encode_to_file(chars, blocks, tmp_path / "c.bin", "uint32", 2, {EOT}, piece_chars=999)
    assert np.fromfile(tmp_path / "c.bin", np.uint32).tolist() == chars.encode(text, {EOT})
    with pytest.raises(ValueError, match="workers must be at least 1"):
        encode_to_file(bpe, blocks, tmp_path / "x.bin", "uint16", 0)


def test_worker_errors_reach_the_caller_and_leave_no_file(tmp_path: Path, bpe) -> None:
    text = "fine text\n" * 500 + "<|pad|> is not allowed here\n"
    tok = BPETokenizer.train(text, 280, special_tokens=(EOT, "<|pad|>"))
    with pytest.raises(ValueError, match="<|pad|>"):
        encode_to_file(tok, [text], tmp_path / "t.bin", "uint16", 2, {EOT}, piece_chars=512)
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_reports_megabytes_per_second(tmp_path: Path, bpe, monkeypatch, capsys):
    monkeypatch.setattr(token_files, "PROGRESS_MIN_BYTES", 1)
    text = tricky_text(5_000)
    encode_to_file(bpe, [text], tmp_path / "t.bin", "uint16", 1, {EOT},
                   progress_total=len(text.encode()), desc="tokenizing demo")  # fmt: skip
    err = capsys.readouterr().err
    assert "tokenizing demo" in err and "B/s" in err and "100%" in err


# ----------------------------------------------------------------------------- prepare


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(tricky_text(40_000, 7), encoding="utf-8")
    return path


def test_prepare_with_two_workers_writes_the_same_files(tmp_path: Path, corpus: Path) -> None:
    one = prepare(corpus, vocab_size=300, out_dir=tmp_path / "one", progress=False, workers=1)
    two = prepare(corpus, vocab_size=300, out_dir=tmp_path / "two", progress=False, workers=2)
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert one.meta == two.meta
    text = corpus.read_text(encoding="utf-8")
    assert one.tokenizer.decode(one.train) + one.tokenizer.decode(one.val) == text


def test_bpe_trains_on_a_bounded_sample_of_big_splits(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "_SAMPLE_SLICE_CHARS", 4096)  # 8 slices spread over the split
    text = corpus.read_text(encoding="utf-8")
    p = prepare(corpus, vocab_size=300, out_dir=tmp_path / "s", progress=False,
                tokenizer_sample_bytes=30_000)  # fmt: skip
    assert p.meta["settings"]["tokenizer_sample_bytes"] == 30_000
    index = scan([corpus])
    sample = data._tokenizer_sample(index, p.meta["train_chars"], 30_000)
    assert 10_000 < len(sample) <= 30_000  # characters: ~30 KB, not the whole ~100 KB split
    first, last = sample[:2000], sample[-2000:]
    assert first in text[:8000] and last in text[p.meta["train_chars"] - 8000 :]  # spread out
    reference = BPETokenizer.train(sample, 300, special_tokens=data.DEFAULT_SPECIAL_TOKENS)
    assert p.tokenizer.ranks == reference.ranks
    assert p.tokenizer.decode(p.train) + p.tokenizer.decode(p.val) == text  # all text encoded
    small = prepare(corpus, vocab_size=300, out_dir=tmp_path / "w", progress=False)
    assert "tokenizer_sample_bytes" not in small.meta["settings"]  # under the cap: whole split
    assert TOKENIZER_SAMPLE_BYTES > 100_000


def test_failed_prepare_leaves_the_previous_folder_intact(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "p"
    before = prepare(corpus, tokenizer="char", out_dir=out, progress=False)
    files = {f.name: f.read_bytes() for f in out.iterdir()}
    calls = {"n": 0}
    real = token_files._ids_bytes

    def failing(*args):  # the disk fills up: train.bin was written, val.bin fails
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(token_files, "_ids_bytes", failing)
    with pytest.raises(OSError, match="No space left"):
        prepare(corpus, tokenizer="char", out_dir=out, progress=False, val_fraction=0.3)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == files  # no temporaries either
    again = load_prepared(out)
    assert again.meta == before.meta and np.array_equal(again.train, before.train)


def test_stale_staging_folders_of_dead_processes_are_removed(tmp_path: Path, corpus) -> None:
    out = tmp_path / "p"
    stale = out / ".prepare-999999999"  # above any real pid limit: never a live process
    stale.mkdir(parents=True)
    (stale / "train.bin").write_bytes(b"\0" * 100)
    prepare(corpus, tokenizer="char", out_dir=out, progress=False)
    assert not stale.exists()
    assert json.loads((out / "meta.json").read_text())["tokenizer"] == "char"


def test_prepare_argument_errors(tmp_path: Path, corpus: Path) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        prepare(corpus, out_dir=tmp_path / "a", workers=0)
    with pytest.raises(ValueError, match="tokenizer_sample_bytes must be positive"):
        prepare(corpus, out_dir=tmp_path / "a", tokenizer_sample_bytes=0)
    assert data.default_workers(1000) == 1


_PEAK_MEMORY = textwrap.dedent(
    """
    import sys, tracemalloc
    from minigpt.data import prepare
    tracemalloc.start()
    prepare(sys.argv[1], tokenizer="char", out_dir=sys.argv[2], progress=False, workers=1)
    print(tracemalloc.get_traced_memory()[1])  # peak bytes allocated by Python while preparing
    """
)


@pytest.mark.slow
def test_memory_stays_flat_as_the_corpus_grows(tmp_path: Path) -> None:
    # tracemalloc's peak counts live Python objects only, so unlike the peak resident size it
    # does not depend on how the C allocator keeps freed memory around: a fair, stable measure.
    line = "The teacher taught the student with the book, café 42 — 日本.\n"
    peaks = {}
    for mb in (3, 16):
        path = tmp_path / f"c{mb}.txt"
        path.write_text(line * (mb * 10**6 // len(line.encode())), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-c", _PEAK_MEMORY, str(path), str(tmp_path / f"out{mb}")],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        peaks[mb] = int(result.stdout.split()[-1]) / 2**20  # MiB
    # Holding the text would add >= 12M characters (24 MB as Python stores this text) and more
    # for its bytes and ids; streaming holds a piece of ~1M characters and its ids, whatever
    # the size of the file (both files are several pieces long).
    assert peaks[16] - peaks[3] < 6, peaks
