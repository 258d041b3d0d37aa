"""CharTokenizer: one id per character, the simplest tokenizer that works.

The vocabulary is the sorted set of characters seen in training, then the special tokens. It
learns no statistics, so it is the baseline BPE is measured against: the smallest vocabulary (a
hundred-odd ids for English) at the price of sequences ~4x longer than BPE's, and any character
it never saw is an error rather than a fallback to bytes. Lesson 01 prints both side by side;
tiny models train on it. Its interface is BPETokenizer's (the `Tokenizer` protocol in base.py),
so data preparation, training and sampling never ask which one they hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from minigpt.tokenizer.pretokenize import PIECE_CHARS, every_cut, stream_pieces
from minigpt.tokenizer.special_tokens import (
    allowed_set,
    disallowed_set,
    refuse_special,
    special_splitter,
)
from minigpt.tokenizer.storage import check_kind, read_json, write_json_atomic


class CharTokenizer:
    """One id per Unicode character seen in training, then the special tokens."""

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
        self._splitter = special_splitter(self.special_tokens)

    @classmethod
    def train(cls, text: str, special_tokens: Sequence[str] = ()) -> CharTokenizer:
        """Vocabulary = sorted distinct characters of `text` (special-token strings cut out)."""
        splitter = special_splitter(special_tokens)
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

    def encode(
        self,
        text: str,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
    ) -> list[int]:
        """Text -> ids; unknown characters and disallowed special tokens raise ValueError.

        With `disallowed_special=()` a special token's spelling is encoded character by
        character (each must then be in the vocabulary), as BPETokenizer encodes it as text.
        """
        allowed = allowed_set(allowed_special, self.special_tokens)
        refuse_special(
            text, self._splitter, disallowed_set(disallowed_special, allowed, self.special_tokens)
        )
        if not allowed:
            return self._encode_plain(text)
        ids: list[int] = []
        pos = 0
        for m in special_splitter(allowed).finditer(text):
            ids += self._encode_plain(text[pos : m.start()])
            ids.append(self.special_tokens[m.group()])
            pos = m.end()
        return ids + self._encode_plain(text[pos:])

    def encode_batch(
        self,
        texts: Sequence[str],
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
    ) -> list[list[int]]:
        """Encode each text (same interface as BPETokenizer)."""
        return [self.encode(t, allowed_special, disallowed_special) for t in texts]

    def encode_iterable(
        self,
        lines: Iterable[str],
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
        *,
        piece_chars: int = PIECE_CHARS,
    ) -> Iterator[int]:
        """Ids of the concatenated strings, read in bounded memory; equal to encode of the whole.

        Characters encode one by one, so any cut is safe except inside a special token's
        spelling, which `stream_pieces` never cuts (even one split across two input strings).
        About `piece_chars` characters are held at a time.
        """
        allowed = allowed_set(allowed_special, self.special_tokens)  # refuse bad names now
        pieces = stream_pieces(lines, every_cut, self.special_tokens, piece_chars)
        return chain.from_iterable(
            self.encode(text, allowed, disallowed_special) for text in pieces
        )

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
        """Plain JSON types only, so it can ride inside a torch checkpoint (storage.py)."""
        return {
            "kind": self.kind,
            "chars": list(self.chars),
            "special_tokens": dict(self.special_tokens),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """Inverse of `to_dict`."""
        check_kind(d, cls.kind)
        return cls(d["chars"], {str(k): int(v) for k, v in d["special_tokens"].items()})

    def save(self, path: str | Path) -> None:
        """One self-describing JSON file."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Load a file written by `save`."""
        return cls.from_dict(read_json(path, cls.kind))
