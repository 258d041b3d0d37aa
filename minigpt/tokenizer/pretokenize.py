"""Pre-tokenisation: the regex cut that comes before BPE, and where a stream of text may be cut.

BPE never merges across the boundaries of a *pre-token*. GPT-2 first cuts text with a regular
expression into contractions ("'s"), letter runs with their leading space (" the"), digit runs,
punctuation runs and whitespace runs, then learns and applies merges inside each piece, so a word
is never glued to the comma after it and " the" is the same token at every position. Special
tokens are cut out before that, so no merge can span one either. Lesson 01 teaches this.

The same regex decides where a long text may be *streamed*: encoded piece by piece, a file too big
for memory must give exactly the ids of the whole. Cutting anywhere would split a word in two, so
`stream_pieces` regroups the input into pieces that end just before a whitespace run that follows
a non-whitespace character (the next piece starts with that run). For GPT2_SPLIT_PATTERN this is
always a pre-token boundary, and the pieces on both sides pre-tokenise as they would inside the
whole text (the proof is in `whitespace_cuts`). A special token may arrive split between two
input strings ("<|endof" + "text|>"): no cut is made inside any special token's spelling, nor
inside a trailing part that may still become one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

import regex

from minigpt.tokenizer.special_tokens import special_splitter

# GPT-2's pre-tokenisation pattern (OpenAI gpt-2 `encoder.py`), written with possessive
# quantifiers as tiktoken's `r50k_pat_str` does: same splits, less backtracking.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

PIECE_CHARS = 1 << 16  # streaming reads ~64K characters before it looks for a place to cut


def _ordinary_chunks(text: str, special_tokens: Sequence[str]) -> list[str]:
    """The text between special-token spellings (the spellings themselves dropped)."""
    splitter = special_splitter(special_tokens)
    return splitter.split(text) if splitter is not None else [text]


def pretokenize(
    text: str, special_tokens: Sequence[str] = (), pattern: str = GPT2_SPLIT_PATTERN
) -> list[str]:
    """Cut text into pre-tokens; special-token spellings are removed first (they get no merges).

    Joining the result gives `text` without its special tokens: the regex matches every character.
    """
    compiled = regex.compile(pattern)
    return [p for chunk in _ordinary_chunks(text, special_tokens) for p in compiled.findall(chunk)]


def pretoken_counts(
    text: str, special_tokens: Sequence[str] = (), pattern: str = GPT2_SPLIT_PATTERN
) -> Counter[str]:
    """How often each distinct pre-token occurs: all a BPE trainer needs to know about the text.

    Counted chunk by chunk, so only one chunk's pre-tokens are ever listed at a time.
    """
    compiled = regex.compile(pattern)
    counts: Counter[str] = Counter()
    for chunk in _ordinary_chunks(text, special_tokens):
        counts.update(compiled.findall(chunk))
    return counts


# ----------------------------------------------------------------------------------------------
# Streaming: where text may be cut without changing its encoding
# ----------------------------------------------------------------------------------------------

# `\s` here means Unicode White_Space, as in tiktoken's Rust regex engine. str.isspace() is not
# the same (it also counts U+001C..U+001F), so cut positions are found with the same regex module.
# (?r) searches from the end backwards: the last candidate comes first.
_WHITESPACE_AFTER_TEXT = regex.compile(r"(?r)\S(?=\s)")


def whitespace_cuts(text: str) -> Iterator[int]:
    """Positions, last first, where GPT2_SPLIT_PATTERN lets text be cut: each i with text[i-1]
    non-whitespace and text[i] whitespace.

    Why this is safe. (1) No pre-token contains both characters: whitespace appears in a pre-token
    only as its optional leading space or inside a whitespace run, and text[i-1] is neither. So i
    is a boundary in the whole text, and the pattern restarts there with no look-behind: the right
    side splits the same alone. (2) The left side text[:i] splits the same alone: every
    alternative that would read text[i] fails on a whitespace character exactly as it fails at the
    end of the string (letter, digit and punctuation runs stop, a contraction is incomplete,
    `(?!\\S)` holds), and `\\s++$` cannot match across the non-whitespace text[i-1].
    """
    for m in _WHITESPACE_AFTER_TEXT.finditer(text):
        yield m.end()


def every_cut(text: str) -> Iterator[int]:
    """Positions, last first, for a tokenizer without pre-tokenisation (one id per character)."""
    return iter(range(len(text), 0, -1))


def cuts_for(pattern: str) -> Callable[[str], Iterator[int]]:
    """The cut rule proven for `pattern`; other patterns have none, so streaming refuses them."""
    if pattern == GPT2_SPLIT_PATTERN:
        return whitespace_cuts
    raise ValueError(
        "encode_iterable knows safe cut points only for GPT2_SPLIT_PATTERN, not for "
        f"{pattern[:40]!r}...; encode the whole text with encode(text) instead"
    )


def _inside_special(text: str, cut: int, specials: Sequence[str]) -> bool:
    """True if a special token's spelling covers text[cut-1] and text[cut], counting a tail of
    `text` that the next input may complete into one (so "<|endof" is never cut off)."""
    for tok in specials:
        n = len(tok)
        lo = max(0, cut - n + 1)
        if text.find(tok, lo, cut + n - 1) != -1:  # a whole spelling starting in [lo, cut)
            return True
        for start in range(max(lo, len(text) - n + 1), cut):  # a spelling cut short by the end
            if tok.startswith(text[start:]):
                return True
    return False


def stream_pieces(
    lines: Iterable[str],
    cuts: Callable[[str], Iterator[int]],
    special_tokens: Iterable[str] = (),
    piece_chars: int = PIECE_CHARS,
) -> Iterator[str]:
    """Regroup strings (a text file's lines, say) into pieces whose encodings, concatenated, equal
    the encoding of the whole text, each about `piece_chars` long.

    Text is held until `piece_chars` new characters have arrived, then cut at the last safe
    position (`cuts`) that is not inside a special token; what follows the cut waits for the next
    input. Memory therefore stays near `piece_chars` plus one input string, growing only over a
    stretch with no safe cut at all (a megabyte without whitespace); then the search is retried
    each time the held text doubles, so the work stays linear in the input.
    """
    if piece_chars < 1:
        raise ValueError(f"piece_chars must be at least 1, got {piece_chars}")
    specials = sorted(set(special_tokens))
    held: list[str] = []  # text read but not yet given out
    size, threshold = 0, piece_chars
    for line in lines:
        if not isinstance(line, str):
            raise TypeError(
                f"encode_iterable reads strings, got {type(line).__name__}; "
                "open files in text mode (open(path, encoding='utf-8'))"
            )
        held.append(line)
        size += len(line)
        if size < threshold:
            continue
        text = "".join(held)
        cut = next((c for c in cuts(text) if not _inside_special(text, c, specials)), 0)
        if cut:
            yield text[:cut]
            text = text[cut:]
            threshold = len(text) + piece_chars
        else:
            threshold = 2 * len(text)
        held, size = [text], len(text)
    text = "".join(held)
    if text:
        yield text
