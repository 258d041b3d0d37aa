"""Lesson 01 — Tokenization: how text becomes the integers a transformer reads.

A language model is a big statistical calculator: it works with numbers, not words. Before any
text reaches it, a *tokenizer* cuts the text into pieces and replaces each piece by its position
in a fixed dictionary, the vocabulary. The model's first layer (lesson 02) then looks each id up
in an embedding table, and its last layer scores every vocabulary entry as the next token, so
the vocabulary size V shows up twice in the parameter count.

How to cut? Whole words make short sequences, but the vocabulary has no end (every new name,
typo or number is unseen) and unknown words must collapse into one "<unk>". Characters never
meet an unknown piece (given the whole alphabet), but sequences get several times longer, and
attention's cost grows with the square of the length. Bytes go one step further: 256 ids cover
every text in every language, emoji included, at one token per UTF-8 byte.

Byte-pair encoding (BPE) starts from those 256 bytes and learns *parts of words*: count every
adjacent pair of tokens in the training text, merge the most frequent pair into a new token,
repeat until the vocabulary is full. Frequent words end up as a single token (" the"), rare
words as a few familiar pieces, and nothing is ever unknown. GPT-2 does this with 50,257 tokens
(50,000 merges, 256 bytes and "<|endoftext|>"). Two details matter:

- Text is first split into pre-tokens by a regular expression (letters with their leading
  space, digits, punctuation, whitespace runs), so merges never glue a word to a comma.
- Each merge only changes the words that contained the merged pair. Our trainer counts every
  unique pre-token once and keeps an index from each pair to the words that contain it, so
  training to 4,096 tokens on this corpus takes about half a second instead of the minute or
  two a recount-every-merge trainer needs (~100x; `python benchmarks/bpe.py`).

The learned merges are deterministic and greedy, so the merges of a small vocabulary are exactly
the first merges of a larger one: this lesson trains once and truncates. It measures
*compression* as UTF-8 bytes per token on text the tokenizer never saw (the last tenth of the
corpus): bytes are 1.0 by definition, characters slightly more (a few characters need more
than one byte), and BPE climbs steeply with the first merges, then ever more slowly — each new
merge covers rarer pairs. A bigger vocabulary buys shorter sequences with a bigger embedding
table and rarer, less trained tokens; that is the trade-off every model designer sets with V.

The corpus is Python's own documentation, bundled with every Python (`pydoc_data`), so the
first merges are about whitespace and code indentation as much as about English, and its
longest tokens are borders of ASCII tables. The course's sentence "The teacher taught the
student with the book." shows the other side: " the" and " with" are single tokens, but the
words "teacher", "student" and "book" never occur in Python's documentation, so each is
spelled from two to four familiar pieces — 16 tokens for 45 characters at 8,192 tokens.

Measured on a 2-core AMD EPYC CPU (torch 2.13) with one thread, while other jobs kept it busy
(load average 15-26): quick mode 3.9 s, full mode 4.4 s of CPU time (a quiet 2-core machine
needs about that or less); the busy machine took 37 s and 92 s of wall-clock time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 3.3 s,
full mode 4.4 s.

Run:  python lessons/01_tokenization.py [--quick] [--out-dir DIR]
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from minigpt.data import load_corpus
from minigpt.lesson import run_lesson, save_figure
from minigpt.tokenizer import BPETokenizer, CharTokenizer, bpe_merge, train_bpe

SENTENCE = "The teacher taught the student with the book."
BEYOND_ENGLISH = "Grüße aus Köln 😀"


def show(token: bytes) -> str:
    """A token's bytes as readable text: spaces as '␣', newlines as '\\n', broken UTF-8 as \\x.."""
    text = token.decode("utf-8", errors="backslashreplace")
    return text.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t")


def truncate(ranks: dict[bytes, int], vocab_size: int) -> dict[bytes, int]:
    """The first `vocab_size` ranks: what training with that vocabulary would have learned."""
    return {t: r for t, r in ranks.items() if r < vocab_size}


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/01_tokenization",
    seed: int = 0,
) -> dict:
    """Run the lesson; return its key numbers (tests assert on them). `device` and `seed`
    are unused: tokenization runs on the CPU, and BPE training is deterministic."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = load_corpus("pydoc")
    cut = int(len(text) * 0.9)
    train_text, held_out = text[:cut], text[cut:]
    sizes = [256, 512, 1024, 2048] if quick else [256, 512, 1024, 2048, 4096, 8192]
    n_bytes = len(held_out.encode("utf-8"))
    print(f"Corpus: Python's documentation, {len(text.encode('utf-8')):,} bytes")
    print(f"  train on the first 90% ({len(train_text):,} chars), measure on the last 10%\n")

    # 1. Train once to the largest vocabulary; smaller ones are prefixes of its merges.
    ranks = train_bpe(train_text, sizes[-1])
    by_rank = sorted(ranks, key=ranks.__getitem__)
    first = []
    print(f"1. BPE trained to {sizes[-1]} tokens. The first merges (pair -> new token):")
    for rank in range(256, 268):
        token = by_rank[rank]
        left, right = bpe_merge(token, ranks, max_rank=rank)  # the two halves it was built from
        first.append((show(left), show(right)))
        print(f"   {rank:>4}: {show(left):>8} + {show(right):<8} -> {show(token)!r}")
    longest = sorted(by_rank, key=len)[-3:]
    print(
        f"   longest tokens ({', '.join(str(len(t)) for t in longest)} bytes: the docs' ASCII "
        f"tables): {', '.join(repr(show(t)[:20] + '...') for t in longest)}"
    )

    # 2. The course's example sentence, token by token.
    tok = BPETokenizer(ranks, name=f"lesson01-bpe-{sizes[-1]}")
    tok.save(out / "tokenizer.json")
    ids = tok.encode(SENTENCE)
    tokens = [show(tok.token_bytes(i)) for i in ids]
    print(f"\n2. {SENTENCE!r} -> {len(ids)} tokens ({len(SENTENCE)} characters)")
    print(f"   {'token':<12}{'id':>6}")
    for t, i in zip(tokens, ids, strict=True):
        print(f"   {t!r:<12}{i:>6}")
    roundtrip = tok.decode(ids) == SENTENCE
    other = tok.encode(BEYOND_ENGLISH)
    print(f"   decode(encode(sentence)) == sentence: {roundtrip}")
    pieces = " | ".join(show(tok.token_bytes(i)) for i in other)
    print(f"   {BEYOND_ENGLISH!r} -> {len(other)} tokens, none unknown: unseen characters fall")
    print(f"   back to their UTF-8 bytes:  {pieces}")

    # 3. Compression on held-out text: UTF-8 bytes per token.
    char_tok = CharTokenizer.train(text)  # alphabet of the whole corpus: no unknown characters
    bpt = {"char": n_bytes / len(char_tok.encode(held_out)), "byte": 1.0}
    for v in sizes:
        bpt[f"bpe_{v}"] = n_bytes / len(BPETokenizer(truncate(ranks, v)).encode(held_out))
    print(f"\n3. Compression on {n_bytes:,} held-out bytes (higher = shorter sequences):")
    print(f"   {'tokenizer':<12}{'vocab':>7}{'bytes/token':>13}{'tokens':>9}")
    rows = [("char", char_tok.vocab_size, bpt["char"]), ("byte", 256, 1.0)]
    rows += [("bpe", v, bpt[f"bpe_{v}"]) for v in sizes]
    for name, v, b in rows:
        print(f"   {name:<12}{v:>7}{b:>13.2f}{n_bytes / b:>9.0f}")

    # 4. Plot bytes per token against vocabulary size.
    # Characters (1.00x) and bytes (1.000) are too close for two lines to be told apart, so
    # each is a marker at its own vocabulary size, labelled with its value; bytes sit exactly
    # on BPE's first point, because BPE before its first merge *is* the byte tokenizer.
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(sizes, [bpt[f"bpe_{v}"] for v in sizes], "o-", label="BPE (ours)", zorder=3)
    ax.plot([256], [1.0], "s", ms=13, mfc="none", mec="tab:gray", mew=2, zorder=2,
            label="bytes (V = 256): 1.000, = BPE before any merge")  # fmt: skip
    ax.plot([char_tok.vocab_size], [bpt["char"]], "^", ms=9, color="tab:orange", zorder=2,
            label=f"characters (V = {char_tok.vocab_size}): {bpt['char']:.3f}")  # fmt: skip
    ax.annotate(f"characters {bpt['char']:.3f}", (char_tok.vocab_size, bpt["char"]),
                xytext=(0, 12), textcoords="offset points", ha="center", fontsize=8,
                color="tab:orange")  # fmt: skip
    ax.annotate("bytes 1.000", (256, 1.0), xytext=(12, -4), textcoords="offset points",
                fontsize=8, color="tab:gray")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size")
    ax.set_ylabel("UTF-8 bytes per token (held-out)")
    ax.set_title("Bigger vocabularies compress more, with diminishing returns")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    plot = out / "bytes_per_token.png"
    print("\n4. Bytes per token against vocabulary size, plotted:")
    save_figure(fig, plot, dpi=100)

    return {
        "vocab_sizes": sizes,
        "first_merges": first,
        "sentence_ids": ids,
        "sentence_tokens": tokens,
        "sentence_roundtrip": roundtrip,
        "bytes_per_token": bpt,
        "plots": [str(plot)],
        "tokenizer_path": str(out / "tokenizer.json"),
    }


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/01_tokenization",
        quick_help="fewer vocabulary sizes",
        device_help="unused: tokenization runs on the CPU",
    )
