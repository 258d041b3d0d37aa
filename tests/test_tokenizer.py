"""Tests for minigpt/tokenizer.py: BPE training against a naive reference, the tiktoken wrapper
against hand-applied merges, special tokens, save/load, CharTokenizer, and GPT-2 parity."""

from __future__ import annotations

import hashlib
import json
import pydoc_data.topics
import shutil
import socket
from collections import Counter
from pathlib import Path

import pytest
import regex
import tiktoken
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.tokenizer import (
    DEFAULT_SPECIAL_TOKENS,
    EOT,
    GPT2_SPLIT_PATTERN,
    MASK,
    PAD,
    BPETokenizer,
    CharTokenizer,
    load_tokenizer,
    sentinel,
    tokenizer_from_dict,
    train_bpe,
)

# A few KB of the embedded corpus (Python's bundled docs), read straight from the stdlib.
TOPICS = pydoc_data.topics.topics
SMALL_TEXT = "\n\n".join(TOPICS[k] for k in sorted(TOPICS)[:6])[:6000]
HELD_OUT = "\n\n".join(TOPICS[k] for k in sorted(TOPICS)[40:44])[:4000]


def naive_train_bpe(text: str, vocab_size: int, special_tokens=()) -> dict[bytes, int]:
    """The textbook algorithm: recount every pair of every word before each merge."""
    chunks = [text]
    if special_tokens:
        alternatives = sorted(special_tokens, key=len, reverse=True)
        chunks = regex.split("|".join(regex.escape(s) for s in alternatives), text)
    words = Counter()
    for chunk in chunks:
        for piece in regex.findall(GPT2_SPLIT_PATTERN, chunk):
            words[tuple(bytes([b]) for b in piece.encode("utf-8"))] += 1
    ranks = {bytes([i]): i for i in range(256)}
    while len(ranks) < vocab_size - len(special_tokens):
        pairs = Counter()
        for word, n in words.items():
            for i in range(len(word) - 1):
                pairs[word[i], word[i + 1]] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))  # most frequent, then greatest bytes
        merged = best[0] + best[1]
        if merged not in ranks:
            ranks[merged] = len(ranks)
        new_words = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += n
        words = new_words
    return ranks


def hand_encode(text: str, ranks: dict[bytes, int]) -> list[int]:
    """Apply ranks by hand: per pre-token, merge the lowest-ranked adjacent pair until none."""
    ids = []
    for piece in regex.findall(GPT2_SPLIT_PATTERN, text):
        parts = [bytes([b]) for b in piece.encode("utf-8")]
        while True:
            candidates = [
                (ranks[parts[i] + parts[i + 1]], i)
                for i in range(len(parts) - 1)
                if parts[i] + parts[i + 1] in ranks
            ]
            if not candidates:
                break
            _, i = min(candidates)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        ids += [ranks[p] for p in parts]
    return ids


@pytest.fixture(scope="module")
def small_tok() -> BPETokenizer:
    return BPETokenizer.train(SMALL_TEXT, 400, special_tokens=(EOT, PAD))


def test_constants():
    assert DEFAULT_SPECIAL_TOKENS[:3] == (EOT, PAD, MASK) == ("<|endoftext|>", "<|pad|>", "[MASK]")
    assert sentinel(0) == "<extra_id_0>" and len(DEFAULT_SPECIAL_TOKENS) == 35


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
    assert small_tok.encode(HELD_OUT) == hand_encode(HELD_OUT, small_tok.ranks)
    texts = [HELD_OUT[:500], "the  the\n\n   x", ""]
    assert small_tok.encode_batch(texts) == [hand_encode(t, small_tok.ranks) for t in texts]


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
