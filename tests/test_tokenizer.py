"""Tests for minigpt/tokenizer/: the fast trainer against the reference BPE, the tiktoken wrapper
against hand-applied merges, special tokens, streaming, save/load, CharTokenizer, GPT-2 parity."""

from __future__ import annotations

import hashlib
import inspect
import json
import pydoc_data.topics
import random
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.tokenizer import (
    DEFAULT_SPECIAL_TOKENS,
    EOT,
    N_SENTINELS,
    PAD,
    TOKENIZER_KINDS,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    bpe_merge,
    load_tokenizer,
    naive_decode,
    naive_encode,
    naive_train_bpe,
    sentinel,
    tokenizer_from_dict,
    train_bpe,
)

# A few KB of the embedded corpus (Python's bundled docs), read straight from the stdlib.
TOPICS = pydoc_data.topics.topics
SMALL_TEXT = "\n\n".join(TOPICS[k] for k in sorted(TOPICS)[:6])[:6000]
HELD_OUT = "\n\n".join(TOPICS[k] for k in sorted(TOPICS)[40:44])[:4000]


@pytest.fixture(scope="module")
def small_tok() -> BPETokenizer:
    return BPETokenizer.train(SMALL_TEXT, 400, special_tokens=(EOT, PAD))


def test_default_special_tokens_each_encode_to_one_reserved_id():
    """What the objectives rely on: every control token (end of text, padding, [MASK], the T5
    sentinels) is one id of its own, never produced from ordinary text, refused unless allowed."""
    tok = BPETokenizer.train(SMALL_TEXT, 320, special_tokens=DEFAULT_SPECIAL_TOKENS)
    ids = [tok.encode(t, allowed_special="all") for t in DEFAULT_SPECIAL_TOKENS]
    assert all(len(i) == 1 for i in ids)
    assert len({i[0] for i in ids}) == len(DEFAULT_SPECIAL_TOKENS) == 3 + N_SENTINELS
    assert {i[0] for i in ids} == set(tok.special_tokens.values())
    ordinary = tok.encode(SMALL_TEXT)
    assert not set(ordinary) & set(tok.special_tokens.values())
    assert tok.decode(ids[0] + ordinary[:5]) == EOT + tok.decode(ordinary[:5])
    with pytest.raises(ValueError, match="extra_id_3"):
        tok.encode(f"a {sentinel(3)} b")


def test_train_matches_naive_reference_merge_for_merge():
    fast = train_bpe(SMALL_TEXT, 420)
    slow = naive_train_bpe(SMALL_TEXT, 420)
    assert len(fast) == 420
    assert sorted(fast.items(), key=lambda kv: kv[1]) == sorted(slow.items(), key=lambda kv: kv[1])


def test_train_matches_naive_reference_with_special_tokens():
    text = SMALL_TEXT[:3000] + EOT + SMALL_TEXT[3000:] + PAD
    assert train_bpe(text, 350, (EOT, PAD)) == naive_train_bpe(text, 350, (EOT, PAD))


def test_tie_break_prefers_lexicographically_greatest_pair():
    # every pair occurs once: (c, d) > (a, b) > (" ", c) as tuples of byte strings
    ranks = train_bpe("ab cd", 259)
    assert [t for t, r in sorted(ranks.items(), key=lambda kv: kv[1])][256:] == [
        b"cd",
        b"ab",
        b" cd",
    ]


def test_ranks_layout_and_vocab_size_counts_special_tokens(small_tok):
    ranks = small_tok.ranks
    assert len(ranks) == 398 and small_tok.vocab_size == 400
    assert all(ranks[bytes([b])] == b for b in range(256))
    assert small_tok.special_tokens == {EOT: 398, PAD: 399}
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe("hello", 257, special_tokens=(EOT, PAD))


def test_wrapper_ids_equal_hand_applied_merges(small_tok):
    assert small_tok.encode(HELD_OUT) == naive_encode(HELD_OUT, small_tok.ranks)
    texts = [HELD_OUT[:500], "the  the\n\n   x", ""]
    assert small_tok.encode_batch(texts) == [naive_encode(t, small_tok.ranks) for t in texts]


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_roundtrip_arbitrary_unicode(small_tok, s):
    # hypothesis also tries the special-token strings it finds in the source
    assert small_tok.decode(small_tok.encode(s, allowed_special="all")) == s
    assert small_tok.decode(small_tok.encode(s, disallowed_special=())) == s
    if EOT not in s and PAD not in s:
        assert small_tok.decode(small_tok.encode(s)) == s


def test_special_tokens_refused_unless_allowed(small_tok):
    text = f"first doc{EOT}second doc"
    with pytest.raises(ValueError, match="special token '<\\|endoftext\\|>'.*allowed_special"):
        small_tok.encode(text)
    with pytest.raises(ValueError, match="special token"):
        small_tok.encode_batch(["fine", text])
    ids = small_tok.encode(text, allowed_special={EOT})
    assert ids == small_tok.encode("first doc") + [398] + small_tok.encode("second doc")
    assert small_tok.encode(text, allowed_special="all") == ids
    assert small_tok.decode(ids) == text
    with pytest.raises(ValueError, match="special token '<\\|pad\\|>'"):
        small_tok.encode(PAD + EOT, allowed_special={EOT})
    with pytest.raises(ValueError, match="unknown special"):
        small_tok.encode("x", allowed_special={"<nope>"})
    # explicitly treated as plain text: many tokens, none of them special
    plain = small_tok.encode(text, disallowed_special=())
    assert 398 not in plain and small_tok.decode(plain) == text


def test_never_merges_across_special_tokens():
    text = ("hello" + EOT) * 40 + "world " * 10
    ranks = train_bpe(text, 266, special_tokens=(EOT,))
    multi = [t for t in ranks if len(t) > 1]
    assert multi and not any(c in t for t in multi for c in (b"<", b"|", b">", b"oh"))
    # without declaring it special, the marker's bytes do get merged
    assert any(b"|" in t for t in train_bpe(text, 266) if len(t) > 1)


def test_warns_when_text_runs_out_of_pairs():
    with pytest.warns(UserWarning, match="ran out of pairs"):
        ranks = train_bpe("abab", 300)
    assert len(ranks) == 258 and b"abab" in ranks


def test_save_load_and_dict_roundtrip(small_tok, tmp_path):
    path = tmp_path / "tok.json"
    small_tok.save(path)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["kind"] == "bpe" and len(saved["ranks"]) == 398
    for loaded in (BPETokenizer.load(path), load_tokenizer(path)):
        assert isinstance(loaded, BPETokenizer)
        assert loaded.ranks == small_tok.ranks and loaded.special_tokens == small_tok.special_tokens
        assert loaded.encode(HELD_OUT) == small_tok.encode(HELD_OUT)
    d = small_tok.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain JSON types only (torch weights_only safe)
    assert tokenizer_from_dict(d).encode(HELD_OUT) == small_tok.encode(HELD_OUT)
    with pytest.raises(ValueError, match="kind"):
        tokenizer_from_dict({"kind": "wordpiece"})
    with pytest.raises(ValueError, match="'char'"):
        CharTokenizer.from_dict(d)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")


def test_checkpoint_roundtrip_with_weights_only(small_tok, tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"tokenizer": small_tok.to_dict()}, tmp_path / "ckpt.pt")
    d = torch.load(tmp_path / "ckpt.pt", weights_only=True)["tokenizer"]
    assert tokenizer_from_dict(d).encode(HELD_OUT) == small_tok.encode(HELD_OUT)


def test_char_tokenizer(tmp_path):
    tok = CharTokenizer.train("hello world" + EOT, special_tokens=(EOT, PAD))
    assert tok.chars == sorted(set("hello world")) and tok.vocab_size == len(tok.chars) + 2
    ids = tok.encode("hello" + EOT + "world", allowed_special="all")
    assert ids[5] == tok.special_tokens[EOT] and tok.decode(ids) == "hello" + EOT + "world"
    assert len(tok.encode("low")) == 3
    with pytest.raises(ValueError, match="character 'z'"):
        tok.encode("zoo")
    with pytest.raises(ValueError, match="special token"):
        tok.encode("hi" + EOT)
    with pytest.raises(ValueError, match="cannot decode id 99"):
        tok.decode([99])
    assert tok.encode_batch(["he", "lo"]) == [tok.encode("he"), tok.encode("lo")]
    tok.save(tmp_path / "c.json")
    loaded = load_tokenizer(tmp_path / "c.json")
    assert isinstance(loaded, CharTokenizer) and loaded.to_dict() == tok.to_dict()
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))).encode("old") == tok.encode(
        "old"
    )


# --- reference BPE and the shared interface -----------------------------------------------------


def test_reference_encode_decode_with_special_tokens(small_tok):
    text = f"{HELD_OUT[:300]}{EOT}  tail\n\n{PAD}é😀"
    ids = naive_encode(text, small_tok.ranks, small_tok.special_tokens)
    assert ids == small_tok.encode(text, allowed_special="all")
    assert naive_decode(ids, small_tok.ranks, small_tok.special_tokens) == text
    # single bytes of "é" are not valid UTF-8 alone: bytes are joined first, then decoded
    assert naive_decode([0xC3, 0xA9], small_tok.ranks) == "é"
    assert naive_decode([0xC3], small_tok.ranks) == "\ufffd"  # a cut character, as tiktoken does
    assert small_tok.decode([0xC3]) == "\ufffd"


def test_bpe_merge_max_rank_recovers_the_two_halves(small_tok):
    ranks = small_tok.ranks
    by_rank = sorted(ranks, key=ranks.__getitem__)
    for rank in range(256, 300):
        left, right = bpe_merge(by_rank[rank], ranks, max_rank=rank)
        assert left + right == by_rank[rank] and ranks[left] < rank and ranks[right] < rank
    assert bpe_merge(b"", ranks) == [] and bpe_merge(b"x", ranks) == [b"x"]


def test_both_tokenizers_satisfy_one_protocol(small_tok):
    char_tok = CharTokenizer.train(SMALL_TEXT + "<|>", special_tokens=(EOT,))
    for tok in (small_tok, char_tok):
        assert isinstance(tok, Tokenizer)
    for method in ("encode", "encode_batch", "encode_iterable", "decode", "to_dict", "save"):
        theirs = inspect.signature(getattr(Tokenizer, method))
        assert inspect.signature(getattr(BPETokenizer, method)) == theirs, method
        assert inspect.signature(getattr(CharTokenizer, method)) == theirs, method
    assert TOKENIZER_KINDS == ("bpe", "char", "gpt2")
    # disallowed_special=() means "spell it as text" for both
    assert char_tok.decode(char_tok.encode("a" + EOT, disallowed_special=())) == "a" + EOT


# --- streaming: encode_iterable -----------------------------------------------------------------

# Pieces that stress pre-tokenisation at a cut: whitespace runs of every kind (U+001C is *not*
# whitespace to the regex, U+0085 and U+3000 are), contractions, digits, punctuation, multi-byte
# characters, and special tokens together with fragments of their spelling.
STREAM_PIECES = [
    "the", "a", "b", "x.", "42", "'s", "'ll", "'", ",", "é", "😀",
    " ", "  ", "   ", "\n", "\n\n", "\n\n\n", " \n", "\t", "\r\n", "\x1c", "\x85", "\u3000",
    EOT, PAD, "<|", "|>", "<|endof", "text|>",
]  # fmt: skip
stream_texts = st.lists(st.sampled_from(STREAM_PIECES), max_size=60).map("".join)


def split_at(text: str, cuts: list[int]) -> list[str]:
    """Cut text into input strings at the given positions (empty strings included)."""
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.fixture(scope="module")
def stream_tok() -> BPETokenizer:
    """Trained on the stress pieces themselves, so merges exist that a wrong cut would break
    ("'ll", ".\x1c", "\n\n\n", " 42"...): with no merge across a cut, any cut looks right."""
    rng = random.Random(0)
    text = "".join(rng.choice(STREAM_PIECES) for _ in range(20_000))
    return BPETokenizer.train(text, 700, special_tokens=(EOT, PAD))


@pytest.fixture(scope="module")
def char_tok() -> CharTokenizer:
    alphabet = "".join(p for p in STREAM_PIECES if p not in (EOT, PAD))
    return CharTokenizer.train(alphabet + SMALL_TEXT, special_tokens=(EOT, PAD))


@settings(max_examples=300, deadline=None)
@given(stream_texts, st.lists(st.integers(0, 10_000), max_size=12), st.integers(1, 12))
def test_encode_iterable_equals_encode_of_the_whole(stream_tok, char_tok, text, cuts, piece_chars):
    lines = split_at(text, cuts)
    for tok in (stream_tok, char_tok):
        for rules in ({"allowed_special": "all"}, {"disallowed_special": ()}):
            streamed = tok.encode_iterable(iter(lines), piece_chars=piece_chars, **rules)
            assert list(streamed) == tok.encode(text, **rules), (type(tok).__name__, rules)


def test_special_token_split_across_inputs_is_kept_whole(stream_tok, char_tok):
    lines = ["one  two\n\n<|endof", "text|>\n  three <", "|pad|", ">"]
    text = "".join(lines)
    for tok in (stream_tok, char_tok):
        ids = list(tok.encode_iterable(lines, allowed_special="all", piece_chars=1))
        assert ids == tok.encode(text, allowed_special="all")
        assert tok.special_tokens[EOT] in ids and tok.special_tokens[PAD] in ids
        with pytest.raises(ValueError, match="special token '<\\|endoftext\\|>'"):
            list(tok.encode_iterable(lines, piece_chars=1))  # refused even when split


def test_encode_iterable_argument_errors(small_tok):
    other = BPETokenizer(small_tok.ranks, pattern=r"\S+|\s+")
    with pytest.raises(ValueError, match="GPT2_SPLIT_PATTERN"):
        other.encode_iterable(["x"])  # raised at the call, before anything is read
    with pytest.raises(ValueError, match="unknown special"):
        small_tok.encode_iterable(["x"], allowed_special={"<nope>"})
    with pytest.raises(TypeError, match="text mode"):
        list(small_tok.encode_iterable([b"bytes"]))
    assert list(small_tok.encode_iterable([])) == [] == list(small_tok.encode_iterable(["", ""]))


def test_encode_iterable_streams_a_long_generator_in_bounded_memory(small_tok, tmp_path):
    """10^5 lines (~4.4 MB) from a generator: the input runs ahead of the output by a bounded
    amount only (16 pieces of ~64K characters for BPE, one for char), never the whole text."""
    n_lines = 100_000

    def lines(read: list[int]) -> Iterator[str]:
        for i in range(n_lines):
            line = f"line {i}:  the\tteacher's {i * i} books\n" + ("\n" * (i % 3))
            if i % 1000 == 999:  # a special token split across two lines (the last one never ends)
                line += "<|endof"
            elif i % 1000 == 0 and i:
                line = "text|>" + line
            read[0] += len(line)
            yield line

    whole = "".join(lines([0]))
    char_tok = CharTokenizer.train(whole, special_tokens=(EOT,))
    for tok, limit in ((small_tok, 17 * 66_000), (char_tok, 66_000)):
        n_bytes = {i: len(tok.decode([i]).encode()) for i in range(tok.vocab_size)}
        read, written, ahead, ids = [0], 0, 0, []
        for i in tok.encode_iterable(lines(read), allowed_special="all"):
            written += n_bytes[i]  # ASCII text: one byte per character
            ahead = max(ahead, read[0] - written)
            ids.append(i)
        assert written == read[0] == len(whole) > 4_000_000
        assert ahead < limit, (type(tok).__name__, ahead)
        assert ids == tok.encode(whole, allowed_special="all")
        assert ids.count(tok.special_tokens[EOT]) == n_lines // 1000 - 1
    # and a real text file, read line by line
    path = tmp_path / "corpus.txt"
    path.write_text(HELD_OUT * 40, encoding="utf-8")
    with open(path, encoding="utf-8", newline="") as f:
        assert list(small_tok.encode_iterable(f)) == small_tok.encode(HELD_OUT * 40)


# --- GPT-2 parity -------------------------------------------------------------------------------

GPT2_URLS = {  # where tiktoken_ext/openai_public.py downloads GPT-2's two files from
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}
PARITY_TEXTS = [
    "The teacher taught the student with the book. It's 2024, isn't it?",
    "Größere Übungen für Schüler: Straßenbahn fährt über die Brücke, daß ist schön.",
    "emoji 😀🙈🏳️‍🌈👩‍👩‍👧 and ✨ sparkles ✨ 中文字符 日本語",
    "  leading\t\ttabs\n\n\n   trailing   \r\n    \u3000 nbsp\u00a0here   ",
    "def f(x):\n    return x**2  # comment\n\n\n" + " " * 17 + "end",
]


def _block_network(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_gpt2_files_match_tiktoken(gpt2_files, tmp_path, monkeypatch):
    encoder_json, vocab_bpe = gpt2_files
    for path in (encoder_json, vocab_bpe):  # tiktoken's cache key: sha1 of the download URL
        key = hashlib.sha1(GPT2_URLS[path.name].encode()).hexdigest()
        shutil.copy(path, tmp_path / key)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    _block_network(monkeypatch)
    reference = tiktoken.get_encoding("gpt2")
    ours = BPETokenizer.from_gpt2_files(encoder_json, vocab_bpe)
    assert ours.vocab_size == 50257 and ours.special_tokens == {EOT: 50256}
    assert ours.ranks == reference._mergeable_ranks
    for text in PARITY_TEXTS:
        assert ours.encode(text) == reference.encode(text), text
        assert ours.decode(ours.encode(text)) == text
    assert ours.encode(EOT, allowed_special="all") == [50256]
    wrapped = BPETokenizer.from_tiktoken("gpt2")  # now served from the cache, offline
    assert wrapped.encode(PARITY_TEXTS[1]) == ours.encode(PARITY_TEXTS[1])


def test_from_tiktoken_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    _block_network(monkeypatch)
    with pytest.raises(RuntimeError, match="'gpt2'.*from_gpt2_files") as info:
        BPETokenizer.from_tiktoken("gpt2")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown tiktoken encoding 'gpt5'"):
        BPETokenizer.from_tiktoken("gpt5")


def test_from_gpt2_files_rejects_mismatched_files(gpt2_files, tmp_path):
    encoder_json, vocab_bpe = gpt2_files
    lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
    lines[1], lines[2] = lines[2], lines[1]  # swap the first two merges
    bad = tmp_path / "vocab.bpe"
    bad.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match="disagrees"):
        BPETokenizer.from_gpt2_files(encoder_json, bad)


def test_bad_special_tokens_are_refused():
    with pytest.raises(ValueError, match="duplicates"):
        train_bpe("hello", 300, special_tokens=(EOT, EOT))
    with pytest.raises(ValueError, match="empty string"):
        BPETokenizer.train("hello", 300, special_tokens=("",))
