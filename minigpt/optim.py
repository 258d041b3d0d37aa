"""The optimizer and its schedule: AdamW with decay on matrices only, warm-up then cosine.

Weight decay shrinks weights toward zero; it regularises the >=2-D weight matrices (and the
tied embedding) but would only fight LayerNorm gains and biases, so 1-D parameters get none.
Adam's moment estimates are noise for the first steps, so the learning rate climbs linearly
for `warmup_steps`, then follows half a cosine down to `min_lr` (lr/10 by default, as
Chinchilla did) at the end of the budget. Lesson 07 plots the schedule's effect on the loss.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    device: torch.device | None = None,
) -> torch.optim.AdamW:
    """AdamW with weight decay on >=2-D parameters (matrices, embeddings) only."""
    params = [p for p in model.parameters() if p.requires_grad]  # shared (tied) weights once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = True if device is not None and device.type == "cuda" else None  # one kernel per step
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


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
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if progress is None:
        progress = (step - warmup_steps) / max(1, (max_steps or step + 1) - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
