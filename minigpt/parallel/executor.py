"""The pipeline executor: one rank runs its stage's list of passes, talking to its neighbours.

Any schedule from schedules.py runs here unchanged; a schedule is just an order. For each
operation of its list, a rank does:

* `("F", i)`: take micro-batch i's ids (first stage) or receive its activation from the
  previous stage; run the stage; send the output to the next stage, or (last stage) compute
  the loss. What autograd saved stays alive until the backward of micro-batch i.
* `("B", i)`: receive the gradient of this stage's output from the next stage (the last
  stage starts from its loss) and backpropagate; send the gradient of the stage's input to
  the previous stage. Without W in the schedule this is the whole backward; with W (ZB-H1)
  it is `autograd.grad` with respect to the input only, which skips the weight-gradient
  products, and keeps the graph for:
* `("W", i)`: the weight gradients, accumulated into `.grad`. PyTorch's autograd does not
  hand B's intermediate gradients to W, so W walks the stage's graph again (its
  input-gradient products included): on this CPU a W costs about a whole backward, where a
  hand-split one (Qi et al. 2023 split every linear layer) costs half. The schedule's
  structure, the order and the memory are ZB-H1's; its wall-clock gain is not fully ours.
  On the first stage the input is token ids, which have no gradient: its B is empty and its
  W is the whole backward.

Each micro-batch's loss is multiplied by its share of the rows, so the gradients summed over
micro-batches are the whole batch's mean-loss gradient, whatever M (the sizes may differ by
one row when M does not divide the batch).

Communication is point-to-point: `dist.isend` (returns at once) and a blocking `dist.recv`.
A blocking send would deadlock 1F1B: in its steady state stage s sends an activation down
while stage s+1 sends a gradient up, and each would wait for the other to receive. PyTorch's
batched `batch_isend_irecv` is known to hang on gloo; single isends are not batched. Sends
complete in the background and are waited for at the end of the step, so a rank only ever
waits in a receive — which is where its timeline shows the bubble.

The timeline (`StepResult.events`) records the start and end of every F, B, W, send and
receive, in seconds since `run` began (call it right after a barrier to align the ranks).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from minigpt.parallel.schedules import Event, Op
from minigpt.parallel.stages import PipelineStage
from minigpt.training.precision import autocast_for


def split_sizes(n_rows: int, n_microbatches: int) -> list[int]:
    """Rows per micro-batch: as equal as possible, the first ones one row larger."""
    if not isinstance(n_microbatches, int) or n_microbatches < 1:
        raise ValueError(f"n_microbatches={n_microbatches!r} must be a positive integer")
    if n_microbatches > n_rows:
        raise ValueError(
            f"{n_microbatches} micro-batches but only {n_rows} rows (windows) per step; "
            f"use at most {n_rows} micro-batches or a larger batch"
        )
    small, extra = divmod(n_rows, n_microbatches)
    return [small + (i < extra) for i in range(n_microbatches)]


@dataclass
class StepResult:
    """What one rank's run of a schedule produced."""

    loss: Tensor | None  # the batch's mean loss (last stage), detached; None elsewhere
    events: list[Event] = field(default_factory=list)
    peak_in_flight: int = 0  # most micro-batches whose activations were alive at once
    peak_activation_bytes: int = 0  # most bytes autograd kept for them at once


class PipelineExecutor:
    """Runs one stage's schedule; `prev_rank` / `next_rank` are the neighbours' global ranks
    (None at the ends). Activations cross stages as `act_dtype` (float32)."""

    def __init__(
        self,
        stage: PipelineStage,
        prev_rank: int | None,
        next_rank: int | None,
        *,
        device: torch.device | None = None,
        precision: str = "fp32",
        act_dtype: torch.dtype = torch.float32,
    ) -> None:
        if (prev_rank is None) != stage.is_first or (next_rank is None) != stage.is_last:
            raise ValueError(
                f"stage {stage.stage} of {stage.n_stages} needs prev_rank None exactly on the "
                "first stage and next_rank None exactly on the last"
            )
        self.stage, self.prev_rank, self.next_rank = stage, prev_rank, next_rank
        self.device = device or next(stage.parameters()).device
        self.precision, self.act_dtype = precision, act_dtype
        self.params = stage.trainable()
        self._param_ptrs = {p.data_ptr() for p in stage.parameters()}

    def run(self, ops: Sequence[Op], inputs: Tensor, targets: Tensor, n_microbatches: int
            ) -> StepResult:  # fmt: skip
        """Run this stage's `ops` on the batch (inputs, targets), both (rows, T), cut into
        `n_microbatches`; gradients accumulate into the stage's parameters' `.grad`.

        Every rank is given the ids (integers, cheap): the first stage reads the inputs and
        the last the targets; the trainer's ranks draw the same batch anyway, so the targets
        need not travel down the pipe.
        """
        sizes = split_sizes(inputs.shape[0], n_microbatches)
        self._inputs = inputs.split(sizes)
        self._targets = targets.split(sizes)
        self._weights = [n / inputs.shape[0] for n in sizes]
        self._shape = (inputs.shape[1], self.stage.config.d_model)
        self._saved: dict[int, dict] = {}
        self._sends: list[tuple[dist.Work, Tensor]] = []
        self._start = time.perf_counter()
        result = StepResult(loss=None)
        self._result, live_bytes = result, 0
        for op, i in ops:
            if op == "F":
                live_bytes += self._forward(i)
            elif op == "B":
                live_bytes -= self._backward(i, split=any(o == "W" for o, _ in ops))
            elif op == "W":
                live_bytes -= self._weights_backward(i)
            else:
                raise ValueError(f"unknown pipeline operation {op!r}; use F, B or W")
            result.peak_in_flight = max(result.peak_in_flight, len(self._saved))
            result.peak_activation_bytes = max(result.peak_activation_bytes, live_bytes)
        for work, _ in self._sends:  # everything sent must have arrived before the step
            work.wait()
        self._sends.clear()
        if self._saved:
            raise RuntimeError(f"stage {self.stage.stage}: micro-batches {sorted(self._saved)} "
                               "never ran their backward; the schedule is incomplete")  # fmt: skip
        return result

    # -- the three passes ------------------------------------------------------------------

    def _forward(self, i: int) -> int:
        """F: returns the bytes of activations it left alive for the backward."""
        if self.stage.is_first:
            x = self._inputs[i].to(self.device)
        else:
            x = torch.empty((self._inputs[i].shape[0], *self._shape), dtype=self.act_dtype,
                            device=self.device)  # fmt: skip
            self._recv(x, self.prev_rank, i)
            x.requires_grad_()
        began = self._now()  # after the receive: waiting is not computing
        kept: dict[tuple[int, int], int] = {}

        def pack(t: Tensor) -> Tensor:
            if t.data_ptr() not in self._param_ptrs:  # activations, not the weights
                kept[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with autocast_for(self.device, self.precision):
                out = self.stage(x)
                if self.stage.is_last:
                    # scaled by the micro-batch's share: the summed gradients are the batch's
                    out = self.stage.loss(out, self._targets[i].to(self.device)) * self._weights[i]
            out = out.to(self.act_dtype) if not self.stage.is_last else out.float()
        nbytes = sum(kept.values()) + (0 if self.stage.is_first else x.numel() * x.element_size())
        self._saved[i] = {"x": x, "out": out, "grad": None, "bytes": nbytes}
        self._record("F", i, began)
        if self.stage.is_last:
            loss = out.detach()
            self._result.loss = loss if self._result.loss is None else self._result.loss + loss
        else:
            self._send(out.detach(), self.next_rank, i)
        return nbytes

    def _backward(self, i: int, split: bool) -> int:
        """B: input gradient sent upstream; with `split` the weights wait for W."""
        saved = self._saved[i]
        x, out = saved["x"], saved["out"]
        grad = None
        if not self.stage.is_last:
            grad = torch.empty_like(out)
            self._recv(grad, self.next_rank, i)
        began = self._now()
        if split:
            saved["grad"] = grad
            grad_x = None
            if not self.stage.is_first:  # only the input's gradient: weight products skipped
                (grad_x,) = torch.autograd.grad(out, x, grad, retain_graph=True)
            self._record("B", i, began)
            if grad_x is not None:
                self._send(grad_x, self.prev_rank, i)
            return 0
        torch.autograd.backward(out, grad)
        self._record("B", i, began)
        if not self.stage.is_first:
            self._send(x.grad, self.prev_rank, i)
        return self._saved.pop(i)["bytes"]

    def _weights_backward(self, i: int) -> int:
        """W: the weight gradients of micro-batch i, then its activations are freed."""
        began = self._now()
        saved = self._saved.pop(i)
        torch.autograd.backward(saved["out"], saved["grad"], inputs=self.params)
        self._record("W", i, began)
        return saved["bytes"]

    # -- communication and clock -----------------------------------------------------------

    def _now(self) -> float:
        return time.perf_counter() - self._start

    def _record(self, op: str, i: int, began: float) -> None:
        self._result.events.append(Event(self.stage.stage, op, i, began, self._now()))

    def _send(self, tensor: Tensor, dst: int, i: int) -> None:
        began = self._now()
        tensor = tensor.contiguous()
        self._sends.append((dist.isend(tensor, dst), tensor))  # keep it alive until sent
        self._result.events.append(Event(self.stage.stage, "send", i, began, self._now()))

    def _recv(self, tensor: Tensor, src: int, i: int) -> None:
        began = self._now()
        dist.recv(tensor, src)
        self._result.events.append(Event(self.stage.stage, "recv", i, began, self._now()))
