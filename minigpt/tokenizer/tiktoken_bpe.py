"""BPETokenizer: byte-level BPE ranks served by tiktoken's Rust core.

The ranks (`dict[bytes, int]`) are the whole of a BPE tokenizer: ours from `train_bpe`, or
GPT-2's from tiktoken or from its published files. Applying them is the loop in `bpe_merge`
(reference.py), but in Python that loop encodes well under a megabyte a second; tiktoken runs the
same rule in Rust, many times faster (`benchmarks/bpe.py`), with identical ids (the tests compare
against `naive_encode`). So this class owns the ranks and the rules around them — special tokens
refused unless allowed, streaming, save and load — and hands the inner loop to a
`tiktoken.Encoding`. Lesson 01 (`lessons/01_tokenization.py`) uses it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import Any

import tiktoken

from minigpt.tokenizer.bpe import train_bpe
from minigpt.tokenizer.gpt2 import read_gpt2_files
from minigpt.tokenizer.pretokenize import (
    GPT2_SPLIT_PATTERN,
    PIECE_CHARS,
    cuts_for,
    stream_pieces,
)
from minigpt.tokenizer.special_tokens import (
    allowed_set,
    disallowed_set,
    refuse_special,
    special_splitter,
)
from minigpt.tokenizer.storage import check_kind, read_json, write_json_atomic

_STREAM_BATCH = 16  # pieces encoded together while streaming: tiktoken spreads them over threads


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
        self._splitter = special_splitter(special_tokens)
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
        # tiktoken keeps the ranks in private attributes; they are the tokenizer, so we read them.
        return cls(enc._mergeable_ranks, enc._special_tokens, enc._pat_str, name)

    @classmethod
    def from_gpt2_files(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> BPETokenizer:
        """Build GPT-2's tokenizer from its two published files, fully offline (see gpt2.py)."""
        ranks, specials = read_gpt2_files(encoder_json, vocab_bpe)
        return cls(ranks, specials, GPT2_SPLIT_PATTERN, "gpt2")

    @property
    def ranks(self) -> dict[bytes, int]:
        """The mergeable ranks (bytes -> id); treat as read-only."""
        return self._ranks

    @property
    def vocab_size(self) -> int:
        """Number of ids the model's embedding needs: max id + 1 (ranks plus special tokens)."""
        return self.encoding.n_vocab

    def _special_rules(
        self, allowed_special: str | Iterable[str], disallowed_special: str | Iterable[str]
    ) -> tuple[set[str], set[str]]:
        allowed = allowed_set(allowed_special, self.special_tokens)
        return allowed, disallowed_set(disallowed_special, allowed, self.special_tokens)

    def encode(
        self,
        text: str,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
    ) -> list[int]:
        """Text -> ids. Special-token spellings raise unless allowed (special_tokens.py says why);
        with `disallowed_special=()` they are encoded as plain text."""
        allowed, disallowed = self._special_rules(allowed_special, disallowed_special)
        refuse_special(text, self._splitter, disallowed)
        return self.encoding.encode(text, allowed_special=allowed, disallowed_special=())

    def encode_batch(
        self,
        texts: Sequence[str],
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
    ) -> list[list[int]]:
        """Encode many texts at once (tiktoken spreads them over threads)."""
        allowed, disallowed = self._special_rules(allowed_special, disallowed_special)
        for t in texts:
            refuse_special(t, self._splitter, disallowed)
        return self.encoding.encode_batch(
            list(texts), allowed_special=allowed, disallowed_special=()
        )

    def encode_iterable(
        self,
        lines: Iterable[str],
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
        *,
        piece_chars: int = PIECE_CHARS,
    ) -> Iterator[int]:
        """Ids of the concatenated strings (a text file's lines, say), read in bounded memory.

        The ids equal `encode("".join(lines))`: `stream_pieces` cuts only where the pre-tokens
        and special tokens of the whole text are left intact. About `_STREAM_BATCH` pieces of
        `piece_chars` characters are held at a time. Only GPT2_SPLIT_PATTERN has a proven cut
        rule; other patterns raise here, before any input is read.
        """
        cuts = cuts_for(self.pattern)
        allowed, disallowed = self._special_rules(allowed_special, disallowed_special)
        pieces = stream_pieces(lines, cuts, self.special_tokens, piece_chars)
        return chain.from_iterable(self._encode_pieces(pieces, allowed, disallowed))

    def _encode_pieces(
        self, pieces: Iterator[str], allowed: set[str], disallowed: set[str]
    ) -> Iterator[list[int]]:
        while batch := list(islice(pieces, _STREAM_BATCH)):
            for text in batch:
                refuse_special(text, self._splitter, disallowed)
            yield from self.encoding.encode_batch(
                batch, allowed_special=allowed, disallowed_special=()
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
        """Plain JSON types only, so it can ride inside a torch checkpoint (storage.py)."""
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
        check_kind(d, cls.kind)
        ranks = {base64.b64decode(t): i for i, t in enumerate(d["ranks"])}
        specials = {str(k): int(v) for k, v in d["special_tokens"].items()}
        return cls(ranks, specials, d["pattern"], d["name"])

    def save(self, path: str | Path) -> None:
        """One self-describing JSON file (kind, name, pattern, ranks, special tokens)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Load a file written by `save`."""
        return cls.from_dict(read_json(path, cls.kind))
