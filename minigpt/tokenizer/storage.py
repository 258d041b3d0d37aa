"""How a tokenizer is stored: one self-describing dict of plain JSON types, saved atomically.

A model's ids mean nothing without the tokenizer that made them, so every prepared corpus keeps a
`tokenizer.json` beside its token files and every checkpoint carries the same dict. The dict holds
only str, int, list and dict values (bytes are base64 text) so that `torch.load(...,
weights_only=True)` accepts it, and its "kind" key says which class rebuilds it:

    {"kind": "bpe", "name": ..., "pattern": ..., "ranks": [base64 token, ... in rank order],
     "special_tokens": {name: id}}
    {"kind": "char", "chars": [character, ... in id order], "special_tokens": {name: id}}

Files written by earlier versions load unchanged: this layout is a promise, not a detail.
Lesson 01 saves a tokenizer this way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON via a temporary file and rename, so a crash never leaves half a tokenizer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a saved tokenizer dict; with `kind`, refuse a file that holds another kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {str(path)!r} not found; check the path")
    d = json.loads(path.read_text(encoding="utf-8"))
    if kind is not None and d.get("kind") != kind:
        raise ValueError(
            f"{str(path)!r} holds a {d.get('kind')!r} tokenizer, not {kind!r}; "
            "use minigpt.tokenizer.load_tokenizer(path)"
        )
    return d


def check_kind(d: dict[str, Any], kind: str) -> None:
    """Refuse a dict of another kind before reading its fields (clearer than a KeyError)."""
    if d.get("kind") != kind:
        raise ValueError(
            f"expected a {kind!r} tokenizer dict, got kind={d.get('kind')!r}; "
            "use tokenizer_from_dict(d)"
        )
