"""Gradient buckets: many small all-reduces packed into a few large ones.

Every collective has a fixed cost (a round trip between ranks, a kernel launch, gloo's or
NCCL's bookkeeping) on top of the time the bytes take: roughly t = latency + bytes /
bandwidth. A GPT has ~12 parameter tensors per layer, many of them tiny (biases, LayerNorm
gains), so one all-reduce per tensor pays the latency hundreds of times per step. A *bucket*
is one flat buffer holding the gradients of several consecutive parameters: the gradients are
copied in, the buffer is all-reduced once, and the averaged values are copied back. With
buckets of ~25 MB (PyTorch DDP's default `bucket_cap_mb`) the latency is paid a handful of
times, and each transfer is large enough to run at full bandwidth.

Buckets are filled in *reverse* parameter order because that is the order backward produces
gradients: the loss depends last on the last layers, so their gradients are ready first. A
bucket made of the last layers' parameters is complete early in backward, and its all-reduce
can start while the earlier layers' gradients are still being computed (the `overlap`
strategy in ddp.py). Buckets never mix dtypes or devices: a flat buffer has one of each.

`bucket_indices` is the pure rule (sizes in, groups of indices out), tested on its own;
`Bucket` is the buffer with its copy-in / copy-out. Lesson 12 prints a model's buckets.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import Tensor, nn


def bucket_indices(
    sizes: Sequence[int], cap_bytes: float, keys: Sequence[Hashable] | None = None
) -> list[list[int]]:
    """Group consecutive items into buckets of at most `cap_bytes` (an item bigger than the cap
    gets a bucket of its own); `keys` (e.g. dtype and device) start a new bucket when they
    change. `sizes` are in bytes, in the order the buckets should be filled."""
    if cap_bytes <= 0:
        raise ValueError(f"cap_bytes={cap_bytes} must be > 0")
    ### BEGIN SOLUTION ddp
    buckets: list[list[int]] = []
    filled = 0.0
    for i, size in enumerate(sizes):
        new_key = keys is not None and i > 0 and keys[i] != keys[i - 1]
        if not buckets or new_key or (filled + size > cap_bytes and buckets[-1]):
            buckets.append([])
            filled = 0.0
        buckets[-1].append(i)
        filled += size
    return buckets
    ### END SOLUTION


class Bucket:
    """One flat gradient buffer for a run of parameters, and the all-reduce in flight on it."""

    def __init__(self, index: int, params: Sequence[nn.Parameter]) -> None:
        self.index = index
        self.params = list(params)
        first = self.params[0]
        self.offsets = []
        total = 0
        for p in self.params:
            self.offsets.append(total)
            total += p.numel()
        self.buffer = torch.zeros(total, dtype=first.dtype, device=first.device)  # (numel,)
        self.ready = [False] * len(self.params)  # which gradients of this backward are in
        self.work = None  # the async all-reduce's handle (overlap strategy)

    @property
    def numel(self) -> int:
        return self.buffer.numel()

    @property
    def nbytes(self) -> int:
        return self.buffer.numel() * self.buffer.element_size()

    def view(self, slot: int) -> Tensor:
        """The part of the buffer that holds parameter `slot`'s gradient, shaped like it."""
        p = self.params[slot]
        return self.buffer[self.offsets[slot] : self.offsets[slot] + p.numel()].view_as(p)

    def copy_in(self, slot: int) -> None:
        """Copy one parameter's gradient into the buffer (zeros if it has none)."""
        grad = self.params[slot].grad
        if grad is None:
            self.view(slot).zero_()
        else:
            self.view(slot).copy_(grad)
        self.ready[slot] = True

    def fill(self) -> None:
        """Copy in every gradient not copied in yet (all of them for the `bucketed` strategy)."""
        for slot, done in enumerate(self.ready):
            if not done:
                self.copy_in(slot)

    @property
    def complete(self) -> bool:
        return all(self.ready)

    def copy_out(self) -> None:
        """Write the (averaged) buffer back into each parameter's .grad; reset for next step."""
        for slot, p in enumerate(self.params):
            if p.grad is None:
                p.grad = self.view(slot).clone()
            else:
                p.grad.copy_(self.view(slot))
        self.ready = [False] * len(self.params)
        self.work = None


def make_buckets(params: Sequence[nn.Parameter], bucket_size_mb: float) -> list[Bucket]:
    """Buckets of about `bucket_size_mb` megabytes (2**20 bytes, as PyTorch DDP counts) over
    `params`, given in the order their gradients arrive (reverse model order)."""
    sizes = [p.numel() * p.element_size() for p in params]
    keys = [(p.dtype, p.device) for p in params]
    groups = bucket_indices(sizes, bucket_size_mb * 2**20, keys)
    return [Bucket(i, [params[j] for j in group]) for i, group in enumerate(groups)]
