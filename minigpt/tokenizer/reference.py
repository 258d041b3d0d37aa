"""Reference BPE: the whole algorithm in plain Python, written to be read rather than to be fast.

Byte-pair encoding (Sennrich et al. 2016; byte-level as in GPT-2, Radford et al. 2019) has two
halves, and this file is both of them at their simplest:

- Training (`naive_train_bpe`): start from the 256 byte values, so any text can be encoded. Count
  every adjacent pair of tokens in the (pre-tokenised) training text, merge the most frequent pair
  into one new token, and repeat until the vocabulary is full. The result is a list of tokens in
  the order they were made: a token's *rank* is its position in that list.
- Encoding (`bpe_merge`, `naive_encode`): cut the text into pre-tokens as in training, spell each
  as bytes, and keep merging the adjacent pair whose merged token has the lowest rank, i.e. was
  learned earliest, until no adjacent pair is a token. Applying merges in training order is what
  makes encoding reproduce the pieces training saw. `naive_decode` joins the tokens' bytes.

The library's real tokenizer does exactly this, faster: `train_bpe` updates pair counts
incrementally instead of recounting the corpus after every merge, and `BPETokenizer` applies the
ranks through tiktoken's Rust core. The tests prove both give the same ranks and the same ids as
the functions here, and `benchmarks/bpe.py` measures how much faster they are. Lesson 01
(`lessons/01_tokenization.py`) teaches BPE from these functions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from minigpt.tokenizer.pretokenize import GPT2_SPLIT_PATTERN, pretokenize
from minigpt.tokenizer.special_tokens import special_splitter


def naive_train_bpe(
    text: str,
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    pattern: str = GPT2_SPLIT_PATTERN,
) -> dict[bytes, int]:
    """Learn BPE ranks the textbook way: recount every pair of every word before each merge.

    Returns bytes -> rank, the 256 single bytes first. `vocab_size` counts the special tokens,
    which take no rank here (they are not text; the tokenizer gives them the ids after the ranks).
    Cost: every merge rereads all distinct pre-tokens, O(merges x corpus); fine for a few
    kilobytes, a minute or two for lesson 01's half-megabyte corpus.
    """
    # Each distinct pre-token once, as a tuple of single-byte tokens, with how often it occurs:
    # counting a word that occurs 1,000 times once, weighted by 1,000, gives the same pair counts.
    words: Counter[tuple[bytes, ...]] = Counter()
    for piece in pretokenize(text, special_tokens, pattern):
        words[tuple(bytes([b]) for b in piece.encode("utf-8"))] += 1

    ranks = {bytes([i]): i for i in range(256)}
    ### BEGIN SOLUTION bpe_train
    while len(ranks) < vocab_size - len(special_tokens):
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, n in words.items():
            for left, right in zip(word, word[1:], strict=False):
                pairs[left, right] += n
        if not pairs:  # every word is a single token: nothing left to merge
            break
        # Most frequent pair; ties go to the greatest pair of byte strings, so the result never
        # depends on dictionary order (train_bpe breaks ties the same way).
        best = max(pairs, key=lambda p: (pairs[p], p))
        merged = best[0] + best[1]
        # Two different pairs can spell the same bytes ("ab"+"c" and "a"+"bc"): one rank each.
        ranks.setdefault(merged, len(ranks))
        merged_words: Counter[tuple[bytes, ...]] = Counter()
        for word, n in words.items():
            merged_words[_merge_pair(word, best)] += n
        words = merged_words
    ### END SOLUTION
    return ranks


def _merge_pair(word: tuple[bytes, ...], pair: tuple[bytes, bytes]) -> tuple[bytes, ...]:
    """Replace each occurrence of `pair`, left to right and without overlaps, by its merge."""
    ### BEGIN SOLUTION bpe_train
    out: list[bytes] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)
    ### END SOLUTION


def bpe_merge(piece: bytes, ranks: dict[bytes, int], max_rank: int | None = None) -> list[bytes]:
    """Split one pre-token into BPE tokens: the merge rule tiktoken applies in Rust.

    Repeatedly merge the adjacent pair whose concatenation has the lowest rank (leftmost on
    ties). `max_rank` uses only the merges learned before that rank, which recovers the two
    halves a token was built from (lesson 01 prints the first merges this way).
    """
    ### BEGIN SOLUTION bpe_encode
    parts = [piece[i : i + 1] for i in range(len(piece))]
    limit = len(ranks) if max_rank is None else max_rank
    while len(parts) > 1:
        best, best_rank = -1, limit
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best, best_rank = i, r
        if best < 0:  # no adjacent pair is a (permitted) token: the piece is fully merged
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts
    ### END SOLUTION


def naive_encode(
    text: str,
    ranks: dict[bytes, int],
    special_tokens: dict[str, int] | None = None,
    pattern: str = GPT2_SPLIT_PATTERN,
) -> list[int]:
    """Text -> ids in plain Python: special tokens cut out first, then `bpe_merge` per pre-token.

    Every special-token spelling in `text` becomes its id (the real tokenizers refuse them unless
    allowed; a reference has no need to).
    """
    special_tokens = special_tokens or {}
    splitter = special_splitter(special_tokens)
    ids: list[int] = []
    pos = 0
    for m in splitter.finditer(text) if splitter is not None else ():
        ids += _encode_ordinary(text[pos : m.start()], ranks, pattern)
        ids.append(special_tokens[m.group()])
        pos = m.end()
    return ids + _encode_ordinary(text[pos:], ranks, pattern)


def _encode_ordinary(text: str, ranks: dict[bytes, int], pattern: str) -> list[int]:
    return [
        ranks[token]
        for piece in pretokenize(text, (), pattern)
        for token in bpe_merge(piece.encode("utf-8"), ranks)
    ]


def naive_decode(
    ids: Iterable[int], ranks: dict[bytes, int], special_tokens: dict[str, int] | None = None
) -> str:
    """Ids -> text: join the tokens' bytes, then decode UTF-8 once.

    Why once, at the end: a token may hold half of a multi-byte character ("é" is two bytes and
    BPE may learn either alone), so single tokens are not always valid UTF-8. Bytes that stay
    invalid (a sequence cut mid-character) become U+FFFD, as in the real tokenizers.
    """
    by_id = {i: token for token, i in ranks.items()}
    by_id |= {i: name.encode("utf-8") for name, i in (special_tokens or {}).items()}
    return b"".join(by_id[i] for i in ids).decode("utf-8", errors="replace")
