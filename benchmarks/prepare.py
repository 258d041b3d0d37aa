"""Streaming prepare speed: MB/s of our token-file encoder with 1 and 2 workers vs tiktoken's own.

What is measured: UTF-8 megabytes per second of text turned into a token file by
`minigpt.token_files.encode_to_file` — the text read back from disk through the scan index
(`minigpt.text_index`), regrouped into ~1 MB pieces at safe cuts, encoded (special tokens
refused unless allowed, as prepare does), ids written — with `--workers 1` and `2`.

Against what: tiktoken's own batch encoder, `Encoding.encode_ordinary_batch(pieces,
num_threads=1 / 2)`, on the same pieces already in memory, with the same vocabulary (a
1024-token BPE trained on Python's docs). It reads no file, writes nothing and skips the
special-token checks, so it is the ceiling for the encoding itself; both must give the same ids.
Candidates run in alternation (A, B, C, D, A, B, ...), and the table reports medians.

The text is synthetic: Python's bundled docs, paragraphs shuffled per copy (seeded) until it
reaches `--mb` megabytes, written to a temporary file. `--peak-rss MB` instead runs the whole
`prepare` (scan, BPE training on its bounded sample, encoding) on a file of that size in a
fresh process and prints its peak resident memory, the figure that shows memory is bounded.

    python benchmarks/prepare.py                 # 32 MB, 2 rounds (a few minutes on 2 cores)
    python benchmarks/prepare.py --quick         # 4 MB, 1 round
    python benchmarks/prepare.py --peak-rss 200  # prepare a 200 MB file, report peak memory
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from minigpt.corpora import pydoc_corpus
from minigpt.text_index import scan
from minigpt.token_files import PIECE_CHARS, encode_to_file, safe_pieces
from minigpt.tokenizer import DEFAULT_SPECIAL_TOKENS, EOT, BPETokenizer


def synthetic_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write ~megabytes of shuffled pydoc paragraphs to path; return the byte count."""
    paragraphs = pydoc_corpus().split("\n\n")
    rng, written = random.Random(seed), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < megabytes * 1e6:
            rng.shuffle(paragraphs)
            chunk = "\n\n".join(paragraphs) + "\n\n"
            f.write(chunk)
            written += len(chunk.encode("utf-8"))
    return written


_CHILD = """
import json, resource, sys, time
from minigpt.data import prepare
start = time.perf_counter()
p = prepare(sys.argv[1], out_dir=sys.argv[2], progress=False, workers=int(sys.argv[3]))
seconds = time.perf_counter() - start
self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_mib": self, "worker_rss_mib": kids,
                  "tokens": p.meta["train_tokens"] + p.meta["val_tokens"]}))
"""


def peak_rss(megabytes: float, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.txt"
        n_bytes = synthetic_corpus(path, megabytes)
        print(f"prepare of a {n_bytes / 1e6:.0f} MB file (BPE 1024, {workers} workers), "
              "in a fresh process:")  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), str(Path(tmp) / "out"), str(workers)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        result = json.loads(out.strip().splitlines()[-1])
        result["MB/s"] = round(n_bytes / 1e6 / result["seconds"], 2)
        print(json.dumps(result))
        print(f"peak resident memory {result['rss_mib']:.0f} MiB (main process; largest worker "
              f"{result['worker_rss_mib']:.0f} MiB), {n_bytes / 1e6:.0f} MB of text")


def main() -> None:
    # Imported here, not at the top: worker processes start by importing this file, and
    # `common` imports torch, which would add seconds to every worker's start.
    from common import format_table, print_machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=32.0, help="size of the synthetic text")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="4 MB, one round")
    parser.add_argument("--peak-rss", type=float, default=None, metavar="MB",
                        help="only measure prepare's peak memory on a file of this size")
    parser.add_argument("--workers", type=int, default=2, help="workers for --peak-rss")
    args = parser.parse_args()
    print("machine:")
    print_machine()
    if args.peak_rss is not None:
        peak_rss(args.peak_rss, args.workers)
        return
    megabytes, rounds = (4.0, 1) if args.quick else (args.mb, args.rounds)
    tok = BPETokenizer.train(pydoc_corpus(), 1024, special_tokens=DEFAULT_SPECIAL_TOKENS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.txt"
        n_bytes = synthetic_corpus(path, megabytes)
        index = scan([path])
        pieces = list(safe_pieces(tok, index.read(), PIECE_CHARS))  # tiktoken's input
        print(f"text: {n_bytes / 1e6:.1f} MB in {len(pieces)} pieces; vocabulary {tok.vocab_size}")

        def ours(workers: int) -> tuple[float, bytes]:
            out = Path(tmp) / f"ours{workers}.bin"
            start = time.perf_counter()
            encode_to_file(tok, index.read(), out, "uint16", workers, {EOT})
            seconds = time.perf_counter() - start
            return seconds, out.read_bytes()

        def tiktoken(threads: int) -> tuple[float, bytes]:
            start = time.perf_counter()
            ids = tok.encoding.encode_ordinary_batch(pieces, num_threads=threads)
            seconds = time.perf_counter() - start
            return seconds, np.concatenate([np.asarray(i, np.uint16) for i in ids]).tobytes()

        runs = {
            "minigpt encode_to_file, 1 worker": lambda: ours(1),
            "minigpt encode_to_file, 2 workers": lambda: ours(2),
            "tiktoken encode_ordinary_batch, 1 thread": lambda: tiktoken(1),
            "tiktoken encode_ordinary_batch, 2 threads": lambda: tiktoken(2),
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        reference = None
        for _ in range(rounds):
            for name, fn in runs.items():
                s, ids = fn()
                seconds[name].append(s)
                reference = ids if reference is None else reference
                if ids != reference:
                    raise AssertionError(f"{name} gave other ids: the benchmark is invalid")
    rates = {name: n_bytes / 1e6 / statistics.median(s) for name, s in seconds.items()}
    base = rates["tiktoken encode_ordinary_batch, 1 thread"]
    rows = [[name, f"{rate:.2f}", f"{rate / base:.2f}x",
             " ".join(f"{n_bytes / 1e6 / s:.2f}" for s in seconds[name])]
            for name, rate in rates.items()]  # fmt: skip
    print(format_table(["encoder", "MB/s (median)", "vs tiktoken 1 thread", "each round"], rows))
    one, two = rates["minigpt encode_to_file, 1 worker"], rates["minigpt encode_to_file, 2 workers"]
    print(f"2 workers / 1 worker: {two / one:.2f}x; "
          f"minigpt 2 workers / tiktoken 2 threads: "
          f"{two / rates['tiktoken encode_ordinary_batch, 2 threads']:.2f}x")


if __name__ == "__main__":
    main()
