"""Training throughput of minigpt's DecoderLM against a model built from PyTorch's own layers.

What is measured: tokens per second of a full training step (forward, loss, backward, AdamW
step) on random token windows, for the `tiny` preset and for a 6-layer, 384-wide, 6-head,
block-256 model (the shape of nanoGPT's character-level Shakespeare recipe).

Against what: a reference language model of exactly the same sizes assembled from
`nn.Embedding`, the same positional encoding, `nn.TransformerEncoderLayer(norm_first=True,
batch_first=True, activation="gelu")` run with a causal mask and `is_causal=True` (so PyTorch
hands attention to its fused `scaled_dot_product_attention` kernel), a final `nn.LayerNorm` and a
head tied to the embedding. Both run in the same process, alternating (A, B, A, B, ...); each
round's pair is measured back to back, so the ratio reported is the median over rounds of
minigpt / pytorch within a round (a slow minute on a shared machine hits both halves of a pair),
with the lowest and highest round next to it. Ratio >= 1.0 means our hand-written model trains
no slower than PyTorch's.

Both sides get the same optimizer with the same settings: by default PyTorch's fused AdamW
kernel (`--adamw fused`), which is what minigpt's trainer uses on CPU and CUDA
(`minigpt.training.optim.fused_adamw`) and PyTorch's fastest AdamW there; `--adamw loop` is
AdamW's per-tensor default, for comparison. The fused kernel matters for the comparison: the
loop costs ~10 small ops per parameter tensor, and minigpt has 16 (tiny) to 24 (6x384) more
tensors than the reference (separate q/k/v weights where `nn.MultiheadAttention` keeps one
`in_proj_weight`): AdamW's step took 15 ms vs 9 ms (tiny, 1 thread) with the loop, 4 vs 3 ms fused.

What minigpt's side runs that the reference does not: its speed tricks (`minigpt/speedups.py`),
among them float32 linears by oneDNN on AMD CPUs, where PyTorch's stock layers use MKL. The
reference is PyTorch's layers exactly as a user gets them; nothing is switched off on its side.

Model-FLOPs utilisation (MFU): achieved FLOP/s / peak FLOP/s, where achieved = tokens/s times
the model's `flops_per_token()` (6N for the matmuls of forward + backward, plus the attention
score/mix term; Kaplan et al. 2020, PaLM appendix B) and the peak is the best square-matmul rate
measured by this script, in the same run, in the same precision. bf16 runs use CPU/CUDA autocast.

    python benchmarks/train_throughput.py            # full run (a few minutes on 2 cores)
    python benchmarks/train_throughput.py --quick    # smoke run (< 1 min)
    python benchmarks/train_throughput.py --profile  # also print where the time goes
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    alternate,
    default_device,
    format_table,
    load_average,
    matmul_peak,
    median,
    print_machine,
    synchronize,
)

from minigpt.config import ModelConfig  # noqa: E402
from minigpt.models import DecoderLM  # noqa: E402
from minigpt.training.optim import fused_adamw  # noqa: E402

# How the AdamW step runs, for both models alike (see the module docstring).
ADAMW_KINDS = ("fused", "loop")


class ReferenceLM(nn.Module):
    """A GPT-style LM made of PyTorch's stock layers, sized from a minigpt ModelConfig."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, t = config.d_model, config.max_len
        self.embed = nn.Embedding(config.vocab_size, d)
        # DecoderLM multiplies token vectors by sqrt(d) when scale_embeddings; same work here.
        self.embed_scale = math.sqrt(d) if config.scale_embeddings else 1.0
        if config.positional == "learned":
            self.pos = nn.Parameter(torch.zeros(t, d))
        else:
            # Vaswani et al. 2017, section 3.5: sin on even, cos on odd dims, wavelengths
            # from 2*pi to 10000*2*pi.
            position = torch.arange(t, dtype=torch.float32)[:, None]
            inv_freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(1e4) / d))
            table = torch.zeros(t, d)
            table[:, 0::2] = torch.sin(position * inv_freq)
            table[:, 1::2] = torch.cos(position * inv_freq)
            self.register_buffer("pos", table, persistent=False)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d,
                config.n_heads,
                dim_feedforward=config.d_ff,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
                bias=config.bias,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(d, bias=config.bias)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied, as DecoderLM's default
        # PyTorch's float causal mask (0 keep / -inf drop); with is_causal=True and
        # need_weights=False, MultiheadAttention drops it and asks SDPA for its causal kernel.
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        self.register_buffer("mask", mask, persistent=False)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Same signature as DecoderLM: (logits (B, T, V), mean cross-entropy or None)."""
        t = idx.shape[1]
        x = self.embed(idx) * self.embed_scale + self.pos[:t]  # (B, T, d)
        mask = self.mask[:t, :t]
        for layer in self.layers:
            x = layer(x, src_mask=mask, is_causal=True)
        logits = self.head(self.norm(x))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss


def large_config(vocab_size: int) -> ModelConfig:
    """The 6-layer, 384-wide, 6-head, block-256 shape the issue names (d_ff = 4 d)."""
    return ModelConfig(
        vocab_size=vocab_size,
        max_len=256,
        d_model=384,
        n_heads=6,
        n_layers=6,
        d_ff=1536,
        dropout=0.0,
    )


def tiny_config(vocab_size: int) -> ModelConfig:
    """The `tiny` preset (the lessons' size; the CPU main job trains it at half width), with
    dropout off so both models do identical work."""
    config = ModelConfig.from_preset("tiny", vocab_size=vocab_size)
    return ModelConfig.from_dict({**config.to_dict(), "dropout": 0.0})


def autocast_context(
    precision: str, device: str
) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the context each step runs in: nothing for fp32, bf16 autocast otherwise."""
    if precision == "fp32":
        return contextlib.nullcontext
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    return lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def make_stepper(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    precision: str,
    device: str,
    adamw: str = "fused",
) -> Callable[[], None]:
    """One AdamW training step on a fixed batch, as a closure the timer can call.

    `adamw` (one of ADAMW_KINDS) is the same for both models: "fused" asks for the kernel
    minigpt's trainer uses on this device, "loop" for AdamW's per-tensor default.
    """
    fused = fused_adamw(torch.device(device)) if adamw == "fused" else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=fused)
    ctx = autocast_context(precision, device)
    inputs, targets = batch

    def step() -> None:
        with ctx():
            _, loss = model(inputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed_run(step: Callable[[], None], steps: int, tokens_per_step: int, device: str):
    """Return a callable that times `steps` steps and gives tokens/s."""

    def run() -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        return steps * tokens_per_step / (time.perf_counter() - start)

    return run


def profile_step(name: str, step: Callable[[], None], steps: int, rows: int) -> None:
    """Print the operators that take the most time in `steps` training steps."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    print(f"\n--- profile: {name} ({steps} steps, sorted by self CPU time) ---")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def bench_model(
    label: str, config: ModelConfig, args: argparse.Namespace
) -> list[dict[str, object]]:
    """Measure DecoderLM vs ReferenceLM in each precision; one result dict per precision."""
    torch.manual_seed(0)
    ours = DecoderLM(config).to(args.device).train()
    torch.manual_seed(0)
    ref = ReferenceLM(config).to(args.device).train()
    fpt = float(ours.flops_per_token())
    n_ours, n_ref = ours.num_parameters(), sum(p.numel() for p in ref.parameters())
    print(
        f"\n{label}: d_model={config.d_model} layers={config.n_layers} heads={config.n_heads} "
        f"d_ff={config.d_ff} block={config.max_len} vocab={config.vocab_size} "
        f"params ours={n_ours / 1e6:.2f}M ref={n_ref / 1e6:.2f}M  "
        f"flops/token={fpt / 1e6:.1f}M"
    )
    g = torch.Generator().manual_seed(0)
    windows = torch.randint(
        0, config.vocab_size, (args.batch_size, config.max_len + 1), generator=g
    )
    batch = (windows[:, :-1].to(args.device), windows[:, 1:].to(args.device))
    tokens_per_step = args.batch_size * config.max_len
    results = []
    for precision in args.precisions:
        steppers = {
            "minigpt": make_stepper(ours, batch, precision, args.device, args.adamw),
            "pytorch": make_stepper(ref, batch, precision, args.device, args.adamw),
        }
        for step in steppers.values():  # warm-up: allocator, thread pools, optimizer state
            for _ in range(args.warmup):
                step()
        runs = {
            k: timed_run(s, args.steps, tokens_per_step, args.device) for k, s in steppers.items()
        }
        load_before = load_average()
        rates = alternate(runs, args.rounds, args.device)
        ours_tps, ref_tps = median(rates["minigpt"]), median(rates["pytorch"])
        # each round's two runs are back to back: their ratio cancels the machine's slow minutes
        paired = [a / b for a, b in zip(rates["minigpt"], rates["pytorch"], strict=True)]
        ratio = median(paired)
        load = max(load_before, load_average())
        print(
            f"  {precision}: minigpt {ours_tps:,.0f} tok/s, pytorch {ref_tps:,.0f} tok/s, "
            f"ratio {ratio:.3f} (rounds {min(paired):.3f}-{max(paired):.3f}, load {load:.2f})"
        )
        results.append(
            dict(model=label, precision=precision, ours=ours_tps, ref=ref_tps, fpt=fpt, load=load,
                 ratio=ratio, low=min(paired), high=max(paired))
        )  # fmt: skip
        if args.profile:
            for name, step in steppers.items():
                profile_step(f"{label} {precision} {name}", step, args.profile_steps, 20)
    return results


def measure_peaks(args: argparse.Namespace, peaks: dict[str, float]) -> None:
    """Update `peaks` with a fresh best-of-N matmul rate per precision (keeping the best seen).

    Measured before and after every model: on a shared machine one measurement can land in a
    busy second, and a too-low peak would inflate the MFU. The best of all of them is used.
    """
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    size = 1024 if args.quick else 2048
    for p in args.precisions:
        flops = matmul_peak(dtypes[p], size, 3 if args.quick else 10, args.device)
        peaks[p] = max(peaks.get(p, 0.0), flops)
        print(f"  matmul {p} ({size}x{size}, best of N): {flops / 1e9:,.0f} GFLOP/s")


def main(argv: list[str] | None = None) -> list[list[object]]:
    """Parse flags, measure peaks, benchmark both shapes, print the table; return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed run")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["tiny", "6x384"], choices=["tiny", "6x384"])
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"]
    )
    parser.add_argument(
        "--adamw", default="fused", choices=ADAMW_KINDS, help="AdamW kernel, the same for both"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables")
    parser.add_argument("--profile-steps", type=int, default=2)
    args = parser.parse_args(argv)
    args.device = args.device or default_device()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batch_size, args.steps, args.rounds, args.warmup = 2, 1, 2, 1

    print("Training throughput: minigpt DecoderLM vs nn.TransformerEncoderLayer reference")
    print_machine(args.device)
    peaks: dict[str, float] = {}
    measure_peaks(args, peaks)
    configs = {"tiny": tiny_config, "6x384": large_config}
    results = []
    for name in args.models:
        results += bench_model(name, configs[name](args.vocab_size), args)
        measure_peaks(args, peaks)
    rows = [
        [
            r["model"],
            r["precision"],
            f"{r['ours']:,.0f}",
            f"{r['ref']:,.0f}",
            f"{r['ratio']:.3f}",
            f"{r['low']:.2f}-{r['high']:.2f}",
            f"{100 * r['ours'] * r['fpt'] / peaks[r['precision']]:.1f}%",
            f"{100 * r['ref'] * r['fpt'] / peaks[r['precision']]:.1f}%",
            f"{r['load']:.2f}",
        ]
        for r in results
    ]
    headers = ["model", "precision", "minigpt tok/s", "pytorch tok/s", "ratio", "rounds"]
    headers += ["MFU minigpt", "MFU pytorch", "load"]
    peak_text = ", ".join(f"{p} {f / 1e9:,.0f} GFLOP/s" for p, f in peaks.items())
    print(
        f"\nbatch {args.batch_size}, {args.steps} steps/run, {args.rounds} alternating rounds, "
        f"AdamW {args.adamw} for both; tok/s: medians; ratio: median over rounds of "
        "minigpt / pytorch within the round (rounds: lowest-highest)\n"
        f"MFU = tok/s x model.flops_per_token() / best matmul peak of the run ({peak_text})"
    )
    print(format_table(headers, rows))
    return rows


if __name__ == "__main__":
    main()
