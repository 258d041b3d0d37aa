"""Evaluation: one reproducible number for a model on its validation split.

Windows come in file order and the objective's randomness (which tokens MLM masks) from a
generator seeded afresh, so evaluating one model twice gives one number. Loss is reported
three ways: nats per token, perplexity e^loss, and bits per byte = loss * val_tokens /
(val_bytes * ln 2) — the only one of the three that compares models with different tokenizers.
The Trainer evaluates with it during a run and `minigpt eval` after one; lessons 06-08 print it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from minigpt.data import iter_windows
from minigpt.objectives import IGNORE_INDEX, BatchFn
from minigpt.training.precision import autocast_for


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    tokens: np.ndarray,
    batch_fn: BatchFn,
    batch_size: int,
    window: int,
    device: torch.device,
    precision: str = "fp32",
    max_batches: int | None = None,
    seed: int = 0,
) -> tuple[float, int]:
    """Mean loss (nats per predicted token) over fixed validation windows, and the token count.

    Windows come from `iter_windows` in file order and the objective's randomness (which
    tokens MLM masks) from a generator seeded afresh, so the number is the same every time.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for i, windows in enumerate(iter_windows(tokens, batch_size, window)):
        if max_batches is not None and i >= max_batches:
            break
        inputs, targets = batch_fn(windows, generator)
        n = int((targets != IGNORE_INDEX).sum())
        if n == 0:  # nothing to predict in this batch (possible for tiny MLM batches)
            continue
        with autocast_for(device, precision):
            _, loss = model(inputs.to(device), targets.to(device))
        total += float(loss) * n  # the model averages over its n predicted tokens
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError(
            "the validation split gave no tokens to evaluate; prepare more data or "
            "use a smaller block_size"
        )
    return total / count, count


def val_metrics(loss: float, meta: dict[str, Any], objective: str = "clm") -> dict[str, Any]:
    """Loss -> perplexity and bits per byte (tokenizer-independent; see the module docstring).

    Bits per byte needs a loss for *every* token of the split, which only next-token prediction
    gives. MLM and span corruption predict ~15% of the tokens, so their loss times the token
    count would not be the cost of coding the text: for them `val_bpb` is None.
    """
    bpb = None
    if objective == "clm":
        bpb = loss * meta["val_tokens"] / (meta["val_bytes"] * math.log(2))
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 700.0)), "val_bpb": bpb}
