"""Corpora -> token files -> batches: everything between raw text and a training step.

A language model never sees text, only windows of token ids. This module gets text (Python's own
bundled documentation by default, so everything works offline; a local `.txt` file or folder; or a
named corpus downloaded once into a cache), tokenizes it exactly once into flat `numpy.memmap`
files — the nanoGPT layout: `train.bin` and `val.bin` of uint16 ids, read lazily by the OS page
cache, so a corpus larger than RAM still trains — and cuts those files into windows: random ones
for training, sequential ones for evaluation. `meta.json` records how the files were made (and the
UTF-8 byte count of each split, needed for bits per byte), which also makes re-running a no-op.
A corpus of gigabytes is never in memory: it is scanned once (`minigpt.text_index`), the BPE is
trained on a bounded sample of it, and each split is streamed through N worker processes into
its token file (`minigpt.token_files`); the folder is replaced only when every file is complete.
Lesson 01 (tokenization) and the `minigpt prepare` command use it; data/README.md is the user guide.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
    corpus_parts,
    download_corpus,
    load_corpus,
    pydoc_corpus,
    validation_source,
)
from minigpt.text_index import TextIndex, parts_size, scan
from minigpt.token_files import encode_to_file
from minigpt.tokenizer import (
    DEFAULT_SPECIAL_TOKENS,
    EOT,
    TOKENIZER_KINDS,
    BPETokenizer,
    CharTokenizer,
    load_tokenizer,
)
from minigpt.tokenizer.pretokenize import every_cut, stream_pieces
from minigpt.tokenizer.special_tokens import special_splitter

FORMAT_VERSION = 1
# The BPE trainer counts pre-tokens of a string in memory; past this size it sees evenly spaced
# slices of the training split instead (32 MB of prose holds every frequent merge of a vocabulary
# of tens of thousands; training on it took 39 s and 689 MiB on a busy 2-core EPYC).
TOKENIZER_SAMPLE_BYTES = 32 * 10**6
_SAMPLE_SLICE_CHARS = 1 << 20  # the sample is made of ~1 MB slices, each trimmed to whole lines
_AUTO_WORKERS_MIN_BYTES = 64 * 10**6  # below this, starting worker processes does not pay
_AUTO_WORKERS_MAX = 8
_SCAN_BAR_MIN_BYTES = 1 << 28  # reading + hashing runs ~1 GB/s: show it only past ~256 MB


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


def default_workers(n_bytes: int) -> int:
    """Worker processes for a corpus of n_bytes: one for small texts (a worker needs ~0.5 s to
    start), else one per core up to 8."""
    if n_bytes < _AUTO_WORKERS_MIN_BYTES:
        return 1
    return max(1, min(os.cpu_count() or 1, _AUTO_WORKERS_MAX))


def _scan(parts: list[Path | str], progress: bool, what: str) -> TextIndex:
    total = parts_size(parts)
    show = progress and total >= _SCAN_BAR_MIN_BYTES
    desc = f"reading {what}"
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not show) as bar:
        return scan(parts, progress=bar.update if show else None)


def _tokenizer_sample(index: TextIndex, end: int, sample_bytes: int) -> str:
    """About `sample_bytes` of text[:end] for BPE training: evenly spaced ~1 MB slices, each cut
    to whole lines (so no slice starts mid-word or splits a special token on its own line)."""
    n_slices = -(-sample_bytes // _SAMPLE_SLICE_CHARS)  # ceil: a 32 MB sample is 31 slices
    size = sample_bytes // n_slices
    slices = []
    for i in range(n_slices):  # the first slice starts the split, the last one ends it
        start = i * max(end - size, 0) // max(n_slices - 1, 1)
        text = "".join(index.read(start, min(start + size, end)))
        if i > 0:
            text = text[text.find("\n") + 1 :]
        last = text.rfind("\n")
        slices.append(text[: last + 1] if last != -1 else text)
    return "".join(slices)


def _char_vocabulary(splits: list[tuple[TextIndex, int, int]], specials: Sequence[str]) -> str:
    """The distinct characters of the splits (special-token spellings cut out, as
    `CharTokenizer.train` does), read as a stream; returned sorted, joined in one string."""
    splitter, chars = special_splitter(specials), set()
    for index, start, end in splits:
        for piece in stream_pieces(index.read(start, end), every_cut, specials):
            for plain in splitter.split(piece) if splitter is not None else [piece]:
                chars.update(plain)
    return "".join(sorted(chars))


def _remove_stale(out: Path) -> None:
    """Delete staging folders that a killed prepare left in `out` (their process is gone)."""
    for stage in out.glob(".prepare-*"):
        pid = stage.name.removeprefix(".prepare-")
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0 only asks whether the process exists
        except ProcessLookupError:
            shutil.rmtree(stage, ignore_errors=True)
        except PermissionError:
            pass  # a live process of another user


def prepare(
    source: str | os.PathLike = "pydoc",
    tokenizer: str = "bpe",
    vocab_size: int = 1024,
    out_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    progress: bool = True,
    dtype: str | None = None,
    workers: int | None = None,
    tokenizer_sample_bytes: int = TOKENIZER_SAMPLE_BYTES,
) -> PreparedData:
    """Tokenize a corpus once into out_dir/{train.bin,val.bin,meta.json,tokenizer.json}.

    The split is made on the text (val = the last `val_fraction`, moved back to a line start) so
    both splits are real, contiguous prose; a named corpus with its own validation text
    (WikiText-103) uses that instead and ignores `val_fraction`. A "bpe" tokenizer is trained on
    the train split only — the validation loss then measures text the tokenizer never saw either
    — or, past `tokenizer_sample_bytes`, on evenly spaced slices of it; "char" takes its alphabet
    from the whole text (no statistics are learned, and unseen characters would be errors);
    "gpt2" loads GPT-2's vocabulary through tiktoken and ignores `vocab_size`. The text is
    streamed, never held whole, and encoded by `workers` processes (default: `default_workers`;
    the files are the same for any number). If out_dir already holds files made from the same
    text with the same settings, they are loaded and nothing is written; otherwise the new files
    replace the old ones only once all are complete, so a failure leaves the old folder usable.
    Default out_dir: data/<source-name>-<tokenizer>[-<vocab_size>].
    """
    if tokenizer not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer {tokenizer!r} is unknown; use one of {TOKENIZER_KINDS}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if tokenizer_sample_bytes < 1:
        raise ValueError(f"tokenizer_sample_bytes must be positive, got {tokenizer_sample_bytes}")
    is_named = str(source) in ("pydoc", *CORPORA)
    name = str(source) if is_named else Path(source).stem or "corpus"
    if tokenizer == "bpe":
        choose_dtype(vocab_size, dtype)  # fail before training, not after
    if out_dir is None:
        suffix = f"-{vocab_size}" if tokenizer == "bpe" else ""
        out_dir = Path("data") / f"{name}-{tokenizer}{suffix}"
    out = Path(out_dir)
    index = _scan(corpus_parts(source, progress=progress), progress, name)
    val_name = validation_source(source)
    if val_name is not None:  # the corpus's own validation text
        val_index = _scan(corpus_parts(val_name, progress=progress), progress, val_name)
        splits = {"train": (index, 0, index.n_chars), "val": (val_index, 0, val_index.n_chars)}
    else:
        n = index.n_chars
        cut = n - round(n * val_fraction)
        cut = index.line_start_before(cut) or cut
        if not (index.first_nonspace < cut <= index.last_nonspace):  # a split only whitespace
            raise ValueError(
                f"corpus {name!r} ({n} characters) is too short to split with "
                f"val_fraction={val_fraction}; give more text or change val_fraction"
            )
        splits = {"train": (index, 0, cut), "val": (index, cut, n)}
    n_bytes = {s: i.utf8_offset(e) - i.utf8_offset(b) for s, (i, b, e) in splits.items()}
    sampled = tokenizer == "bpe" and n_bytes["train"] > tokenizer_sample_bytes
    settings = {
        "source_sha256": index.sha256,
        "tokenizer": tokenizer,
        "requested_vocab_size": vocab_size if tokenizer == "bpe" else None,
        "special_tokens": list(special_tokens) if tokenizer != "gpt2" else None,
        "val_fraction": val_fraction if val_name is None else None,
        "requested_dtype": dtype,
    }
    if val_name is not None:
        settings["val_source_sha256"] = val_index.sha256
    if sampled:  # only then does the sample size change the result
        settings["tokenizer_sample_bytes"] = tokenizer_sample_bytes
    if (out / "meta.json").exists():
        meta = json.loads((out / "meta.json").read_text())
        if meta.get("format_version") == FORMAT_VERSION and meta.get("settings") == settings:
            try:
                return load_prepared(out)
            except (ValueError, FileNotFoundError):
                pass  # damaged: prepare again below

    train_index, train_start, train_end = splits["train"]
    if tokenizer == "bpe":
        text = (
            _tokenizer_sample(train_index, train_end, tokenizer_sample_bytes)
            if sampled
            else "".join(train_index.read(train_start, train_end))
        )
        tok = BPETokenizer.train(text, vocab_size, special_tokens=tuple(special_tokens))
        del text
    elif tokenizer == "char":
        chars = _char_vocabulary(list(splits.values()), special_tokens)
        specials = {s: len(chars) + i for i, s in enumerate(special_tokens)}  # as .train numbers
        tok = CharTokenizer(chars, specials)
    else:
        tok = BPETokenizer.from_tiktoken("gpt2")
    np_dtype = choose_dtype(tok.vocab_size, dtype)
    n_workers = workers or default_workers(sum(n_bytes.values()))

    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    stage = out / f".prepare-{os.getpid()}"  # new files wait here until all are complete
    stage.mkdir(exist_ok=True)
    try:
        counts = {}
        for split, (idx, start, end) in splits.items():
            counts[split] = encode_to_file(
                tok, idx.read(start, end), stage / f"{split}.bin", np_dtype, n_workers,
                allowed_special={EOT} & set(tok.special_tokens),  # corpora such as TinyStories
                progress_total=n_bytes[split] if progress else None,
            )  # fmt: skip
        tok.save(stage / "tokenizer.json")
        meta = {
            "format_version": FORMAT_VERSION,
            "source": str(source) if is_named else str(Path(source).expanduser().resolve()),
            "source_sha256": index.sha256,
            "tokenizer": tokenizer,
            "vocab_size": tok.vocab_size,
            "dtype": np_dtype,
            "val_fraction": settings["val_fraction"],
            **({"val_source": val_name} if val_name is not None else {}),
            **{f"{s}_tokens": counts[s] for s in splits},
            **{f"{s}_bytes": n_bytes[s] for s in splits},
            **{f"{s}_chars": e - b for s, (_, b, e) in splits.items()},
            "settings": settings,
        }
        (stage / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (out / "meta.json").unlink(missing_ok=True)  # meta.json goes last: it marks "complete"
        for file in ("train.bin", "val.bin", "tokenizer.json", "meta.json"):
            os.replace(stage / file, out / file)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
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
