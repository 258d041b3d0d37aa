"""Lesson 07 — GPT-style pretraining: causal language modelling, end to end.

A decoder-only model (GPT, BLOOM, LLaMA) is pretrained on one task: given the tokens so
far, predict the next one. Researchers call this causal language modelling (CLM), or
just "language modelling". No labels are needed — the text is its own answer key — which
is why it scales to trillions of tokens scraped from the web. By predicting the next token
over and over, the model builds a statistical picture of language; larger models trained
this way turn out to do many tasks from a prompt alone.

Two details make it work, and this lesson shows both on a real model:

1. **Shifted targets.** Cut a window of T+1 tokens from the text. The inputs are tokens
   0..T-1, the targets are tokens 1..T: the same window shifted left by one. One window
   therefore holds T training examples at once — position t must predict token t+1.
   (`minigpt.objectives.causal_lm_batch`.)
2. **The causal mask.** If position t could attend to position t+1, it would simply copy
   its answer. So self-attention gets a lower-triangular keep mask: query i may look at
   keys 0..i only. The context is one-directional — unlike BERT's encoder (lesson 06),
   the model never sees the end of the sentence. We check it for real: change the last
   input token and the outputs at every earlier position stay bit-for-bit the same.

The loss is the cross-entropy of the next token, in nats. An untrained model spreads
its probability evenly over the V tokens of the vocabulary, so it starts near ln(V) — a
useful sanity check for any language model. Training drives it down; e^loss is the
perplexity ("as unsure as a uniform choice among that many tokens"), and loss *
tokens / (bytes * ln 2) gives bits per byte, a number that does not depend on the
tokenizer, so character- and BPE-level models can be compared.

The run below pretrains a small GPT on the embedded corpus (Python's own documentation)
at character level with minigpt's trainer — AdamW, warm-up then cosine decay, gradient
clipping, periodic evaluation — saves the loss curve as a PNG and prints samples before
and after training. A course homework trains a 35M-parameter model on ~105M tokens on a
desktop GPU in about an hour; this lesson's quick mode trains ~0.1M parameters on 0.3M
tokens, its full mode ~0.8M parameters on 2M tokens, on a CPU, with a progress bar (steps,
loss, time left) and a line per evaluation while it trains. The samples will not be English,
but they go from random characters to word-like, Python-doc-like text.

Measured on a 2-core AMD EPYC CPU (torch 2.13) with one thread, while other jobs kept it busy
(load average 15-26): quick mode 13 s, full mode 2 min 40 s of CPU time (a quiet 2-core machine
needs about that or less); the busy machine took 3 min 56 s and 38 min 13 s of wall-clock time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 9.9 s,
full mode 2 min 04 s.

Run:  python lessons/07_decoder_clm.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from minigpt.attention import causal_mask
from minigpt.config import ModelConfig
from minigpt.data import prepare, sample_windows
from minigpt.generate import generate
from minigpt.lesson import report_plot, run_lesson
from minigpt.models import DecoderLM
from minigpt.objectives import causal_lm_batch
from minigpt.plots import plot_training_curves, read_metrics, training_curves
from minigpt.tokenizer import EOT
from minigpt.training.loop import Trainer
from minigpt.training.settings import TrainConfig

QUICK = dict(
    d_model=64,
    n_layers=2,
    n_heads=4,
    d_ff=256,
    block=64,
    batch=16,
    steps=300,
    lr=3e-3,
    eval_interval=50,
)
# Full mode: ~0.8M parameters on 2M tokens, a few minutes on a 2-core CPU (the docstring has
# the measured time). Twice the steps give a lower loss but the same story, at twice the wait.
FULL = dict(
    d_model=128,
    n_layers=4,
    n_heads=4,
    d_ff=512,
    block=128,
    batch=16,
    steps=1000,
    lr=2e-3,
    eval_interval=100,
)
PROMPT = "The "


def show_window(tokenizer, window: torch.Tensor, n: int = 24) -> None:
    """Print inputs and targets of one window side by side: the shift made visible."""
    inputs, targets = causal_lm_batch(window[None, : n + 1])  # (1, n) each
    print("  position  input -> target")
    for t in range(0, n, 3):
        a, b = tokenizer.decode([int(inputs[0, t])]), tokenizer.decode([int(targets[0, t])])
        print(f"  {t:8d}  {a!r:>5} -> {b!r}")


def causal_leak(model: DecoderLM, ids: torch.Tensor) -> tuple[float, float]:
    """Change the last token; return the largest logit change at earlier positions and at
    the last one. A correct causal mask makes the first number exactly 0."""
    model.eval()
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % model.config.vocab_size
    with torch.no_grad():
        a, _ = model(ids)
        b, _ = model(changed)
    model.train()
    diff = (a - b).abs()  # (1, T, V)
    return float(diff[0, :-1].max()), float(diff[0, -1].max())


def sample(model: DecoderLM, tokenizer, n: int, seed: int = 0) -> str:
    device = next(model.parameters()).device
    prompt = torch.tensor([tokenizer.encode(PROMPT)], device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = generate(model, prompt, n, temperature=0.8, top_k=20, generator=gen)
    return tokenizer.decode(out[0].tolist())


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/07_decoder_clm",
    seed: int = 0,
) -> dict:
    """Pretrain a small GPT on the embedded corpus; return the lesson's key numbers. `seed`
    sets the initial weights, the batches and the samples."""
    p = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    print("1. The data: Python's documentation, one token per character")
    # Only the end-of-text special token: a causal LM needs no [MASK] or sentinels.
    data = prepare(
        "pydoc", tokenizer="char", out_dir=out / "data", special_tokens=(EOT,), progress=False
    )
    tok = data.tokenizer
    ln_v = math.log(tok.vocab_size)
    print(
        f"   {data.meta['train_tokens']:,} training and {data.meta['val_tokens']:,} validation "
        f"tokens, vocabulary V = {tok.vocab_size} (ln V = {ln_v:.3f} nats)"
    )

    print("\n2. Shifted targets: one window of T+1 tokens gives T next-token examples")
    gen = torch.Generator().manual_seed(seed + 1)
    window = sample_windows(data.train, 1, p["block"] + 1, gen)[0]
    print(f"   text: {tok.decode(window[:25].tolist())!r}")
    show_window(tok, window)

    print("\n3. The causal mask: query i (row) may attend to keys 0..i (columns)")
    for row in causal_mask(6).int().tolist():
        print("   " + " ".join("1" if v else "." for v in row))
    config = ModelConfig(
        vocab_size=tok.vocab_size,
        max_len=p["block"],
        d_model=p["d_model"],
        n_heads=p["n_heads"],
        n_layers=p["n_layers"],
        d_ff=p["d_ff"],
    )
    model = DecoderLM(config)
    earlier, last = causal_leak(model, window[None, : p["block"]])
    print(
        f"   changing the last input token moves earlier logits by {earlier:.1e}, "
        f"the last position's by {last:.2f}: no position sees the future"
    )

    cfg = TrainConfig(
        d_model=p["d_model"],
        n_layers=p["n_layers"],
        n_heads=p["n_heads"],
        d_ff=p["d_ff"],
        block_size=p["block"],
        data_dir=str(out / "data"),
        tokenizer="char",
        batch_size=p["batch"],
        max_steps=p["steps"],
        lr=p["lr"],
        warmup_steps=p["steps"] // 10,
        eval_interval=p["eval_interval"],
        eval_batches=10,
        log_interval=10,
        checkpoint_interval=p["steps"],
        precision="fp32" if quick else "auto",  # auto: bf16 where this CPU does it faster
        device=device or "auto",
        out_dir=str(out / "run"),
        progress=True,  # a progress bar (steps, loss, time left) and a line per evaluation
        seed=seed,
    )
    trainer = Trainer(model, cfg, data, tok)
    initial = trainer.evaluate()["val_loss"]
    before = sample(trainer.model, tok, 80, seed=seed)
    print(
        f"\n4. Before training: val loss {initial:.3f} nats, close to ln V = {ln_v:.3f} "
        "(a uniform guess)"
    )
    print(f"   sample: {before!r}")

    n_params = model.num_parameters()
    print(
        f"\n5. Training {n_params:,} parameters for {p['steps']} steps of "
        f"{p['batch']} x {p['block']} tokens (AdamW, warm-up + cosine, clipping); "
        f"{'seconds' if quick else 'a few minutes'} on a 2-core CPU"
    )
    result = trainer.train()
    print("   step   train loss   val loss")
    print(f"   {0:4d}   {'':>10}   {initial:8.3f}   (before training)")
    records = read_metrics(trainer.metrics_path)
    train_loss = {r["step"]: r["loss"] for r in records if r["kind"] == "train"}
    for r in (r for r in records if r["kind"] == "eval"):
        print(
            f"   {r['step']:4d}   {train_loss.get(r['step'], float('nan')):10.3f}   "
            f"{r['val_loss']:8.3f}"
        )
    print(
        f"   {result['tokens']:,} tokens in {result['seconds']:.1f} s "
        f"({result['tokens_per_s']:,.0f} tokens/s on {result['device']})"
    )
    curve = plot_training_curves(
        records,
        out / "loss_curve.png",
        hline=(ln_v, "ln V (uniform)"),
        title="Lesson 07: causal LM on Python's docs (characters)",
        initial_loss=initial,
    )
    report_plot(curve)

    after = sample(trainer.model, tok, 200, seed=seed)
    final = result["val_loss"]
    print(
        f"\n6. After training: val loss {final:.3f} nats (ln V = {ln_v:.3f}), perplexity "
        f"{math.exp(final):.1f}, {result['val_bpb']:.3f} bits per byte"
    )
    print(f"   sample: {after!r}")
    print(
        f"\nCheckpoint: {result['checkpoint']} "
        f"(try: minigpt sample {result['checkpoint']} --prompt 'The ')"
    )
    return {
        "vocab_size": tok.vocab_size,
        "ln_vocab": ln_v,
        "initial_loss": initial,
        "final_loss": final,
        "val_bpb": result["val_bpb"],
        "val_bytes_per_token": data.meta["val_bytes"] / data.meta["val_tokens"],
        "causal_leak": earlier,
        "last_position_change": last,
        "sample_before": before,
        "sample_after": after,
        "steps": result["steps"],
        "loss_curve": str(curve),
        "val_curve": training_curves(records, initial_loss=initial)["val loss"],  # as plotted
        "checkpoint": result["checkpoint"],
    }


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/07_decoder_clm",
        quick_help="small model, few steps (< 30 s)",
        device_help="cpu, cuda, mps (default: best available)",
    )
