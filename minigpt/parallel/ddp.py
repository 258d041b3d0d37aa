"""Data parallelism by hand: N replicas of one model, each on its share of the batch, kept equal.

Each rank holds a full copy of the model and runs forward and backward on its own slice of the
global batch. If the replicas start equal and every rank applies the *same* update, they stay
equal, so the only communication needed is to make every rank's gradient the same: the
average of all ranks' gradients. With a loss that is a mean over samples and equal slices,
that average is exactly the gradient of the whole batch (the mean of N equal-sized means is
the overall mean) — data parallelism is gradient accumulation with the micro-batches computed
side by side instead of one after another (lesson 12 checks this number for number).

`DataParallel(model, strategy)` wraps a model, broadcasts rank 0's parameters and buffers at
construction (replicas that start different end equal), and is called like the model. After
`loss.backward()` call `sync_gradients()`, then `optimizer.step()`. Three strategies, each a
faster version of the one before (see `comm_log` to watch them):

* `naive` — one all-reduce per parameter tensor after backward. Simple, and slow: every call
  pays the collective's latency, and no communication overlaps with computation.
* `bucketed` — gradients copied into flat buckets of ~`bucket_size_mb` (buckets.py), one
  all-reduce per bucket. Fewer, larger calls; still all after backward.
* `overlap` — a hook on every parameter fires the moment its gradient is accumulated; when a
  bucket's last gradient arrives its all-reduce is launched asynchronously (`async_op=True`)
  and backward carries on computing earlier layers' gradients while the bytes travel.
  `sync_gradients()` only waits for what is in flight. This is how PyTorch's
  DistributedDataParallel works (Li et al. 2020, "PyTorch Distributed", VLDB).

Each gradient is divided by the world size before the sum (not after), so a sum of N
low-precision gradients cannot overflow. Frozen parameters (requires_grad=False) are never
communicated; a tied weight (one Parameter reached by two names) is one tensor, reduced once.
A trainable parameter that got no gradient this step is reduced as zeros (every rank must make
the same calls in the same order), so it ends the sync with a zero gradient instead of None.
Gradient accumulation: wrap all but the last micro-batch in `no_sync()` and call
`sync_gradients()` after the last one; the accumulated gradient is then reduced once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from minigpt.parallel.buckets import Bucket, make_buckets
from minigpt.parallel.launch import require_group

STRATEGIES = ("naive", "bucketed", "overlap")


@dataclass(frozen=True)
class CommRecord:
    """One all-reduce: which bucket (or parameter, for `naive`), its size, and how many of this
    backward's gradients were still being computed when it was launched (0 = after backward)."""

    step: int
    bucket: int
    numel: int
    nbytes: int
    grads_pending: int

    @property
    def during_backward(self) -> bool:
        """Launched while backward was still producing gradients (overlap at work)."""
        return self.grads_pending > 0


class DataParallel(nn.Module):
    """Wrap `module` so that `sync_gradients()` averages its gradients over all ranks.

    `comm_log` lists the current step's all-reduces (`CommRecord`); `stats` counts all of them
    since construction. `buckets` shows how the gradients are packed (bucketed / overlap).
    """

    def __init__(
        self, module: nn.Module, strategy: str = "bucketed", bucket_size_mb: float = 25.0
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r} is unknown; use one of {STRATEGIES}")
        if not bucket_size_mb > 0:
            raise ValueError(f"bucket_size_mb={bucket_size_mb} must be > 0 (PyTorch uses 25)")
        self.rank, self.world_size = require_group("DataParallel")
        super().__init__()
        self.module = module
        self.strategy = strategy
        self.bucket_size_mb = bucket_size_mb
        # parameters() yields a tied weight once; reversed: the order backward makes gradients.
        self.params = [p for p in module.parameters() if p.requires_grad]
        self._broadcast_from_rank0()
        order = list(reversed(self.params))
        self.buckets: list[Bucket] = []
        if strategy != "naive":
            self.buckets = make_buckets(order, bucket_size_mb)
        self.comm_log: list[CommRecord] = []
        self.stats = {"all_reduces": 0, "bytes": 0, "syncs": 0}
        self._sync_enabled = True
        self._step = 0  # index of the step being communicated (= syncs done so far)
        self._pending = len(self.params)  # overlap: gradients of this backward not yet ready
        self._next_launch = 0  # overlap: buckets are launched strictly in order
        self._hooks: list[Any] = []
        # overlap: the order gradients really arrive in, seen in the first backward
        self._arrival: list[int] | None = [] if strategy == "overlap" else None
        self._position = {id(p): i for i, p in enumerate(self.params)}
        if strategy == "overlap":
            self._register_hooks()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's forward, unchanged: each rank runs it on its own batch."""
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def _broadcast_from_rank0(self) -> None:
        """Make every replica start as rank 0's: equal starts plus equal updates stay equal."""
        for tensor in list(self.module.parameters()) + list(self.module.buffers()):
            dist.broadcast(tensor.data, src=0)

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside the block nothing is communicated: gradients only accumulate locally."""
        previous, self._sync_enabled = self._sync_enabled, False
        try:
            yield
        finally:
            self._sync_enabled = previous

    def sync_gradients(self) -> None:
        """Average every trainable gradient over the ranks (call after backward, before step)."""
        if not self._sync_enabled:
            raise RuntimeError(
                "sync_gradients() inside no_sync() would communicate nothing; call it after "
                "the last micro-batch's backward, outside the no_sync() block"
            )
        if self.strategy == "naive":
            ### BEGIN SOLUTION ddp
            for index, p in enumerate(reversed(self.params)):
                if p.grad is None:  # every rank must make the same calls: reduce zeros
                    p.grad = torch.zeros_like(p)
                p.grad.div_(self.world_size)  # divide first: the sum cannot overflow
                dist.all_reduce(p.grad)
                self._record(index, p.grad, pending=0)
            ### END SOLUTION
        elif self.strategy == "bucketed":
            ### BEGIN SOLUTION ddp
            for bucket in self.buckets:
                bucket.fill()
                self._launch(bucket, async_op=False, pending=0)
                bucket.copy_out()
            ### END SOLUTION
        else:  # overlap: launch whatever backward did not (unused gradients), then wait
            for bucket in self.buckets[self._next_launch :]:
                bucket.fill()
                self._launch(bucket, async_op=True, pending=0)
            for bucket in self.buckets:
                bucket.work.wait()
                bucket.copy_out()
            self._pending, self._next_launch = len(self.params), 0
            if self._arrival is not None:
                self._rebuild_buckets()
        self._step += 1
        self.stats["syncs"] += 1

    def _register_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = [
            p.register_post_accumulate_grad_hook(self._make_hook(bucket, slot))
            for bucket in self.buckets
            for slot, p in enumerate(bucket.params)
        ]

    def _rebuild_buckets(self) -> None:
        """Re-bucket in the order gradients arrived in the first backward (as PyTorch DDP does).

        Reverse model order is only a guess: a block that registers its norms after its linear
        layers produces their gradients last, so a bucket ending with them would be complete
        late and overlap little. Rank 0's observed order is broadcast so all ranks agree.
        """
        if not self.params:
            self._arrival = None
            return
        seen = set(self._arrival)
        rest = [i for i in reversed(range(len(self.params))) if i not in seen]
        order = torch.tensor(self._arrival + rest, device=self.params[0].device)
        dist.broadcast(order, src=0)
        self.buckets = make_buckets([self.params[i] for i in order.tolist()], self.bucket_size_mb)
        self._register_hooks()
        self._arrival = None

    def _make_hook(self, bucket: Bucket, slot: int):
        """The overlap hook of one parameter: copy its gradient in, launch full buckets."""

        def hook(param: nn.Parameter) -> None:
            if self._arrival is not None and self._position[id(param)] not in self._arrival:
                self._arrival.append(self._position[id(param)])
            if not self._sync_enabled:
                return  # no_sync(): let the gradient accumulate, send nothing
            if bucket.ready[slot]:
                raise RuntimeError(
                    "a second backward reached a gradient whose all-reduce is still pending; "
                    "call sync_gradients() after every backward, or wrap all but the last "
                    "micro-batch in no_sync()"
                )
            bucket.copy_in(slot)
            self._pending -= 1
            # Launch strictly in bucket order, so every rank issues the same collectives in
            # the same sequence even if gradients arrived in a different order somewhere.
            while self._next_launch < len(self.buckets):
                nxt = self.buckets[self._next_launch]
                if not nxt.complete:
                    break
                self._launch(nxt, async_op=True, pending=self._pending)
                self._next_launch += 1

        return hook

    def _launch(self, bucket: Bucket, async_op: bool, pending: int) -> None:
        """All-reduce one bucket (averaged: divided by the world size first)."""
        bucket.buffer.div_(self.world_size)
        bucket.work = dist.all_reduce(bucket.buffer, async_op=async_op)
        self._record(bucket.index, bucket.buffer, pending)

    def _record(self, index: int, tensor: torch.Tensor, pending: int) -> None:
        """Note one all-reduce; the log holds the current step only, the stats all steps."""
        if self.comm_log and self.comm_log[-1].step != self._step:
            self.comm_log.clear()
        nbytes = tensor.numel() * tensor.element_size()
        self.comm_log.append(CommRecord(self._step, index, tensor.numel(), nbytes, pending))
        self.stats["all_reduces"] += 1
        self.stats["bytes"] += nbytes
