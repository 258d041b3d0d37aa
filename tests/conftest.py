"""Shared test helpers: float comparisons, run a numbered lesson, locate GPT-2's files.

Lesson files start with a digit (`01_tokenization.py`), so they cannot be
imported by name; `load_lesson` imports one from its path instead.
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import threading
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
# GPT-2's published tokenizer files live beside the project for developers and CI,
# never in a user's clone: tests that need them skip with a reason when absent.
SHARED_GPT2 = ROOT.parent / "shared" / "data" / "gpt2"

os.environ.setdefault("MPLBACKEND", "Agg")
# Test models are tiny: splitting their matrix products across OpenMP threads costs more in
# synchronisation than it saves, and 5-30x more when the 2-core machine is busy.
torch.set_num_threads(1)


def assert_float_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    ulps: float = 64.0,
    msg: str | None = None,
    resolution_of: torch.dtype | None = None,
) -> None:
    """Equal up to `ulps` units of the dtype's resolution (`resolution_of`, default the
    expected tensor's dtype: bf16 results compared in float32 pass torch.bfloat16), relative to
    each value and to the expected tensor's scale.

    Two correct implementations differ by rounding, and how much depends on the CPU (its
    matmul kernels sum in different orders: an AMD EPYC and an Intel Xeon disagree by an ulp or
    two), so a hand-picked absolute bound like 1e-7 turns CI red on the wrong machine. The
    absolute part scales with the largest expected value, and at least with 1 (the tests draw
    their inputs at unit scale), because the error of a sum is set by its largest terms, not by
    its result: a gradient that is zero in exact arithmetic comes out as rounding noise.
    """
    eps = torch.finfo(resolution_of or expected.dtype).eps
    scale = max(float(expected.detach().abs().max()) if expected.numel() else 0.0, 1.0)
    tol = ulps * eps
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale, msg=msg)


def load_lesson(stem: str) -> ModuleType:
    """Import `lessons/<stem>.py` as a module (e.g. stem="01_tokenization")."""
    path = LESSONS / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"lesson_{stem}", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gpt2_files() -> tuple[Path, Path]:
    encoder_json, vocab_bpe = SHARED_GPT2 / "encoder.json", SHARED_GPT2 / "vocab.bpe"
    if not (encoder_json.exists() and vocab_bpe.exists()):
        pytest.skip(f"GPT-2 tokenizer files not found under {SHARED_GPT2} (dev checkout only)")
    return encoder_json, vocab_bpe


class LocalFileServer:
    """Serves a dict of path -> bytes on a free port and counts requests per path: downloads are
    tested against it, since nothing here may reach the internet."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    srv = LocalFileServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
