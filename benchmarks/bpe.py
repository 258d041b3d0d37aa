"""BPE speed: our incremental trainer vs a naive one, and tiktoken encoding vs a Python merge loop.

Measured on the embedded corpus (Python's bundled documentation, ~0.47 MB):
- training: `train_bpe(corpus, 4096)` against the library's reference trainer
  `minigpt.tokenizer.naive_train_bpe`, which recounts every pair of every (unique) pre-token
  before each merge. Both must give identical ranks; target < 3 s for ours on a 2-core machine.
- encoding: `BPETokenizer.encode` (tiktoken's Rust core, one thread) against the same ranks
  applied in pure Python by the reference encoder `minigpt.tokenizer.naive_encode` (`bpe_merge`
  on each pre-token), in MB/s of UTF-8 input. Both must give identical ids; target >= 10x.
The encoders run in alternation (A, B, A, B, ...) so a busy minute on a shared machine hits
both alike; the naive trainer (a minute or more) runs once, between two runs of ours. The table
reports medians and their ratio.

    python benchmarks/bpe.py            # full corpus, vocab 4096
    python benchmarks/bpe.py --quick    # ~100 KB, vocab 512: a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from common import format_table, print_machine

from minigpt.data import load_corpus
from minigpt.tokenizer import BPETokenizer, naive_encode, naive_train_bpe, train_bpe


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Seconds per call, averaged over `repeat` back-to-back calls (so a fast call is not
    measured below the scheduler's time slice), and the last call's result."""
    start = time.perf_counter()
    for _ in range(repeat):
        result = fn()
    return (time.perf_counter() - start) / repeat, result


def alternate(
    runs: dict[str, Callable[[], object]], rounds: int, min_seconds: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each candidate, called in turn each round; checks equal results.

    A candidate faster than `min_seconds` is repeated within each measurement until it lasts
    about that long; the repeat count is set from one warm-up call.
    """
    repeats = {name: max(1, round(min_seconds / timed(fn)[0])) for name, fn in runs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for _ in range(rounds):
        for name, fn in runs.items():
            s, results[name] = timed(fn, repeats[name])
            seconds[name].append(s)
    first, *rest = results.values()
    if any(r != first for r in rest):
        raise AssertionError(f"candidates {list(runs)} disagree: the benchmark is invalid")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~100 KB and vocab 512")
    parser.add_argument("--vocab-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="alternations of the encoders")
    args = parser.parse_args()
    text = load_corpus("pydoc")
    if args.quick:
        text = text[:100_000]
    vocab_size = args.vocab_size or (512 if args.quick else 4096)
    rounds = args.rounds or (1 if args.quick else 5)
    n_bytes = len(text.encode("utf-8"))

    print("BPE benchmark (median of alternating runs)")
    print_machine()
    print(
        f"  corpus           : pydoc, {n_bytes / 1e6:.3f} MB, vocab {vocab_size}; "
        f"{rounds} rounds (training: 1 naive run between 2 of ours)"
    )
    print()

    # The naive trainer takes a minute or two, so it runs once, between two runs of ours.
    t_first, ranks = timed(lambda: train_bpe(text, vocab_size))
    t_naive, naive_ranks = timed(lambda: naive_train_bpe(text, vocab_size))
    t_second, _ = timed(lambda: train_bpe(text, vocab_size))
    if naive_ranks != ranks:
        raise AssertionError("train_bpe and the naive trainer disagree: the benchmark is invalid")
    train = {"ours": [t_first, t_second], "naive": [t_naive]}
    tok = BPETokenizer(ranks)
    encode = alternate(
        {
            "ours": lambda: tok.encode(text),
            "python": lambda: naive_encode(text, tok.ranks),
        },
        rounds,
        min_seconds=0.5,
    )

    t_ours, t_naive = statistics.median(train["ours"]), statistics.median(train["naive"])
    e_ours, e_py = statistics.median(encode["ours"]), statistics.median(encode["python"])
    mb = n_bytes / 1e6
    full = not args.quick and vocab_size == 4096

    def verdict(met: bool) -> str:
        """The targets are stated for the full corpus at vocab 4096 only."""
        return (" (met)" if met else " (MISSED)") if full else " (full run only)"

    rows = [
        (
            f"train_bpe to {vocab_size}",
            f"{t_ours:.2f} s",
            f"naive recount: {t_naive:.2f} s",
            f"{t_naive / t_ours:.1f}x faster",
            "< 3 s" + verdict(t_ours < 3),
        ),
        (
            "encode (MB/s)",
            f"{mb / e_ours:.2f}",
            f"python merges: {mb / e_py:.3f}",
            f"{e_py / e_ours:.1f}x faster",
            ">= 10x" + verdict(e_py / e_ours >= 10),
        ),
    ]
    print(format_table(["measured", "ours", "reference", "ratio", "target"], rows))
    print("\nboth trainers gave identical ranks; both encoders gave identical ids")


if __name__ == "__main__":
    main()
