"""Tokenizers: byte-level BPE trained from scratch, wrapped in tiktoken, and a character tokenizer.

A language model sees integers, not text, so the first design decision is how to cut text into
pieces. Characters give a tiny vocabulary but long sequences; whole words give short sequences but
an open vocabulary. Byte-pair encoding (BPE; Sennrich et al. 2016, byte-level as in GPT-2, Radford
et al. 2019) sits between: start from the 256 byte values, so *any* text can be encoded, and
repeatedly merge the most frequent adjacent pair into a new token until the vocabulary is full.

`train_bpe` is our own trainer. It keeps the pair counts and an index pair -> words containing it,
and after each merge updates only the words that contained the merged pair, so a merge costs time
proportional to the words it touches instead of a full recount of the corpus. Encoding then uses
the learned ranks through `tiktoken` (Rust), which applies the merges in rank order (lowest-ranked
adjacent pair first, `bpe_merge` spells that rule out in Python) far faster than Python could.
Lesson 01 (`lessons/01_tokenization.py`) walks through all of this.
"""

from __future__ import annotations

import base64
import heapq
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import regex
import tiktoken

# GPT-2's pre-tokenisation pattern (OpenAI gpt-2 `encoder.py`), written with possessive
# quantifiers as tiktoken's `r50k_pat_str` does: same splits, less backtracking.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

EOT = "<|endoftext|>"  # end of text / document separator (GPT-2's only special token)
PAD = "<|pad|>"  # padding for batches of unequal length
MASK = "[MASK]"  # BERT-style masked-language-modelling placeholder
N_SENTINELS = 32  # T5 uses 100; 32 spans is plenty for the short windows we train on


def sentinel(i: int) -> str:
    """Name of T5's i-th span-corruption sentinel, so objectives and tokenizers agree on it."""
    return f"<extra_id_{i}>"


DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (
    EOT,
    PAD,
    MASK,
    *[sentinel(i) for i in range(N_SENTINELS)],
)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _special_splitter(special_tokens: Iterable[str]) -> regex.Pattern | None:
    """Regex matching any special token, longest first so one that contains another wins."""
    specials = sorted(set(special_tokens), key=len, reverse=True)
    if "" in specials:
        raise ValueError("special_tokens contains an empty string; give each a non-empty name")
    if not specials:
        return None
    return regex.compile("|".join(regex.escape(s) for s in specials))


def _pretoken_counts(text: str, special_tokens: Sequence[str], pattern: str) -> Counter[str]:
    """Count unique pre-tokens; special tokens are cut out first so no merge ever spans one."""
    splitter = _special_splitter(special_tokens)
    chunks = splitter.split(text) if splitter is not None else [text]
    compiled = regex.compile(pattern)
    counts: Counter[str] = Counter()
    for chunk in chunks:
        counts.update(compiled.findall(chunk))
    return counts


def _inverted(token: bytes) -> tuple[int, ...]:
    """Key that sorts byte strings in *reverse* order, so a min-heap pops the greatest first.

    Byte 255-c reverses each position; the trailing 256 makes a prefix sort after its extensions.
    """
    return (*(255 - c for c in token), 256)


def _merge_word(word: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace every non-overlapping occurrence of (a, b), scanning left to right, by `new`."""
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_bpe(
    text: str,
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    pattern: str = GPT2_SPLIT_PATTERN,
) -> dict[bytes, int]:
    """Learn byte-level BPE ranks from `text`: the 256 single bytes first, then merges in order.

    Why incremental: a naive trainer recounts every pair of the corpus after each merge
    (O(merges x corpus)). Here each unique pre-token is stored once with its count, and a pair's
    count changes only in the words that contained the merged pair, which the index pair -> words
    finds directly. A heap with lazy deletion yields the most frequent pair; ties go to the
    lexicographically greatest pair compared as (bytes, bytes), so results are deterministic.
    `vocab_size` counts the special tokens, which get no ranks here (their ids follow the ranks).
    If a merge would create bytes already in the vocabulary (e.g. "ab"+"c" after "a"+"bc"), the
    pair is merged into the existing token and no new rank is spent.
    """
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens {list(special_tokens)} has duplicates; list each once")
    n_ranks = vocab_size - len(special_tokens)
    if n_ranks < 256:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it needs 256 byte tokens plus "
            f"{len(special_tokens)} special tokens; use vocab_size >= {256 + len(special_tokens)}"
        )
    vocab: list[bytes] = [bytes([i]) for i in range(256)]  # id -> bytes
    ranks: dict[bytes, int] = {tok: i for i, tok in enumerate(vocab)}
    inv = [_inverted(tok) for tok in vocab]

    counts_by_word = _pretoken_counts(text, special_tokens, pattern)
    words: list[list[int]] = []
    counts: list[int] = []
    for w, c in counts_by_word.items():
        ids = list(w.encode("utf-8"))
        if len(ids) > 1:  # single-byte words can never contribute a pair
            words.append(ids)
            counts.append(c)

    pair_counts: dict[tuple[int, int], int] = {}
    index: dict[tuple[int, int], set[int]] = {}
    for w, (word, c) in enumerate(zip(words, counts, strict=True)):
        for p in pairwise(word):
            pair_counts[p] = pair_counts.get(p, 0) + c
            index.setdefault(p, set()).add(w)
    heap = [(-c, inv[a], inv[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    next_id = 256
    while len(ranks) < n_ranks:
        # Pop until the top entry is current (entries go stale when counts change).
        while heap:
            neg, _, _, a, b = heap[0]
            if pair_counts.get((a, b)) == -neg:
                break
            heapq.heappop(heap)
        else:
            warnings.warn(
                f"train_bpe: text ran out of pairs after {len(ranks)} ranks "
                f"(asked for {n_ranks}); use more text or a smaller vocab_size",
                stacklevel=2,
            )
            break
        heapq.heappop(heap)
        merged = vocab[a] + vocab[b]
        new = ranks.get(merged)
        if new is None:
            new = next_id
            next_id += 1
            ranks[merged] = new
            vocab.append(merged)
            inv.append(_inverted(merged))

        changed: set[tuple[int, int]] = set()
        for w in index.pop((a, b)):
            word, c = words[w], counts[w]
            new_word = _merge_word(word, a, b, new)
            old_pairs = list(pairwise(word))
            new_pairs = list(pairwise(new_word))
            for p in old_pairs:
                pair_counts[p] -= c
            for p in new_pairs:
                pair_counts[p] = pair_counts.get(p, 0) + c
            old_set, new_set = set(old_pairs), set(new_pairs)
            for p in old_set - new_set:
                if p != (a, b):
                    index[p].discard(w)
            for p in new_set - old_set:
                index.setdefault(p, set()).add(w)
            changed |= old_set | new_set
            words[w] = new_word
        changed.discard((a, b))
        del pair_counts[(a, b)]
        for p in changed:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, inv[p[0]], inv[p[1]], p[0], p[1]))
            else:
                del pair_counts[p]
                index.pop(p, None)
    return ranks


def bpe_merge(piece: bytes, ranks: dict[bytes, int], max_rank: int | None = None) -> list[bytes]:
    """Split one pre-token into BPE tokens in plain Python (the rule tiktoken applies in Rust).

    Repeatedly merge the adjacent pair whose concatenation has the lowest rank (leftmost on
    ties). It exists for teaching and as the slow reference in benchmarks; `max_rank` limits the
    merges used, which recovers the two halves a token was built from (lesson 01).
    """
    parts = [piece[i : i + 1] for i in range(len(piece))]
    limit = len(ranks) if max_rank is None else max_rank
    while len(parts) > 1:
        best, best_rank = -1, limit
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best, best_rank = i, r
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


# ----------------------------------------------------------------------------------------------
# Shared helpers for both tokenizers
# ----------------------------------------------------------------------------------------------


def _allowed_set(allowed_special: str | Iterable[str], special_tokens: dict[str, int]) -> set[str]:
    """Resolve `allowed_special` ("all" or names) and refuse names the tokenizer does not have."""
    if allowed_special == "all":
        return set(special_tokens)
    allowed = {allowed_special} if isinstance(allowed_special, str) else set(allowed_special)
    unknown = allowed - set(special_tokens)
    if unknown:
        raise ValueError(
            f"allowed_special has unknown special tokens {sorted(unknown)}; "
            f"this tokenizer has {sorted(special_tokens)}"
        )
    return allowed


def _refuse_special(text: str, splitter: regex.Pattern | None, allowed: set[str]) -> None:
    """Raise if text spells a special token that was not allowed.

    Why: text scraped from the web can contain "<|endoftext|>"; silently turning it into the
    real control token would let data inject document boundaries (or worse) into training.
    """
    if splitter is None:
        return
    for m in splitter.finditer(text):
        if m.group() not in allowed:
            raise ValueError(
                f"text contains the special token {m.group()!r} at character {m.start()}; pass "
                f"allowed_special={{{m.group()!r}}} (or 'all') to encode it as that token, or "
                "disallowed_special=() to encode it as plain text"
            )


def _write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON via a temporary file and rename, so a crash never leaves half a tokenizer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {str(path)!r} not found; check the path")
    d = json.loads(path.read_text(encoding="utf-8"))
    if kind is not None and d.get("kind") != kind:
        raise ValueError(
            f"{str(path)!r} holds a {d.get('kind')!r} tokenizer, not {kind!r}; "
            "use minigpt.tokenizer.load_tokenizer(path)"
        )
    return d


# ----------------------------------------------------------------------------------------------
# BPE tokenizer (ranks + tiktoken)
# ----------------------------------------------------------------------------------------------


class BPETokenizer:
    """Byte-level BPE tokenizer: our ranks, encoded by tiktoken's Rust core.

    Ids 0..len(ranks)-1 are the ranks (merge order); special tokens take the ids given to them
    (after the ranks when trained here). Any text round-trips, since every byte is a token.
    """

    kind = "bpe"

    def __init__(
        self,
        ranks: dict[bytes, int],
        special_tokens: dict[str, int] | None = None,
        pattern: str = GPT2_SPLIT_PATTERN,
        name: str = "minigpt-bpe",
    ) -> None:
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise ValueError(
                f"ranks of {name!r} must be exactly 0..{len(ranks) - 1}; "
                "build them with train_bpe or from GPT-2's files"
            )
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(
                f"ranks of {name!r} lack single bytes {missing[:5]}...; byte-level "
                "BPE needs all 256 so any text can be encoded"
            )
        special_tokens = dict(special_tokens or {})
        clash = [s for s, i in special_tokens.items() if i < len(ranks)]
        if clash:
            raise ValueError(
                f"special tokens {clash} have ids inside the ranks (< {len(ranks)}); "
                "give them ids >= len(ranks)"
            )
        self.name = name
        self.pattern = pattern
        self.special_tokens: dict[str, int] = special_tokens
        self._ranks = dict(ranks)
        self._splitter = _special_splitter(special_tokens)
        self.encoding = tiktoken.Encoding(
            name, pat_str=pattern, mergeable_ranks=self._ranks, special_tokens=special_tokens
        )

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Sequence[str] = (),
        pattern: str = GPT2_SPLIT_PATTERN,
    ) -> BPETokenizer:
        """Train ranks with `train_bpe`; special tokens get the ids right after the ranks."""
        ranks = train_bpe(text, vocab_size, special_tokens, pattern)
        specials = {s: len(ranks) + i for i, s in enumerate(special_tokens)}
        return cls(ranks, specials, pattern, name=f"minigpt-bpe-{vocab_size}")

    @property
    def ranks(self) -> dict[bytes, int]:
        """The mergeable ranks (bytes -> id); treat as read-only."""
        return self._ranks

    @property
    def vocab_size(self) -> int:
        """Number of ids the model's embedding needs: max id + 1 (ranks plus special tokens)."""
        return self.encoding.n_vocab

    def encode(
        self,
        text: str,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
    ) -> list[int]:
        """Text -> ids. Special-token strings raise unless allowed (see `_refuse_special`)."""
        allowed = _allowed_set(allowed_special, self.special_tokens)
        if disallowed_special == "all":
            _refuse_special(text, self._splitter, allowed)
        return self.encoding.encode(text, allowed_special=allowed, disallowed_special=())

    def encode_batch(
        self, texts: Sequence[str], allowed_special: str | Iterable[str] = ()
    ) -> list[list[int]]:
        """Encode many texts at once (tiktoken spreads them over threads)."""
        allowed = _allowed_set(allowed_special, self.special_tokens)
        for t in texts:
            _refuse_special(t, self._splitter, allowed)
        return self.encoding.encode_batch(
            list(texts), allowed_special=allowed, disallowed_special=()
        )

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; a token sequence cut inside a UTF-8 character decodes to U+FFFD there."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        try:
            return self.encoding.decode(ids)
        except (KeyError, ValueError, OverflowError) as e:
            bad = [i for i in ids if not 0 <= i < self.vocab_size][:3]
            raise ValueError(
                f"cannot decode ids {bad or ids[:3]}: outside this tokenizer's "
                f"vocabulary of {self.vocab_size}"
            ) from e

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token (may be part of a UTF-8 character, hence bytes)."""
        return self.encoding.decode_single_token_bytes(token_id)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, so it can ride inside a torch checkpoint (weights_only=True)."""
        by_rank = sorted(self._ranks, key=self._ranks.__getitem__)
        return {
            "kind": self.kind,
            "name": self.name,
            "pattern": self.pattern,
            "ranks": [base64.b64encode(t).decode("ascii") for t in by_rank],
            "special_tokens": dict(self.special_tokens),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BPETokenizer:
        """Inverse of `to_dict`."""
        if d.get("kind") != cls.kind:
            raise ValueError(
                f"expected a 'bpe' tokenizer dict, got kind={d.get('kind')!r}; "
                "use tokenizer_from_dict(d)"
            )
        ranks = {base64.b64decode(t): i for i, t in enumerate(d["ranks"])}
        specials = {str(k): int(v) for k, v in d["special_tokens"].items()}
        return cls(ranks, specials, d["pattern"], d["name"])

    def save(self, path: str | Path) -> None:
        """One self-describing JSON file (kind, name, pattern, ranks, special tokens)."""
        _write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Load a file written by `save`."""
        return cls.from_dict(_read_json(path, cls.kind))

    @classmethod
    def from_tiktoken(cls, name: str = "gpt2") -> BPETokenizer:
        """Wrap one of tiktoken's published encodings; needs its cache or the network."""
        if name not in tiktoken.list_encoding_names():
            raise ValueError(
                f"unknown tiktoken encoding {name!r}; choose one of "
                f"{tiktoken.list_encoding_names()}"
            )
        try:
            enc = tiktoken.get_encoding(name)
        except Exception as e:  # requests/urllib errors, missing `requests`, bad cache...
            raise RuntimeError(
                f"could not load tiktoken encoding {name!r} ({type(e).__name__}; offline?): "
                "connect once to fill tiktoken's cache, set TIKTOKEN_CACHE_DIR to a filled one, "
                "or use BPETokenizer.from_gpt2_files(encoder_json, vocab_bpe)"
            ) from e
        return cls(enc._mergeable_ranks, enc._special_tokens, enc._pat_str, name)

    @classmethod
    def from_gpt2_files(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> BPETokenizer:
        """Build GPT-2's tokenizer from its two published files, fully offline.

        encoder.json maps token strings to ids, vocab.bpe lists merges in rank order; both
        spell bytes through GPT-2's byte -> printable-character table (`_gpt2_byte_decoder`).
        """
        decoder = _gpt2_byte_decoder()

        def to_bytes(s: str) -> bytes:
            return bytes(decoder[ch] for ch in s)

        encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        specials = {s: encoder.pop(s) for s in (EOT, "<|startoftext|>") if s in encoder}
        ranks = {to_bytes(s): i for s, i in encoder.items()}
        lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        merges = [ln.split() for ln in lines[1:] if ln.strip()]  # line 0 is a version header
        for i, (left, right) in enumerate(merges):
            if ranks.get(to_bytes(left) + to_bytes(right)) != 256 + i:
                raise ValueError(
                    f"{str(vocab_bpe)!r} merge {i} ({left} {right}) disagrees with "
                    f"{str(encoder_json)!r}; use the two files of one release"
                )
        return cls(ranks, specials, GPT2_SPLIT_PATTERN, "gpt2")


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's reversible byte <-> unicode table, inverted (character -> byte).

    GPT-2 stores tokens as text, so each byte gets a visible character: the printable Latin-1
    bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves, the remaining 68 bytes (controls,
    space, soft hyphen...) are given the code points 256, 257, ... in byte order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return {ch: b for b, ch in table.items()}


# ----------------------------------------------------------------------------------------------
# Character tokenizer
# ----------------------------------------------------------------------------------------------


class CharTokenizer:
    """One id per Unicode character seen in training, then the special tokens.

    Why keep it: the smallest possible vocabulary makes a baseline for lesson 01's compression
    table and for tiny models, at the cost of ~4x longer sequences than BPE on English.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], special_tokens: dict[str, int] | None = None) -> None:
        chars = list(chars)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError(
                "chars must be distinct single characters; build with CharTokenizer.train(text)"
            )
        self.chars = chars
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        clash = [s for s, i in self.special_tokens.items() if i < len(chars)]
        if clash:
            raise ValueError(
                f"special tokens {clash} have ids below {len(chars)} (the chars); "
                "give them ids >= len(chars)"
            )
        self._stoi = {c: i for i, c in enumerate(chars)}
        self._itos = dict(enumerate(chars)) | {i: s for s, i in self.special_tokens.items()}
        self._splitter = _special_splitter(self.special_tokens)

    @classmethod
    def train(cls, text: str, special_tokens: Sequence[str] = ()) -> CharTokenizer:
        """Vocabulary = sorted distinct characters of `text` (special-token strings cut out)."""
        splitter = _special_splitter(special_tokens)
        plain = "".join(splitter.split(text)) if splitter is not None else text
        chars = sorted(set(plain))
        return cls(chars, {s: len(chars) + i for i, s in enumerate(special_tokens)})

    @property
    def vocab_size(self) -> int:
        """Max id + 1: characters plus special tokens."""
        return max(self._itos, default=-1) + 1

    def _encode_plain(self, text: str) -> list[int]:
        try:
            return [self._stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(
                f"character {e.args[0]!r} is not in this CharTokenizer's vocabulary; "
                "train it on text that contains it (or use BPETokenizer)"
            ) from None

    def encode(self, text: str, allowed_special: str | Iterable[str] = ()) -> list[int]:
        """Text -> ids; unknown characters and disallowed special tokens raise ValueError."""
        allowed = _allowed_set(allowed_special, self.special_tokens)
        _refuse_special(text, self._splitter, allowed)
        if not allowed:
            return self._encode_plain(text)
        ids: list[int] = []
        pos = 0
        for m in _special_splitter(allowed).finditer(text):
            ids += self._encode_plain(text[pos : m.start()])
            ids.append(self.special_tokens[m.group()])
            pos = m.end()
        return ids + self._encode_plain(text[pos:])

    def encode_batch(
        self, texts: Sequence[str], allowed_special: str | Iterable[str] = ()
    ) -> list[list[int]]:
        """Encode each text (same interface as BPETokenizer)."""
        return [self.encode(t, allowed_special) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        try:
            return "".join(self._itos[i] for i in ids)
        except KeyError as e:
            raise ValueError(
                f"cannot decode id {e.args[0]!r}: not in this CharTokenizer's "
                f"vocabulary of {self.vocab_size}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only, so it can ride inside a torch checkpoint (weights_only=True)."""
        return {
            "kind": self.kind,
            "chars": list(self.chars),
            "special_tokens": dict(self.special_tokens),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """Inverse of `to_dict`."""
        if d.get("kind") != cls.kind:
            raise ValueError(
                f"expected a 'char' tokenizer dict, got kind={d.get('kind')!r}; "
                "use tokenizer_from_dict(d)"
            )
        return cls(d["chars"], {str(k): int(v) for k, v in d["special_tokens"].items()})

    def save(self, path: str | Path) -> None:
        """One self-describing JSON file."""
        _write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Load a file written by `save`."""
        return cls.from_dict(_read_json(path, cls.kind))


def tokenizer_from_dict(d: dict[str, Any]) -> BPETokenizer | CharTokenizer:
    """Rebuild whichever tokenizer a checkpoint or metadata file stored, from its `kind`."""
    kinds = {"bpe": BPETokenizer, "char": CharTokenizer}
    if not isinstance(d, dict) or d.get("kind") not in kinds:
        kind = d.get("kind") if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {sorted(kinds)}")
    return kinds[d["kind"]].from_dict(d)


def load_tokenizer(path: str | Path) -> BPETokenizer | CharTokenizer:
    """Load any tokenizer saved with `.save(path)`."""
    return tokenizer_from_dict(_read_json(path))
