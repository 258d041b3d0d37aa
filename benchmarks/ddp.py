"""Step time of our three DataParallel strategies against PyTorch's DistributedDataParallel.

Two gloo ranks on this CPU, one torch thread each, train the same 6-layer, 384-wide GPT (the
`small` preset's shape, ~11M parameters) on the same batches. Each round times one full
training step (forward, backward, gradient sync, AdamW) of every candidate in turn — naive,
bucketed, overlap, PyTorch DDP, naive, ... — so a busy minute on the shared machine slows
them all alike; the table shows the median step of each and its ratio to PyTorch's DDP, plus
the all-reduces each made per step. "no communication" runs the same step inside `no_sync()`:
the floor that any strategy's communication is added to. A single process doing the whole
global batch on one thread is timed afterwards, for scale: data parallelism's promise is that
two ranks take about as long for two shards as one process takes for one (on a machine whose
other work leaves both cores free).

Goals (issue 13): `overlap` within 1.10x of PyTorch DDP, `bucketed` faster than `naive`.

Run:  python benchmarks/ddp.py [--rounds 8] [--batch 4] [--seq 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py
from common import format_table, print_machine  # noqa: E402

from minigpt.config import ModelConfig  # noqa: E402
from minigpt.models import DecoderLM  # noqa: E402
from minigpt.parallel.ddp import DataParallel  # noqa: E402
from minigpt.parallel.launch import spawn  # noqa: E402

CANDIDATES = ("naive", "bucketed", "overlap", "pytorch DDP", "no communication")
WORLD = 2


def model_config(seq: int) -> ModelConfig:
    return ModelConfig(
        vocab_size=1024, max_len=seq, d_model=384, n_heads=6, n_layers=6, d_ff=1536, dropout=0.0
    )


def batches(n: int, batch: int, seq: int, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        tokens = torch.randint(0, 1024, (batch, seq + 1), generator=g)
        out.append((tokens[:, :-1], tokens[:, 1:]))
    return out


def _rank_main(rank: int, rounds: int, warmup: int, batch: int, seq: int) -> dict:
    """On each rank: build every candidate, then time one step of each per round, in turn."""
    runs = {}
    for name in CANDIDATES:
        torch.manual_seed(0)
        model = DecoderLM(model_config(seq))
        if name == "pytorch DDP":
            wrapped, sync = DistributedDataParallel(model), None
        elif name == "no communication":  # the floor: each rank's compute alone
            wrapped, sync = DataParallel(model, strategy="bucketed"), None
        else:
            wrapped = DataParallel(model, strategy=name)
            sync = wrapped.sync_gradients
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runs[name] = (wrapped, sync, opt)
    data = batches(rounds + warmup, batch, seq, seed=rank)
    times: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    counts: dict[str, int] = {}
    for i, (x, y) in enumerate(data):
        for name, (wrapped, sync, opt) in runs.items():
            dist.barrier()  # start together: a step's time includes waiting for the slower rank
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            if name == "no communication":
                with wrapped.no_sync():
                    wrapped(x, y)[1].backward()
            else:
                wrapped(x, y)[1].backward()
            if sync is not None:
                sync()
            opt.step()
            elapsed = torch.tensor([time.perf_counter() - start])
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # the step ends when both are done
            if i >= warmup:
                times[name].append(elapsed.item())
            if sync is not None:
                counts[name] = len(wrapped.comm_log)
    buckets = {name: len(runs[name][0].buckets) for name in ("bucketed", "overlap")}
    return {"times": times, "counts": counts, "buckets": buckets}


def single_process_step(rounds: int, warmup: int, batch: int, seq: int) -> float:
    """Median step of one process, one thread, on the whole global batch (WORLD x batch)."""
    torch.manual_seed(0)
    model = DecoderLM(model_config(seq))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i, (x, y) in enumerate(batches(rounds + warmup, WORLD * batch, seq)):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x, y)[1].backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="timed steps per candidate")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=4, help="sequences per rank per step")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = model_config(args.seq)
    n_params = DecoderLM(config).num_parameters()
    print(
        f"DataParallel strategies vs PyTorch DDP: {WORLD} gloo ranks x 1 thread, "
        f"{n_params / 1e6:.1f}M-parameter GPT (6 x 384), {args.batch} x {args.seq} tokens per "
        f"rank per step, median of {args.rounds} steps after {args.warmup} warm-up"
    )
    print_machine()
    result = spawn(
        _rank_main, WORLD, args=(args.rounds, args.warmup, args.batch, args.seq), timeout=3600
    )[0]
    single = single_process_step(args.rounds, args.warmup, args.batch, args.seq)
    medians = {name: statistics.median(result["times"][name]) for name in CANDIDATES}
    ddp = medians["pytorch DDP"]
    rows = []
    for name in CANDIDATES:
        calls = result["counts"].get(name, "-" if name == "pytorch DDP" else 0)
        where = {"naive": "after backward", "bucketed": "after backward"}.get(name, "in backward")
        where = "none" if name == "no communication" else where
        rows.append(
            [name, f"{medians[name] * 1e3:.0f}", f"{medians[name] / ddp:.2f}x", calls, where]
        )
    rows.append(
        [
            f"1 process, {WORLD * args.batch} x {args.seq}",
            f"{single * 1e3:.0f}",
            f"{single / ddp:.2f}x",
            0,
            "-",
        ]
    )
    print()
    print(format_table(["strategy", "step ms", "vs DDP", "all-reduces/step", "comm"], rows))
    print(
        f"\nbuckets: bucketed {result['buckets']['bucketed']}, overlap "
        f"{result['buckets']['overlap']} (25 MB each; PyTorch DDP: 25 MB, first one 1 MB)"
    )
    print(
        f"goals: overlap <= 1.10x DDP: {medians['overlap'] / ddp:.2f}x; "
        f"bucketed faster than naive: {medians['bucketed'] / medians['naive']:.2f}x of naive"
    )


if __name__ == "__main__":
    main()
