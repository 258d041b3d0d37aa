"""Helpers shared by the benchmark scripts: machine description, matmul peak, alternating timing.

A benchmark on a shared 2-core machine is only meaningful as a *ratio measured side by side*:
the absolute tokens/s of a run depend on whatever else the cores are doing that minute. These
helpers exist so every benchmark measures the same way — candidates run in alternation (A, B, A,
B, ...), the median of each is compared, and the machine (CPU model, torch threads, torch
version, load average) is printed with the table so a reader can judge the numbers.

The matmul peak is measured in the same process, right before the model runs, so a model-FLOPs
utilisation (MFU, Chowdhery et al. 2022, "PaLM", appendix B) is computed against what this
machine really delivers today rather than a datasheet number.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Sequence

import torch

from minigpt.device import cpu_info


def cpu_model() -> str:
    """The CPU's marketing name, so a printed table says which machine produced it."""
    return cpu_info("model name") or platform.processor() or platform.machine()


def load_average() -> float:
    """The 1-minute load average (0.0 where unsupported): a busy machine explains slow timings."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def machine_info(device: str = "cpu") -> dict[str, str]:
    """What a reader needs to reproduce or discount a figure: hardware, threads, versions, load."""
    info = {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load avg (1 min)": f"{load_average():.2f}",
        # Spinning vs sleeping OpenMP waiters changes small-model CPU timings by up to ~2x.
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def print_machine(device: str = "cpu") -> dict[str, str]:
    """Print `machine_info` as aligned `key: value` lines and return it."""
    info = machine_info(device)
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"  {key:<{width}} : {value}")
    return info


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers the work it claims to."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(
    dtype: torch.dtype = torch.float32,
    size: int = 1024,
    repeats: int = 10,
    device: str = "cpu",
) -> float:
    """Best-of-`repeats` FLOP/s of a square `size` x `size` matmul on all torch threads: the
    ceiling MFU is measured against, the trainer's own measurement
    (`minigpt.training.mfu.measure_matmul_peak`) at the benchmark's size."""
    from minigpt.training.mfu import measure_matmul_peak

    column = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return measure_matmul_peak(torch.device(device), column, size=size, repeats=repeats)


def alternate(
    runs: dict[str, Callable[[], float]], rounds: int, device: str = "cpu"
) -> dict[str, list[float]]:
    """Call each run once per round, in turn (A, B, A, B, ...); return each one's results.

    Each callable does one timed measurement and returns a rate (bigger is better). Alternating
    spreads slow minutes on a shared machine evenly over the candidates instead of penalising
    whichever happened to run during them.
    """
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            synchronize(device)
            results[name].append(run())
    return results


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (robust to one disturbed round)."""
    if not values:
        raise ValueError("median of an empty sequence: run at least one round")
    return statistics.median(values)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned columns, readable in a terminal and in a note."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def default_device() -> str:
    """cuda when present, else cpu (benchmarks accept --device to override)."""
    return "cuda" if torch.cuda.is_available() else "cpu"
