"""Corpora -> token files -> batches: everything between raw text and a training step.

A language model never sees text, only windows of token ids. This module gets text (Python's own
bundled documentation by default, so everything works offline; a local `.txt` file or folder; or a
named corpus downloaded once into a cache), tokenizes it exactly once into flat `numpy.memmap`
files — the nanoGPT layout: `train.bin` and `val.bin` of uint16 ids, read lazily by the OS page
cache, so a corpus larger than RAM still trains — and cuts those files into windows: random ones
for training, sequential ones for evaluation. `meta.json` records how the files were made (and the
UTF-8 byte count of each split, needed for bits per byte), which also makes re-running a no-op.
Lesson 01 (tokenization) and the `minigpt prepare` command use it; data/README.md is the user guide.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from minigpt.corpora import (  # noqa: F401  (re-exported: data.load_corpus is the public name)
    CORPORA,
    DownloadError,
    NamedCorpus,
    cache_dir,
    download_corpus,
    load_corpus,
    pydoc_corpus,
)
from minigpt.tokenizer import (
    DEFAULT_SPECIAL_TOKENS,
    EOT,
    TOKENIZER_KINDS,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
)

FORMAT_VERSION = 1
_CHUNK_CHARS = 1 << 16  # feed the tokenizer ~64K characters at a time: the progress bar's step
_BLOCK_IDS = 1 << 20  # ids written to the file per write
_PROGRESS_MIN_CHARS = 1 << 22  # below ~4 MB tokenizing takes about a second: no bar


@dataclass
class PreparedData:
    """Token files of one prepared corpus, opened read-only, with their tokenizer and metadata."""

    out_dir: Path
    train: np.memmap
    val: np.memmap
    tokenizer: BPETokenizer | CharTokenizer
    meta: dict[str, Any]


def load_prepared(out_dir: str | os.PathLike) -> PreparedData:
    """Open what `prepare` wrote in `out_dir` (the memmaps are read lazily, never copied)."""
    out = Path(out_dir)
    if not (out / "meta.json").exists():
        raise FileNotFoundError(f"no prepared data in {out}: run `minigpt prepare` first")
    meta = json.loads((out / "meta.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{out} was prepared by another minigpt version; prepare it again")
    splits = {}
    for split in ("train", "val"):
        file, n = out / f"{split}.bin", meta[f"{split}_tokens"]
        if not file.exists() or file.stat().st_size != n * np.dtype(meta["dtype"]).itemsize:
            raise ValueError(f"{file} is missing or truncated; prepare {out} again")
        splits[split] = np.memmap(file, dtype=meta["dtype"], mode="r", shape=(n,))
    tokenizer = load_tokenizer(out / "tokenizer.json")
    return PreparedData(out, splits["train"], splits["val"], tokenizer, meta)


def choose_dtype(vocab_size: int, dtype: str | None = None) -> str:
    """uint16 halves the files when every id fits in 16 bits (GPT-2's 50,257 does); else uint32."""
    dtype = dtype or ("uint16" if vocab_size <= 1 << 16 else "uint32")
    if dtype not in ("uint16", "uint32"):
        raise ValueError(f"dtype {dtype!r} is not supported; use 'uint16' or 'uint32'")
    limit = np.iinfo(dtype).max + 1
    if vocab_size > limit:
        raise ValueError(
            f"a vocabulary of {vocab_size:,} tokens does not fit in {dtype} (at most {limit:,}); "
            f"use dtype='uint32' or a smaller vocab_size"
        )
    return dtype


def _encode_to_file(tokenizer: Tokenizer, text: str, path: Path, dtype: str, progress: bool) -> int:
    """Tokenize text into a flat binary file (written beside and renamed); return the id count.

    The tokenizer's `encode_iterable` does the chunking (it cuts only where the ids stay those of
    the whole text), so neither the text's ids nor its pieces are ever all in memory at once.
    """
    allowed = {EOT} & set(tokenizer.special_tokens)  # corpora such as TinyStories use it
    show = progress and len(text) >= _PROGRESS_MIN_CHARS
    count, tmp = 0, path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: no clashes
    desc = f"tokenizing {path.stem}"
    bar = tqdm(total=len(text), unit="char", unit_scale=True, desc=desc, disable=not show)

    def pieces() -> Iterator[str]:  # the bar counts characters handed to the tokenizer
        for start in range(0, len(text), _CHUNK_CHARS):
            piece = text[start : start + _CHUNK_CHARS]
            yield piece
            bar.update(len(piece))

    ids = tokenizer.encode_iterable(pieces(), allowed_special=allowed)
    with open(tmp, "wb") as f:
        while (block := np.fromiter(islice(ids, _BLOCK_IDS), dtype=dtype)).size:
            block.tofile(f)
            count += block.size
    bar.close()
    os.replace(tmp, path)
    return count


def prepare(
    source: str | os.PathLike = "pydoc",
    tokenizer: str = "bpe",
    vocab_size: int = 1024,
    out_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    progress: bool = True,
    dtype: str | None = None,
) -> PreparedData:
    """Tokenize a corpus once into out_dir/{train.bin,val.bin,meta.json,tokenizer.json}.

    The split is made on the text (val = the last `val_fraction`, moved back to a line start) so
    both splits are real, contiguous prose. A "bpe" tokenizer is trained on the train split only —
    the validation loss then measures text the tokenizer never saw either; "char" takes its
    alphabet from the whole text (no statistics are learned, and unseen characters would be
    errors); "gpt2" loads GPT-2's vocabulary through tiktoken and ignores `vocab_size`. If
    out_dir already holds files made from the same text with the same settings, they are loaded
    and nothing is written. Default out_dir: data/<source-name>-<tokenizer>[-<vocab_size>].
    """
    if tokenizer not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer {tokenizer!r} is unknown; use one of {TOKENIZER_KINDS}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    is_named = str(source) in ("pydoc", *CORPORA)
    name = str(source) if is_named else Path(source).stem or "corpus"
    if tokenizer == "bpe":
        choose_dtype(vocab_size, dtype)  # fail before training, not after
    if out_dir is None:
        suffix = f"-{vocab_size}" if tokenizer == "bpe" else ""
        out_dir = Path("data") / f"{name}-{tokenizer}{suffix}"
    out = Path(out_dir)
    text = load_corpus(source, progress=progress)
    settings = {
        "source_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "tokenizer": tokenizer,
        "requested_vocab_size": vocab_size if tokenizer == "bpe" else None,
        "special_tokens": list(special_tokens) if tokenizer != "gpt2" else None,
        "val_fraction": val_fraction,
        "requested_dtype": dtype,
    }
    if (out / "meta.json").exists():
        meta = json.loads((out / "meta.json").read_text())
        if meta.get("format_version") == FORMAT_VERSION and meta.get("settings") == settings:
            try:
                return load_prepared(out)
            except (ValueError, FileNotFoundError):
                pass  # damaged: prepare again below

    cut = len(text) - round(len(text) * val_fraction)
    line_start = text.rfind("\n", 0, cut) + 1
    cut = line_start if line_start > 0 else cut
    splits = {"train": text[:cut], "val": text[cut:]}
    if not splits["train"].strip() or not splits["val"].strip():
        raise ValueError(
            f"corpus {name!r} ({len(text)} characters) is too short to split with "
            f"val_fraction={val_fraction}; give more text or change val_fraction"
        )
    if tokenizer == "bpe":
        tok = BPETokenizer.train(splits["train"], vocab_size, special_tokens=tuple(special_tokens))
    elif tokenizer == "char":
        tok = CharTokenizer.train(text, special_tokens=tuple(special_tokens))
    else:
        tok = BPETokenizer.from_tiktoken("gpt2")
    np_dtype = choose_dtype(tok.vocab_size, dtype)

    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # meta.json is written last: it marks "complete"
    counts = {
        s: _encode_to_file(tok, t, out / f"{s}.bin", np_dtype, progress) for s, t in splits.items()
    }
    tok.save(out / "tokenizer.json")
    meta = {
        "format_version": FORMAT_VERSION,
        "source": str(source) if is_named else str(Path(source).expanduser().resolve()),
        "source_sha256": settings["source_sha256"],
        "tokenizer": tokenizer,
        "vocab_size": tok.vocab_size,
        "dtype": np_dtype,
        "val_fraction": val_fraction,
        **{f"{s}_tokens": counts[s] for s in splits},
        **{f"{s}_bytes": len(t.encode("utf-8")) for s, t in splits.items()},
        **{f"{s}_chars": len(t) for s, t in splits.items()},
        "settings": settings,
    }
    tmp = out / f"meta.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, out / "meta.json")
    return load_prepared(out)


def _check_length(tokens: np.ndarray, length: int) -> None:
    if length < 1:
        raise ValueError(f"window length must be at least 1, got {length}")
    if length > len(tokens):
        split = Path(getattr(tokens, "filename", None) or "given").stem  # memmaps know their file
        raise ValueError(
            f"block size {length} longer than the {len(tokens)} tokens in the {split} split; "
            f"use a smaller --block-size or more data"
        )


def sample_windows(
    tokens: np.ndarray, batch_size: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """Random windows of `length` consecutive ids, reproducible from the generator's seed.

    Training wants windows starting anywhere (not on a fixed grid), so every offset is seen;
    drawing the starts from a seeded torch.Generator makes a run repeatable. For next-token
    prediction ask for block_size + 1 ids and shift (objectives.causal_lm_batch).
    """
    _check_length(tokens, length)
    starts = torch.randint(0, len(tokens) - length + 1, (batch_size,), generator=generator)
    index = starts.numpy()[:, None] + np.arange(length)  # (B, length) positions into the file
    return torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))  # (B, length)


def iter_windows(tokens: np.ndarray, batch_size: int, length: int) -> Iterator[torch.Tensor]:
    """Non-overlapping windows in file order (stride = length), batched: evaluation's view.

    Deterministic so two evaluations of the same model give the same number. The ragged tail
    shorter than one window is dropped; the last batch may hold fewer than batch_size windows.
    """
    _check_length(tokens, length)
    n_windows = len(tokens) // length
    grid = np.asarray(tokens[: n_windows * length]).reshape(n_windows, length)  # (N, length)
    for i in range(0, n_windows, batch_size):
        yield torch.from_numpy(grid[i : i + batch_size].astype(np.int64))  # (<=B, length)
