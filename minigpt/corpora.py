"""Where text comes from: the embedded corpus, local files, and named downloads.

A language model is only as good as its text, and a course needs text that is always there. The
default corpus is Python's own bundled documentation (`pydoc_data.topics`, ~0.5 MB of English on
every Python install), so every lesson and test runs offline. Local `.txt` files or folders work
the same way; named corpora (Tiny Shakespeare, TinyStories) are downloaded once into a cache,
checked against a sha256, and refused with a one-line error when the network is not there.
`minigpt.data` turns this text into token files (lesson 01 shows the tokenizing).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm


@dataclass(frozen=True)
class NamedCorpus:
    """A downloadable corpus: where it lives and the sha256 its bytes must have.

    `sha256=None` means "not pinned": the digest of the first download is recorded next to the
    cached file and every later load is checked against that record (trust on first use).
    """

    url: str
    sha256: str | None
    filename: str


# The URL table is a plain dict so tests (and users behind a mirror) can point a name elsewhere.
# Neither digest is pinned: they could not be verified offline when this was written, and a
# wrong pin would lock every user out, so both use trust-on-first-use (see NamedCorpus).
CORPORA: dict[str, NamedCorpus] = {
    # Karpathy's char-rnn Tiny Shakespeare: ~1.1 MB, 40,000 lines of the plays.
    "tinyshakespeare": NamedCorpus(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        None,
        "tinyshakespeare.txt",
    ),
    # TinyStories (Eldan & Li, 2023), GPT-4 version, validation file only: ~22 MB of short
    # stories separated by <|endoftext|> — a modest size next to the 2 GB training file.
    "tinystories": NamedCorpus(
        "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
        "TinyStoriesV2-GPT4-valid.txt",
        None,
        "tinystories-valid.txt",
    ),
}


class DownloadError(ConnectionError, RuntimeError):
    """A named corpus could not be fetched (offline, blocked, or the server said no)."""


def cache_dir() -> Path:
    """Where downloads are kept: $MINIGPT_CACHE if set, else ~/.cache/minigpt."""
    return Path(os.environ.get("MINIGPT_CACHE") or Path.home() / ".cache" / "minigpt")


def pydoc_corpus() -> str:
    """Python's bundled documentation topics (~0.5 MB of English), in a fixed order.

    Every CPython install ships `pydoc_data.topics`, so this corpus needs no network and is the
    same bytes for everyone on the same Python version; sorting the keys makes the order stable.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def _read_text(path: Path) -> str:
    """Read one file as strict UTF-8 (a leading BOM is dropped); refuse empty files."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not valid UTF-8 (bad byte at offset {err.start}); convert it first, "
            f"e.g. iconv -f latin1 -t utf-8 {path.name} > fixed.txt"
        ) from None
    if not text.strip():
        raise ValueError(f"{path} is empty; give a file with some text in it")
    return text


def download_corpus(name: str, progress: bool = False, timeout: float = 30.0) -> Path:
    """Return the cached file of a named corpus, downloading and checking it on first use.

    The download goes to a temporary file in the cache folder and is renamed into place only after
    its sha256 checks out, so an interrupted or corrupt download never looks like a cached corpus.
    """
    spec = CORPORA[name]
    dest = cache_dir() / "corpora" / spec.filename
    record = dest.with_name(dest.name + ".sha256")  # trust-on-first-use digest for unpinned ones
    expected = spec.sha256 or (record.read_text().strip() if record.exists() else None)
    if dest.exists():
        actual = hashlib.sha256(dest.read_bytes()).hexdigest()
        if expected is not None and actual != expected:
            raise ValueError(
                f"cached {dest} has sha256 {actual}, not {expected}; delete it and retry"
            )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp, digest = Path(tmp_name), hashlib.sha256()
    try:
        request = urllib.request.Request(spec.url, headers={"User-Agent": "minigpt"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            size = int(resp.headers.get("Content-Length") or 0) or None
            bar = tqdm(total=size, unit="B", unit_scale=True, desc=name, disable=not progress)
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
            bar.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        tmp.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"could not download {name!r} from {spec.url} ({reason}); download it manually "
            f"and pass the file's path instead of the name (or save it as {dest})"
        ) from None
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        tmp.unlink(missing_ok=True)
        raise ValueError(
            f"download of {name!r} from {spec.url} has sha256 {actual}, expected {expected}; "
            f"the file changed upstream or was corrupted: retry, or download it and pass the path"
        )
    os.replace(tmp, dest)  # atomic on one filesystem: readers see no file or the whole file
    if spec.sha256 is None and not record.exists():
        record.write_text(actual + "\n")
    return dest


def load_corpus(source: str | os.PathLike = "pydoc", progress: bool = False) -> str:
    """Return the text of a corpus: "pydoc", a named corpus, a .txt file, or a folder of them.

    A folder contributes every `*.txt` file below it, sorted by path and joined with blank lines,
    so the result does not depend on directory listing order. Policy on bad files: text must be
    UTF-8 — anything else is refused with an error naming the file rather than guessed at or
    silently repaired — and an empty (or whitespace-only) file is an error too.
    """
    if str(source) == "pydoc":
        return pydoc_corpus()
    if str(source) in CORPORA:
        return _read_text(download_corpus(str(source), progress=progress))
    path = Path(source).expanduser()
    if not path.exists():
        names = ", ".join(["pydoc", *CORPORA])
        raise FileNotFoundError(
            f"corpus {str(source)!r} not found: give one of {names} or a path to a .txt file/folder"
        )
    if path.is_file():
        return _read_text(path)
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise ValueError(f"folder {path} has no .txt files; put the corpus in *.txt files")
    return "\n\n".join(_read_text(p) for p in files)
