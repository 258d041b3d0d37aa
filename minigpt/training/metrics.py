"""The metrics file of a run: metrics.jsonl, one JSON object per line, and tokens per second.

A run appends a record of kind "train" (step, tokens, loss, lr, tokens_per_s, elapsed_s) at
each log line, "eval" (val_loss, val_ppl, val_bpb) at each evaluation and "sample" (text).
JSON lines rather than one JSON document because a run is killed at any moment: every line
written is complete, and `minigpt.plots.read_metrics` skips a half-written last one. A resumed
run first drops the records past its checkpoint's step (the interrupted run logged them, the
resumed one will redo them), so the file reads like one run. `MetricsLog` is what the Trainer
(`minigpt.training.loop`) writes through; lesson 07 plots the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from minigpt.plots import read_metrics


class MetricsLog:
    """Appends records to `path`; with `write=False` (not the main process) it writes nothing.

    Also measures training throughput: `tokens_per_s` is the rate since its previous call
    (or since `start`), counted in training seconds, so time spent evaluating or saving
    between two log lines does not lower it.
    """

    def __init__(self, path: str | Path, write: bool = True) -> None:
        self.path = Path(path)
        self.write = write
        self._mark = (0.0, 0)  # (training seconds, tokens) at the last rate measurement

    def start(self, tokens: int, resume_step: int | None = None) -> None:
        """Begin a fresh run (empty file), or a resumed one at `resume_step` (keep the records
        up to it); `tokens` is the count training starts from."""
        self._mark = (0.0, tokens)
        if not self.write:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None:
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def append(self, kind: str, step: int, tokens: int, **fields: Any) -> None:
        """Add one record: its kind, the step and tokens seen so far, and `fields`."""
        if not self.write:
            return
        record = {"kind": kind, "step": step, "tokens": tokens, **fields}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def tokens_per_s(self, tokens: int, train_seconds: float) -> float:
        """Training tokens per second since the previous call; `train_seconds` is the run's
        training time so far (its wall-clock time minus pauses)."""
        seconds, seen = self._mark
        self._mark = (train_seconds, tokens)
        return (tokens - seen) / max(train_seconds - seconds, 1e-9)
