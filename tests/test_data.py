"""Tests for minigpt.data: corpora (embedded, file, folder, download), prepare, batching.

Downloads are tested against a throwaway http.server on 127.0.0.1, never the internet. Texts and
vocabularies are tiny so the whole file runs in a few seconds.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import LocalFileServer

from minigpt import data
from minigpt.data import (
    CORPORA,
    DownloadError,
    NamedCorpus,
    choose_dtype,
    iter_windows,
    load_corpus,
    load_prepared,
    prepare,
    sample_windows,
)
from minigpt.token_files import encode_to_file
from minigpt.tokenizer import EOT, BPETokenizer

TEXT = "".join(
    f"Line {i}: the teacher taught the student with the book — café {i * i}.\n"
    + ("\n" if i % 7 == 0 else "")
    for i in range(200)
)


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- corpora


def test_pydoc_corpus_is_embedded_and_deterministic() -> None:
    text = load_corpus("pydoc")
    assert 300_000 < len(text.encode("utf-8")) < 2_000_000  # ~0.5 MB on CPython 3.11
    assert text == load_corpus() == data.pydoc_corpus()
    assert "assignment" in text and "Assignment statements" in text


def test_file_and_folder(tmp_path: Path, text_file: Path) -> None:
    assert load_corpus(text_file) == TEXT
    assert load_corpus(str(text_file)) == TEXT
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second\n", encoding="utf-8")
    (folder / "a.txt").write_text("first\n", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("third", encoding="utf-8")
    (folder / "notes.md").write_text("ignored", encoding="utf-8")
    assert load_corpus(folder) == "first\n\n\nsecond\n\n\nthird"  # sorted by path


def test_bom_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello")
    assert load_corpus(path) == "hello"


def test_bad_sources_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found") as err:
        load_corpus(tmp_path / "nope.txt")
    assert "\n" not in str(err.value)
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        load_corpus(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not valid UTF-8"):
        load_corpus(tmp_path / "latin1.txt")
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.txt").write_text("fine")
    (folder / "b.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=r"b\.txt is not valid UTF-8"):
        load_corpus(folder)
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no .txt files"):
        load_corpus(tmp_path / "none")


def test_named_corpus_download_and_cache_hit(
    server: LocalFileServer, tmp_path: Path, monkeypatch
) -> None:
    body = TEXT.encode("utf-8")
    server.files["/shakes.txt"] = body
    monkeypatch.setitem(
        CORPORA, "tinyshakespeare", NamedCorpus(server.url + "/shakes.txt", None, "ts.txt")
    )
    assert load_corpus("tinyshakespeare") == TEXT
    cached = tmp_path / "cache" / "corpora" / "ts.txt"
    assert cached.read_bytes() == body
    # unpinned digest: recorded on first download (trust on first use)
    assert (tmp_path / "cache/corpora/ts.txt.sha256").read_text().strip() == hashlib.sha256(
        body
    ).hexdigest()
    assert load_corpus("tinyshakespeare") == TEXT
    assert server.hits == {"/shakes.txt": 1}  # the second load came from the cache
    assert [p.name for p in cached.parent.iterdir() if p.suffix == ".part"] == []
    cached.write_text("tampered")
    with pytest.raises(ValueError, match="sha256"):
        load_corpus("tinyshakespeare")


def test_pinned_checksum(server: LocalFileServer, tmp_path: Path, monkeypatch) -> None:
    body = b"some stories\n"
    server.files["/s.txt"] = body
    good = NamedCorpus(server.url + "/s.txt", hashlib.sha256(body).hexdigest(), "good.txt")
    monkeypatch.setitem(CORPORA, "good", good)
    assert load_corpus("good") == "some stories\n"
    bad = NamedCorpus(server.url + "/s.txt", "0" * 64, "bad.txt")
    monkeypatch.setitem(CORPORA, "tinystories", bad)
    with pytest.raises(ValueError, match="has sha256 .* expected 0000"):
        load_corpus("tinystories")
    assert sorted(p.name for p in (tmp_path / "cache" / "corpora").iterdir()) == ["good.txt"]


def test_offline_and_http_errors(server: LocalFileServer, monkeypatch) -> None:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    url = f"http://127.0.0.1:{dead_port}/x.txt"
    monkeypatch.setitem(CORPORA, "tinyshakespeare", NamedCorpus(url, None, "ts.txt"))
    with pytest.raises(DownloadError, match="download it manually") as err:
        load_corpus("tinyshakespeare")
    assert isinstance(err.value, ConnectionError) and isinstance(err.value, RuntimeError)
    assert "\n" not in str(err.value) and url in str(err.value)
    monkeypatch.setitem(CORPORA, "missing", NamedCorpus(server.url + "/gone.txt", None, "m.txt"))
    with pytest.raises(DownloadError, match="Not Found"):
        load_corpus("missing")


# ----------------------------------------------------------------------------- prepare


def test_prepare_char_files_counts_and_round_trip(tmp_path: Path, text_file: Path) -> None:
    out = tmp_path / "prep"
    p = prepare(text_file, tokenizer="char", out_dir=out, progress=False)
    assert sorted(f.name for f in out.iterdir()) == [
        "meta.json",
        "tokenizer.json",
        "train.bin",
        "val.bin",
    ]
    assert p.train.dtype == np.uint16 and p.meta["dtype"] == "uint16"
    assert p.meta["train_tokens"] == len(p.train) and p.meta["val_tokens"] == len(p.val)
    assert (out / "train.bin").stat().st_size == 2 * len(p.train)
    train_text, val_text = p.tokenizer.decode(p.train), p.tokenizer.decode(p.val)
    assert train_text + val_text == TEXT
    assert val_text.startswith("Line ") and abs(len(val_text) - 0.1 * len(TEXT)) < 80
    assert p.meta["train_bytes"] == len(train_text.encode()) and p.meta["val_bytes"] == len(
        val_text.encode()
    )
    assert p.meta["source_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert (
        p.meta["source"] == str(text_file.resolve())
        and p.meta["vocab_size"] == p.tokenizer.vocab_size
    )
    again = load_prepared(out)
    assert np.array_equal(again.train, p.train) and again.meta == p.meta


def test_prepare_bpe_trains_on_train_split_and_rerun_is_noop(
    tmp_path: Path, text_file: Path
) -> None:
    out = tmp_path / "bpe"
    p = prepare(text_file, tokenizer="bpe", vocab_size=300, out_dir=out, progress=True)
    tok = p.tokenizer
    assert tok.vocab_size == 300 and p.meta["tokenizer"] == "bpe"
    assert tok.decode(p.train) + tok.decode(p.val) == TEXT
    train_text = TEXT[: p.meta["train_chars"]]
    reference = BPETokenizer.train(train_text, 300, special_tokens=data.DEFAULT_SPECIAL_TOKENS)
    assert reference.ranks == tok.ranks  # trained on the train split only
    assert list(p.train) == tok.encode(train_text)  # chunked encoding == whole encoding
    mtimes = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    q = prepare(text_file, tokenizer="bpe", vocab_size=300, out_dir=out, progress=False)
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == mtimes
    assert q.meta == p.meta
    r = prepare(
        text_file, tokenizer="bpe", vocab_size=300, out_dir=out, val_fraction=0.2, progress=False
    )
    assert r.meta["val_fraction"] == 0.2 and r.meta["val_tokens"] > p.meta["val_tokens"]


def test_prepare_default_out_dir_and_eot_separators(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    stories = f"\n{EOT}\n".join(f"Story {i}: a cat sat on a mat.\n" for i in range(40))
    (tmp_path / "stories.txt").write_text(stories, encoding="utf-8")
    p = prepare("stories.txt", tokenizer="bpe", vocab_size=300, progress=False)
    assert (
        p.out_dir == Path("data/stories-bpe-300") and (tmp_path / p.out_dir / "meta.json").exists()
    )
    eot = p.tokenizer.special_tokens[EOT]
    assert (np.asarray(p.train) == eot).sum() + (np.asarray(p.val) == eot).sum() == 39
    assert prepare("stories.txt", tokenizer="char", progress=False).out_dir == Path(
        "data/stories-char"
    )


def test_encoding_to_file_streams_like_the_whole(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pieces = ["word", " ", "  ", "\n", "\n\n", " \n", "\t", "x.", "é", "'s", "42", EOT]
    text = "".join(rng.choice(pieces, size=60_000))  # ~150K characters: several streamed pieces
    tok = BPETokenizer.train(text, 300, special_tokens=(EOT,))
    n = encode_to_file(tok, [text], tmp_path / "t.bin", "uint16", allowed_special={EOT},
                       piece_chars=1 << 14)  # fmt: skip
    ids = np.fromfile(tmp_path / "t.bin", dtype=np.uint16).tolist()
    assert n == len(ids) and ids == tok.encode(text, allowed_special={EOT})


def test_dtype_choice_and_uint32_path(tmp_path: Path) -> None:
    assert choose_dtype(50_257) == "uint16" and choose_dtype(65_536) == "uint16"
    assert choose_dtype(65_537) == "uint32"
    with pytest.raises(ValueError, match="70,000 tokens does not fit in uint16"):
        choose_dtype(70_000, "uint16")
    # a character vocabulary of ~70k distinct code points forces uint32 files
    chars = [chr(c) for c in range(0x100, 0x100 + 72_000) if not 0xD800 <= c <= 0xDFFF]
    text = "\n".join("".join(chars[i : i + 100]) for i in range(0, len(chars), 100))
    path = tmp_path / "wide.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="does not fit in uint16"):
        prepare(path, tokenizer="bpe", vocab_size=70_000, dtype="uint16", out_dir=tmp_path / "x")
    p = prepare(
        path, tokenizer="char", out_dir=tmp_path / "wide", special_tokens=(), progress=False
    )
    assert (
        p.meta["dtype"] == "uint32"
        and p.train.dtype == np.uint32
        and p.tokenizer.vocab_size > 65_536
    )
    assert max(int(p.train.max()), int(p.val.max())) > 65_535
    assert p.tokenizer.decode(p.train) + p.tokenizer.decode(p.val) == text
    with pytest.raises(ValueError, match="does not fit in uint16"):
        prepare(path, tokenizer="char", out_dir=tmp_path / "w16", dtype="uint16", progress=False)


def test_prepare_argument_errors(tmp_path: Path, text_file: Path) -> None:
    with pytest.raises(ValueError, match="tokenizer 'words' is unknown"):
        prepare(text_file, tokenizer="words", out_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="val_fraction"):
        prepare(text_file, tokenizer="char", val_fraction=1.0, out_dir=tmp_path / "a")
    (tmp_path / "short.txt").write_text("one line only")
    with pytest.raises(ValueError, match="too short to split"):
        prepare(tmp_path / "short.txt", tokenizer="char", val_fraction=0.01, out_dir=tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="run `minigpt prepare` first"):
        load_prepared(tmp_path / "nothing")


def test_prepare_gpt2_vocabulary(tmp_path: Path, text_file: Path, gpt2_files, monkeypatch) -> None:
    gpt2 = BPETokenizer.from_gpt2_files(*gpt2_files)  # offline stand-in for from_tiktoken("gpt2")
    monkeypatch.setattr(BPETokenizer, "from_tiktoken", classmethod(lambda cls, name: gpt2))
    p = prepare(text_file, tokenizer="gpt2", out_dir=tmp_path / "g", progress=False)
    assert p.meta["vocab_size"] == 50_257 and p.train.dtype == np.uint16
    assert list(p.train[:3]) == gpt2.encode("Line 0:")


# ----------------------------------------------------------------------------- batching


def test_sample_windows_reproducible_real_slices() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    a = sample_windows(tokens, 8, 17, torch.Generator().manual_seed(0))
    b = sample_windows(tokens, 8, 17, torch.Generator().manual_seed(0))
    c = sample_windows(tokens, 8, 17, torch.Generator().manual_seed(1))
    assert a.shape == (8, 17) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a - a[:, :1], torch.arange(17).expand(8, 17))  # consecutive ids = a slice
    assert int(a.min()) >= 0 and int(a.max()) <= 999
    whole = sample_windows(tokens, 3, 1000, torch.Generator().manual_seed(0))  # exactly fits
    assert torch.equal(whole, torch.arange(1000).expand(3, 1000))


def test_windows_from_prepared_memmap(tmp_path: Path, text_file: Path) -> None:
    p = prepare(text_file, tokenizer="char", out_dir=tmp_path / "p", progress=False)
    windows = sample_windows(p.train, 4, 33, torch.Generator().manual_seed(3))
    train = np.asarray(p.train, dtype=np.int64)
    for row in windows.numpy():
        starts = [s for s in range(len(train) - 32) if np.array_equal(train[s : s + 33], row)]
        assert starts, "window is not a slice of the train split"
    n = len(p.val)
    with pytest.raises(
        ValueError, match=f"block size {n + 1} longer than the {n} tokens in the val split"
    ):
        sample_windows(p.val, 1, n + 1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="in the val split; use a smaller --block-size"):
        next(iter_windows(p.val, 2, n + 1))


def test_iter_windows_covers_data_in_order() -> None:
    tokens = np.arange(103, dtype=np.uint32)
    batches = list(iter_windows(tokens, 4, 10))
    assert [tuple(b.shape) for b in batches] == [(4, 10), (4, 10), (2, 10)]
    assert all(b.dtype == torch.long for b in batches)
    assert torch.equal(torch.cat(batches).flatten(), torch.arange(100))  # tail of 3 dropped
    assert list(iter_windows(tokens, 4, 10))[0].tolist() == batches[0].tolist()  # deterministic
    with pytest.raises(ValueError, match="block size 104 longer than the 103 tokens"):
        list(iter_windows(tokens, 1, 104))
