"""ZeRO stage 1 by hand: each rank keeps the optimizer state of only its share of the parameters.

Plain data parallelism replicates everything on every rank: parameters, gradients, and the
optimizer's state, which for Adam is the biggest part (two moments per parameter, plus an fp32
master copy in mixed precision: 12 of the 16 bytes per parameter). Yet after the gradients
are averaged every rank computes the *same* update for every parameter — N times the same
work and N copies of the same state. ZeRO (Rajbhandari et al. 2020, "ZeRO: Memory
Optimizations Toward Training Trillion Parameter Models") removes the redundancy in stages:

* stage 1 (P_os): partition the optimizer state; each rank updates only its parameters, then
  the updated parameters are sent to everyone;
* stage 2 (P_os+g): also keep only the averaged gradients of one's own parameters;
* stage 3 (P_os+g+p): also the parameters themselves, gathered layer by layer when needed.

`ShardedOptimizer` is stage 1. The parameters are dealt out *whole* (not cut into flat
slices): the largest first, each to the rank holding the fewest elements so far, which
balances well once a model has many tensors and keeps each shard an ordinary list of
parameters that any `torch.optim` optimizer accepts. Each rank builds the inner optimizer
over its own shard only, so Adam's moments exist for 1/N of the model per rank. `step()` steps
that shard, then each rank broadcasts its freshly updated parameters (one flat message per
rank) so every replica is equal again. The gradients must already be averaged (use it with
`DataParallel`); a real stage 1 would need only a reduce-scatter of them, a saving we skip.

The paper's memory arithmetic (its Figure 1) is `minigpt.memory.zero_bytes_per_device`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from minigpt.parallel.launch import require_group


def partition_by_numel(numels: Sequence[int], world_size: int) -> list[int]:
    """Owner rank of each tensor: largest first, each to the least-loaded rank (ties: lowest).

    The same on every rank (no randomness, no communication), within one tensor of balanced.
    """
    ### BEGIN SOLUTION zero1
    owners = [0] * len(numels)
    loads = [0] * world_size
    for i in sorted(range(len(numels)), key=lambda i: (-numels[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        owners[i] = rank
        loads[rank] += numels[i]
    return owners
    ### END SOLUTION


class ShardedOptimizer:
    """`optimizer_cls` over this rank's shard of `params`; `step()` re-syncs all parameters.

    `params` is what a torch optimizer accepts: parameters or param-group dicts. `param_groups`
    are the inner optimizer's (same groups and hyperparameters on every rank, local parameters
    only), so a schedule can set `group["lr"]` as usual. Gradient clipping works unchanged
    (every rank holds all averaged gradients); fp16's GradScaler does not, since it would
    check only the local shard for infs and the ranks could disagree on skipping a step.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        optimizer_cls: type[torch.optim.Optimizer],
        **optimizer_kwargs: Any,
    ) -> None:
        self.rank, self.world_size = require_group("ShardedOptimizer")
        groups = list(params)
        if not groups:
            raise ValueError("ShardedOptimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        groups = [{**g, "params": list(g["params"])} for g in groups]
        self.params = [p for g in groups for p in g["params"]]  # global order: state_dict keys
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("a parameter appears twice in ShardedOptimizer's params")
        kinds = {(p.dtype, p.device) for p in self.params}
        if len(kinds) != 1:
            raise ValueError(f"ShardedOptimizer needs one dtype and device, got {sorted(kinds)}")
        self.owners = partition_by_numel([p.numel() for p in self.params], self.world_size)
        # Global indices per group, and this rank's (local) part of each.
        self._group_indices, start = [], 0
        for g in groups:
            self._group_indices.append(list(range(start, start + len(g["params"]))))
            start += len(g["params"])
        self._local = [i for idx in self._group_indices for i in idx if self._mine(i)]
        local_groups = [
            {**g, "params": [self.params[i] for i in idx if self._mine(i)]}
            for g, idx in zip(groups, self._group_indices, strict=True)
        ]
        self.optimizer = optimizer_cls(local_groups, **optimizer_kwargs)

    def _mine(self, index: int) -> bool:
        return self.owners[index] == self.rank

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The inner optimizer's groups (set `lr` here; every rank must set the same)."""
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of *all* parameters: backward fills all of them on every rank."""
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        """Update this rank's shard, then broadcast each shard from its owner to everyone."""
        self.optimizer.step()
        self._broadcast_shards()

    @torch.no_grad()
    def _broadcast_shards(self) -> None:
        ### BEGIN SOLUTION zero1
        first = self.params[0]
        for owner in range(self.world_size):
            shard = [p for i, p in enumerate(self.params) if self.owners[i] == owner]
            if not shard:
                continue
            if owner == self.rank:
                flat = torch.cat([p.reshape(-1) for p in shard])  # (shard numel,)
            else:
                numel = sum(p.numel() for p in shard)
                flat = torch.empty(numel, dtype=first.dtype, device=first.device)
            dist.broadcast(flat, src=owner)
            if owner != self.rank:
                offset = 0
                for p in shard:
                    p.copy_(flat[offset : offset + p.numel()].view_as(p))
                    offset += p.numel()
        ### END SOLUTION

    def state_bytes(self) -> int:
        """Bytes of optimizer state held by this rank (Adam: ~2 x 4 bytes per local element)."""
        return sum(
            t.numel() * t.element_size()
            for state in self.optimizer.state.values()
            for t in state.values()
            if torch.is_tensor(t)
        )

    def state_dict(self) -> dict[str, Any] | None:
        """The full, unsharded optimizer state, gathered to rank 0 (None on the other ranks).

        A collective: every rank must call it. The result has the layout of a plain
        `optimizer_cls(params).state_dict()` (parameters numbered in `params` order), so it can
        be loaded into a ShardedOptimizer over any number of ranks, or into a plain optimizer.
        """
        local = self.optimizer.state_dict()
        state = {self._local[i]: s for i, s in local["state"].items()}
        gathered: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(state, gathered, dst=0)
        if gathered is None:
            return None
        full: dict[int, Any] = {}
        for part in gathered:
            full.update(part)
        groups = [
            {**{k: v for k, v in g.items() if k != "params"}, "params": list(idx)}
            for g, idx in zip(local["param_groups"], self._group_indices, strict=True)
        ]
        return {"state": dict(sorted(full.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from `state_dict()`'s output; every rank passes the same full dict."""
        groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in groups]
        expected = [len(idx) for idx in self._group_indices]
        if sizes != expected:
            raise ValueError(
                f"state dict has param groups of sizes {sizes}, this optimizer {expected}; "
                "build the ShardedOptimizer over the same parameters as the saved one"
            )
        position = {g: i for i, g in enumerate(self._local)}  # global -> local index
        local_groups = []
        for g, idx in zip(groups, self._group_indices, strict=True):
            hyper = {k: v for k, v in g.items() if k != "params"}
            local_groups.append({**hyper, "params": [position[i] for i in idx if self._mine(i)]})
        state = {position[int(i)]: s for i, s in state_dict["state"].items() if int(i) in position}
        self.optimizer.load_state_dict({"state": state, "param_groups": local_groups})
