"""Pipeline parallel training: S stages of one model, times D data-parallel replicas (lesson 13).

`PipelineParallel(model, n_stages, n_microbatches, schedule)` turns the process group into a
grid of world_size = S x D ranks: consecutive ranks form one pipeline (rank = replica x S +
stage), and the ranks holding the same stage in different pipelines form that stage's
data-parallel group. One training step (`forward_backward`, then the optimizer):

1. every pipeline runs the schedule (schedules.py) on its replica's rows of the batch, cut
   into M micro-batches (executor.py); gradients accumulate over the micro-batches;
2. after the last micro-batch, each stage's gradients are averaged over its data-parallel
   group (one all-reduce of one flat buffer: the communication of data parallelism happens
   once per step, not once per micro-batch);
3. the tied embedding / head gradient is summed between the first and the last stage of each
   pipeline, so both copies get the whole gradient and take the same step;
4. clipping uses the norm of the whole model (each stage's squared norm, summed over the
   stages, the tied matrix counted once), then every rank steps its stage's parameters.

Every rank builds the whole `DecoderLM` (same seed) but trains only its stage's parameters:
AdamW skips parameters without a gradient, and `PipelineOptimizer` gathers the stages'
optimizer states into one state dict for a checkpoint. This keeps evaluation, sampling and
checkpoints the single-process code: before any of them (`gather_weights`, run lazily by the
first forward after a training step) each stage's owner broadcasts its parameters, so every
rank holds the current full weights. The cost, said plainly: every rank stores the whole model
(a real pipeline would build only its stage), each evaluation or checkpoint moves the whole
model once, and every rank evaluates the whole model (S times the compute of evaluating
through the pipe). The training steps themselves are a true pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from minigpt.models import DecoderLM
from minigpt.parallel.executor import PipelineExecutor, StepResult
from minigpt.parallel.launch import require_group
from minigpt.parallel.schedules import check_schedule, make_schedule
from minigpt.parallel.stages import PipelineStage
from minigpt.training.optim import GatheredStateOptimizer


class PipelineParallel:
    """This rank's stage, executor and process groups; see the module docstring."""

    def __init__(
        self,
        model: DecoderLM,
        n_stages: int,
        n_microbatches: int,
        schedule: str = "1f1b",
        *,
        counts: Sequence[int] | None = None,
        precision: str = "fp32",
    ) -> None:
        self.rank, self.world_size = require_group("PipelineParallel")
        if not isinstance(n_stages, int) or n_stages < 1 or self.world_size % n_stages:
            raise ValueError(f"{self.world_size} processes cannot form pipelines of "
                             f"{n_stages} stages; start stages x replicas processes")  # fmt: skip
        self.model, self.n_stages, self.n_microbatches = model, n_stages, n_microbatches
        self.n_replicas = self.world_size // n_stages
        self.replica, stage = divmod(self.rank, n_stages)
        self.stages = [PipelineStage(model, s, n_stages, counts) for s in range(n_stages)]
        self.stage = self.stages[stage]
        self.schedule_name = schedule
        self.schedule = make_schedule(schedule, n_stages, n_microbatches)
        check_schedule(self.schedule, n_microbatches)
        first = self.replica * n_stages  # global rank of this pipeline's stage 0
        self.executor = PipelineExecutor(
            self.stage,
            prev_rank=None if self.stage.is_first else self.rank - 1,
            next_rank=None if self.stage.is_last else self.rank + 1,
            precision=precision,
        )
        # Every rank creates every group, in the same order (new_group is collective).
        self.data_group = self.tie_group = None
        if self.n_replicas > 1:
            for s in range(n_stages):
                group = dist.new_group([d * n_stages + s for d in range(self.n_replicas)])
                if s == stage:
                    self.data_group = group
        if n_stages > 1:
            for d in range(self.n_replicas):
                group = dist.new_group([d * n_stages, d * n_stages + n_stages - 1])
                if d == self.replica:
                    self.tie_group = group
        self._first_rank = first
        self.stale = False
        self.last: StepResult | None = None
        self.gather_weights()  # every rank starts from replica 0's weights

    # -- one step ----------------------------------------------------------------------------

    def forward_backward(self, inputs: Tensor, targets: Tensor) -> StepResult:
        """Run this rank's schedule on (inputs, targets) (its replica's rows, (B, T) each),
        then make the gradients the whole global batch's (steps 2 and 3 above)."""
        result = self.executor.run(self.schedule[self.stage.stage], inputs, targets,
                                   self.n_microbatches)  # fmt: skip
        self.sync_gradients()
        self.stale, self.last = True, result
        return result

    def sync_gradients(self) -> None:
        """Average over the stage's replicas, then sum the tied matrix across its two stages."""
        params = self.stage.trainable()
        for p in params:
            if p.grad is None:  # every replica must reduce the same buffer: zeros for unused
                p.grad = torch.zeros_like(p)
        if self.data_group is not None and params:
            flat = torch.cat([p.grad.flatten() for p in params]).div_(self.n_replicas)
            dist.all_reduce(flat, group=self.data_group)
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        for p in self.stage.tied_parameters():
            dist.all_reduce(p.grad, group=self.tie_group)

    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        """Scale the gradients so the whole model's gradient norm is at most `max_norm`
        (what `nn.utils.clip_grad_norm_` does on one process); returns the norm before."""
        tied = {id(p) for p in self.stage.tied_parameters()} if self.stage.is_last else set()
        params = [p for p in self.stage.trainable() if p.grad is not None and id(p) not in tied]
        device = self.executor.device
        square = torch.zeros((), device=device, dtype=torch.float32)
        for p in params:
            square += p.grad.detach().float().pow(2).sum()
        dist.all_reduce(square)  # every replica adds the same (averaged) stages: divide by D
        norm = (square / self.n_replicas).sqrt()
        scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)  # clip_grad_norm_'s formula
        for p in self.stage.trainable():
            if p.grad is not None:
                p.grad.mul_(scale.to(p.grad.dtype))
        return norm

    def train_step(
        self,
        model: nn.Module,
        micro_batches: Sequence[tuple[Tensor, Tensor]],
        optimizer: Any,
        *,
        precision: str = "fp32",
        device: torch.device | None = None,
        scaler: torch.amp.GradScaler | None = None,
        grad_clip: float = 0.0,
        grad_sync: Any = None,
    ) -> Tensor:
        """`training.step.train_step`'s contract for the Trainer's `step_fn`: one optimizer
        step; the trainer's accumulated micro-batches are one batch to the pipeline (same
        rows, same mean). Returns the mean loss on the last stage, 0 elsewhere (see
        `mean_loss`)."""
        if scaler is not None and scaler.is_enabled():
            raise ValueError("--parallel pipeline does not support fp16 (its loss scaler would "
                             "span the stages); use --precision bf16 or fp32")  # fmt: skip
        self.executor.precision = precision
        inputs = torch.cat([x for x, _ in micro_batches])
        targets = torch.cat([y for _, y in micro_batches])
        result = self.forward_backward(inputs, targets)
        if grad_clip > 0:
            self.clip_grad_norm_(grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if result.loss is None:
            return torch.zeros((), device=self.executor.device)
        return result.loss

    def mean_loss(self, value: Tensor) -> Tensor:
        """The global batch's loss from `train_step`'s values: only last stages hold one."""
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.n_replicas

    # -- whole-model views (evaluation, sampling, checkpoints) ---------------------------------

    @torch.no_grad()
    def gather_weights(self) -> None:
        """Give every rank the current full weights: stage s's owner in pipeline 0 (global
        rank s) broadcasts its parameters as one flat buffer. A collective on every rank."""
        for s, stage in enumerate(self.stages):
            params = list(stage.parameters())
            if not params:
                continue
            flat = torch.cat([p.detach().flatten() for p in params])
            dist.broadcast(flat, src=s)
            offset = 0
            for p in params:
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        self.stale = False

    def refresh(self, *_: Any) -> None:
        """Gather the weights if a training step changed them since the last gather (a
        forward pre-hook: every rank evaluates and samples at the same moments)."""
        if self.stale:
            self.gather_weights()

    def model_state(self) -> dict[str, Tensor]:
        """The full model's state dict in `DecoderLM`'s layout (for checkpoints)."""
        self.refresh()
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_model_state(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)
        self.stale = False


class PipelineOptimizer(GatheredStateOptimizer):
    """An optimizer over the whole model of which each rank steps only its stage (AdamW skips
    parameters without gradients). `state_dict` gathers every stage's state, so a checkpoint
    holds the state one process would have; `load_state_dict` keeps this stage's part."""

    def __init__(self, optimizer: torch.optim.Optimizer, pipeline: PipelineParallel) -> None:
        super().__init__(optimizer)
        mine = {id(p) for p in pipeline.stage.parameters()}
        flat = [p for group in optimizer.param_groups for p in group["params"]]
        self.owned = {i for i, p in enumerate(flat) if id(p) in mine}

    def state_dict(self) -> dict[str, Any]:
        """The whole model's optimizer state (a collective on every rank)."""
        local = self.optimizer.state_dict()
        mine = {
            k: {n: v.cpu() if torch.is_tensor(v) else v for n, v in s.items()}
            for k, s in local["state"].items()
            if k in self.owned
        }
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, mine)
        state: dict[int, Any] = {}
        for part in parts:
            state.update(part)  # replicas and the tied copies hold equal states
        return {"state": dict(sorted(state.items())), "param_groups": local["param_groups"]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = {k: v for k, v in state["state"].items() if int(k) in self.owned}
        self.optimizer.load_state_dict({"state": mine, "param_groups": state["param_groups"]})
