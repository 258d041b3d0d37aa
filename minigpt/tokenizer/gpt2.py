"""GPT-2's tokenizer from its two published files, read without tiktoken's downloader.

OpenAI released GPT-2's byte-level BPE as `encoder.json` (token -> id, 50,257 entries) and
`vocab.bpe` (the 50,000 merges in rank order). Reading them ourselves makes GPT-2's vocabulary
available fully offline and shows that a published tokenizer is nothing but ranks: the same
`dict[bytes, int]` that `train_bpe` learns, plus "<|endoftext|>". The one twist is that the files
store tokens as *text*: each byte is drawn as a visible character (`_gpt2_byte_decoder`), so a
space is "Ġ" and a newline "Ċ". `BPETokenizer.from_gpt2_files` wraps the result; the tests prove
its ids equal tiktoken's own "gpt2" encoding. Lesson 01 introduces BPE vocabularies.
"""

from __future__ import annotations

import json
from pathlib import Path

from minigpt.tokenizer.special_tokens import EOT


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


def read_gpt2_files(
    encoder_json: str | Path, vocab_bpe: str | Path
) -> tuple[dict[bytes, int], dict[str, int]]:
    """GPT-2's (ranks, special tokens) from encoder.json and vocab.bpe.

    encoder.json alone gives the ranks; vocab.bpe is read to check that its merges agree with
    them (merge i must make the token of rank 256 + i), which catches files from two releases.
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
    return ranks, specials
