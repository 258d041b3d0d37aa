"""Forward+backward time of our attention paths against PyTorch's nn.MultiheadAttention.

Measured: causal self-attention in training mode (dropout 0), one forward and one backward
pass, for
- `explicit`  our MultiHeadAttention with `record_weights = True` (the written-out formula),
- `fast`      our MultiHeadAttention's default path (one fused q/k/v matmul + the fused
              F.scaled_dot_product_attention kernel with is_causal=True),
- `fast-3mm`  the same but with three separate q/k/v matmuls (why we fuse them),
- `torch`     nn.MultiheadAttention(batch_first=True) called with is_causal=True, a causal
              attn_mask and need_weights=False (its fastest causal configuration).
Runs alternate between the implementations inside each repeat, so machine noise hits all of
them alike; the table shows medians (and minima) and their ratios to `torch`
(goal for `fast`: <= 1.1x).

    python benchmarks/attention.py            # the issue's two shapes
    python benchmarks/attention.py --quick    # small smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from minigpt import speedups
from minigpt.attention import MultiHeadAttention, causal_mask


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else whatever platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_step(
    name: str, d_model: int, n_heads: int, t: int, device: str
) -> Callable[[Tensor], None]:
    """Return a function doing one forward+backward pass of the named implementation."""
    torch.manual_seed(0)
    if name == "torch":
        ref = nn.MultiheadAttention(d_model, n_heads, batch_first=True, device=device)
        mask = ~causal_mask(t, device=device)  # PyTorch's convention: True = blocked

        def step(x: Tensor) -> None:
            out, _ = ref(x, x, x, attn_mask=mask, is_causal=True, need_weights=False)
            out.sum().backward()

        return step
    mha = MultiHeadAttention(d_model, n_heads).to(device)
    mha.record_weights = name == "explicit"
    # fast-3mm: the fused projection (minigpt/speedups.py) declined, as for a few rows
    fuse_min_rows = 2**62 if name == "fast-3mm" else speedups.FUSE_MIN_ROWS

    def step(x: Tensor) -> None:
        saved, speedups.FUSE_MIN_ROWS = speedups.FUSE_MIN_ROWS, fuse_min_rows
        try:
            mha(x, is_causal=True).sum().backward()
        finally:
            speedups.FUSE_MIN_ROWS = saved

    return step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_shape(
    b: int, t: int, d_model: int, n_heads: int, repeats: int, device: str
) -> dict[str, list[float]]:
    """Seconds per forward+backward for each implementation, one list each, run alternately."""
    names = ["explicit", "fast", "fast-3mm", "torch"]
    steps = {name: make_step(name, d_model, n_heads, t, device) for name in names}
    x = torch.randn(b, t, d_model, device=device, requires_grad=True)
    for step in steps.values():  # warm-up: allocator, kernels, thread pools
        step(x)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            sync(device)
            start = time.perf_counter()
            steps[name](x)
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        shapes = [(2, 64, 384, 6)]
        repeats = args.repeats or 5
    else:
        shapes = [(8, 256, 384, 6), (4, 1024, 384, 6)]
        repeats = args.repeats or 15
    print(f"machine: {cpu_name()} | torch {torch.__version__} | threads {torch.get_num_threads()}")
    print(f"device: {args.device} | causal self-attention, forward+backward, median of {repeats}")
    print("(min = least disturbed run: on a shared machine it is the steadier figure)")
    header = f"{'shape (B, T, d_model, heads)':<30}{'impl':<10}{'median ms':>10}{'vs torch':>10}"
    print(header + f"{'min ms':>10}{'vs torch':>10}")
    for b, t, d_model, n_heads in shapes:
        times = bench_shape(b, t, d_model, n_heads, repeats, args.device)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        low = {name: min(ts) for name, ts in times.items()}
        for name in times:
            label = f"({b}, {t}, {d_model}, {n_heads})"
            print(
                f"{label:<30}{name:<10}{med[name] * 1e3:>10.2f}{med[name] / med['torch']:>9.2f}x"
                f"{low[name] * 1e3:>10.2f}{low[name] / low['torch']:>9.2f}x"
            )


if __name__ == "__main__":
    main()
