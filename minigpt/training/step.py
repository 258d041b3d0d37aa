"""One training step, as a pure function: micro-batches in, one optimizer update out.

Everything else in training (budgets, logging, evaluation, checkpoints) is bookkeeping around
this function, and the parallel loops reuse it unchanged: data parallelism only has to say
when gradients are averaged across processes (`GradientSync`), and ZeRO only swaps the
optimizer. What one step does, and why:

- **Gradient accumulation.** Each micro-batch's loss is divided by the number of micro-batches
  before `backward()`; gradients add up in `.grad`, so after k micro-batches of b windows they
  equal the gradient of the mean loss over one batch of k*b windows: the same update as the
  big batch, in the memory of a small one.
- **Mixed precision.** The forward runs under autocast (`training.precision`); with fp16 a
  `GradScaler` multiplies the loss before backward so small gradients do not underflow, and
  divides them back (`unscale_`) before anything reads them.
- **Clipping** the global gradient norm tames rare loss spikes; it must see the true
  (unscaled, already averaged across processes) gradients.
- **No host sync.** The returned loss is a tensor on the device; reading it (`.item()`) waits
  for the GPU, so the caller does that only when it logs.

The learning rate is the caller's: it sets `param_groups[i]["lr"]` before calling. Lesson 07
trains through it (via the Trainer); `minigpt.parallel`'s data-parallel loop passes a
`GradientSync`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

import torch
from torch import nn

from minigpt.training.precision import autocast_for


class GradientSync(Protocol):
    """What data-parallel training plugs into `train_step` (minigpt.parallel's DataParallel).

    `no_sync()` wraps the forward and backward of every micro-batch but the last, so their
    gradients only accumulate locally; `sync_gradients()` runs once after the last backward
    and leaves every process holding the average gradient, before clipping and the update.
    """

    def no_sync(self) -> AbstractContextManager[object]: ...

    def sync_gradients(self) -> None: ...


def train_step(
    model: nn.Module,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    precision: str = "fp32",
    device: torch.device | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 0.0,
    grad_sync: GradientSync | None = None,
) -> torch.Tensor:
    """One optimizer step over `micro_batches` of (inputs, targets); returns the mean loss.

    `model(inputs, targets)` must return `(logits, loss)` with the loss a mean over the
    micro-batch. Tensors are moved to `device` (default: where they are). `precision` is a
    resolved one (fp32 | bf16 | fp16; see `resolve_precision`), `scaler` a GradScaler for fp16,
    `grad_clip` the max global gradient norm (0: no clipping). Afterwards the gradients are
    cleared (`set_to_none`). The result is a detached 0-d float32 tensor, not yet synchronised
    with the host.
    """
    n_micro = len(micro_batches)
    if n_micro == 0:
        raise ValueError("train_step needs at least one micro-batch")
    total: torch.Tensor | None = None
    for i, (inputs, targets) in enumerate(micro_batches):
        if device is not None:
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
        last = i == n_micro - 1
        # every micro-batch but the last only accumulates: averaging across processes once
        # per step, not once per micro-batch, is what makes accumulation cheap in parallel
        local = grad_sync.no_sync() if grad_sync is not None and not last else nullcontext()
        with local:
            with autocast_for(inputs.device, precision):
                _, loss = model(inputs, targets)  # (B, T) each in; mean loss out
            scaled = loss / n_micro  # summed over micro-batches: the big batch's mean
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        total = loss.detach().float() if total is None else total + loss.detach().float()
    if grad_sync is not None:
        grad_sync.sync_gradients()
    if grad_clip > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)  # skips the update when fp16 gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / n_micro
