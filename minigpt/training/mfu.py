"""Model-FLOPs utilisation (MFU): how much of the device's peak arithmetic a training run uses.

Tokens per second says how fast a run is, but not how fast it *could* be. MFU answers that:
the FLOPs the model needs per token (`model.flops_per_token()`, i.e. 6N plus the attention
maps, from `minigpt.scaling`: the one formula) times tokens per second, divided by what the
device can do at its best in the run's precision (Chowdhery et al. 2022, "PaLM", appendix B).
Only the model's own arithmetic counts; work the implementation adds (recomputed activations,
casts) makes MFU lower, never higher.

The peak comes from `PEAK_TFLOPS`, a small table of common NVIDIA GPUs with the dense (no
structured sparsity) figures from each card's data sheet, looked up by the name CUDA reports.
A card not in the table, a CPU or an Apple GPU gets a *measured* peak instead: the best rate
of a square matmul in the run's dtype, timed in the same process (`measure_matmul_peak`).
The Trainer prints MFU on its log line (lesson 07 explains the number; lesson 11 the 6N rule).
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

import torch

# Which table column a run's arithmetic uses: fp32 matmuls run on TF32 tensor cores when they
# are allowed (minigpt.training.precision.enable_tf32), 16-bit ones on the 16-bit tensor cores.
PEAK_COLUMNS = ("fp32", "tf32", "bf16", "fp16")


class CardPeak(NamedTuple):
    """Dense peak TFLOPS of one card; None where the card has no such unit (then its fp32
    units run that arithmetic, so the fp32 figure is the ceiling)."""

    pattern: str  # matched as whole words against the upper-cased CUDA device name
    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float | None


# NVIDIA data sheets (dense figures: the sheets' "with sparsity" numbers halved):
# H200 / H100 (SXM, PCIe, NVL) and GH200: "NVIDIA H200 Tensor Core GPU" and "NVIDIA H100
# Tensor Core GPU" data sheets; A100: "NVIDIA A100 Tensor Core GPU" data sheet (same figures
# for 40/80 GB, SXM and PCIe); A10, L4, L40, L40S: their product data sheets; RTX 4090: "NVIDIA
# Ada GPU Architecture" white paper (tensor figures with FP32 accumulate, as autocast does);
# RTX 3090 / 3090 Ti: "NVIDIA Ampere GA102 GPU Architecture" white paper (FP32 accumulate);
# V100 (SXM2, PCIe, V100S) and T4: their data sheets (Volta and Turing have neither TF32 nor
# bf16). More specific names come first: the first pattern that matches wins.
PEAK_TFLOPS: tuple[CardPeak, ...] = (
    CardPeak("GH200", 67.0, 494.5, 989.5, 989.5),
    CardPeak("H200 NVL", 60.0, 417.5, 835.5, 835.5),
    CardPeak("H200", 67.0, 494.5, 989.5, 989.5),
    CardPeak("H100 NVL", 60.0, 417.5, 835.5, 835.5),
    CardPeak("H100 PCIE", 51.0, 378.0, 756.5, 756.5),
    CardPeak("H100", 67.0, 494.5, 989.5, 989.5),
    CardPeak("A100", 19.5, 156.0, 312.0, 312.0),
    CardPeak("L40S", 91.6, 183.0, 362.05, 362.05),
    CardPeak("L40", 90.5, 90.5, 181.05, 181.05),
    CardPeak("L4", 30.3, 60.0, 121.0, 121.0),
    CardPeak("A10", 31.2, 62.5, 125.0, 125.0),
    CardPeak("RTX 4090", 82.6, 82.6, 165.2, 165.2),
    CardPeak("RTX 3090 TI", 40.0, 40.0, 80.0, 80.0),
    CardPeak("RTX 3090", 35.6, 35.6, 71.0, 71.0),
    CardPeak("V100S", 16.4, None, None, 130.0),
    CardPeak("V100 PCIE", 14.0, None, None, 112.0),
    CardPeak("V100", 15.7, None, None, 125.0),
    CardPeak("T4", 8.1, None, None, 65.0),
)


class Peak(NamedTuple):
    """The FLOP/s a run is measured against, and where the figure came from."""

    flops: float  # floating-point operations per second
    column: str  # a PEAK_COLUMNS entry: the arithmetic the figure is for
    source: str  # "data sheet: <card>" or "measured: <n> x <n> matmul on <device>"

    def describe(self) -> str:
        """One line for a log: '312.0 TFLOPS bf16 (data sheet: NVIDIA A100-SXM4-80GB)'."""
        rate = (f"{self.flops / 1e12:,.1f} TFLOPS" if self.flops >= 1e12
                else f"{self.flops / 1e9:,.1f} GFLOPS")  # fmt: skip
        return f"{rate} {self.column} ({self.source})"


def _normalise(name: str) -> str:
    return re.sub(r"[-_]", " ", name.upper())


def lookup_card(name: str) -> CardPeak | None:
    """The table row for a CUDA device name ("NVIDIA H100 80GB HBM3", "Tesla T4"), or None.

    Patterns match whole words, so "L4" does not take "L40S", nor "A10" "A100", nor "H200"
    "GH200"; dashes count as spaces ("Tesla V100-PCIE-16GB" is a "V100 PCIE").
    """
    normalised = _normalise(name)
    for card in PEAK_TFLOPS:
        if re.search(rf"(?<![A-Z0-9]){re.escape(card.pattern)}(?![A-Z0-9])", normalised):
            return card
    return None


def table_peak_tflops(name: str, column: str) -> float | None:
    """The data-sheet TFLOPS of card `name` for `column` (fp32 | tf32 | bf16 | fp16), or None
    for a card not in the table. A unit the card lacks falls back to its fp32 figure."""
    if column not in PEAK_COLUMNS:
        raise ValueError(f"peak column {column!r} is unknown; use one of {', '.join(PEAK_COLUMNS)}")
    card = lookup_card(name)
    if card is None:
        return None
    value = getattr(card, column)
    return card.fp32 if value is None else value


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
           "fp16": torch.float16}  # fmt: skip


def measure_matmul_peak(
    device: torch.device, column: str = "fp32", size: int | None = None, repeats: int = 5
) -> float:
    """Best-of-`repeats` FLOP/s of a `size` x `size` matmul in `column`'s dtype on `device`.

    A square matmul does 2 n^3 operations (a multiply and an add per term). Best-of, not the
    median: interference only slows a sample down, so the fastest is nearest the ceiling. The
    default size, 512 on a CPU (a few milliseconds on 2 cores) and 4096 on a GPU (big enough
    to fill it), keeps the measurement short. The operands come from their own generator:
    PyTorch's global random stream (dropout, initialisation) is untouched.
    """
    if column not in _DTYPES:
        raise ValueError(f"peak column {column!r} is unknown; use one of {', '.join(_DTYPES)}")
    n = size or (512 if device.type == "cpu" else 4096)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=_DTYPES[column])
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=_DTYPES[column])
    for _ in range(2):  # warm-up: thread pools, packing buffers, GPU clocks
        a @ b
    _synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / max(best, 1e-12)


def tf32_enabled() -> bool:
    """Whether CUDA fp32 matmuls may use TF32 tensor cores (set by `precision.enable_tf32`)."""
    return bool(torch.backends.cuda.matmul.allow_tf32)


def peak_column(device: torch.device, precision: str) -> str:
    """The arithmetic a run in `precision` (fp32 | bf16 | fp16, resolved) does on `device`."""
    if precision == "fp32" and device.type == "cuda" and tf32_enabled():
        return "tf32"
    if precision not in PEAK_COLUMNS:
        raise ValueError(f"precision {precision!r} is unknown; use fp32, bf16 or fp16")
    return precision


def device_peak(device: torch.device, precision: str) -> Peak:
    """The peak a run in `precision` on `device` is measured against: the data sheet for a
    known GPU, else a measured matmul (CPUs, Apple GPUs, cards missing from the table).

    A measured peak is only as good as the moment it was taken: on a CPU that other jobs share,
    it can come out low (then MFU reads high), which is why benchmarks measure it several times
    and keep the best (benchmarks/train_throughput.py)."""
    column = peak_column(device, precision)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        tflops = table_peak_tflops(name, column)
        if tflops is not None:
            return Peak(tflops * 1e12, column, f"data sheet: {name}")
    size = 512 if device.type == "cpu" else 4096
    flops = measure_matmul_peak(device, column, size)
    return Peak(flops, column, f"measured: {size} x {size} matmul on {device.type}")


def model_flops_utilisation(
    tokens_per_s: float, flops_per_token: float, peak_flops: float, n_devices: int = 1
) -> float:
    """MFU as a fraction: achieved FLOP/s (tokens/s x FLOPs per token) over the peak of all
    `n_devices` devices that together processed those tokens."""
    if peak_flops <= 0 or n_devices < 1:
        raise ValueError(
            f"peak_flops={peak_flops} must be > 0 and n_devices={n_devices} at least 1"
        )
    return tokens_per_s * flops_per_token / (peak_flops * n_devices)
