"""Lesson 12 — Data parallelism: many replicas, one model, and the memory bill of Adam.

When one device is too slow, use N of them. The simplest way — and the one every large
training run starts from — is *data parallelism*: each device ("rank") holds a full copy of
the model, takes its own share of the batch, and runs forward and backward on it. The ranks
then exchange gradients so that every replica applies the same update and the copies never
drift apart.

What they exchange is the average. With a loss that is a mean over samples and equal shares,
the average of N ranks' gradients is exactly the gradient of the whole batch, because the mean
of N equal-sized means is the overall mean. So data parallelism *is* gradient accumulation —
with the micro-batches computed side by side instead of one after another: three ranks with 6
samples each give the update that one process gets from accumulating three micro-batches of 6,
which is the update of one batch of 18. The only difference is the order of floating-point
additions, so the numbers agree to float32 rounding. The tool for the averaging is a
collective operation, all-reduce: every rank contributes a tensor and every rank receives the
sum (we divide by N first). One more rule: the replicas must *start* equal, so rank 0's
weights are broadcast to the others at the start, and each rank must see different samples
(a sampler deals out disjoint shares of a shuffled order, reshuffled every epoch).

How to all-reduce matters for speed. `naive`: one all-reduce per parameter tensor after
backward — a GPT has a dozen tensors per layer, and every call pays the collective's latency.
`bucketed`: copy the gradients into a few flat buckets (~25 MB each) and all-reduce those —
few, large messages. `overlap`: start each bucket's all-reduce the moment its last gradient
is computed, while backward keeps working on earlier layers; gradients arrive last layer
first, so the buckets are filled in that order. This is what PyTorch's
DistributedDataParallel does, and the lesson times all three against it.

Data parallelism buys speed with memory: every rank stores everything. In mixed-precision
Adam training each parameter costs 2 bytes (fp16 weights) + 2 (fp16 gradients) + 12 (fp32
master weights, momentum and variance) = 16 bytes, so a 7.5B-parameter model needs 120 GB on
*every* device. ZeRO (Rajbhandari et al. 2020) notices that after averaging, every rank
computes the same update: it shards the optimizer state (stage 1), then the gradients (2),
then the weights themselves (3) across the N devices. The paper's Figure 1 — 7.5B parameters
on 64 devices: 120, 31.4, 16.6 and 1.9 GB per device — is recomputed below, and our ZeRO-1
(`minigpt.parallel.zero.ShardedOptimizer`) is measured: each rank holds ~1/N of Adam's state
and the training is bit-for-bit that of plain AdamW.

All ranks here are processes on this machine talking over gloo (CPU); on GPUs the same code
runs with NCCL under `torchrun`. Plots: the strategies' step times and all-reduce counts, and
the ZeRO memory bars.

Measured on a 2-core AMD EPYC CPU (torch 2.13) with one thread, while other jobs kept it busy
(load average 15-26): quick mode 23 s, full mode 1 min 42 s of CPU time (a quiet 2-core machine
needs about that or less); the busy machine took 2 min 11 s and 11 min 18 s of wall-clock time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 13 s,
full mode 51 s.

Run:  python lessons/12_data_parallel.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from minigpt.config import ModelConfig
from minigpt.lesson import run_lesson, save_figure
from minigpt.memory import zero_bytes_per_device
from minigpt.models import DecoderLM
from minigpt.parallel.ddp import DataParallel
from minigpt.parallel.launch import spawn
from minigpt.parallel.sampler import ShardedSampler
from minigpt.parallel.zero import ShardedOptimizer

WORLD, PER_RANK = 3, 6  # the course's example: 3 ranks x 6 samples = one batch of 18
QUICK = dict(
    vocab=512,
    seq=64,
    d_model=128,
    n_heads=4,
    n_layers=4,
    d_ff=512,
    bucket_mb=1.0,
    rounds=5,
    warmup=2,
)
FULL = dict(
    vocab=1024,
    seq=128,
    d_model=256,
    n_heads=4,
    n_layers=6,
    d_ff=1024,
    bucket_mb=4.0,
    rounds=10,
    warmup=3,
)
STRATEGIES = ("naive", "bucketed", "overlap", "PyTorch DDP")
PAPER = dict(n_params=7.5e9, n_devices=64)  # ZeRO paper, Figure 1


def config(p: dict) -> ModelConfig:
    return ModelConfig(
        vocab_size=p["vocab"],
        max_len=p["seq"],
        d_model=p["d_model"],
        n_heads=p["n_heads"],
        n_layers=p["n_layers"],
        d_ff=p["d_ff"],
        dropout=0.0,
    )


def dataset(p: dict, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n random token sequences: (n, T) inputs and their next-token targets."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, p["vocab"], (n, p["seq"] + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None])


def _replicas(rank: int, p: dict, seed: int) -> dict:
    """Section 1 on one rank: different starts, the broadcast, one averaged gradient."""
    torch.manual_seed(seed + rank)  # each rank initialises its own model: they start different
    model = DecoderLM(config(p))
    mine = torch.cat([q.detach().flatten() for q in model.parameters()])
    rank0 = mine.clone()
    dist.broadcast(rank0, src=0)
    dp = DataParallel(model, strategy="bucketed")  # broadcasts rank 0's weights and buffers
    after = torch.cat([q.detach().flatten() for q in model.parameters()])
    x, y = dataset(p, WORLD * PER_RANK, seed=seed)
    share = list(ShardedSampler(WORLD * PER_RANK, rank, WORLD, seed=seed))
    dp(x[share], y[share])[1].backward()
    dp.sync_gradients()
    return {
        "start_diff": float((mine - rank0).abs().max()),
        "after_diff": float((after - rank0).abs().max()),
        "share": share,
        "grad": flat_grad(model),
    }


def _strategies(rank: int, p: dict, seed: int) -> dict:
    """Section 3 on one rank: one step of every strategy per round, in turn; medians."""
    x, y = dataset(p, PER_RANK * (p["rounds"] + p["warmup"]), seed=seed + 10 + rank)
    runs = {}
    for name in STRATEGIES:
        torch.manual_seed(seed)
        model = DecoderLM(config(p))
        if name == "PyTorch DDP":
            wrapped = DistributedDataParallel(model, bucket_cap_mb=p["bucket_mb"])
        else:
            wrapped = DataParallel(model, strategy=name, bucket_size_mb=p["bucket_mb"])
        runs[name] = (wrapped, torch.optim.AdamW(model.parameters(), lr=1e-4))
    times: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    log = {}
    for i in range(p["rounds"] + p["warmup"]):
        part = slice(i * PER_RANK, (i + 1) * PER_RANK)
        for name, (wrapped, opt) in runs.items():
            dist.barrier()
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            wrapped(x[part], y[part])[1].backward()
            if isinstance(wrapped, DataParallel):
                wrapped.sync_gradients()
            opt.step()
            elapsed = torch.tensor([time.perf_counter() - start])
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # a step ends when all ranks are done
            if i >= p["warmup"]:
                times[name].append(elapsed.item())
            if isinstance(wrapped, DataParallel):
                log[name] = list(wrapped.comm_log)
        if rank == 0:  # progress: one line per round of the four strategies' steps
            kind = "warm-up" if i < p["warmup"] else "timed"
            print(f"   round {i + 1}/{p['rounds'] + p['warmup']} ({kind}) done", flush=True)
    return {
        "step_ms": {name: 1e3 * statistics.median(t) for name, t in times.items()},
        "all_reduces": {name: len(records) for name, records in log.items()},
        "in_backward": {name: sum(r.during_backward for r in rs) for name, rs in log.items()},
        "bucket_mb": [round(b.nbytes / 2**20, 2) for b in runs["bucketed"][0].buckets],
    }


def _zero(rank: int, p: dict, seed: int) -> dict:
    """Section 4 on one rank: ZeRO-1 against plain AdamW, two steps, state bytes."""
    results = {}
    for name in ("plain", "zero"):
        torch.manual_seed(seed)
        model = DecoderLM(config(p))
        dp = DataParallel(model, strategy="bucketed")
        if name == "plain":
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        else:
            opt = ShardedOptimizer(model.parameters(), torch.optim.AdamW, lr=1e-3)
        for step in range(2):
            x, y = dataset(p, PER_RANK, seed=seed + 100 + WORLD * step + rank)
            opt.zero_grad(set_to_none=True)
            dp(x, y)[1].backward()
            dp.sync_gradients()
            opt.step()
        if name == "plain":
            state = sum(
                t.numel() * t.element_size()
                for s in opt.state.values()
                for t in s.values()
                if torch.is_tensor(t)
            )
        else:
            state = opt.state_bytes()
        results[name] = {
            "weights": torch.cat([q.detach().flatten() for q in model.parameters()]),
            "state_bytes": state,
        }
    return results


def _rank_main(rank: int, p: dict, seed: int = 0) -> dict:
    """Everything multi-process, in one start-up of the ranks (each start costs seconds)."""
    replicas, strategies = _replicas(rank, p, seed), _strategies(rank, p, seed)
    return {"replicas": replicas, "strategies": strategies, "zero": _zero(rank, p, seed)}


def single_process_gradients(
    p: dict, shares: list[list[int]], seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """One process: the gradient of the batch of 18, and of 3 accumulated micro-batches of 6."""
    x, y = dataset(p, WORLD * PER_RANK, seed=seed)
    torch.manual_seed(seed)  # rank 0's initial weights: the ones the broadcast gave every rank
    model = DecoderLM(config(p))
    model(x, y)[1].backward()
    whole = flat_grad(model)
    model.zero_grad(set_to_none=True)
    for share in shares:  # the same samples each rank had, one after another
        (model(x[share], y[share])[1] / len(shares)).backward()
    return whole, flat_grad(model)


def plot_strategies(s: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(STRATEGIES)
    colors = ["tab:red", "tab:orange", "tab:green", "tab:gray"]
    ms = [s["step_ms"][n] for n in names]
    bars = ax1.bar(names, ms, color=colors)
    ax1.bar_label(bars, labels=[f"{v:.0f} ms" for v in ms])
    ax1.set(xlabel="gradient all-reduce strategy", ylabel="median training step (ms)",
            title=f"Step time, {WORLD} ranks (gloo, CPU)")  # fmt: skip
    calls = [s["all_reduces"].get(n, 0) for n in names[:3]]
    bars = ax2.bar(names[:3], calls, color=colors[:3])
    labels = [
        f"{c} ({s['in_backward'][n]} during backward)"
        for c, n in zip(calls, names[:3], strict=True)
    ]
    ax2.bar_label(bars, labels=labels, fontsize=8)
    ax2.set(xlabel="gradient all-reduce strategy (ours)", ylabel="all-reduce calls per step",
            title="Communication calls per step")  # fmt: skip
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return path


def plot_zero(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, d = PAPER["n_params"], PAPER["n_devices"]
    stages = ["DDP\n(stage 0)", "ZeRO-1\noptimizer", "ZeRO-2\n+ gradients", "ZeRO-3\n+ weights"]
    parts = {  # bytes per device of each part, per stage (the paper's Psi, K = 12)
        "fp16 weights (2 B)": [2 * n / (d if s >= 3 else 1) for s in range(4)],
        "fp16 gradients (2 B)": [2 * n / (d if s >= 2 else 1) for s in range(4)],
        "optimizer states (12 B)": [12 * n / (d if s >= 1 else 1) for s in range(4)],
    }
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    bottom = [0.0] * 4
    for label, values in parts.items():
        gb = [v / 1e9 for v in values]
        ax.bar(stages, gb, bottom=bottom, label=label)
        bottom = [b + g for b, g in zip(bottom, gb, strict=True)]
    for i, total in enumerate(bottom):
        ax.annotate(f"{total:.1f} GB", (i, total), ha="center", va="bottom")
    ax.set(
        xlabel="what is sharded over the 64 devices",
        ylabel="GB of model states per device",
        title="ZeRO memory per device\n7.5B parameters, 64 devices, mixed-precision Adam",
    )
    ax.legend()
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return path


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/12_data_parallel",
    seed: int = 0,
) -> dict:
    """Run the lesson; return its key numbers (tests assert on them). `seed` sets the ranks'
    initial weights, the data and the sampler's shuffle."""
    p = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if device not in (None, "cpu"):
        print(f"(the ranks talk over gloo on the CPU; device={device!r} is not used here)")
    n_params = DecoderLM(config(p)).num_parameters()
    print(
        f"Starting {WORLD} ranks (processes joined by gloo), each with a {n_params:,}-parameter "
        f"GPT ({p['n_layers']} layers, width {p['d_model']}); while they run, rank 0 reports "
        "each round of section 3's timed steps ..."
    )
    ranks = spawn(_rank_main, WORLD, args=(p, seed), timeout=600)
    results: dict = {"world_size": WORLD, "samples_per_rank": PER_RANK, "n_params": n_params}

    print("\n1. Replicas start equal: rank 0's weights are broadcast to the others")
    rep = [r["replicas"] for r in ranks]
    for rank, r in enumerate(rep):
        print(
            f"   rank {rank}: largest weight difference to rank 0 before {r['start_diff']:.3f}, "
            f"after the broadcast {r['after_diff']:.1f}"
        )
    results["start_param_diff"] = max(r["start_diff"] for r in rep)
    results["replica_diff_after_broadcast"] = max(r["after_diff"] for r in rep)

    print(f"\n2. Each rank trains on its own share of the batch of {WORLD * PER_RANK} samples")
    shares = [r["share"] for r in rep]
    for rank, share in enumerate(shares):
        print(f"   rank {rank}: samples {share}")
    covered = sorted(i for share in shares for i in share) == list(range(WORLD * PER_RANK))
    print(f"   disjoint and covering every sample once: {covered}")
    results["shares_cover_batch"] = covered
    grads = [r["grad"] for r in rep]
    whole, accumulated = single_process_gradients(p, shares, seed)
    eps = torch.finfo(torch.float32).eps
    scale = float(whole.abs().max())
    results |= {
        "ranks_grad_max_diff": max(float((g - grads[0]).abs().max()) for g in grads),
        "ddp_vs_batch_max_diff": float((grads[0] - whole).abs().max()),
        "ddp_vs_accum_max_diff": float((grads[0] - accumulated).abs().max()),
        "accum_vs_batch_max_diff": float((accumulated - whole).abs().max()),
        "grad_scale": scale,
    }
    print(
        "   After sync_gradients() all ranks hold the same averaged gradient (largest "
        f"difference: {results['ranks_grad_max_diff']:.1f})."
    )
    print(f"   Against one process (largest gradient entry {scale:.2e}, float32 eps {eps:.1e}):")
    for label, key in (
        ("one batch of 18", "ddp_vs_batch_max_diff"),
        ("3 accumulated micro-batches of 6", "ddp_vs_accum_max_diff"),
    ):
        print(
            f"   {WORLD} ranks x {PER_RANK} vs {label:32s}: max difference {results[key]:.1e}"
            f" ({results[key] / (eps * scale):.1f} eps)"
        )
    print(
        "   The same gradient up to the order of float additions: data parallelism is\n"
        "   gradient accumulation, with the micro-batches computed side by side."
    )

    s = ranks[0]["strategies"]
    print(f"\n3. Three ways to all-reduce, median step of {p['rounds']} rounds")
    print(
        f"   gradients packed into {len(s['bucket_mb'])} buckets of at most {p['bucket_mb']:g} MB:"
        f" {s['bucket_mb']} MB"
    )
    print("   strategy       step ms   all-reduces   launched during backward")
    for name in STRATEGIES:
        calls = s["all_reduces"].get(name, "-")
        during = s["in_backward"].get(name, "-")
        print(f"   {name:12s} {s['step_ms'][name]:9.0f} {calls!s:>13} {during!s:>14}")
    print(
        "   naive pays a collective's latency once per tensor, bucketed once per bucket;\n"
        "   overlap sends while backward still computes (PyTorch DDP's design)."
    )
    results |= {
        "step_ms": s["step_ms"],
        "all_reduces": s["all_reduces"],
        "launched_in_backward": s["in_backward"],
        "bucket_mb": s["bucket_mb"],
    }
    plots = [plot_strategies(s, out / "strategies.png")]

    print(
        f"\n4. Memory per device, ZeRO paper Figure 1 ({PAPER['n_params'] / 1e9:g}B parameters, "
        f"{PAPER['n_devices']} devices, 2 + 2 + 12 bytes per parameter):"
    )
    zero_gb = {}
    for stage, label in enumerate(("DDP (stage 0)", "ZeRO-1", "ZeRO-2", "ZeRO-3")):
        zero_gb[stage] = zero_bytes_per_device(PAPER["n_params"], PAPER["n_devices"], stage) / 1e9
        print(f"   {label:14s} {zero_gb[stage]:6.1f} GB")
    plots.append(plot_zero(out / "zero_memory.png"))
    z = [r["zero"] for r in ranks]
    plain_bytes = z[0]["plain"]["state_bytes"]
    zero_bytes = [r["zero"]["state_bytes"] for r in z]
    weights_diff = max(float((r["zero"]["weights"] - r["plain"]["weights"]).abs().max()) for r in z)
    print(
        f"   Our ZeRO-1 on this model, after 2 AdamW steps: plain AdamW keeps "
        f"{plain_bytes / 2**20:.2f} MB of state\n   on every rank; sharded, the ranks keep "
        + ", ".join(f"{b / 2**20:.2f}" for b in zero_bytes)
        + f" MB ({', '.join(f'{b / plain_bytes:.0%}' for b in zero_bytes)})."
    )
    print(
        f"   Its weights differ from plain AdamW's by {weights_diff:.1f}: the same update, "
        f"1/{WORLD} of the state per rank."
    )
    results |= {
        "zero_gb": zero_gb,
        "plain_state_bytes": plain_bytes,
        "zero_state_bytes": zero_bytes,
        "zero_vs_plain_max_diff": weights_diff,
    }

    results["plots"] = [str(path) for path in plots]
    return results


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/12_data_parallel",
        quick_help="small model, few steps (< 60 s)",
        device_help="accepted for uniformity; ranks use CPU",
    )
