"""A corpus too big for memory: scanned once, then read back by character range.

A 2 GB training file cannot be held as one Python string (that is 2-8 GB of memory before a
single token is made), yet preparing it needs answers about the whole text: its sha256 (to
know whether a re-run can skip the work), its length in characters (to put the validation cut
at the last 10%), the line start before that cut, and whether it is valid UTF-8. `scan` reads
the text once in ~1 MB blocks and answers all of these, keeping only a small table with one row
per block (where its bytes start, how many characters it holds, its last newline). With that
table `read(start, end)` streams any character range back, block by block, by seeking in the
files — the way `minigpt.data.prepare` reads the training and validation splits.

A corpus is a sequence of parts: files (decoded as strict UTF-8, a leading BOM dropped) and
literal strings (Python's bundled docs, the blank lines joining a folder's files). Characters,
not bytes, are the unit of positions, so the split of a file is the same as when the whole text
was read into memory (`text[:cut]`, `text[cut:]`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BLOCK_BYTES = 1 << 20  # read ~1 MB at a time: the unit of memory and of the index
_BOM = b"\xef\xbb\xbf"

Part = Path | str  # a UTF-8 file, or literal text


@dataclass(frozen=True)
class Block:
    """One row of the index: a run of whole characters inside one part."""

    part: int  # index into TextIndex.parts
    byte_start: int  # where the block's bytes start in its file (for literal text: characters)
    byte_end: int
    char_start: int  # position of its first character in the whole text
    n_chars: int
    utf8_start: int  # UTF-8 bytes of the whole text before this block (BOMs not counted)
    last_newline: int  # position in the whole text of its last "\n", or -1


@dataclass(frozen=True)
class TextIndex:
    """What one pass over a corpus learned: digest, sizes and where every block lies."""

    parts: tuple[Part, ...]
    blocks: tuple[Block, ...]
    sha256: str  # of the UTF-8 text (as `text.encode("utf-8")` of the joined parts)
    n_chars: int
    n_bytes: int  # UTF-8 bytes of the text
    first_nonspace: int  # position of the first non-whitespace character (n_chars if none)
    last_nonspace: int  # position of the last one (-1 if none)

    def _block_at(self, pos: int) -> int:
        """Index of the block holding character `pos` (binary search on char_start)."""
        lo, hi = 0, len(self.blocks) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.blocks[mid].char_start <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _block_text(self, block: Block) -> str:
        part = self.parts[block.part]
        if isinstance(part, str):
            return part[block.byte_start : block.byte_end]
        with open(part, "rb") as f:
            f.seek(block.byte_start)
            return f.read(block.byte_end - block.byte_start).decode("utf-8")

    def read(self, start: int = 0, end: int | None = None) -> Iterator[str]:
        """The characters text[start:end], as consecutive strings of about one block each."""
        end = self.n_chars if end is None else min(end, self.n_chars)
        if start >= end:
            return
        for i in range(self._block_at(start), len(self.blocks)):
            block = self.blocks[i]
            if block.char_start >= end:
                return
            text = self._block_text(block)
            lo, hi = max(start - block.char_start, 0), min(end - block.char_start, block.n_chars)
            if lo < hi:
                yield text[lo:hi] if (lo, hi) != (0, block.n_chars) else text

    def utf8_offset(self, pos: int) -> int:
        """UTF-8 bytes of text[:pos]: a split's size in bytes, for bits per byte."""
        if pos >= self.n_chars:
            return self.n_bytes
        block = self.blocks[self._block_at(pos)]
        inside = self._block_text(block)[: pos - block.char_start]
        return block.utf8_start + len(inside.encode("utf-8"))

    def line_start_before(self, pos: int) -> int:
        """`text.rfind("\\n", 0, pos) + 1`: the start of the line holding text[pos-1] (0 if no
        newline comes before pos), found by reading one block and the index's last newlines."""
        if pos <= 0:
            return 0
        i = self._block_at(pos - 1)
        block = self.blocks[i]
        inside = self._block_text(block)[: pos - block.char_start]
        found = inside.rfind("\n")
        if found != -1:
            return block.char_start + found + 1
        for earlier in reversed(self.blocks[:i]):
            if earlier.last_newline != -1:
                return earlier.last_newline + 1
        return 0


def _whole_chars(data: bytes, at_eof: bool) -> int:
    """How many leading bytes of `data` end on a UTF-8 character boundary."""
    if at_eof:
        return len(data)
    end = len(data)
    for back in range(1, min(4, len(data)) + 1):  # a character is at most 4 bytes
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            width = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return end if back >= width else end - back
    return end  # no lead byte in the last 4: invalid, and decode will say so


def _file_blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, int, str]]:
    """(byte_start, byte_end, text) of consecutive blocks of a file, cut between characters."""
    with open(path, "rb") as f:
        data = f.read(block_bytes)
        offset = len(_BOM) if data.startswith(_BOM) else 0
        data = data[offset:]
        while data:
            more = f.read(block_bytes)
            keep = _whole_chars(data, at_eof=not more)
            try:
                text = data[:keep].decode("utf-8")
            except UnicodeDecodeError as err:
                bad = offset + err.start
                raise ValueError(
                    f"{path} is not valid UTF-8 (bad byte at offset {bad}); convert it first, "
                    f"e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.txt"
                ) from None
            yield offset, offset + keep, text
            offset += keep
            data = data[keep:] + more


def scan(
    parts: Sequence[Part],
    block_bytes: int = BLOCK_BYTES,
    progress: Callable[[int], None] | None = None,
) -> TextIndex:
    """Read every part once: validate, hash, count, and index the text (see the module doc).

    A file that is empty or only whitespace is refused (it is almost always a mistake: a failed
    download, a wrong path), as is one that is not UTF-8; `progress(n)` hears of each n bytes.
    """
    digest = hashlib.sha256()
    blocks: list[Block] = []
    chars = nbytes = 0
    first_ns, last_ns = -1, -1
    for index, part in enumerate(parts):
        if isinstance(part, str):
            pieces: Iterator[tuple[int, int, str]] = (
                (s, min(s + block_bytes, len(part)), part[s : s + block_bytes])
                for s in range(0, len(part), block_bytes)
            )
        else:
            pieces = _file_blocks(Path(part), block_bytes)
        has_text = False
        for start, end, text in pieces:
            data = text.encode("utf-8")
            digest.update(data)
            stripped = text.lstrip()
            if stripped:
                has_text = True
                if first_ns == -1:
                    first_ns = chars + len(text) - len(stripped)
                last_ns = chars + len(text.rstrip()) - 1
            newline = text.rfind("\n")
            last_newline = chars + newline if newline != -1 else -1
            blocks.append(Block(index, start, end, chars, len(text), nbytes, last_newline))
            chars += len(text)
            nbytes += len(data)
            if progress is not None:
                progress(len(data))
        if not has_text and not isinstance(part, str):
            raise ValueError(f"{part} is empty; give a file with some text in it")
    return TextIndex(
        tuple(parts),
        tuple(blocks),
        digest.hexdigest(),
        chars,
        nbytes,
        first_ns if first_ns != -1 else chars,
        last_ns,
    )


def parts_size(parts: Sequence[Part]) -> int:
    """Bytes a scan will read (file sizes, literal texts' lengths): the progress bar's total."""
    return sum(len(p.encode("utf-8")) if isinstance(p, str) else os.path.getsize(p) for p in parts)
