"""The course-scale named corpora: WikiText-103 from its zip, the full TinyStories training text.

Like the download tests in test_data.py, everything is served by a throwaway http.server on
127.0.0.1 with files (and a zip archive) the test builds itself; the real table is checked for
what can be checked offline (pins, members, validation links).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import LocalFileServer

from minigpt.corpora import (
    CORPORA,
    NamedCorpus,
    corpus_parts,
    download_corpus,
    load_corpus,
    validation_source,
)
from minigpt.data import prepare
from minigpt.tokenizer import EOT

WIKI = {
    "wiki.train.raw": "".join(
        f" \n = Article {i} = \n \n The museum opened in 19{i:02d} ; it holds {i * 7} works . \n"
        for i in range(300)
    ),
    "wiki.valid.raw": " \n = Valid = \n \n A held - out article about the museum . \n" * 20,
    "wiki.test.raw": " \n = Test = \n \n Never used for training . \n" * 5,
}


def wikitext_zip() -> bytes:
    """A small stand-in for wikitext-103-raw-v1.zip: the same layout and member names."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("wikitext-103-raw/", "")
        for name, text in WIKI.items():
            zf.writestr(f"wikitext-103-raw/{name}", text.encode("utf-8"))
    return buffer.getvalue()


def point_wikitext_at(
    server: LocalFileServer, monkeypatch, body: bytes, sha256: str | None
) -> None:
    server.files["/wikitext-103-raw-v1.zip"] = body
    url = server.url + "/wikitext-103-raw-v1.zip"
    for name in ("wikitext103", "wikitext103-valid"):
        spec = CORPORA[name]
        monkeypatch.setitem(CORPORA, name, NamedCorpus(url, sha256, spec.filename, spec.member,
                                                       spec.val))  # fmt: skip


def test_the_real_table_is_consistent() -> None:
    wiki, valid = CORPORA["wikitext103"], CORPORA["wikitext103-valid"]
    # the digest published with the 191,984,949-byte archive (see minigpt/corpora.py)
    assert wiki.sha256 == "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794"
    assert (wiki.url, wiki.sha256, wiki.filename) == (valid.url, valid.sha256, valid.filename)
    assert (wiki.member, valid.member) == ("wiki.train.raw", "wiki.valid.raw")
    assert wiki.url.endswith("/wikitext-103-raw-v1.zip")
    full = CORPORA["tinystories-full"]
    assert full.url.endswith("TinyStoriesV2-GPT4-train.txt") and full.val == "tinystories"
    filenames = [(s.filename, s.member) for s in CORPORA.values()]
    assert len(set(filenames)) == len(filenames)  # no two names share one cached text file
    for spec in CORPORA.values():  # every validation link names a corpus without its own
        assert spec.val is None or (spec.val in CORPORA and CORPORA[spec.val].val is None)
        assert spec.sha256 is None or len(spec.sha256) == 64


def test_wikitext103_from_its_zip_with_its_own_validation_split(
    server: LocalFileServer, tmp_path: Path, monkeypatch
) -> None:
    body = wikitext_zip()
    point_wikitext_at(server, monkeypatch, body, hashlib.sha256(body).hexdigest())  # pinned
    assert load_corpus("wikitext103") == WIKI["wiki.train.raw"]
    assert load_corpus("wikitext103-valid") == WIKI["wiki.valid.raw"]
    assert server.hits == {"/wikitext-103-raw-v1.zip": 1}  # one archive for both members
    cached = tmp_path / "cache" / "corpora"
    assert (cached / "wikitext-103-raw-v1" / "wiki.train.raw").read_text() == WIKI["wiki.train.raw"]
    assert not (cached / "wikitext-103-raw-v1" / "wiki.test.raw").exists()  # only what is asked
    assert not (cached / "wikitext-103-raw-v1.zip.sha256").exists()  # pinned: nothing recorded
    assert validation_source("wikitext103") == "wikitext103-valid"
    assert validation_source("tinyshakespeare") is None and validation_source("x.txt") is None

    out = tmp_path / "wt"
    p = prepare("wikitext103", tokenizer="char", out_dir=out, progress=False, val_fraction=0.5)
    assert p.tokenizer.decode(p.train) == WIKI["wiki.train.raw"]  # the whole training file
    assert p.tokenizer.decode(p.val) == WIKI["wiki.valid.raw"]  # validated on wiki.valid.raw
    assert p.meta["val_source"] == "wikitext103-valid" and p.meta["val_fraction"] is None
    assert p.meta["val_bytes"] == len(WIKI["wiki.valid.raw"].encode())
    assert p.meta["settings"]["val_source_sha256"] == hashlib.sha256(
        WIKI["wiki.valid.raw"].encode()
    ).hexdigest()
    mtimes = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    prepare("wikitext103", tokenizer="char", out_dir=out, progress=False)  # a no-op now
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == mtimes
    assert server.hits == {"/wikitext-103-raw-v1.zip": 1}

    member = cached / "wikitext-103-raw-v1" / "wiki.train.raw"
    member.write_text("truncated")  # a damaged unpacked copy is unpacked again
    assert download_corpus("wikitext103").read_text() == WIKI["wiki.train.raw"]


def test_wikitext_archive_with_a_wrong_digest_or_member_is_refused(
    server: LocalFileServer, tmp_path: Path, monkeypatch
) -> None:
    body = wikitext_zip()
    point_wikitext_at(server, monkeypatch, body, "0" * 64)
    with pytest.raises(ValueError, match="has sha256 .* expected 0000"):
        load_corpus("wikitext103")
    assert list((tmp_path / "cache" / "corpora").iterdir()) == []  # nothing cached
    point_wikitext_at(server, monkeypatch, body, None)  # trust on first use
    spec = CORPORA["wikitext103"]
    monkeypatch.setitem(CORPORA, "wikitext103", NamedCorpus(spec.url, None, spec.filename,
                                                            "wiki.missing.raw"))  # fmt: skip
    with pytest.raises(ValueError, match="has no wiki.missing.raw .*wiki.train.raw"):
        load_corpus("wikitext103")
    record = tmp_path / "cache" / "corpora" / "wikitext-103-raw-v1.zip.sha256"
    assert record.read_text().strip() == hashlib.sha256(body).hexdigest()
    server.files["/broken.zip"] = b"PK not really a zip"
    monkeypatch.setitem(CORPORA, "broken", NamedCorpus(server.url + "/broken.zip", None,
                                                       "broken.zip", "wiki.train.raw"))  # fmt: skip
    with pytest.raises(ValueError, match="not a valid zip archive"):
        load_corpus("broken")


def test_full_tinystories_is_validated_on_the_validation_file(
    server: LocalFileServer, tmp_path: Path, monkeypatch
) -> None:
    stories = [f"Story {i}: Tom had a red ball. He liked to play.\n" for i in range(300)]
    train = f"{EOT}\n".join(stories[:250])
    valid = f"{EOT}\n".join(stories[250:])
    server.files["/train.txt"], server.files["/valid.txt"] = train.encode(), valid.encode()
    monkeypatch.setitem(CORPORA, "tinystories-full", NamedCorpus(
        server.url + "/train.txt", None, "tinystories-train.txt", val="tinystories"))  # fmt: skip
    monkeypatch.setitem(CORPORA, "tinystories", NamedCorpus(
        server.url + "/valid.txt", None, "tinystories-valid.txt"))  # fmt: skip
    assert [p.name for p in corpus_parts("tinystories-full")] == ["tinystories-train.txt"]
    p = prepare("tinystories-full", vocab_size=300, out_dir=tmp_path / "ts", progress=False,
                workers=2)  # fmt: skip
    tok = p.tokenizer
    assert tok.decode(p.train) == train and tok.decode(p.val) == valid
    eot = tok.special_tokens[EOT]
    assert (np.asarray(p.train) == eot).sum() == 249 and (np.asarray(p.val) == eot).sum() == 49
    for name, body in (("tinystories-train.txt", train), ("tinystories-valid.txt", valid)):
        record = tmp_path / "cache" / "corpora" / f"{name}.sha256"  # trust on first use
        assert record.read_text().strip() == hashlib.sha256(body.encode()).hexdigest()
    assert server.hits == {"/train.txt": 1, "/valid.txt": 1}
