"""Lesson 11 — Scaling laws: how big a model a compute budget should buy, and how long to train it.

A pretraining run is limited by compute: GPUs x time x efficiency. Its cost in floating-point
operations is about C = 6 N D for N parameters and D training tokens — each token passes
every weight once forward (a multiply and an add: 2 N) and twice backward (4 N) (Kaplan et
al. 2020). Budgets are quoted in petaflop/s-days, 10^15 operations per second for a day
(8.64e19 operations): GPT-3 (175B parameters, 300B tokens) took ~3,600 of them.

For a fixed C, N and D trade off: a bigger model sees fewer tokens. Kaplan et al. found the
loss falls as a power law in N, in D and in C, and advised spending most of a larger budget
on parameters. Hoffmann et al. 2022 ("Chinchilla") trained 400+ models and found instead that
N and D should grow *equally*, about 20 tokens per parameter: their 70B Chinchilla, trained
on 1.4T tokens with Gopher's budget, beat the 280B Gopher. The course's table lists models
of the time against that rule: LLaMA-65B (1.4T tokens) follows it; GPT-3 (300B), OPT-175B
(180B) and BLOOM (350B) would have needed ~3.5T.

This lesson recomputes the table and the budgets (`minigpt.scaling`), then runs the
experiment itself at toy scale: several widths of a 2-layer GPT are trained on Python's
documentation (one token per character) for a few fixed compute budgets each, every run
spending exactly its budget (steps = C / (FLOPs per token x tokens per step)). Along one
budget the validation loss against log N is a valley — too small a model cannot learn more,
too big a one sees too few tokens — and the bottom of a parabola fitted to it is that
budget's optimal N (Chinchilla's "approach 2", IsoFLOP profiles). Fitting N_opt = k C^a over
the budgets gives the scaling exponent (Chinchilla: a ~ 0.5; Kaplan: ~ 0.73), and D_opt / N_opt
the tokens per parameter. At a few seconds of CPU per run these numbers are noisy and the
character-level task is not web text, so read them as the method, not as a replication.

Measured on a 2-core AMD EPYC CPU (torch 2.13) while other jobs shared it: quick mode 18 s,
full mode 2 min 51 s of wall-clock time (at its largest budget the valley is inside the sweep).
Measured again with one thread while other jobs kept the machine busy: quick mode 23 s of CPU
time (load average ~18; 4 min 24 s of wall-clock time there), full mode 1 min 30 s of CPU time
(load average ~2.5; 1 min 43 s of wall-clock time). Every run prints a line with the time so
far.
On the same machine idle (load average below 2, two threads), wall clock: --quick 17 s,
full mode 96 s.

Run:  python lessons/11_scaling_laws.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from minigpt.config import ModelConfig
from minigpt.data import prepare, sample_windows
from minigpt.device import resolve_device
from minigpt.lesson import run_lesson, save_figure
from minigpt.models import DecoderLM
from minigpt.objectives import causal_lm_batch
from minigpt.scaling import (
    COURSE_MODELS,
    chinchilla_optimal,
    compute_optimal_tokens,
    count_parameters,
    fit_power_law,
    flops_per_token,
    isoflop_optimum,
    to_pflops_days,
    training_flops,
)
from minigpt.tokenizer import EOT
from minigpt.training.evaluation import evaluate_loss
from minigpt.training.optim import lr_at
from minigpt.training.settings import OBJECTIVES

QUICK = dict(widths=(8, 16, 32), budgets=(1e9, 3e9, 1e10), batch=16, block=32,
             eval_batches=12)  # fmt: skip
FULL = dict(widths=(8, 16, 24, 32, 48, 64), budgets=(1e9, 3e9, 1e10, 3e10, 1e11), batch=16,
            block=64, eval_batches=40)  # fmt: skip
N_LAYERS, LR = 2, 1e-2  # a high rate: these runs are only tens to thousands of steps


def course_table() -> list[dict]:
    print("1. Compute-optimal data (Hoffmann et al. 2022): ~20 tokens per parameter")
    print(f"   {'model':12s}{'params':>8s}{'optimal tokens':>16s}{'actual':>9s}"
          f"{'actual/optimal':>16s}{'PF/s-days':>11s}")  # fmt: skip
    rows = []
    for m in COURSE_MODELS:
        opt = compute_optimal_tokens(m.n_params)
        days = to_pflops_days(training_flops(m.n_params, m.tokens))
        rows.append({"name": m.name, "n_params": m.n_params, "optimal_tokens": opt,
                     "tokens": m.tokens, "ratio": m.tokens / opt, "pflops_days": days})
        print(f"   {m.name:12s}{m.n_params / 1e9:7.0f}B{opt / 1e12:14.2f}T{m.tokens / 1e12:8.2f}T"
              f"{m.tokens / opt:16.2f}{days:11,.0f}")
    c = training_flops(70e9, 1.4e12)
    n, d = chinchilla_optimal(c)
    print(f"   Chinchilla's budget, {c:.2e} FLOPs ({to_pflops_days(c):,.0f} PF/s-days), split "
          f"20:1 gives {n / 1e9:.0f}B parameters and {d / 1e12:.1f}T tokens")
    n10, d10 = chinchilla_optimal(10 * c)
    print(f"   ten times that budget: {n10 / 1e9:.0f}B parameters on {d10 / 1e12:.1f}T tokens "
          "(each grows by sqrt(10) = 3.2x)")
    return rows


def train_run(
    config: ModelConfig, data, budget: float, p: dict, device: torch.device, seed: int = 0
) -> dict:
    """Train one model for exactly `budget` FLOPs (rounded to whole steps); its val loss."""
    torch.manual_seed(seed)
    model = DecoderLM(config).to(device)
    tokens_per_step = p["batch"] * p["block"]
    fpt = flops_per_token(config, seq_len=p["block"])
    steps = max(1, round(budget / (fpt * tokens_per_step)))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1)
    gen = torch.Generator().manual_seed(seed)
    warmup = max(1, steps // 10)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, lr=LR, min_lr=LR / 10, warmup_steps=warmup, max_steps=steps)
        inputs, targets = causal_lm_batch(sample_windows(data.train, p["batch"], p["block"] + 1,
                                                         gen))  # fmt: skip
        _, loss = model(inputs.to(device), targets.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    batch_fn = OBJECTIVES["clm"].batches(data.tokenizer)
    val, _ = evaluate_loss(model, data.val, batch_fn, p["batch"], p["block"] + 1, device,
                           "fp32", p["eval_batches"])  # fmt: skip
    d = steps * tokens_per_step
    # N for the fits is what a token pays for, FLOPs per token / 6 (the non-embedding weights,
    # the output projection and the attention maps' share), so that C = 6 N D holds exactly
    return {"d_model": config.d_model, "n_params": fpt / 6, "tokens": d, "steps": steps,
            "n_non_embedding": count_parameters(config, exclude_embeddings=True),
            "flops": fpt * d, "budget": budget, "val_loss": val}  # fmt: skip


def sweep(p: dict, device: torch.device, out: Path, seed: int = 0) -> list[dict]:
    data = prepare("pydoc", tokenizer="char", out_dir=out / "data", special_tokens=(EOT,),
                   progress=False)  # fmt: skip
    print(f"\n2. The sweep: {len(p['widths'])} widths x {len(p['budgets'])} budgets, "
          f"{N_LAYERS}-layer GPTs, {p['batch']} x {p['block']} characters per step")
    print("   (N = FLOPs per token / 6: the weights a token pays for, so that C = 6 N D)")
    print(f"   {'budget':>9s}{'d_model':>8s}{'N':>9s}{'tokens D':>10s}{'D/N':>7s}{'steps':>7s}"
          f"{'val loss':>10s}{'time so far':>13s}")  # fmt: skip
    runs, t0 = [], time.perf_counter()
    for budget in p["budgets"]:
        for width in p["widths"]:
            config = ModelConfig(vocab_size=data.tokenizer.vocab_size, max_len=p["block"],
                                 d_model=width, n_heads=max(1, width // 16), n_layers=N_LAYERS,
                                 d_ff=4 * width)  # fmt: skip
            r = train_run(config, data, budget, p, device, seed)
            runs.append(r)
            print(f"   {budget:9.1e}{width:8d}{r['n_params']:9,.0f}{r['tokens']:10,d}"
                  f"{r['tokens'] / r['n_params']:7.1f}{r['steps']:7d}{r['val_loss']:10.4f}"
                  f"{time.perf_counter() - t0:11.0f} s  (run {len(runs)} of "
                  f"{len(p['widths']) * len(p['budgets'])})", flush=True)  # fmt: skip
    return runs


def fit(runs: list[dict], budgets: tuple[float, ...]) -> dict:
    print("\n3. The fits: each budget's valley, then power laws across budgets")
    optimum = {}
    for c in budgets:
        along = [r for r in runs if r["budget"] == c]
        n_opt = isoflop_optimum([r["n_params"] for r in along], [r["val_loss"] for r in along])
        best = min(along, key=lambda r: r["val_loss"])
        optimum[c] = {"n_opt": n_opt, "d_opt": c / (6 * n_opt), "best_loss": best["val_loss"],
                      "best_n": best["n_params"]}  # fmt: skip
        print(f"   C = {c:.1e}: fitted optimum N = {n_opt:,.0f} (D = {c / (6 * n_opt):,.0f} "
              f"tokens, {c / (6 * n_opt) / n_opt:.1f} per parameter); best run N = "
              f"{best['n_params']:,.0f} at loss {best['val_loss']:.3f}")
    cs = list(optimum)
    k_n, a_n = fit_power_law(cs, [optimum[c]["n_opt"] for c in cs])
    k_d, a_d = fit_power_law(cs, [optimum[c]["d_opt"] for c in cs])
    k_l, a_l = fit_power_law(cs, [optimum[c]["best_loss"] for c in cs])
    ratio = [optimum[c]["d_opt"] / optimum[c]["n_opt"] for c in cs]
    print(f"   N_opt ~ C^{a_n:.2f}, D_opt ~ C^{a_d:.2f} (exponents sum to 1 by C = 6ND; "
          "Chinchilla: 0.50 / 0.50, Kaplan: 0.73 / 0.27)")
    print(f"   best loss ~ {k_l:.2f} C^{a_l:.3f}: more compute, lower loss, on a power law")
    print("   tokens per parameter at the optimum: " + ", ".join(f"{x:.1f}" for x in ratio)
          + " (Chinchilla's ~20)")
    smallest = min(r["n_params"] for r in runs)
    edge = [c for c in cs if optimum[c]["n_opt"] == smallest]
    if edge:
        print(f"   at {len(edge)} of {len(cs)} budgets the smallest model won: the valley's "
              "bottom lies at or below the sweep,\n   so those optima are upper bounds on N "
              "(runs of a few hundred steps are limited by steps, not by size)")
    else:
        print(f"   every budget has its valley inside the sweep; a bigger budget goes "
              f"{'more' if a_n > a_d else 'less'} to parameters than to tokens")
    return {"optimum": optimum, "n_exponent": a_n, "d_exponent": a_d, "n_coef": k_n,
            "d_coef": k_d, "loss_exponent": a_l, "loss_coef": k_l,
            "tokens_per_param": ratio, "optima_at_edge": len(edge)}  # fmt: skip


def plot_isoflops(runs: list[dict], fits: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6))
    for c, opt in fits["optimum"].items():
        along = sorted((r for r in runs if r["budget"] == c), key=lambda r: r["n_params"])
        line, = ax.plot([r["n_params"] for r in along], [r["val_loss"] for r in along], "o-",
                        label=f"C = {c:.0e} FLOPs")  # fmt: skip
        ys = [r["val_loss"] for r in along]
        ax.axvline(opt["n_opt"], color=line.get_color(), ls=":", lw=1)
        ax.plot([opt["n_opt"]], [min(ys)], "*", ms=12, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (FLOPs per token / 6)")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_title("IsoFLOP profiles: each budget's valley (star, dotted: fitted optimum)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def plot_optimum(fits: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = list(fits["optimum"])
    fig, ax = plt.subplots(figsize=(7, 4.6))
    lo, hi = min(cs) / 2, max(cs) * 2
    grid = [lo * (hi / lo) ** (i / 40) for i in range(41)]
    for key, coef, exp, label in (("n_opt", "n_coef", "n_exponent", "N_opt (parameters)"),
                                  ("d_opt", "d_coef", "d_exponent", "D_opt (tokens)")):
        pts = ax.plot(cs, [fits["optimum"][c][key] for c in cs], "o", label=label)[0]
        ax.plot(grid, [fits[coef] * g ** fits[exp] for g in grid], "-", color=pts.get_color(),
                label=f"fit ~ C^{fits[exp]:.2f}")  # fmt: skip
    ax.plot(grid, [chinchilla_optimal(g)[0] for g in grid], "k--", lw=1,
            label="Chinchilla N (20 tokens/param)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute budget C (FLOPs)")
    ax.set_ylabel("compute-optimal N and D")
    ax.set_title("Fitted compute-optimal size and data against budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/11_scaling_laws",
    seed: int = 0,
) -> dict:
    """Recompute the Chinchilla table, run a toy scaling sweep, fit it; return the numbers.
    `seed` sets every run's initial weights and batches (all runs share it)."""
    p = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device or "auto")
    t0 = time.perf_counter()
    table = course_table()
    runs = sweep(p, dev, out, seed)
    fits = fit(runs, p["budgets"])
    plots = [str(plot_isoflops(runs, fits, out / "isoflop_profiles.png")),
             str(plot_optimum(fits, out / "compute_optimal.png"))]  # fmt: skip
    seconds = time.perf_counter() - t0
    print(f"({len(runs)} runs, {sum(r['flops'] for r in runs):.2e} FLOPs, {seconds:.0f} s on "
          f"{dev.type}: {sum(r['flops'] for r in runs) / seconds / 1e9:.1f} GFLOP/s)")
    return {"course_table": table, "runs": runs, **fits, "plots": plots, "seconds": seconds}


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/11_scaling_laws",
        quick_help="3 widths x 3 budgets (< 60 s)",
        device_help="cpu, cuda, mps (default: best available)",
        out_help="where data and plots go",
    )
