"""Lesson 13 — Pipeline parallelism: cut the model into stages, keep every stage busy.

Data parallelism (lesson 12) needs a whole copy of the model on every device. That stops
working when the model does not fit on one: GPT-3 has 175 billion parameters, 700 GB at 4
bytes each just to hold the weights, while the largest GPUs of its time held 32 GB (V100)
and today's 80-192 GB. So we cut the model itself. A transformer is a stack of identical
blocks, and between two blocks only one tensor flows — the residual stream, (batch, tokens,
d_model) — so we give device 0 the embeddings and the first blocks, device 1 the next ones,
..., and the last device the final blocks, the LM head and the loss. The cut is balanced (a
pipeline runs at the pace of its slowest stage), and one detail is easy to forget: the loss
is computed on the *last* device, so the targets must get there, while the inputs start on
the first. Forward, activations travel down the pipe; backward, their gradients travel up.

The catch is idle time. With one batch, device 1 waits while device 0 computes, and in the
backward device 0 waits for everyone: of S devices only one works at a time. GPipe (Huang et
al. 2019) splits the batch into M micro-batches and streams them: as soon as device 0 has
finished micro-batch 0 it passes it on and starts micro-batch 1. The idle share — the
"bubble" — falls from (S-1)/S to (S-1)/(M+S-1), and the gradient is unchanged: each
micro-batch's loss is weighted by its share of the batch, so the gradients summed over the
micro-batches are the whole batch's (gradient accumulation, computed in a pipeline).

GPipe runs all M forwards before any backward, so every stage keeps the activations of all M
micro-batches: the memory grows with M, the very number that shrinks the bubble. 1F1B
(Narayanan et al. 2021) starts each micro-batch's backward as soon as it can — a few warm-up
forwards, then one forward, one backward, ... — with the same bubble but at most S - s
micro-batches alive on stage s, however large M is. Zero-bubble scheduling (ZB-H1, Qi et al.
2023) notices that a backward does two things: the gradient of the stage's *input* (B),
which the previous stage is waiting for, and the gradient of its *weights* (W), which nobody
waits for. Send B upstream at once and do the W's later, in the gaps: with equal F, B and W
times the bubble shrinks to a third of 1F1B's, and no stage holds more micro-batches than
1F1B's stage 0 does.

This lesson first plays the three schedules with unit-time operations (4 stages; M = 1, 4,
8), then runs them for real: 2 processes joined by gloo, one stage each, timed; the measured
idle share is compared with the theory, the activations each stage held with the schedule's
bound, and the pipelined loss with one process's.

Measured on a 2-core AMD EPYC CPU (torch 2.13) with one thread, while other jobs kept it busy
(load average 15-26): quick mode 17 s, full mode 53 s of CPU time (a quiet 2-core machine needs
about that or less); the busy machine took 2 min 50 s and 7 min 02 s of wall-clock time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 8.9 s,
full mode 31 s.

Run:  python lessons/13_pipeline_parallel.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import torch
import torch.distributed as dist

from minigpt.config import ModelConfig
from minigpt.lesson import report_plot, run_lesson
from minigpt.models import DecoderLM
from minigpt.parallel.launch import spawn
from minigpt.parallel.pipeline import PipelineParallel
from minigpt.parallel.schedules import (
    SCHEDULES,
    bubble_fraction,
    make_schedule,
    peak_in_flight,
    simulate,
    textbook_bubble,
)
from minigpt.parallel.stages import partition
from minigpt.plots import plot_pipeline_timeline

SIM_STAGES, REAL_STAGES, MICRO = 4, 2, (1, 4, 8)
QUICK = dict(vocab=256, seq=32, d_model=96, n_heads=4, n_layers=4, d_ff=384, rows=16, runs=3)
FULL = dict(vocab=512, seq=64, d_model=192, n_heads=4, n_layers=6, d_ff=768, rows=32, runs=5)
GPT3 = dict(n_params=175e9, bytes_per_param=4, gpu_gb=80)


def config(p: dict) -> ModelConfig:
    return ModelConfig(vocab_size=p["vocab"], max_len=p["seq"], d_model=p["d_model"],
                       n_heads=p["n_heads"], n_layers=p["n_layers"], d_ff=p["d_ff"],
                       dropout=0.0)  # fmt: skip


def batch(p: dict, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, p["vocab"], (p["rows"], p["seq"] + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]  # (rows, T) inputs, next-token targets


def _rank_main(rank: int, p: dict, seed: int = 0) -> dict:
    """On each rank: every schedule at every M, a warm-up step then `runs` timed ones; the
    run with the median bubble is kept (a busy machine disturbs single runs)."""
    x, y = batch(p, seed)
    out = {}
    for name in SCHEDULES:
        for micro in MICRO:
            torch.manual_seed(seed)
            model = DecoderLM(config(p))
            pp = PipelineParallel(model, REAL_STAGES, micro, name)
            runs = []
            for attempt in range(p["runs"] + 1):
                model.zero_grad(set_to_none=True)
                dist.barrier()  # align the ranks' clocks: each timeline starts here
                result = pp.forward_backward(x, y)
                if attempt > 0:  # the first one warms up allocators and thread pools
                    runs.append(result)
            ends = torch.tensor([r.events[-1].end for r in runs])
            dist.all_reduce(ends, op=dist.ReduceOp.MAX)  # the step lasts until the last rank
            out[(name, micro)] = {
                "runs": [r.events for r in runs],
                "loss": None if runs[0].loss is None else float(runs[0].loss),
                "peak": runs[0].peak_in_flight,
                "bytes": runs[0].peak_activation_bytes,
            }
            if rank == 0:  # progress: one line per schedule and M
                print(f"   {name}, M = {micro}: {p['runs']} timed steps done", flush=True)
    return out


def gpt3_devices() -> tuple[float, int]:
    """GB for GPT-3's weights in fp32, and the devices needed only to hold them."""
    gb = GPT3["n_params"] * GPT3["bytes_per_param"] / 1e9
    return gb, int(-(-gb // GPT3["gpu_gb"]))


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/13_pipeline_parallel",
    seed: int = 0,
) -> dict:
    """Run the lesson; return its key numbers (tests assert on them). `seed` sets the model's
    weights and the batch."""
    p = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if device not in (None, "cpu"):
        print(f"(the stages talk over gloo on the CPU; device={device!r} is not used here)")
    results: dict = {}
    plots: list[Path] = []

    gb, devices = gpt3_devices()
    print(f"1. Why cut a model: GPT-3's {GPT3['n_params'] / 1e9:.0f}B parameters x "
          f"{GPT3['bytes_per_param']} bytes = {gb:.0f} GB of weights alone;\n   on "
          f"{GPT3['gpu_gb']} GB devices that is at least {devices} devices before any "
          "activation, gradient or optimizer state.")  # fmt: skip
    results |= {"gpt3_weights_gb": gb, "gpt3_min_devices": devices}
    model = DecoderLM(config(p))
    counts = partition(model, REAL_STAGES)
    print(f"   Our {model.num_parameters():,}-parameter GPT ({p['n_layers']} blocks) cut into "
          f"{REAL_STAGES} stages by whole blocks, balanced by parameters: {counts} blocks\n"
          "   (stage 0 also holds the embeddings; the last stage the final norm, the head "
          "and the loss).")  # fmt: skip
    results["partition"] = counts

    print(f"\n2. The schedules, played with unit-time passes on {SIM_STAGES} stages "
          "(F = B = W = 1; a whole backward = 2)")  # fmt: skip
    print("   schedule   M   bubble   (S-1)/(M+S-1)   peak micro-batches alive per stage")
    theory: dict = {}
    for name in SCHEDULES:
        panels = {}
        for micro in MICRO:
            schedule = make_schedule(name, SIM_STAGES, micro)
            events = simulate(schedule)
            theory[(name, micro)] = bubble_fraction(events)
            peaks = [peak_in_flight(ops) for ops in schedule]
            print(f"   {name:8s} {micro:3d}   {theory[(name, micro)]:6.1%}   "
                  f"{textbook_bubble(SIM_STAGES, micro):13.1%}   {peaks}")  # fmt: skip
            panels[f"{name}, M = {micro}: bubble {theory[(name, micro)]:.0%}"] = events
        plots.append(report_plot(plot_pipeline_timeline(
            panels, out / f"simulated_{name}.png",
            title=f"{name}: {SIM_STAGES} stages, unit-time passes (simulated)")))  # fmt: skip
    print("   GPipe and 1F1B share the bubble; 1F1B holds at most S - s micro-batches where "
          "GPipe holds M;\n   ZB-H1 fills the gaps with deferred weight gradients.")  # fmt: skip
    results["theory_bubble"] = {f"{n} M={m}": b for (n, m), b in theory.items()}
    sim = {f"{n} M={m}": theory[(n, m)] for n in SCHEDULES for m in MICRO}

    print(f"\n3. For real: {REAL_STAGES} processes (gloo), one stage each, a batch of "
          f"{p['rows']} windows of {p['seq']} tokens ...")  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"   (this machine: {os.cpu_count()} cores, load average {load:.1f}: with fewer free "
          f"cores than the {REAL_STAGES} ranks,\n   they take turns and the measured bubble "
          "grows with that wait)")  # fmt: skip
    ranks = spawn(_rank_main, REAL_STAGES, args=(p, seed), timeout=600)
    torch.manual_seed(seed)
    with torch.no_grad():
        reference = float(DecoderLM(config(p))(*batch(p, seed))[1])  # one process, the whole batch
    eps = torch.finfo(torch.float32).eps
    print("   schedule   M   measured bubble   theory   peak alive (bound)   loss - one process")
    measured, memory, loss_diff = {}, {}, {}
    for name in SCHEDULES:
        panels = {}
        for micro in MICRO:
            runs = [sum((r[(name, micro)]["runs"][i] for r in ranks), [])
                    for i in range(p["runs"])]  # fmt: skip
            bubbles = [bubble_fraction(events) for events in runs]
            median = statistics.median(bubbles)
            events = runs[bubbles.index(median)]
            ideal = bubble_fraction(simulate(make_schedule(name, REAL_STAGES, micro)))
            schedule = make_schedule(name, REAL_STAGES, micro)
            peaks = [r[(name, micro)]["peak"] for r in ranks]
            bounds = [peak_in_flight(ops) for ops in schedule]
            diff = abs(ranks[-1][(name, micro)]["loss"] - reference)
            key = f"{name} M={micro}"
            measured[key], memory[key], loss_diff[key] = median, (peaks, bounds), diff
            results.setdefault("real_theory_bubble", {})[key] = ideal
            print(f"   {name:8s} {micro:3d}   {median:15.1%}   {ideal:6.1%}   "
                  f"{str(peaks):>10s} ({bounds})   {diff:.1e} ({diff / eps:.1f} eps)")  # fmt: skip
            panels[f"{name}, M = {micro}: measured bubble {median:.0%} "
                   f"(unit-time theory {ideal:.0%})"] = events  # fmt: skip
        plots.append(report_plot(plot_pipeline_timeline(
            panels, out / f"measured_{name}.png", scale=1e3, xlabel="time (ms)",
            title=f"{name}: {REAL_STAGES} processes on this CPU (measured)")))  # fmt: skip
    print("   Real passes are not unit-time (a backward is ~2 forwards, sends and receives cost "
          "time,\n   and here W re-walks the graph: see minigpt/parallel/executor.py), so the "
          "measured bubble\n   follows the theory's trend, not its digits. The loss is the one "
          "process's to float rounding.")  # fmt: skip
    results |= {"simulated_bubble": sim, "measured_bubble": measured, "memory": memory,
                "loss_vs_single": loss_diff, "reference_loss": reference,
                "plots": [str(path) for path in plots]}  # fmt: skip
    return results


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/13_pipeline_parallel",
        quick_help="small model, few runs (< 60 s)",
        device_help="accepted for uniformity; ranks use CPU",
        out_help="where the timeline charts are saved",
    )
