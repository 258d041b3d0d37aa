"""ShardedOptimizer (ZeRO stage 1): trains exactly like plain AdamW, keeps only ~1/N of the
optimizer state per rank, checkpoints to a plain optimizer's layout and resumes bit-exactly;
and the paper's memory arithmetic.

One spawn of two gloo ranks does the multi-process part (start-up costs seconds).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist

from minigpt.config import ModelConfig
from minigpt.models import DecoderLM
from minigpt.parallel.ddp import DataParallel
from minigpt.parallel.launch import spawn
from minigpt.parallel.zero import ShardedOptimizer, partition_by_numel

WORLD, STEPS, RESUME_AT, PER_RANK, T = 2, 10, 4, 2, 16
CONFIG = ModelConfig(vocab_size=64, max_len=T, d_model=32, n_heads=4, n_layers=3, d_ff=64)
ADAMW = dict(lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)


def make_model(seed: int) -> DecoderLM:
    torch.manual_seed(seed)
    return DecoderLM(CONFIG)


def param_groups(model) -> list[dict]:
    """Weight decay on matrices only, as the trainer does: two groups, two hyperparameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def lr_at(step: int) -> float:
    return ADAMW["lr"] * (0.5 + 0.5 * math.cos(math.pi * step / STEPS))  # a cosine schedule


def batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    tokens = torch.randint(0, CONFIG.vocab_size, (WORLD * PER_RANK, T + 1), generator=g)
    mine = tokens[rank * PER_RANK : (rank + 1) * PER_RANK]
    return mine[:, :-1], mine[:, 1:]


def train(dp: DataParallel, opt, steps: range, rank: int) -> None:
    for step in steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)  # the schedule reaches the shards through param_groups
        opt.zero_grad(set_to_none=True)
        dp(*batch(step, rank))[1].backward()
        dp.sync_gradients()
        opt.step()


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if torch.is_tensor(t)
    )


def _ranks_main(rank: int, checkpoint: str) -> dict:
    out: dict = {}
    # Plain AdamW on every rank (the reference) and ZeRO-1, on replicas fed the same data.
    plain_dp = DataParallel(make_model(0), strategy="bucketed")
    plain = torch.optim.AdamW(param_groups(plain_dp.module), **ADAMW)
    zero_dp = DataParallel(make_model(0), strategy="bucketed")
    zero = ShardedOptimizer(param_groups(zero_dp.module), torch.optim.AdamW, **ADAMW)
    train(plain_dp, plain, range(RESUME_AT), rank)
    train(zero_dp, zero, range(RESUME_AT), rank)
    full = zero.state_dict()  # a collective; the full state on rank 0 only
    if rank == 0:
        torch.save({"model": zero_dp.module.state_dict(), "optimizer": full}, checkpoint)
        torch.save(plain.state_dict(), checkpoint + ".plain")
    out["state_dict_is_none"] = full is None
    train(plain_dp, plain, range(RESUME_AT, STEPS), rank)
    train(zero_dp, zero, range(RESUME_AT, STEPS), rank)
    out["plain"] = {n: p.detach().clone() for n, p in plain_dp.module.named_parameters()}
    out["zero"] = {n: p.detach().clone() for n, p in zero_dp.module.named_parameters()}
    out["zero_state_bytes"], out["plain_state_bytes"] = zero.state_bytes(), state_bytes(plain)
    out["local_numel"] = sum(p.numel() for g in zero.param_groups for p in g["params"])
    # Resume: a fresh model and optimizer, loaded from the rank-0 checkpoint, continue.
    dist.barrier()  # the file is written
    saved = torch.load(checkpoint, weights_only=True)
    model = make_model(seed=123)  # different weights: the checkpoint must overwrite them
    model.load_state_dict(saved["model"])
    resumed_dp = DataParallel(model, strategy="bucketed")
    resumed = ShardedOptimizer(param_groups(model), torch.optim.AdamW, **ADAMW)
    resumed.load_state_dict(saved["optimizer"])
    train(resumed_dp, resumed, range(RESUME_AT, STEPS), rank)
    out["resumed"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    checkpoint = str(tmp_path_factory.mktemp("zero") / "ckpt.pt")
    results = spawn(_ranks_main, WORLD, args=(checkpoint,), timeout=120)
    results[0]["checkpoint"] = checkpoint
    return results


@pytest.mark.slow
def test_zero1_trains_exactly_like_plain_adamw(ranks):
    for rank in range(WORLD):
        for name, value in ranks[rank]["zero"].items():
            # The same elementwise AdamW update on the same averaged gradient: bit-equal.
            assert torch.equal(value, ranks[rank]["plain"][name]), f"rank {rank}: {name}"
            assert torch.equal(value, ranks[0]["zero"][name])  # replicas stay identical


@pytest.mark.slow
def test_each_rank_keeps_about_one_nth_of_the_optimizer_state(ranks):
    plain = ranks[0]["plain_state_bytes"]
    shares = [r["zero_state_bytes"] / plain for r in ranks]
    assert sum(r["zero_state_bytes"] for r in ranks) == plain  # nothing lost, nothing doubled
    # Whole tensors are dealt out, so a share is 1/N up to the largest tensor's fraction.
    numels = [p.numel() for p in make_model(0).parameters()]
    slack = max(numels) / sum(numels)
    assert all(abs(share - 1 / WORLD) <= slack for share in shares), shares
    assert sum(r["local_numel"] for r in ranks) == sum(numels)


@pytest.mark.slow
def test_state_dict_has_a_plain_optimizers_layout_and_resumes_exactly(ranks):
    assert ranks[0]["state_dict_is_none"] is False and ranks[1]["state_dict_is_none"] is True
    saved = torch.load(ranks[0]["checkpoint"], weights_only=True)["optimizer"]
    plain = torch.load(ranks[0]["checkpoint"] + ".plain", weights_only=True)
    assert saved["param_groups"] == plain["param_groups"]
    assert saved["state"].keys() == plain["state"].keys()
    for index, state in plain["state"].items():
        for key, value in state.items():
            assert torch.equal(saved["state"][index][key], value), (index, key)
    for rank in range(WORLD):
        for name, value in ranks[rank]["resumed"].items():
            assert torch.equal(value, ranks[rank]["zero"][name]), f"rank {rank}: {name}"


def test_partition_is_balanced_and_deterministic():
    assert partition_by_numel([10, 1, 1, 8], 2) == [0, 1, 1, 1]  # 10 vs 1 + 1 + 8
    owners = partition_by_numel(list(range(1, 101)), 4)
    loads = [sum(n for n, o in zip(range(1, 101), owners, strict=True) if o == r) for r in range(4)]
    assert max(loads) - min(loads) <= 100
    assert partition_by_numel([5], 3) == [0]


def test_needs_a_process_group():
    with pytest.raises(RuntimeError, match="ShardedOptimizer needs an initialised process group"):
        ShardedOptimizer(make_model(0).parameters(), torch.optim.AdamW)
