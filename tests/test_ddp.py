"""DataParallel: every strategy equals single-process training and PyTorch's DDP, and the
strategies really communicate differently (counted all-reduces, buckets, overlap, no_sync).

One spawn of two gloo ranks does all the multi-process work (start-up costs seconds); the
module-scoped fixture returns what each rank measured and the tests below assert on it.
The model is a tiny DecoderLM with a tied embedding / head and one frozen parameter.
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from minigpt.config import ModelConfig
from minigpt.models import DecoderLM
from minigpt.parallel.buckets import bucket_indices
from minigpt.parallel.ddp import DataParallel
from minigpt.parallel.launch import spawn
from minigpt.parallel.sampler import ShardedSampler

WORLD, STEPS, PER_RANK, T, LR = 2, 3, 4, 16, 1e-2
ACCUM, MICRO = 3, 2  # accumulation: 3 micro-batches of 2 per rank = 12 samples in all
CONFIG = ModelConfig(
    vocab_size=64, max_len=T, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, bias=False
)

EPS = torch.finfo(torch.float32).eps


def frozen_name(model: DecoderLM) -> str:
    """The parameter the tests freeze: the second 1-D one (a bias or norm in the first block)."""
    return [name for name, p in model.named_parameters() if p.dim() == 1][1]


def make_model(seed: int) -> DecoderLM:
    torch.manual_seed(seed)
    model = DecoderLM(CONFIG)
    model.get_parameter(frozen_name(model)).requires_grad_(False)
    return model


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, CONFIG.vocab_size, (n, T + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]  # (n, T) inputs, (n, T) next-token targets


def trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def bucket_caps() -> dict[int, float]:
    """Bucket sizes (MB) that make exactly 1, 2 and 3 buckets of the test model's gradients."""
    sizes = [p.numel() * 4 for p in reversed(trainable(make_model(0)))]
    prefix = sorted({sum(sizes[: i + 1]) for i in range(len(sizes))}, reverse=True)
    caps = {}
    for k in (1, 2, 3):
        cap = next(c for c in prefix if len(bucket_indices(sizes, c)) == k)
        caps[k] = cap / 2**20
    return caps


# (name, strategy, bucket_size_mb): every one must train exactly like the others.
def configurations() -> list[tuple[str, str, float]]:
    caps = bucket_caps()
    return [
        ("naive", "naive", 25.0),
        ("bucketed-1", "bucketed", caps[1]),
        ("bucketed-2", "bucketed", caps[2]),
        ("bucketed-3", "bucketed", caps[3]),
        ("overlap-3", "overlap", caps[3]),
    ]


def shard(x: torch.Tensor, rank: int) -> torch.Tensor:
    n = x.shape[0] // WORLD
    return x[rank * n : (rank + 1) * n]


def _ranks_main(rank: int, configs: list[tuple[str, str, float]]) -> dict:
    """Everything multi-process, on one rank; returns what the parent's tests check."""
    out: dict = {"train": {}, "grads": {}, "counts": {}, "before_sync": {}, "pending": {}}
    out["buckets"] = {}
    steps = [make_data(WORLD * PER_RANK, seed=100 + s) for s in range(STEPS)]
    # 1. Training with every strategy, from replicas that start different (seed = rank),
    # and 2. with PyTorch's DDP on the same data, the reference implementation.
    for name, strategy, mb in configs + [("torch-ddp", "", 0.0)]:
        if name == "torch-ddp":
            dp = DistributedDataParallel(make_model(seed=rank))  # syncs inside backward
        else:
            dp = DataParallel(make_model(seed=rank), strategy=strategy, bucket_size_mb=mb)
        opt = torch.optim.AdamW(trainable(dp), lr=LR)
        grads, counts, before, pending, buckets = [], [], [], [], []
        for x, y in steps:
            opt.zero_grad(set_to_none=True)
            _, loss = dp(shard(x, rank), shard(y, rank))
            loss.backward()
            if name != "torch-ddp":
                buckets.append(len(dp.buckets))
                before.append(sum(r.step == dp.stats["syncs"] for r in dp.comm_log))
                dp.sync_gradients()
                counts.append(len(dp.comm_log))
                pending.append([r.grads_pending for r in dp.comm_log])
            grads.append(
                {n: p.grad.clone() for n, p in dp.module.named_parameters() if p.grad is not None}
            )
            opt.step()
        out["train"][name] = {n: p.detach().clone() for n, p in dp.module.named_parameters()}
        out["grads"][name], out["counts"][name], out["before_sync"][name] = grads, counts, before
        out["pending"][name], out["buckets"][name] = pending, buckets
    # 3. Gradient accumulation over ACCUM micro-batches: "no_sync" wraps all but the last,
    # "no_sync_all" wraps all of them and syncs after the block, "sync_every" has no no_sync.
    x, y = make_data(WORLD * ACCUM * MICRO, seed=7)
    xs, ys = shard(x, rank), shard(y, rank)  # (ACCUM * MICRO, T) for this rank
    out["accum"] = {}
    for strategy in ("bucketed", "overlap"):
        for mode in ("no_sync", "no_sync_all", "sync_every"):
            dp = DataParallel(make_model(seed=0), strategy=strategy, bucket_size_mb=0.002)
            syncs = []  # (all-reduces since the previous sync, buckets) per sync_gradients()
            total = dp.stats["all_reduces"]
            for m in range(ACCUM):
                last = m == ACCUM - 1
                part = slice(m * MICRO, (m + 1) * MICRO)
                inside = mode == "no_sync_all" or (mode == "no_sync" and not last)
                with dp.no_sync() if inside else nullcontext():
                    _, loss = dp(xs[part], ys[part])
                    (loss / ACCUM).backward()
                if last or mode == "sync_every":
                    n_buckets = len(dp.buckets)
                    dp.sync_gradients()
                    syncs.append((dp.stats["all_reduces"] - total, n_buckets))
                    total = dp.stats["all_reduces"]
            out["accum"][(strategy, mode)] = {
                "syncs": syncs,
                "grads": {
                    n: p.grad.clone() for n, p in dp.module.named_parameters() if p.grad is not None
                },
            }
    # 4. Misuse is loud: sync inside no_sync; overlap's second backward without a sync.
    dp = DataParallel(make_model(seed=0), strategy="overlap", bucket_size_mb=0.002)
    errors = []
    with dp.no_sync():
        try:
            dp.sync_gradients()
        except RuntimeError as e:
            errors.append(str(e))
    for _ in range(2):
        try:
            dp(xs[:MICRO], ys[:MICRO])[1].backward()
        except RuntimeError as e:
            errors.append(str(e))
    out["errors"] = errors
    dist.barrier()
    return out


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return spawn(_ranks_main, WORLD, args=(configurations(),), timeout=120)


@pytest.fixture(scope="module")
def single_process() -> dict:
    """One process on the concatenated batch, trained by accumulating the ranks' two shards
    (loss / 2 each); at every step also the gradient of one backward over the whole batch."""
    model = make_model(seed=0)
    opt = torch.optim.AdamW(trainable(model), lr=LR)
    accumulated, whole = [], []
    for s in range(STEPS):
        x, y = make_data(WORLD * PER_RANK, seed=100 + s)
        opt.zero_grad(set_to_none=True)
        model(x, y)[1].backward()
        whole.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        opt.zero_grad(set_to_none=True)
        for rank in range(WORLD):
            (model(shard(x, rank), shard(y, rank))[1] / WORLD).backward()
        accumulated.append(
            {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        )
        opt.step()
    final = {n: p.detach() for n, p in model.named_parameters()}
    return {"final": final, "accumulated": accumulated, "whole": whole}


def assert_float_close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal up to reordered float32 sums: a mean over 8 samples computed as the mean of two
    4-sample means rounds differently, by a few eps of the tensor's largest entry."""
    tol = 16 * EPS * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=tol, msg=name)


@pytest.mark.slow
def test_every_strategy_trains_exactly_like_pytorch_ddp(ranks):
    # PyTorch's DDP also divides by the world size and sums: the same numbers, bit for bit,
    # for every strategy and bucketing, on both ranks, for gradients and trained parameters.
    ddp = ranks[0]["train"]["torch-ddp"]
    ddp_grads = ranks[0]["grads"]["torch-ddp"]
    for name in ranks[0]["train"]:
        for rank in range(WORLD):
            assert list(ranks[rank]["train"][name]) == list(ddp)  # .module keeps the names
            for pname, value in ranks[rank]["train"][name].items():
                assert torch.equal(value, ddp[pname]), f"{name} rank {rank} vs DDP: {pname}"
            for step, grads in enumerate(ranks[rank]["grads"][name]):
                assert grads.keys() == ddp_grads[step].keys()
                for pname, grad in grads.items():
                    assert torch.equal(grad, ddp_grads[step][pname]), f"{name} {step} {pname}"


@pytest.mark.slow
def test_data_parallel_equals_single_process_on_the_concatenated_batch(ranks, single_process):
    # Bit for bit: averaging two ranks' gradients *is* accumulating the two shards in one
    # process (dividing by 2 is exact in binary floating point, and a + b = b + a).
    for name in ranks[0]["train"]:
        for pname, value in ranks[0]["train"][name].items():
            assert torch.equal(value, single_process["final"][pname]), f"{name}: {pname}"
        for step, grads in enumerate(ranks[0]["grads"][name]):
            for pname, grad in grads.items():
                assert torch.equal(grad, single_process["accumulated"][step][pname])
    # And the averaged gradient is the gradient of one backward over all 8 samples, up to
    # the rounding of reordered sums (compared at each step's parameters, where Adam's
    # division by sqrt(v) cannot amplify tiny differences in near-zero gradients).
    for step, grads in enumerate(ranks[0]["grads"]["overlap-3"]):
        for pname, grad in grads.items():
            assert_float_close(grad, single_process["whole"][step][pname], f"{step}: {pname}")


@pytest.mark.slow
def test_replicas_started_different_and_frozen_weight_untouched(ranks):
    a, b = make_model(seed=0), make_model(seed=1)
    frozen = frozen_name(a)
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        if pa.dim() == 2:
            assert not torch.equal(pa, pb)  # seed = rank: the replicas start different
    for name in ranks[0]["train"]:
        assert torch.equal(ranks[1]["train"][name][frozen], a.get_parameter(frozen).detach())


@pytest.mark.slow
def test_naive_reduces_each_distinct_trainable_parameter_once(ranks):
    model = make_model(0)
    distinct = len(trainable(model))
    by_name = sum(p.requires_grad for _, p in model.named_parameters(remove_duplicate=False))
    assert by_name == distinct + 1  # the tied embedding / head is one tensor reached twice
    assert ranks[0]["counts"]["naive"] == [distinct] * STEPS


@pytest.mark.slow
def test_bucketed_makes_one_all_reduce_per_bucket(ranks):
    for k in (1, 2, 3):
        assert ranks[0]["buckets"][f"bucketed-{k}"] == [k] * STEPS
        assert ranks[0]["counts"][f"bucketed-{k}"] == [k] * STEPS
        assert ranks[0]["before_sync"][f"bucketed-{k}"] == [0] * STEPS  # all after backward
    assert ranks[0]["counts"]["naive"][0] > ranks[0]["counts"]["bucketed-3"][0]


@pytest.mark.slow
def test_overlap_launches_all_reduces_while_backward_runs(ranks):
    buckets = ranks[0]["buckets"]["overlap-3"]
    assert buckets[0] == 3 and min(buckets) >= 3
    assert ranks[0]["counts"]["overlap-3"] == buckets  # one all-reduce per bucket
    # Every one was in flight before sync_gradients() was called ...
    assert ranks[0]["before_sync"]["overlap-3"] == buckets
    # ... and once the buckets follow the order gradients arrive in (rebuilt after the first
    # backward), all but the last while earlier layers' gradients were still being computed.
    for pending in ranks[0]["pending"]["overlap-3"][1:]:
        assert all(a > b for a, b in zip(pending, pending[1:], strict=False))
        assert pending[-2] > 0 and pending[-1] == 0


@pytest.mark.slow
def test_accumulation_with_no_sync_equals_the_large_batch(ranks):
    x, y = make_data(WORLD * ACCUM * MICRO, seed=7)
    model = make_model(seed=0)
    model(x, y)[1].backward()
    for key, run in ranks[0]["accum"].items():
        for name, grad in run["grads"].items():
            assert_float_close(grad, model.get_parameter(name).grad, f"{key}: {name}")
        for rank in range(1, WORLD):
            for name, grad in ranks[rank]["accum"][key]["grads"].items():
                assert torch.equal(grad, run["grads"][name])


@pytest.mark.slow
def test_no_sync_really_saves_communication(ranks):
    for strategy in ("bucketed", "overlap"):
        for mode in ("no_sync", "no_sync_all"):
            # One reduction of the accumulated gradients: one all-reduce per bucket, once.
            syncs = ranks[0]["accum"][(strategy, mode)]["syncs"]
            assert len(syncs) == 1 and syncs[0][0] == syncs[0][1] > 1
        # Without no_sync: a full set of buckets after every micro-batch, ACCUM times the calls.
        once = ranks[0]["accum"][(strategy, "no_sync")]["syncs"][0][0]
        every = ranks[0]["accum"][(strategy, "sync_every")]["syncs"]
        assert len(every) == ACCUM and all(n == b for n, b in every)
        assert sum(n for n, _ in every) >= ACCUM * min(b for _, b in every) > once


@pytest.mark.slow
def test_misuse_raises_instead_of_silently_mis_averaging(ranks):
    errors = ranks[0]["errors"]
    assert len(errors) == 2
    assert "inside no_sync()" in errors[0]
    assert "call sync_gradients() after every backward" in errors[1]


# --- without a process group: argument checks and the pure parts


def test_bad_arguments_are_one_line_errors():
    model = make_model(0)
    with pytest.raises(ValueError, match="strategy='fast' is unknown"):
        DataParallel(model, strategy="fast")
    with pytest.raises(ValueError, match="bucket_size_mb=0 must be > 0"):
        DataParallel(model, strategy="bucketed", bucket_size_mb=0)
    with pytest.raises(RuntimeError, match="needs an initialised process group"):
        DataParallel(model)


def test_bucket_indices_fill_in_order_and_respect_the_cap():
    assert bucket_indices([4, 4, 4, 4], 8) == [[0, 1], [2, 3]]
    assert bucket_indices([4, 4, 4, 4], 100) == [[0, 1, 2, 3]]
    assert bucket_indices([20, 4, 4], 8) == [[0], [1, 2]]  # too big for any bucket: alone
    assert bucket_indices([4, 4, 4], 100, keys=["a", "b", "b"]) == [[0], [1, 2]]  # dtype change


def test_sampler_shares_are_disjoint_covering_and_reshuffled():
    n = 20
    samplers = [ShardedSampler(n, r, WORLD, seed=3) for r in range(WORLD)]
    epochs = []
    for epoch in range(3):
        for s in samplers:
            s.set_epoch(epoch)
        shares = [list(s) for s in samplers]
        assert all(len(share) == len(samplers[0]) == n // WORLD for share in shares)
        assert sorted(i for share in shares for i in share) == list(range(n))  # each once
        epochs.append(shares)
    assert epochs[0] != epochs[1] != epochs[2]  # a new order every epoch
    again = ShardedSampler(n, 1, WORLD, seed=3)
    again.set_epoch(2)
    assert list(again) == epochs[2][1]  # deterministic for a seed and epoch
    other = ShardedSampler(n, 1, WORLD, seed=4)
    other.set_epoch(2)
    assert list(other) != epochs[2][1]


def test_sampler_pads_or_drops_to_equal_shares():
    n, world = 10, 3
    padded = [list(ShardedSampler(n, r, world)) for r in range(world)]
    assert [len(s) for s in padded] == [4, 4, 4]
    seen = [i for s in padded for i in s]
    assert set(seen) == set(range(n)) and len(seen) == 12  # every sample, two of them twice
    dropped = [list(ShardedSampler(n, r, world, drop_last=True)) for r in range(world)]
    assert [len(s) for s in dropped] == [3, 3, 3]
    flat = [i for s in dropped for i in s]
    assert len(set(flat)) == 9  # none twice, one skipped this epoch
    assert list(ShardedSampler(5, 0, 2, shuffle=False)) == [0, 2, 4]
    with pytest.raises(ValueError, match="rank=2 must be in"):
        ShardedSampler(n, 2, 2)
