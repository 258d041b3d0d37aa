"""The optimizer, its schedule and weight averaging: AdamW (decay on matrices only), warm-up then
cosine, and an exponential moving average of the weights.

Weight decay shrinks weights toward zero; it regularises the >=2-D weight matrices (and the
tied embedding) but would only fight LayerNorm gains and biases, so 1-D parameters get none.
Adam's moment estimates are noise for the first steps, so the learning rate climbs linearly
for `warmup_steps`, then follows half a cosine down to `min_lr` (lr/10 by default, as
Chinchilla did) at the end of the budget. Lesson 07 trains with them; lesson 08 fine-tunes with
the same groups and schedule in a plain loop.
`WeightAverage` keeps a running average of the weights, which is usually a little better on
held-out text than the last noisy iterate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    device: torch.device | None = None,
) -> torch.optim.AdamW:
    """AdamW with weight decay on >=2-D parameters (matrices, embeddings) only."""
    return torch.optim.AdamW(decay_groups(model, weight_decay), lr=lr, betas=betas,
                             fused=fused_adamw(device))  # fmt: skip


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The trainable parameters as two optimizer groups: matrices decayed, the rest not.

    Weight decay regularises weight matrices and embeddings; on LayerNorm gains and biases it
    would only pull them toward zero, so 1-D parameters get none. A tied weight appears once.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def fused_adamw(device: torch.device | None) -> bool | None:
    """Whether to ask for PyTorch's fused AdamW kernel (a speed switch, see minigpt/speedups.py).

    The fused kernel updates every parameter in one pass instead of ~10 small ops per tensor:
    on a CUDA GPU that is fewer launches, on a CPU fewer passes over memory (a `tiny` bf16
    step on 2 cores: 70 -> 64 ms, torch 2.13). MPS keeps the default implementation (None).
    """
    return True if device is None or device.type in ("cuda", "cpu") else None


class GatheredStateOptimizer:
    """An optimizer of one process in a group, whose checkpoint state is the whole group's.

    Training only needs `param_groups` (the schedule sets `lr` there), `step` and `zero_grad`,
    which go straight to the wrapped optimizer; a subclass says how `state_dict` gathers every
    process's part into what one process would hold (a collective: every rank calls it) and
    how `load_state_dict` keeps this process's part (FSDP in parallel/run.py, the pipeline in
    parallel/pipeline.py).
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def step(self) -> None:
        self.optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


def lr_at(
    step: int,
    *,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    max_steps: int | None = None,
    progress: float | None = None,
) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then cosine decay.

    The decay's position is `progress` in [0, 1] when given (e.g. the fraction of a time
    budget used), else the fraction of the steps after warm-up that are done.
    """
    ### BEGIN SOLUTION lr_schedule
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if progress is None:
        progress = (step - warmup_steps) / max(1, (max_steps or step + 1) - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    ### END SOLUTION


class WeightAverage:
    """An exponential moving average (EMA) of a model's parameters, for evaluation and inference.

    Each optimizer step moves the weights a noisy step along the gradient; averaging the recent
    iterates (Polyak & Juditsky 1992) cancels much of that noise and lands nearer the middle of
    the valley, which generalises a little better. After update t the average is
    avg <- decay_t * avg + (1 - decay_t) * weights, with decay_t = min(decay, (1 + t) / (10 + t)):
    the warm-up (the rule of TensorFlow's ExponentialMovingAverage) keeps the first averages from
    remembering the random initialisation. Training always continues from the raw weights; the
    average is only *applied* while evaluating or saving the weights meant for inference.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay {decay} must be in (0, 1), e.g. 0.99; 0 turns it off")
        self.decay = decay
        named = list(model.named_parameters())  # a tied weight appears once
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.averaged = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average (call after each optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.averaged, self.params, strict=True):
            avg.lerp_(p.detach(), 1.0 - decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; afterwards its own again."""
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, avg in zip(self.params, self.averaged, strict=True):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, own in zip(self.params, saved, strict=True):
                    p.copy_(own)

    def load_averaged(self, state: Mapping[str, torch.Tensor], updates: int) -> None:
        """Restore the average from a model state dict holding averaged weights (a checkpoint)."""
        missing = [name for name in self.names if name not in state]
        if missing:
            raise ValueError(f"averaged weights lack {missing[:3]}; the checkpoint does not fit")
        with torch.no_grad():
            for name, avg in zip(self.names, self.averaged, strict=True):
                avg.copy_(state[name])
        self.updates = int(updates)
