"""Pipeline parallel step time and bubble: 2 and 4 stages on CPU processes, every schedule.

S gloo ranks, one torch thread each, each one stage of the same 8-block GPT, train on the
same global batch cut into M = 1, 4, 8 micro-batches (forward, backward, gradient sync,
AdamW). Each round times one step of every (schedule, M) in turn, so a busy minute slows
them all alike, and one process doing the same step alone on one thread is timed in every
round too. The table shows the median step, its ratio to that one process, the measured
bubble (idle share of the ranks' time in a step's timeline, median over rounds) and the
unit-time theory of the schedule (F = B = W, no communication).

Read the ratio with the machine in mind: S ranks need S free cores to overlap, and on a
machine with fewer cores than ranks (or other load) they take turns, so the step is slower
than one process and the bubble is partly the scheduler's. Pipeline parallelism exists to
fit a model that one device cannot hold, not to beat one device that can.

Run:  python benchmarks/pipeline.py [--stages 2 4] [--rounds 5] [--rows 16] [--seq 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py
from common import format_table, print_machine  # noqa: E402

from minigpt.config import ModelConfig  # noqa: E402
from minigpt.models import DecoderLM  # noqa: E402
from minigpt.parallel.launch import spawn  # noqa: E402
from minigpt.parallel.pipeline import PipelineOptimizer, PipelineParallel  # noqa: E402
from minigpt.parallel.schedules import SCHEDULES, bubble_fraction, theoretical_bubble  # noqa: E402

MICRO = (1, 4, 8)


def model_config(seq: int) -> ModelConfig:
    return ModelConfig(vocab_size=1024, max_len=seq, d_model=256, n_heads=4, n_layers=8,
                       d_ff=1024, dropout=0.0)  # fmt: skip


def batch(rows: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 1024, (rows, seq + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def _rank_main(rank: int, n_stages: int, rounds: int, rows: int, seq: int) -> dict:
    """On each rank: every (schedule, M) built once, then one timed step of each per round."""
    x, y = batch(rows, seq)
    runs = {}
    for name in SCHEDULES:
        for micro in MICRO:
            torch.manual_seed(0)
            model = DecoderLM(model_config(seq))
            pp = PipelineParallel(model, n_stages, micro, name)
            opt = PipelineOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-4), pp)
            runs[(name, micro)] = (model, pp, opt)
    times: dict = {key: [] for key in runs}
    events: dict = {key: [] for key in runs}
    single = SingleProcess(seq, x, y) if rank == 0 else None
    single_times = []
    for i in range(rounds + 1):  # round 0 warms up
        dist.barrier()  # rank 0 times one process alone while the others wait: side by side
        if single is not None and i > 0:
            single_times.append(single.step())
        elif single is not None:
            single.step()
        for key, (model, pp, opt) in runs.items():
            dist.barrier()
            start = time.perf_counter()
            pp.train_step(model, [(x, y)], opt)
            elapsed = torch.tensor([time.perf_counter() - start])
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # a step ends when all ranks are
            if i > 0:
                times[key].append(elapsed.item())
                events[key].append(pp.last.events)
    return {"times": times, "events": events, "single": single_times}


class SingleProcess:
    """The same step (whole batch, AdamW) on one process and its one thread, for the ratio."""

    def __init__(self, seq: int, x: torch.Tensor, y: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.model = DecoderLM(model_config(seq))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.x, self.y = x, y

    def step(self) -> float:
        start = time.perf_counter()
        self.model(self.x, self.y)[1].backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[2, 4], help="pipeline sizes")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per candidate")
    parser.add_argument("--rows", type=int, default=16, help="windows in the global batch")
    parser.add_argument("--seq", type=int, default=64, help="tokens per window")
    args = parser.parse_args()
    print("machine:")
    print_machine()
    rows = []
    for n_stages in args.stages:
        ranks = spawn(_rank_main, n_stages, args=(n_stages, args.rounds, args.rows, args.seq),
                      timeout=1200)  # fmt: skip
        single = statistics.median(ranks[0]["single"])
        print(
            f"{n_stages} stages: one process, one thread, the whole batch ({args.rows} x "
            f"{args.seq} tokens), timed between their rounds: {single * 1e3:.0f} ms per step"
        )
        for name in SCHEDULES:
            for micro in MICRO:
                step = statistics.median(ranks[0]["times"][(name, micro)])
                timelines = [sum((r["events"][(name, micro)][i] for r in ranks), [])
                             for i in range(args.rounds)]  # fmt: skip
                bubble = statistics.median(bubble_fraction(t) for t in timelines)
                theory = theoretical_bubble(name, n_stages, micro)
                rows.append((n_stages, name, micro, f"{step * 1e3:.0f}", f"{step / single:.2f}",
                             f"{bubble:.0%}", f"{theory:.0%}"))  # fmt: skip
    print()
    print(format_table(("stages", "schedule", "M", "step ms", "vs 1 process", "bubble measured",
                        "bubble theory"), rows))  # fmt: skip


if __name__ == "__main__":
    main()
