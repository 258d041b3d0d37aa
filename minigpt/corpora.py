"""Where text comes from: the embedded corpus, local files, and named downloads.

A language model is only as good as its text, and a course needs text that is always there. The
default corpus is Python's own bundled documentation (`pydoc_data.topics`, ~0.5 MB of English on
every Python install), so every lesson and test runs offline. Local `.txt` files or folders work
the same way; named corpora (Tiny Shakespeare, TinyStories, and at the course's scale WikiText-103
and the full TinyStories training text) are downloaded once into a cache, checked against a
sha256, unpacked from their zip archive where they ship as one, and refused with a one-line error
when the network is not there. A corpus may bring its own validation text (WikiText-103 does), so
papers' validation numbers can be compared. `corpus_parts` names the files without reading them,
so `minigpt.data` can stream a multi-GB corpus (`minigpt.text_index`); `load_corpus` reads a small
one whole (lesson 01 shows the tokenizing).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm


@dataclass(frozen=True)
class NamedCorpus:
    """A downloadable corpus: where it lives and the sha256 its bytes must have.

    `sha256=None` means "not pinned": the digest of the first download is recorded next to the
    cached file and every later load is checked against that record (trust on first use).
    `member` names the text file inside a zip archive (matched by its base name; the archive is
    cached once, whichever of its members is asked for). `val` names another corpus of this
    table that is this one's own validation split, used instead of cutting off its end.
    """

    url: str
    sha256: str | None
    filename: str
    member: str | None = None
    val: str | None = None


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
    # The full TinyStories training text (~2.2 GB, ~2.1M stories), validated on the file above.
    # Unpinned: its digest could not be checked offline here; trust on first use records it.
    "tinystories-full": NamedCorpus(
        "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
        "TinyStoriesV2-GPT4-train.txt",
        None,
        "tinystories-train.txt",
        val="tinystories",
    ),
    # WikiText-103, raw (Merity et al., 2016, "Pointer Sentinel Mixture Models"): ~540 MB of
    # Wikipedia's Good and Featured articles, ~103M words in wiki.train.raw, with its own
    # validation (wiki.valid.raw) and test files, in one 191,984,949-byte zip. The sha256 is the
    # one published with the archive's checksums, e.g. Hugging Face datasets' and Julia's
    # MLDatasets for the original s3.amazonaws.com/research.metamind.io/wikitext URL; the author
    # re-hosts the same archive at wikitext.smerity.com since that bucket closed.
    "wikitext103": NamedCorpus(
        "https://wikitext.smerity.com/wikitext-103-raw-v1.zip",
        "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
        "wikitext-103-raw-v1.zip",
        member="wiki.train.raw",
        val="wikitext103-valid",
    ),
    "wikitext103-valid": NamedCorpus(
        "https://wikitext.smerity.com/wikitext-103-raw-v1.zip",
        "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
        "wikitext-103-raw-v1.zip",
        member="wiki.valid.raw",
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


def _file_sha256(path: Path) -> str:
    """sha256 of a file read in 1 MB blocks: a 2 GB corpus is never in memory at once."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(name: str, spec: NamedCorpus, progress: bool, timeout: float) -> Path:
    """The cached download of `spec` (a text file or a zip archive), checked by its sha256.

    The download goes to a temporary file in the cache folder and is renamed into place only after
    its sha256 checks out, so an interrupted or corrupt download never looks like a cached corpus.
    """
    dest = cache_dir() / "corpora" / spec.filename
    record = dest.with_name(dest.name + ".sha256")  # trust-on-first-use digest for unpinned ones
    expected = spec.sha256 or (record.read_text().strip() if record.exists() else None)
    if dest.exists():
        actual = _file_sha256(dest)
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


def _extract(archive: Path, member: str) -> Path:
    """The member of a (checked) zip archive whose base name is `member`, unpacked once beside it.

    Unpacked to a temporary file and renamed, like downloads; a cached copy is reused when its
    size is the one the archive's directory records (a cheap check: the archive itself was just
    verified by its sha256).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if Path(i.filename).name == member]
            if not infos:
                names = ", ".join(Path(i.filename).name for i in zf.infolist() if not i.is_dir())
                raise ValueError(f"{archive} has no {member} (it holds {names}); delete it, retry")
            info = infos[0]
            dest = archive.with_suffix("") / member  # wikitext-103-raw-v1.zip -> .../wiki.train.raw
            if dest.exists() and dest.stat().st_size == info.file_size:
                return dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=member + ".", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        out.write(block)
                os.replace(tmp_name, dest)
            finally:
                Path(tmp_name).unlink(missing_ok=True)
            return dest
    except zipfile.BadZipFile:
        raise ValueError(f"{archive} is not a valid zip archive; delete it and retry") from None


def download_corpus(name: str, progress: bool = False, timeout: float = 30.0) -> Path:
    """Return the cached text file of a named corpus, downloading and checking it on first use
    (and unpacking it from its archive, for corpora that ship as a zip)."""
    spec = CORPORA[name]
    path = _fetch(name, spec, progress, timeout)
    return _extract(path, spec.member) if spec.member else path


def corpus_parts(source: str | os.PathLike = "pydoc", progress: bool = False) -> list[Path | str]:
    """The pieces whose concatenation is `load_corpus(source)`, without reading the files.

    Files are paths; the embedded corpus and the blank lines that join a folder's files are
    literal strings. A named corpus is downloaded (once) here. Streaming readers
    (`minigpt.text_index.scan`) check each file's UTF-8 and emptiness as they read it.
    """
    if str(source) == "pydoc":
        return [pydoc_corpus()]
    if str(source) in CORPORA:
        return [download_corpus(str(source), progress=progress)]
    path = Path(source).expanduser()
    if not path.exists():
        names = ", ".join(["pydoc", *CORPORA])
        raise FileNotFoundError(
            f"corpus {str(source)!r} not found: give one of {names} or a path to a .txt file/folder"
        )
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise ValueError(f"folder {path} has no .txt files; put the corpus in *.txt files")
    parts: list[Path | str] = []
    for file in files:
        parts += ["\n\n", file] if parts else [file]
    return parts


def validation_source(source: str | os.PathLike) -> str | None:
    """The named corpus that is `source`'s own validation split (WikiText-103's wiki.valid.raw),
    or None when the validation text is cut from the end of the corpus itself."""
    spec = CORPORA.get(str(source))
    return spec.val if spec is not None else None


def load_corpus(source: str | os.PathLike = "pydoc", progress: bool = False) -> str:
    """Return the text of a corpus: "pydoc", a named corpus, a .txt file, or a folder of them.

    A folder contributes every `*.txt` file below it, sorted by path and joined with blank lines,
    so the result does not depend on directory listing order. Policy on bad files: text must be
    UTF-8 — anything else is refused with an error naming the file rather than guessed at or
    silently repaired — and an empty (or whitespace-only) file is an error too. A named corpus
    with its own validation split (see `validation_source`) gives its training text here. The
    whole text is returned as one string: for corpora of gigabytes use `corpus_parts`, as
    `minigpt.data.prepare` does.
    """
    parts = corpus_parts(source, progress)
    return "".join(p if isinstance(p, str) else _read_text(p) for p in parts)
