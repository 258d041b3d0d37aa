"""What every tokenizer offers: the `Tokenizer` protocol, the tokenizer kinds, loading by kind.

Data preparation, the trainer, checkpoints and sampling only ever need a handful of operations:
text -> ids (whole, in batches, or streamed from a file), ids -> text, the vocabulary size for
the embedding table, the special tokens' ids, and a plain dict to store. `Tokenizer` names exactly
those, with one signature for both implementations (BPETokenizer and CharTokenizer satisfy it
structurally; neither inherits from it), so code written against it works with either and a new
tokenizer knows what it must provide. A stored dict says its "kind"; `tokenizer_from_dict` picks
the class from it. Lesson 01 (`lessons/01_tokenization.py`) compares the two tokenizers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.pretokenize import PIECE_CHARS
from minigpt.tokenizer.storage import read_json
from minigpt.tokenizer.tiktoken_bpe import BPETokenizer

# How `prepare` (and the CLI's --tokenizer, and the training settings) can make a tokenizer for a
# corpus: train BPE on it, take its characters, or load GPT-2's vocabulary (stored as kind "bpe").
TOKENIZER_KINDS: tuple[str, ...] = ("bpe", "char", "gpt2")


@runtime_checkable
class Tokenizer(Protocol):
    """The interface shared by BPETokenizer and CharTokenizer.

    Special-token spellings in text raise unless listed in `allowed_special` ("all" allows every
    one); `disallowed_special=()` encodes them as ordinary text instead.
    """

    kind: str
    special_tokens: dict[str, int]

    @property
    def vocab_size(self) -> int:
        """Max id + 1: the rows the model's embedding table needs."""
        ...

    def encode(
        self,
        text: str,
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
    ) -> list[int]:
        """Text -> ids."""
        ...

    def encode_batch(
        self,
        texts: Sequence[str],
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
    ) -> list[list[int]]:
        """`encode` of each text."""
        ...

    def encode_iterable(
        self,
        lines: Iterable[str],
        allowed_special: str | Iterable[str] = (),
        disallowed_special: str | Iterable[str] = "all",
        *,
        piece_chars: int = PIECE_CHARS,
    ) -> Iterator[int]:
        """The ids of `encode("".join(lines))`, produced while reading, holding about
        `piece_chars` characters at a time."""
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types with a "kind" key (storage.py), for files and checkpoints."""
        ...

    def save(self, path: str | Path) -> None:
        """Write `to_dict()` as one JSON file."""
        ...


_CLASSES: dict[str, type[BPETokenizer] | type[CharTokenizer]] = {
    BPETokenizer.kind: BPETokenizer,
    CharTokenizer.kind: CharTokenizer,
}


def tokenizer_from_dict(d: dict[str, Any]) -> BPETokenizer | CharTokenizer:
    """Rebuild whichever tokenizer a checkpoint or metadata file stored, from its `kind`."""
    if not isinstance(d, dict) or d.get("kind") not in _CLASSES:
        kind = d.get("kind") if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {sorted(_CLASSES)}")
    return _CLASSES[d["kind"]].from_dict(d)


def load_tokenizer(path: str | Path) -> BPETokenizer | CharTokenizer:
    """Load any tokenizer saved with `.save(path)`."""
    return tokenizer_from_dict(read_json(path))
