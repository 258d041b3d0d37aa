"""Batches onto the accelerator without stalling it: pinned memory and asynchronous copies.

A GPU runs the kernels the host queues, in order, while the host races ahead: the loop's only
wait is the loss it reads every `log_interval` steps (`training.loop`). A copy from ordinary
(pageable) host memory breaks that: CUDA must stage it through a pinned buffer, so the host
waits until the copy, and hence every kernel queued before it, is done — one full stall per
step. From page-locked ("pinned") memory the copy is one DMA transfer that `non_blocking=True`
merely queues, and the host goes on drawing the next batch while the GPU computes.

On a CPU (or MPS) there is nothing to overlap: tensors are moved plainly and nothing is
pinned (pinning needs CUDA, and would only cost a copy). `to_device` moves one batch;
`prefetch` wraps a stream of batches and keeps the next `ahead` copies already queued. The
Trainer moves each step's micro-batches with `to_device` before the first forward; the GPU
benchmark (`benchmarks/gpu_throughput.py`) feeds its steps through `prefetch`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor


def uses_pinned_memory(device: torch.device) -> bool:
    """Whether copies to `device` go through pinned memory and are queued asynchronously."""
    return device.type == "cuda"


def to_device(batch: Sequence[Tensor], device: torch.device) -> tuple[Tensor, ...]:
    """Each tensor of `batch` on `device`: pinned and copied asynchronously for CUDA, moved
    plainly otherwise. The result may be used at once: CUDA orders the copy before any kernel
    later queued on the same stream."""
    if not uses_pinned_memory(device):
        return tuple(t.to(device) for t in batch)
    return tuple(
        t if t.device == device else t.pin_memory().to(device, non_blocking=True) for t in batch
    )


def prefetch(
    batches: Iterable[Sequence[Tensor]], device: torch.device, ahead: int = 1
) -> Iterator[tuple[Tensor, ...]]:
    """The batches of `batches`, in order and unchanged, on `device`.

    Before a batch is handed out, the copies of the next `ahead` ones are already queued, so
    the transfer of batch i+1 overlaps the compute on batch i. The source is read `ahead`
    batches early: a source that draws from a random generator has advanced that much further
    than the batches used so far (the Trainer, which saves its generator in checkpoints,
    therefore copies only within a step).
    """
    if ahead < 0:
        raise ValueError(f"ahead={ahead} must be >= 0 batches (0: copy each when it is asked for)")
    queued: deque[tuple[Tensor, ...]] = deque()
    for batch in batches:
        queued.append(to_device(batch, device))
        if len(queued) > ahead:
            yield queued.popleft()
    while queued:
        yield queued.popleft()
