"""Text stream -> token file: cut at safe places, encoded by N processes, replaced atomically.

Tokenizing WikiText-103 (540 MB) or TinyStories (2.2 GB) in one call would need the whole text
and all its ids in memory; in one process it takes minutes. So the text arrives as a stream of
blocks and is regrouped into ~1 MB pieces by the tokenizer's own streaming rule
(`minigpt.tokenizer.pretokenize.stream_pieces`): it cuts only where the ids of the pieces,
concatenated, are the ids of the whole text — before a whitespace run for GPT-2's pattern, and
never inside a special token. Because every piece encodes independently, pieces can go to
`workers` processes and come back in order: the file is identical for any number of workers
(tests/test_prepare.py checks it byte for byte). At most two pieces per worker are in flight, so
memory stays near `workers x 2 x` one piece's text and ids, whatever the size of the corpus.

The ids go to a temporary file beside the target, renamed over it only when complete
(`os.replace` is atomic on one filesystem), so a crash or Ctrl-C leaves the previous file
intact. The progress bar counts UTF-8 bytes read, so it shows MB/s. `minigpt.data.prepare`
calls this once per split; `benchmarks/prepare.py` measures the speed.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from minigpt.tokenizer import BPETokenizer, Tokenizer, tokenizer_from_dict
from minigpt.tokenizer.pretokenize import cuts_for, every_cut, stream_pieces

PIECE_CHARS = 1 << 20  # ~1 MB per piece: big enough that handing it to a process is cheap
_IN_FLIGHT_PER_WORKER = 2  # one being encoded, one waiting: workers never idle, memory bounded
PROGRESS_MIN_BYTES = 1 << 22  # below ~4 MB tokenizing takes about a second: no bar


def safe_pieces(tokenizer: Tokenizer, blocks: Iterable[str], piece_chars: int) -> Iterator[str]:
    """Regroup text blocks into pieces that encode independently (see the module docstring).

    Blocks are first cut into quarters of a piece: `stream_pieces` cuts once it holds
    `piece_chars`, so a piece then overshoots by at most a quarter, whatever the blocks' size.
    """
    step = max(piece_chars // 4, 1)
    small = (block[i : i + step] for block in blocks for i in range(0, len(block), step))
    cuts = cuts_for(tokenizer.pattern) if isinstance(tokenizer, BPETokenizer) else every_cut
    return stream_pieces(small, cuts, tokenizer.special_tokens, piece_chars)


# Worker processes rebuild the tokenizer once, from its plain-dict form (tiktoken's Encoding is
# not sent between processes), and return ids as raw bytes: one buffer instead of a list of ints.
_worker: dict[str, Any] = {}


def _ids_bytes(tokenizer: Tokenizer, allowed: frozenset[str], dtype: str, piece: str) -> bytes:
    return np.asarray(tokenizer.encode(piece, allowed_special=allowed), dtype=dtype).tobytes()


def _init_worker(tokenizer_dict: dict[str, Any], allowed: frozenset[str], dtype: str) -> None:
    _worker.update(tokenizer=tokenizer_from_dict(tokenizer_dict), allowed=allowed, dtype=dtype)


def _encode_piece(piece: str) -> bytes:
    return _ids_bytes(_worker["tokenizer"], _worker["allowed"], _worker["dtype"], piece)


def _encoded_in_order(
    tokenizer: Tokenizer, pieces: Iterator[str], workers: int, allowed: frozenset[str], dtype: str
) -> Iterator[tuple[str, bytes]]:
    """(piece, its ids as bytes) in input order; with workers > 1, encoded by a process pool.

    Submitting a bounded number ahead (not `executor.map`, which would read the whole input
    first) keeps memory flat: the pool works on the next pieces while the oldest one is written.
    """
    if workers == 1:
        for piece in pieces:
            yield piece, _ids_bytes(tokenizer, allowed, dtype, piece)
        return
    args = (tokenizer.to_dict(), allowed, dtype)
    # "spawn": a fresh interpreter per worker. Forking a process that runs threads (tiktoken's
    # batch encoder, tqdm's monitor) can deadlock; a worker starts in well under a second.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, ctx, initializer=_init_worker, initargs=args) as pool:
        queue: deque[tuple[str, Future[bytes]]] = deque()
        for piece in pieces:
            queue.append((piece, pool.submit(_encode_piece, piece)))
            if len(queue) >= workers * _IN_FLIGHT_PER_WORKER:
                old, future = queue.popleft()
                yield old, future.result()
        while queue:
            old, future = queue.popleft()
            yield old, future.result()


def encode_to_file(
    tokenizer: Tokenizer,
    blocks: Iterable[str],
    path: str | os.PathLike,
    dtype: str,
    workers: int = 1,
    allowed_special: Iterable[str] = (),
    progress_total: int | None = None,
    desc: str | None = None,
    piece_chars: int = PIECE_CHARS,
) -> int:
    """Tokenize a stream of text into a flat binary file of `dtype` ids; return the id count.

    `blocks` is the text in consecutive strings (any sizes); the ids equal
    `tokenizer.encode("".join(blocks), allowed_special=...)` for any `workers` >= 1. A progress
    bar in MB/s is shown when `progress_total` (the text's UTF-8 bytes) is at least ~4 MB. The
    file appears only when complete (written beside it, then renamed).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: no clashes
    show = progress_total is not None and progress_total >= PROGRESS_MIN_BYTES
    label = desc or f"tokenizing {path.stem}"
    if workers > 1:
        label += f" ({workers} workers)"
    bar = tqdm(total=progress_total, unit="B", unit_scale=True, desc=label, disable=not show)
    pieces = safe_pieces(tokenizer, blocks, piece_chars)
    encoded = _encoded_in_order(tokenizer, pieces, workers, frozenset(allowed_special), dtype)
    count = 0
    try:
        with open(tmp, "wb") as f:
            for piece, ids in encoded:
                f.write(ids)
                count += len(ids) // np.dtype(dtype).itemsize
                bar.update(len(piece.encode("utf-8")) if show else 0)
        os.replace(tmp, path)
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)  # gone after os.replace; left only by an error
    return count

