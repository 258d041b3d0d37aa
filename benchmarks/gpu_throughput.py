"""GPU training throughput and MFU of the `homework` and `gpt2-small` presets, against the same
sizes built from PyTorch's own transformer layers, with and without torch.compile.

What is measured: tokens per second of the step the Trainer takes (`minigpt.training.step.
train_step`: bf16 autocast, fused AdamW, gradient clipping), on windows drawn from a random
token file and moved to the GPU the Trainer's way (pinned memory, asynchronous copies:
`minigpt.training.prefetch`), with TF32 on for what stays fp32 (`precision.enable_tf32`).

Against what: `ReferenceLM` of benchmarks/train_throughput.py (`nn.Embedding`, the same
positions, `nn.TransformerEncoderLayer(norm_first=True)` with a causal mask and `is_causal=True`
so PyTorch uses its fused attention kernel, a final `nn.LayerNorm`, a tied head), the same
sizes, the same optimizer and step, in the same process, alternating A, B, A, B. Ratio >= 1.0:
our hand-written model trains no slower than PyTorch's layers.

MFU = tokens/s x `model.flops_per_token()` (6N + attention, minigpt.scaling) / the card's
dense bf16 peak from its data sheet (`minigpt.training.mfu.PEAK_TFLOPS`; a card not in the
table gets a measured matmul peak). Goals, on an H100-class GPU: gpt2-small >= 40% MFU,
homework >= 250,000 tokens/s, minigpt / PyTorch >= 1.0; they are printed next to the figures.

    python benchmarks/gpu_throughput.py                  # the table (a few minutes on one GPU)
    python benchmarks/gpu_throughput.py --compile off    # skip torch.compile (no compile wait)
    python benchmarks/gpu_throughput.py --device cpu --presets homework --batch-size 1 \\
        --block-size 32 --steps 1 --rounds 1 --warmup 1 --compile off   # smoke run on a CPU

Without a CUDA GPU (and without an explicit --device cpu) it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, format_table, median, print_machine, synchronize  # noqa: E402
from train_throughput import ReferenceLM  # noqa: E402

from minigpt.config import ModelConfig  # noqa: E402
from minigpt.data import sample_windows  # noqa: E402
from minigpt.models import DecoderLM  # noqa: E402
from minigpt.objectives import causal_lm_batch  # noqa: E402
from minigpt.training.mfu import Peak, device_peak  # noqa: E402
from minigpt.training.optim import build_optimizer  # noqa: E402
from minigpt.training.precision import enable_tf32  # noqa: E402
from minigpt.training.prefetch import prefetch  # noqa: E402
from minigpt.training.step import train_step  # noqa: E402

PRESETS = ("homework", "gpt2-small")
# Windows per step: the homework recipe's 32 x 512 (minigpt.training.settings.RECIPES), and for
# gpt2-small 16 x 1024 (nanoGPT's GPT-2 recipe uses 12 x 1024 per micro-batch on a 40 GB A100).
BATCH = {"homework": 32, "gpt2-small": 16}
GOALS = {"gpt2-small MFU": 0.40, "homework tokens/s": 250_000, "minigpt / pytorch": 1.0}


def random_batches(
    vocab_size: int, batch_size: int, block: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless (inputs, targets) on `device`, drawn as the Trainer draws them (random windows of
    a token file, uint16 like a prepared one) and copied one batch ahead (pinned, async)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab_size, size=2_000_000, dtype=np.int64).astype(np.uint16)
    gen = torch.Generator().manual_seed(0)

    def draw() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield causal_lm_batch(sample_windows(tokens, batch_size, block + 1, gen))

    return prefetch(draw(), device, ahead=1)


def make_run(
    model: nn.Module, config: ModelConfig, batch_size: int, args: argparse.Namespace,
    compiled: bool,
) -> tuple[Callable[[], float], Callable[[], None]]:
    """(timed run -> tokens/s, one untimed step) for `model`, with its own optimizer and data."""
    device = torch.device(args.device)
    optimizer = build_optimizer(model, 3e-4, 0.1, (0.9, 0.95), device)  # fused on CUDA
    forward = torch.compile(model) if compiled else model
    scaler = torch.amp.GradScaler("cuda") if args.precision == "fp16" else None
    batches = random_batches(config.vocab_size, batch_size, config.max_len, device)

    def step() -> None:
        train_step(forward, [next(batches)], optimizer, precision=args.precision,
                   device=device, scaler=scaler, grad_clip=1.0)  # fmt: skip

    def run() -> float:
        synchronize(args.device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize(args.device)
        return args.steps * batch_size * config.max_len / (time.perf_counter() - start)

    return run, step


def bench_preset(
    name: str, compiled: bool, args: argparse.Namespace, peak: Peak
) -> dict[str, object]:
    """minigpt vs PyTorch layers at one preset, compiled or not: medians and peak memory."""
    overrides = {"dropout": 0.0} | ({"max_len": args.block_size} if args.block_size else {})
    config = ModelConfig.from_preset(name, **overrides)
    torch.manual_seed(0)
    models = {"minigpt": DecoderLM(config).to(args.device),
              "pytorch": ReferenceLM(config).to(args.device)}  # fmt: skip
    runs, memory = {}, {}
    for label, model in models.items():
        run, step = make_run(model.train(), config, args.batch_size or BATCH[name], args,
                             compiled)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.warmup):  # compiles (when asked), fills the allocator and Adam
            step()
        synchronize(args.device)
        warm_s = time.perf_counter() - start
        if args.device.startswith("cuda"):
            memory[label] = torch.cuda.max_memory_allocated() / 2**30
        runs[label] = run
        print(f"  {name} {'compiled' if compiled else 'eager'} {label}: warm-up {warm_s:.1f} s")
    rates = alternate(runs, args.rounds, args.device)
    fpt = float(models["minigpt"].flops_per_token())
    result = {"preset": name, "compiled": compiled, "fpt": fpt, "memory": memory,
              **{label: median(r) for label, r in rates.items()}}  # fmt: skip
    result["mfu"] = {k: result[k] * fpt / peak.flops for k in models}
    del models, runs
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def goal_lines(results: list[dict[str, object]]) -> list[str]:
    """Each goal next to the best measured figure it is about."""

    def best(preset: str, key: str) -> float | None:
        values = [r[key] for r in results if r["preset"] == preset]
        return max(values) if values else None

    lines = []
    gpt2 = [r["mfu"]["minigpt"] for r in results if r["preset"] == "gpt2-small"]
    if gpt2:
        goal = GOALS["gpt2-small MFU"]
        lines.append(f"gpt2-small MFU >= {goal:.0%}: best {max(gpt2):.1%} "
                     f"({'met' if max(gpt2) >= goal else 'not met'})")  # fmt: skip
    homework = best("homework", "minigpt")
    if homework is not None:
        goal = GOALS["homework tokens/s"]
        lines.append(f"homework >= {goal:,} tokens/s: best {homework:,.0f} "
                     f"({'met' if homework >= goal else 'not met'})")  # fmt: skip
    ratios = [r["minigpt"] / r["pytorch"] for r in results]
    if ratios:
        goal = GOALS["minigpt / pytorch"]
        lines.append(f"minigpt / pytorch >= {goal:.1f} in every row: lowest {min(ratios):.3f} "
                     f"({'met' if min(ratios) >= goal else 'not met'})")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    """Parse flags, measure every preset x compile setting, print the table and the goals."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a smoke run")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--compile", nargs="+", default=["off", "on"], choices=("off", "on"),
                        help="eager, torch.compile, or both (default: both)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="windows per step (default: homework 32, gpt2-small 16)")
    parser.add_argument("--block-size", type=int, default=None,
                        help="tokens per window (default: the preset's, 512 / 1024)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (and compiling)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_throughput: no CUDA GPU here (torch {torch.__version__}); nothing measured")
        return []
    device = torch.device(args.device)
    enable_tf32(device)
    print("GPU training throughput: minigpt DecoderLM vs nn.TransformerEncoderLayer reference")
    print_machine(args.device)
    peak = device_peak(device, args.precision)
    print(f"  peak: {peak.describe()}")
    results = [bench_preset(name, mode == "on", args, peak)
               for name in args.presets for mode in args.compile]  # fmt: skip
    rows = []
    for r in results:
        mem = r["memory"]
        rows.append([
            r["preset"], "compile" if r["compiled"] else "eager",
            f"{r['minigpt']:,.0f}", f"{r['pytorch']:,.0f}", f"{r['minigpt'] / r['pytorch']:.3f}",
            f"{r['mfu']['minigpt']:.1%}", f"{r['mfu']['pytorch']:.1%}",
            " / ".join(f"{mem[k]:.1f}" for k in ("minigpt", "pytorch")) if mem else "-",
        ])  # fmt: skip
    headers = ["preset", "mode", "minigpt tok/s", "pytorch tok/s", "ratio", "MFU minigpt",
               "MFU pytorch", "peak GiB (ours / pt)"]  # fmt: skip
    print(f"\n{args.precision}, {args.steps} steps per run, {args.rounds} alternating rounds, "
          f"medians; MFU against {peak.describe()}")  # fmt: skip
    print(format_table(headers, rows))
    print("\ngoals (for an H100-class GPU; this run: "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else device.type}):")
    for line in goal_lines(results):
        print(f"  {line}")
    return results


if __name__ == "__main__":
    main()
