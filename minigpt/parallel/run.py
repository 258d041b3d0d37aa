"""Training on several processes: what `torchrun ... -m minigpt train --parallel MODE` runs.

Every process (rank) runs this same function. It joins the process group torchrun describes,
lets rank 0 prepare the data while the others wait, builds the same model everywhere (same
seed), wraps it as the mode says, and hands it to the one `Trainer` with its rank: every rank
draws the same global batch and trains on its own rows, only rank 0 writes files or prints.

The modes (`minigpt.training.settings.PARALLEL_MODES`):

- `ddp`: our `DataParallel` (parallel/ddp.py) with `--ddp-strategy naive | bucketed | overlap`;
- `zero1`: the same, plus our `ShardedOptimizer` (parallel/zero.py): each rank keeps Adam's
  state for its shard of the parameters only;
- `torch-ddp`: PyTorch's `DistributedDataParallel`, for real scale;
- `fsdp`: PyTorch's FSDP (`fully_shard`, one unit per transformer layer): parameters,
  gradients and optimizer state sharded (ZeRO-3), for models that do not fit one device.
- `pipeline`: our pipeline parallelism (parallel/pipeline.py, lesson 13): `--stages S` cut
  the GPT's blocks, `--schedule gpipe | 1f1b | zb` orders `--microbatches M` per step; with
  S x D processes, D data-parallel replicas of the pipeline.

A checkpoint is written by rank 0 alone, after every rank has joined whatever gathering the
mode needs (ZeRO's optimizer shards, FSDP's parameter shards), so any run resumes exactly with
`--resume`. The learning rate is not scaled with the number of ranks: the global batch grows
(batch_size x grad_accum x ranks windows per step, reported at the start) and the schedule is
the one you set. Lesson 12 teaches the mechanisms this file plugs together.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from minigpt.device import resolve_device
from minigpt.layers import DecoderLayer, EncoderLayer
from minigpt.parallel.ddp import DataParallel
from minigpt.parallel.launch import init_distributed, shutdown
from minigpt.parallel.zero import ShardedOptimizer
from minigpt.training.loop import Trainer
from minigpt.training.optim import (
    GatheredStateOptimizer,
    build_optimizer,
    decay_groups,
    fused_adamw,
)
from minigpt.training.precision import resolve_precision
from minigpt.training.run import build_run_model, load_resume_checkpoint, prepare_data
from minigpt.training.settings import PARALLEL_MODES, TrainConfig


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The average of `value` over all ranks (gloo has no AVG: sum, then divide)."""
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


class TorchDDPSync:
    """PyTorch's DDP seen through `GradientSync`: it averages during backward by itself, so
    `sync_gradients` has nothing left to do; `no_sync` is its own."""

    def __init__(self, ddp: nn.parallel.DistributedDataParallel) -> None:
        self.ddp = ddp

    def no_sync(self) -> Any:
        return self.ddp.no_sync()

    def sync_gradients(self) -> None:
        pass


class FullStateOptimizer(GatheredStateOptimizer):
    """An optimizer over FSDP-sharded parameters whose `state_dict` is the full, gathered one
    (PyTorch's distributed-checkpoint helpers), so rank 0 can save it in one file."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        super().__init__(optimizer)
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.model, self.optimizer, options=_FULL_STATE())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self.model, self.optimizer, state, options=_FULL_STATE(False))


def _FULL_STATE(offload: bool = True) -> Any:  # noqa: N802 (reads like the options it builds)
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=offload)


def _fsdp_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict, gathered on rank 0; a collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_FULL_STATE())


def _fsdp_load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, state, options=_FULL_STATE(False))


def wrap_for(mode: str, model: nn.Module, cfg: TrainConfig) -> dict[str, Any]:
    """The Trainer arguments that make `model` train under `mode` (see the module docstring)."""
    device = next(model.parameters()).device
    if mode in ("ddp", "zero1"):
        dp = DataParallel(model, strategy=cfg.ddp_strategy, bucket_size_mb=cfg.bucket_size_mb)
        plan: dict[str, Any] = {"forward_model": dp, "grad_sync": dp}
        if mode == "zero1":
            plan["optimizer"] = ShardedOptimizer(
                decay_groups(model, cfg.weight_decay), torch.optim.AdamW, lr=cfg.lr,
                betas=cfg.betas, fused=fused_adamw(device),
            )  # fmt: skip
        return plan
    if mode == "torch-ddp":
        ids = [device.index] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return {"forward_model": ddp, "grad_sync": TorchDDPSync(ddp)}
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        if cfg.ema_decay > 0:
            raise ValueError("--ema-decay is not supported with --parallel fsdp (the average "
                             "would be sharded too); drop it or use ddp / zero1")  # fmt: skip
        for module in list(model.modules()):
            if isinstance(module, EncoderLayer | DecoderLayer):  # GPTBlock is an EncoderLayer
                fully_shard(module)  # one unit per layer: gathered just before it runs
        # the rest: embeddings, final norm, head (a tied weight once); resharded after every
        # forward, also the evaluation's, so the parameters are the optimizer's shards again
        fully_shard(model, reshard_after_forward=True)
        optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, device=None)
        return {
            "optimizer": FullStateOptimizer(model, optimizer),
            "model_state": lambda: _fsdp_model_state(model),
            "load_model_state": lambda state: _fsdp_load_model_state(model, state),
        }
    if mode == "pipeline":
        return _pipeline_plan(model, cfg, device)
    raise ValueError(f"parallel={mode!r} is unknown; use one of {', '.join(PARALLEL_MODES[1:])}")


def _pipeline_plan(model: nn.Module, cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Trainer arguments for `pipeline`: the pipeline's own step, an optimizer whose state
    dict gathers every stage, full weights gathered before evaluation and checkpoints (a
    forward pre-hook), the loss from the last stages, the data sharded by replica."""
    from minigpt.parallel.executor import split_sizes
    from minigpt.parallel.pipeline import PipelineOptimizer, PipelineParallel

    split_sizes(cfg.batch_size * cfg.grad_accum, cfg.microbatches)  # fail before training
    pp = PipelineParallel(model, cfg.stages, cfg.microbatches, cfg.schedule)
    if cfg.progress and dist.get_rank() == 0:
        print(f"pipeline: {pp.n_stages} stages x {pp.n_replicas} replicas, blocks per stage "
              f"{pp.stage.counts}, schedule {cfg.schedule}, {cfg.microbatches} micro-batches "
              "per replica and step")  # fmt: skip
    model.register_forward_pre_hook(pp.refresh)  # evaluation and sampling see every stage
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, device)
    return {"step_fn": pp.train_step, "optimizer": PipelineOptimizer(optimizer, pp),
            "model_state": pp.model_state, "load_model_state": pp.load_model_state,
            "mean_across": pp.mean_loss, "shard": (pp.replica, pp.n_replicas)}  # fmt: skip


def run_parallel_training(cfg: TrainConfig, timeout_s: float = 300.0) -> dict[str, Any]:
    """Train with cfg.parallel on the process group torchrun started; every rank returns the
    result (rank 0's files are the run's). `timeout_s` bounds every collective, so a dead rank
    ends the others with an error instead of a hang."""
    if cfg.parallel == "none":
        raise ValueError("run_parallel_training needs cfg.parallel set; use run_training")
    if "RANK" not in os.environ:
        raise RuntimeError(
            f"--parallel {cfg.parallel} runs one process per device: start it with "
            f"`torchrun --nproc_per_node N -m minigpt train --parallel {cfg.parallel} ...`"
        )
    info = init_distributed(timeout=timeout_s)
    try:
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", info.local_rank)
        else:
            device = resolve_device("cpu" if cfg.device == "auto" else cfg.device)
        # "auto" precision without the timing probe: every rank must choose the same, and a
        # probe's backward would run the data-parallel hooks (on a CPU this means fp32).
        precision = resolve_precision(cfg.precision, device)
        cfg = replace(cfg, device=str(device), precision=precision,
                      progress=cfg.progress and info.is_main)  # fmt: skip
        ckpt = load_resume_checkpoint(cfg)
        if info.is_main:
            prepare_data(cfg)  # writes the token files once
        dist.barrier()
        data = prepare_data(cfg)  # now only loads them
        model = build_run_model(cfg, data, ckpt).to(device)
        plan = {"shard": (info.rank, info.world_size), "mean_across": mean_across_ranks,
                **wrap_for(cfg.parallel, model, cfg)}  # a pipeline shards by replica instead
        trainer = Trainer(model, cfg, data, data.tokenizer, is_main_process=info.is_main,
                          **plan)  # fmt: skip
        if ckpt is not None:
            trainer.load_state(ckpt)
        if info.is_main and cfg.progress:
            print(f"{cfg.parallel} on {info.world_size} processes ({dist.get_backend()}): "
                  f"global batch {trainer.global_batch} windows = {cfg.batch_size} x "
                  f"{cfg.grad_accum} accumulated x {info.world_size} ranks, "
                  f"{trainer.tokens_per_step:,} tokens per step, lr {cfg.lr:g}")  # fmt: skip
        result = trainer.train()
        dist.barrier()  # nobody leaves the group while rank 0 may still gather or write
        return result
    finally:
        shutdown()
