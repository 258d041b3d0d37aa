"""Which samples each rank trains on: disjoint shares of one shuffled order, new every epoch.

Data parallelism only equals large-batch training if the ranks see *different* samples: two
ranks on the same batch just compute the same gradient twice. `ShardedSampler` draws one
random permutation of the dataset's indices per epoch — from `seed + epoch`, so every rank
draws the same permutation without any communication — and gives rank r the positions
r, r + N, r + 2N, ... of it. The shares are disjoint, together they cover the dataset, and
calling `set_epoch(e)` before each epoch reshuffles (forgetting it repeats the first epoch's
order forever, a classic silent bug).

The shares must be equally long, or one rank would run an extra step and wait forever in an
all-reduce the others never join. With `drop_last=False` (the default) the permutation is
padded by repeating its first indices, so every sample is seen at least once per epoch and a
few (fewer than N) twice; with `drop_last=True` the tail is dropped, so none is seen twice and
up to N - 1 are skipped that epoch (a different few each epoch). PyTorch's
`DistributedSampler` makes the same choice; this one is ours. Lesson 12 uses it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ShardedSampler(Sampler[int]):
    """Indices 0..`length`-1 for one rank: its strided share of a per-epoch permutation."""

    def __init__(
        self,
        length: int,
        rank: int,
        world_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if length < 1:
            raise ValueError(f"length={length} must be >= 1 (the number of samples)")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        if drop_last and length < world_size:
            raise ValueError(
                f"drop_last with {length} samples and {world_size} ranks leaves nothing; "
                "use drop_last=False"
            )
        self.length, self.rank, self.world_size = length, rank, world_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation to use; call it before every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Samples per rank: the same on every rank."""
        if self.drop_last:
            return self.length // self.world_size
        return -(-self.length // self.world_size)  # ceil division

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        total = len(self) * self.world_size
        while len(order) < total:  # pad: repeat from the start (fewer than world_size extra)
            order += order[: total - len(order)]
        order = order[:total]  # drop_last: cut the tail
        return iter(order[self.rank :: self.world_size])
