"""Lesson 10 — Memory and quantization: what a model costs to store and to train, measured.

"CUDA out of memory" is the first wall of anyone training on one GPU, and it can be computed
before it is hit. A parameter stored as a 32-bit float takes 4 bytes, so 1B parameters take
4 GB. Training adds a gradient per parameter (4 more), Adam's two moving averages (8 more),
and the activations forward keeps for backward. The course gives two rules of thumb for the
total, and they disagree: one table says 4 + 20 = 24 bytes per parameter (1B -> 24 GB; 175B ->
4,200 GB; 500B -> 12,000 GB), another slide says ~80 GB for 1B and 14,000 / 40,000 GB for
175B / 500B, 20 times the stored weights. Both are right for *some* batch: the 16 bytes of
weights, gradients and Adam are fixed per parameter, but activations grow with the batch and
the sequence length (and the attention maps with its square), so any per-parameter figure for
them hides a batch size. The lesson counts the activations of a 1B GPT tensor by tensor
(`minigpt.memory.activation_bytes`) and finds the batches each slide assumed.

Estimates are only worth something if they match a measurement. For the `tiny` model and the
384-wide `small` one the lesson runs a real training step and compares: the summed bytes of
weights, gradients and Adam's state (exact), the tensors autograd saved for backward (the
activation formula, exact to the loss scalar), and the peak of the whole step (PyTorch's
profiler on a CPU, `torch.cuda.max_memory_allocated` on a GPU) against
`peak_training_bytes`: backward starts with every activation alive and no gradient yet, so
the peak is a little *below* the usual weights + gradients + Adam + activations sum.

Sharding divides the fixed part: ZeRO (Rajbhandari et al. 2020) splits the optimizer state,
then the gradients, then the weights over N devices; its Figure 1 (7.5B parameters, 64
devices: 120 / 31.4 / 16.6 / 1.9 GB) is recomputed here (lesson 12 runs ZeRO-1 for real).

Quantization shrinks what is stored. FP32 spends 8 bits on the exponent (range) and 23 on the
fraction (precision); FP16 5 + 10; BF16 8 + 7 — FP32's range with less precision, which is why
it trains well. The course stores pi = 3.141592 in each. int8 has no exponent: 256 evenly
spaced values; symmetric absmax quantization maps each tensor's (or each output channel's)
largest magnitude to 127 and rounds. The lesson trains a small GPT, quantizes its linear
layers to int8 (`minigpt.quantize`, exactly what `minigpt quantize CKPT --int8` does), and
reports the size and the validation bits per byte before and after, next to bf16 and fp16
casts of the same model.

Measured on a 2-core AMD EPYC CPU (torch 2.13) with one thread while other jobs kept it busy:
quick mode 13 s of CPU time (load average ~18; 2 min 26 s of wall-clock time there), full mode
3 min 37 s of CPU time (load average ~5; 4 min 45 s of wall-clock time). A quiet 2-core machine
needs about that or less. (Full mode trained 1000 steps before: 7 min 32 s of CPU.)
On the same machine idle (load average below 2, two threads), wall clock: --quick 10 s,
full mode 2 min 25 s.

Run:  python lessons/10_memory_and_quantization.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

from pathlib import Path

import torch

from minigpt import memory
from minigpt.config import ModelConfig
from minigpt.data import prepare
from minigpt.device import resolve_device
from minigpt.lesson import run_lesson, save_figure
from minigpt.memory import GB
from minigpt.models import DecoderLM
from minigpt.quantize import (
    PI,
    bit_pattern,
    dequantize_int8,
    format_bits,
    quantize_int8,
    stored_value,
)
from minigpt.scaling import count_parameters
from minigpt.speedups import FUSE_MIN_ROWS
from minigpt.tokenizer import EOT
from minigpt.training.checkpoint import load_model_for_inference, quantize_checkpoint
from minigpt.training.evaluation import evaluate_loss, val_metrics
from minigpt.training.loop import Trainer
from minigpt.training.run import evaluate_checkpoint
from minigpt.training.settings import OBJECTIVES, TrainConfig

QUICK = dict(d_model=64, n_layers=2, n_heads=4, d_ff=256, block=64, batch=16, steps=150,
             lr=3e-3, measure_batch={"tiny": 4, "small": 2})  # fmt: skip
# Full mode trains 500 steps (2M characters): 1000 took 7.5 minutes of CPU on one thread for
# the same story (int8 per channel: +0.00005 bits per byte at 1000 steps).
FULL = dict(d_model=128, n_layers=4, n_heads=4, d_ff=512, block=128, batch=32, steps=500,
            lr=2e-3, measure_batch={"tiny": 16, "small": 8})  # fmt: skip
# A GPT of ~1B parameters (GPT-2's vocabulary, 2,048-token context), for the course's tables.
ONE_B = dict(vocab_size=50257, max_len=2048, d_model=2048, n_heads=16, n_layers=18, d_ff=8192)
PARTS = ("weights", "gradients", "optimizer", "activations", "peak")


def course_tables() -> dict:
    """The course's figures, recomputed from the functions."""
    print("1. Storing and training: the course's rules of thumb, recomputed")
    store = {p: memory.model_bytes(1e9, p) / GB for p in memory.PRECISIONS}
    print("   1B parameters stored: " + ", ".join(f"{p} {v:g} GB" for p, v in store.items()))
    rule = memory.course_rule_bytes(1e9)
    print("   training, bytes per parameter: "
          + " + ".join(f"{k} {v / 1e9:g}" for k, v in rule.items() if k != "total")
          + f" = {rule['total'] / 1e9:g}")  # fmt: skip
    rows = {}
    for n in (1e9, 175e9, 500e9):
        rows[n] = (memory.course_rule_bytes(n)["total"] / GB,
                   memory.course_deck_training_bytes(n) / GB)  # fmt: skip
        print(f"   {n / 1e9:4.0f}B to train (fp32): {rows[n][0]:8,.0f} GB by 24 B/param, "
              f"{rows[n][1]:8,.0f} GB by 20x the weights")
    deck16 = memory.course_deck_training_bytes(1e9, "bf16") / GB
    deck8 = memory.course_deck_training_bytes(1e9, "int8") / GB
    print(f"   the 20x slide at 16 / 8 bits: {deck16:g} / {deck8:g} GB for 1B "
          "(halving the 80 GB with the weights' width)")
    return {"store_1b_gb": store, "train_gb": rows, "deck_16bit_gb": deck16, "deck_8bit_gb": deck8}


def where_the_rules_differ() -> dict:
    """Activations of a 1B GPT against batch size: which batch each slide's figure implies."""
    config = ModelConfig(**ONE_B)
    n = count_parameters(config)
    fixed = memory.training_bytes(n, "fp32").total
    per_seq = memory.activation_bytes(config, 1)
    print(f"\n2. Where the two slides differ: a GPT of {n / 1e9:.2f}B parameters "
          f"({config.n_layers} layers x {config.d_model} wide, {config.max_len}-token context)")
    print(f"   weights + gradients + Adam: {fixed / GB:.1f} GB, whatever the batch")
    print(f"   activations (fp32): {per_seq / GB:.2f} GB per sequence of {config.max_len} tokens")
    implied = {}
    for name, total in (("24 B/param", memory.course_rule_bytes(n)["total"]),
                        ("20x weights", memory.course_deck_training_bytes(n))):  # fmt: skip
        implied[name] = (total - fixed) / per_seq
        print(f"   the {name:11s} figure ({total / GB:5.1f} GB) leaves room for "
              f"{implied[name]:.1f} sequences: it assumes that batch")
    batches = [1, 2, 4, 8, 16, 32]
    totals = [(fixed + memory.activation_bytes(config, b)) / GB for b in batches]
    ckpt = [(fixed + memory.activation_bytes(config, b, checkpointing=True)) / GB for b in batches]
    print("   batch:          " + "".join(f"{b:8d}" for b in batches))
    print("   GB, plain:      " + "".join(f"{t:8.0f}" for t in totals))
    print("   GB, checkpoint: " + "".join(f"{t:8.0f}" for t in ckpt)
          + "  (activation checkpointing keeps each block's input only)")  # fmt: skip
    return {"n_params_1b": n, "fixed_gb": fixed / GB, "act_per_seq_gb": per_seq / GB,
            "implied_batch": implied, "batches": batches, "totals_gb": totals,
            "checkpointed_gb": ckpt}  # fmt: skip


def measure(preset: str, batch: int, device: torch.device, seed: int = 0) -> dict:
    """One real training step of `preset` against the estimates, bytes per part."""
    torch.manual_seed(seed)
    config = ModelConfig.from_preset(preset)
    model = DecoderLM(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, config.vocab_size, (batch, config.max_len), device=device)
    measured = memory.measure_training_step(model, optimizer, ids, ids)
    n = model.num_parameters()
    acts = memory.activation_bytes(config, batch, fused_qkv=batch * config.max_len >= FUSE_MIN_ROWS)
    est = memory.training_bytes(n, "fp32", acts)
    peak = memory.peak_training_bytes(est, memory.logits_bytes(config, batch))
    estimate = dict(est._asdict(), peak=peak)
    return {"n_params": n, "batch": batch, "measured": measured, "estimated": estimate,
            "sum_of_parts": est.total}  # fmt: skip


def zero_figure() -> dict:
    print("\n4. Sharding the model states (ZeRO, Figure 1: 7.5B parameters on 64 devices)")
    gb = {s: memory.zero_bytes_per_device(7.5e9, 64, s) / GB for s in range(4)}
    print("   " + ", ".join(f"{('DDP', 'ZeRO-1', 'ZeRO-2', 'ZeRO-3')[s]} {v:.1f} GB"
                          for s, v in gb.items()))  # fmt: skip
    return gb


def formats() -> dict:
    print("\n5. What each format keeps, and pi = 3.141592 stored in it")
    print("   format  bits  exponent  fraction  bytes  stored pi             error      bits")
    table = {}
    for name in ("fp32", "fp16", "bf16"):
        b = format_bits(name)
        v = stored_value(PI, name)
        table[name] = {**b, "pi": v, "error": abs(v - PI)}
        print(f"   {name:6s}{b['bits']:6d}{b['exponent']:10d}{b['fraction']:10d}{b['bytes']:7d}  "
              f"{v:<20.17g}{abs(v - PI):9.2e}  {bit_pattern(PI, name)}")
    b = format_bits("int8")
    rounded = round(PI)
    table["int8"] = {**b, "pi": float(rounded), "error": abs(rounded - PI)}
    print(f"   int8  {b['bits']:6d}       -/-{b['fraction']:10d}{b['bytes']:7d}  {rounded:<20d}"
          f"{abs(rounded - PI):9.2e}  (a plain integer: no fraction at all)")
    print("   int8 needs a scale: absmax maps the tensor's largest |x| to 127, so pi's error")
    print("   depends on what else the tensor holds:")
    spans = {}
    for top in (PI, 10.0, 100.0):
        q, scale = quantize_int8(torch.tensor([PI, -top]))
        v = float(dequantize_int8(q, scale)[0])
        spans[top] = {"q": int(q[0]), "scale": float(scale), "pi": v, "error": abs(v - PI)}
        print(f"     tensor up to {top:7.3f}: scale {float(scale):.4f}, q = {int(q[0]):4d} -> "
              f"{v:.6f} (error {abs(v - PI):.1e})")
    return {"formats": table, "int8_spans": spans}


def train_and_quantize(p: dict, device: str | None, out: Path, seed: int = 0) -> dict:
    print("\n6. An int8 model: train a small GPT, quantize its linear layers, evaluate again")
    data = prepare("pydoc", tokenizer="char", out_dir=out / "data", special_tokens=(EOT,),
                   progress=False)  # fmt: skip
    cfg = TrainConfig(d_model=p["d_model"], n_layers=p["n_layers"], n_heads=p["n_heads"],
                      d_ff=p["d_ff"], block_size=p["block"], data_dir=str(out / "data"),
                      tokenizer="char", batch_size=p["batch"], max_steps=p["steps"], lr=p["lr"],
                      warmup_steps=p["steps"] // 10, eval_interval=p["steps"], eval_batches=10,
                      log_interval=50, checkpoint_interval=p["steps"], precision="fp32",
                      dropout=0.0, device=device or "auto", out_dir=str(out / "run"),
                      progress=True, seed=seed)  # fmt: skip
    config = ModelConfig(vocab_size=data.tokenizer.vocab_size, max_len=p["block"],
                         d_model=p["d_model"], n_heads=p["n_heads"], n_layers=p["n_layers"],
                         d_ff=p["d_ff"])  # fmt: skip
    print(f"   training {p['steps']} steps of {p['batch']} x {p['block']} characters "
          "(a progress bar shows the time left)")  # fmt: skip
    Trainer(DecoderLM(config), cfg, data, data.tokenizer).train()
    ckpt = out / "run" / "ckpt.pt"
    paths = {"int8 per-channel": quantize_checkpoint(ckpt, out / "run" / "ckpt-int8.pt"),
             "int8 per-tensor": quantize_checkpoint(ckpt, out / "run" / "ckpt-int8-tensor.pt",
                                                    per_channel=False)}  # fmt: skip
    report = {}
    for name, path in (("fp32", ckpt), *paths.items()):
        model, _, _ = load_model_for_inference(path, device or "auto")
        size = memory.tensor_bytes(model.state_dict().values())
        report[name] = {"bytes": size, "val_bpb": evaluate_checkpoint(path, device=device or "auto",
                                                                      precision="fp32")["val_bpb"]}
    objective = OBJECTIVES["clm"]
    for name, dtype in (("bf16 cast", torch.bfloat16), ("fp16 cast", torch.float16)):
        model, tok, _ = load_model_for_inference(ckpt, device or "auto")
        model.to(dtype)
        dev = next(model.parameters()).device
        loss, _ = evaluate_loss(model, data.val, objective.batches(tok), p["batch"],
                                p["block"] + objective.extra_tokens, dev, "fp32", 10)  # fmt: skip
        report[name] = {"bytes": memory.tensor_bytes(model.state_dict().values()),
                        "val_bpb": val_metrics(loss, data.meta)["val_bpb"]}  # fmt: skip
    base = report["fp32"]
    print(f"   {'model':18s}{'size':>10s}{'vs fp32':>9s}{'val bits/byte':>15s}{'change':>10s}")
    for name, r in report.items():
        r["size_ratio"] = r["bytes"] / base["bytes"]
        r["bpb_change"] = r["val_bpb"] - base["val_bpb"]
        print(f"   {name:18s}{r['bytes'] / 2**20:8.3f}MB{r['size_ratio']:9.2f}"
              f"{r['val_bpb']:15.5f}{r['bpb_change']:+10.5f}")
    q = report["int8 per-channel"]
    print(f"   int8 per channel stores the model in {q['size_ratio']:.0%} of its fp32 bytes "
          f"(the embedding table and norms stay float) and\n   changes the validation bits "
          f"per byte by {q['bpb_change']:+.5f} ({q['bpb_change'] / base['val_bpb']:+.3%}).")
    return report


def plot_measured(measured: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(measured), figsize=(5.5 * len(measured), 4.2))
    for ax, (preset, m) in zip(axes, measured.items(), strict=True):
        xs = range(len(PARTS))
        est = [m["estimated"][k] / 2**20 for k in PARTS]
        got = [m["measured"][k] / 2**20 for k in PARTS]
        ax.bar([x - 0.2 for x in xs], est, 0.4, label="estimated (minigpt.memory)")
        ax.bar([x + 0.2 for x in xs], got, 0.4, label="measured")
        for x, v in zip(xs, got, strict=True):
            ax.text(x + 0.2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), PARTS)
        ax.set_xlabel("part of one training step's memory")
        ax.set_ylabel("MiB")
        ax.set_title(f"{preset}: {m['n_params'] / 1e6:.1f}M params, batch {m['batch']}, fp32")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("One training step: estimated vs measured memory")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def plot_batches(r: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(r["batches"], r["totals_gb"], "o-", label="weights + grads + Adam + activations")
    ax.plot(r["batches"], r["checkpointed_gb"], "s--", label="... with activation checkpointing")
    ax.axhline(24 * r["n_params_1b"] / GB, color="tab:green", ls=":",
               label="course: 24 bytes per parameter")  # fmt: skip
    ax.axhline(80 * r["n_params_1b"] / GB, color="tab:red", ls=":",
               label="course: 20x the weights (~80 GB)")  # fmt: skip
    ax.axhline(r["fixed_gb"], color="grey", ls="-", lw=0.8, label="weights + grads + Adam")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"batch size (sequences of {ONE_B['max_len']} tokens)")
    ax.set_ylabel("GB to train (fp32)")
    ax.set_title(f"A {r['n_params_1b'] / 1e9:.2f}B GPT: training memory grows with the batch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    return path


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/10_memory_and_quantization",
    seed: int = 0,
) -> dict:
    """Compute the course's memory tables, check them against measurement, quantize a model.
    `seed` sets the measured models' weights and inputs and the trained model's run."""
    p = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device or "auto")
    results: dict = {"course": course_tables(), "batches": where_the_rules_differ()}

    print(f"\n3. Estimate vs measurement: one fp32 AdamW step on {dev.type}")
    print(f"   {'model':6s}{'part':>13s}{'estimated':>12s}{'measured':>12s}{'ratio':>8s}")
    measured = {}
    for preset, batch in p["measure_batch"].items():
        m = measured[preset] = measure(preset, batch, dev, seed)
        for part in PARTS:
            e, g = m["estimated"][part], m["measured"][part]
            print(f"   {preset:6s}{part:>13s}{e / 2**20:10.2f}MB{g / 2**20:10.2f}MB{g / e:8.3f}")
        print(f"   {preset:6s}{'sum of parts':>13s}{m['sum_of_parts'] / 2**20:10.2f}MB"
              f"{'':12s}{m['measured']['peak'] / m['sum_of_parts']:8.3f}")
    worst = max(abs(m["measured"]["peak"] / m["estimated"]["peak"] - 1) for m in measured.values())
    print(f"   the peak estimate is off by at most {worst:.1%} (stated tolerance: 10%); the "
          "activation\n   count is exact to the loss scalar; gradients and Adam exactly "
          "8 + 4 bytes per parameter (+ Adam's step counters)")
    results["measured"] = measured
    results["peak_worst_error"] = worst
    results["zero_gb"] = zero_figure()
    results |= formats()
    results["quantized"] = train_and_quantize(p, device, out, seed)
    results["plots"] = [str(plot_measured(measured, out / "memory_measured.png")),
                        str(plot_batches(results["batches"], out / "memory_vs_batch.png"))]
    return results


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/10_memory_and_quantization",
        quick_help="smaller measurements and model (< 60 s)",
        device_help="cpu, cuda, mps (default: best available)",
        out_help="where data, the run and the plots go",
    )
