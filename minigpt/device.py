"""Where a model runs: turning "auto", "cpu", "cuda[:i]" or "mps" into a `torch.device`.

Training, inference, evaluation and the lessons all place a model, and a checkpoint written on a
GPU box is routinely loaded on a laptop, so one function decides, and it refuses a device this
machine lacks with a one-line message instead of PyTorch's assertion deep inside the first
`.to()` ("Torch not compiled with CUDA enabled").
"""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")  # the kinds; cuda also takes an index: cuda:1


def cpu_info(field: str) -> str | None:
    """One field of Linux's /proc/cpuinfo for the first CPU ("model name", "vendor_id", ...),
    or None where there is no such file or field (macOS, Windows). The benchmarks print the
    model name; `minigpt.speedups` chooses a matmul library by the vendor."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def check_device_name(device: str) -> None:
    """Raise ValueError unless `device` names a known kind (auto, cpu, cuda, cuda:N, mps)."""
    kind, _, index = str(device).lower().partition(":")
    if kind not in DEVICES or (index and not (kind == "cuda" and index.isdigit())):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The best available device for "auto" (cuda, then mps, then cpu); else the one named,
    if this machine has it."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available; use cpu")
    if kind == "mps" and not _mps_available():
        raise ValueError(f"device {device!r} asked for but MPS is not available; use cpu")
    return torch.device(name)
