"""Lesson 08 — T5-style encoder-decoders: span corruption, then a sequence-to-sequence task.

An encoder-decoder keeps both halves of the original transformer: the encoder reads the
whole input with bidirectional attention, the decoder writes an output of any length one
token at a time, attending to its own past (causal) and to the encoder's states (cross-
attention). Input and output lengths are independent, which is why this family suits
translation, summarisation and question answering (T5, BART, FLAN-T5).

T5 (Raffel et al. 2020) pretrains it with **span corruption**. Instead of masking single
tokens as BERT does, it cuts out short *spans* and replaces each by one sentinel token
(a special token that is no word: `<extra_id_0>`, `<extra_id_1>`, ...). The decoder must
write the missing spans back, each behind its sentinel, then end-of-sequence:

    original : Thank you for inviting me to your party last week .
    input    : Thank you <extra_id_0> me to your party <extra_id_1> week .
    target   : <extra_id_0> for inviting <extra_id_1> last <eos>

T5's defaults: 15% of the tokens are noise (`noise_density`), in spans of 3 tokens on
average (`mean_span_length`). The counts are fixed per length (round(0.15 * n) noise
tokens, round(noise / 3) spans), and the span lengths come from a random split of those
counts (`minigpt.objectives.span_corruption`). Both sides get shorter than the original: the
input by 15% minus the sentinels, the target to ~15% plus sentinels — cheaper training than
BERT's full-length outputs.

Pretraining teaches the model the language; a *task* is then taught by training the same
encoder-decoder on (input, output) pairs. Ours is generated in code so it needs no download:
a number written in words goes in, its digits come out ("three hundred forty-two" ->
"342"). The model sees 800 of the numbers 0-999 and is scored by exact match on the other
200, which it has never seen: it must learn how the words compose, not memorise.

Run: python lessons/08_seq2seq_span_corruption.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from minigpt.config import ModelConfig
from minigpt.data import prepare
from minigpt.generate import fill_sentinels, generate_seq2seq
from minigpt.lesson import run_lesson, save_figure
from minigpt.models import Seq2SeqLM
from minigpt.objectives import IGNORE_INDEX, span_corruption, split_at_sentinels
from minigpt.plots import read_metrics, series
from minigpt.tokenizer import EOT, N_SENTINELS, PAD, sentinel
from minigpt.training.loop import Trainer
from minigpt.training.optim import build_optimizer, lr_at
from minigpt.training.settings import TrainConfig

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_in_words(n: int) -> str:
    """0..999 in English words: 342 -> "three hundred forty-two"."""
    if not 0 <= n <= 999:
        raise ValueError(f"number_in_words covers 0..999, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    rest = n % 100
    return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_in_words(rest))


def _pairs_to_batch(
    tokenizer: Any, numbers: list[int], pad_id: int, eos_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode (words -> digits + eos) pairs: inputs (B, S) padded with pad_id, targets (B, U)
    padded with -100 so padding costs nothing in the loss."""
    xs = [tokenizer.encode(number_in_words(n)) for n in numbers]
    ys = [tokenizer.encode(str(n)) + [eos_id] for n in numbers]
    inputs = torch.full((len(xs), max(map(len, xs))), pad_id)
    targets = torch.full((len(ys), max(map(len, ys))), IGNORE_INDEX)
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        inputs[i, : len(x)] = torch.tensor(x)
        targets[i, : len(y)] = torch.tensor(y)
    return inputs, targets


def _oneline(text: str) -> str:
    """Collapse the docs' line breaks and indentation so an example prints on one line."""
    return " ".join(text.split())


def _prose_windows(tokenizer: Any, tokens: Any, length: int, count: int) -> list[int]:
    """Start offsets of the first `count` windows that read as one line of prose (the docs
    are full of code and tables, which make poor examples)."""
    starts = []
    for start in range(0, len(tokens) - length, length):
        text = _oneline(tokenizer.decode(tokens[start : start + length].tolist()))
        if sum(c.isalpha() or c in " ,.'" for c in text) > 0.97 * len(text):
            starts.append(start)
            if len(starts) == count:
                break
    return starts or [0]


@torch.no_grad()
def _exact_match(
    model: Seq2SeqLM, tokenizer: Any, numbers: list[int], pad_id: int, eos_id: int
) -> tuple[float, list[str]]:
    """Greedy-decode every held-out input; share of outputs equal to the digits exactly."""
    device = next(model.parameters()).device
    inputs, _ = _pairs_to_batch(tokenizer, numbers, pad_id, eos_id)
    out = generate_seq2seq(model, inputs.to(device), 6, temperature=0, eos_id=eos_id)
    answers = [tokenizer.decode([t for t in row.tolist() if t != eos_id]) for row in out]
    correct = sum(a == str(n) for a, n in zip(answers, numbers, strict=True))
    return correct / len(numbers), answers


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/08_seq2seq_span_corruption",
) -> dict[str, Any]:
    """Show span corruption, pretrain a Seq2SeqLM with it, then teach it words -> digits."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    print("== 1. Data: Python's documentation, BPE with 1024 tokens ==")
    data = prepare("pydoc", "bpe", 1024, out_dir=out / "data", progress=False)
    tok = data.tokenizer
    pad_id, eos_id = tok.special_tokens[PAD], tok.special_tokens[EOT]
    sentinels = [tok.special_tokens[sentinel(i)] for i in range(N_SENTINELS)]
    print(
        f"{data.meta['train_tokens']:,} training tokens; sentinels "
        f"{tok.decode(sentinels[:1])} .. {tok.decode(sentinels[-1:])}"
    )

    print("\n== 2. Span corruption of one sentence (noise density 0.15, mean span 3) ==")
    gen = torch.Generator().manual_seed(1)
    text = "Thank you for inviting me to your party last week, said the interpreter to the module."
    ids = torch.tensor(tok.encode(text))
    enc, tgt = span_corruption(ids, sentinels, eos_id, generator=gen)
    print(f"original ({ids.numel()} tokens):", tok.decode(ids.tolist()))
    print(f"input    ({enc.numel()} tokens):", tok.decode(enc.tolist()))
    print(f"target   ({tgt.numel()} tokens):", tok.decode(tgt.tolist()))
    noise = spans = total = 0
    for i in range(200):
        window = torch.from_numpy(data.train[i * 128 : (i + 1) * 128].astype("int64"))
        _, t = span_corruption(window, sentinels, eos_id, generator=gen)
        parts = split_at_sentinels(t, sentinels, eos_id)
        noise, spans, total = noise + sum(map(len, parts.values())), spans + len(parts), total + 128
    noise_fraction, mean_span = noise / total, noise / spans
    print(
        f"over 200 windows of 128 tokens: noise fraction {noise_fraction:.3f}, "
        f"mean span length {mean_span:.2f} (round(0.15 * 128) = {noise // 200} noise tokens "
        f"in round({noise // 200} / 3) = {spans // 200} spans per window)"
    )

    print("\n== 3. Pretraining a Seq2SeqLM with span corruption (the shared Trainer) ==")
    block = 64  # examples below use windows of this length, as in training
    config = ModelConfig(
        vocab_size=tok.vocab_size, max_len=block, d_model=64 if quick else 128, n_heads=4,
        n_layers=2 if quick else 3, d_ff=256 if quick else 512,
        pad_id=pad_id, start_id=pad_id,  # T5 starts its decoder from the pad token
    )  # fmt: skip
    model = Seq2SeqLM(config)
    print(
        f"Seq2SeqLM: {model.num_parameters():,} parameters "
        f"({config.encoder_layers} encoder + {config.decoder_layers} decoder layers)"
    )
    pre_steps = 80 if quick else 1500
    cfg = TrainConfig(
        objective="span", block_size=block, batch_size=16 if quick else 32, max_steps=pre_steps,
        lr=3e-3 if quick else 2e-3, warmup_steps=10 if quick else 100,
        eval_interval=max(pre_steps // 4, 1), eval_batches=4 if quick else 20,
        checkpoint_interval=10**9, log_interval=10, precision="fp32" if quick else "auto",
        device=device or "auto", progress=not quick, out_dir=str(out / "pretrain"), seed=0,
    )  # fmt: skip
    trainer = Trainer(model, cfg, data, tok)
    pre_before = trainer.evaluate()["val_loss"]
    pre_after = trainer.train()["val_loss"]
    print(f"val loss on the corrupted spans: {pre_before:.3f} -> {pre_after:.3f} nats")
    run_device = next(model.parameters()).device
    span_examples = []
    for start in _prose_windows(tok, data.val, block, count=2):
        window = torch.from_numpy(data.val[start : start + block].astype("int64"))
        enc, tgt = span_corruption(window, sentinels, eos_id, generator=gen)
        pred = generate_seq2seq(model, enc.to(run_device), 20, temperature=0, eos_id=eos_id)
        _, predicted = fill_sentinels(enc, pred.cpu(), sentinels, eos_id)
        truth = split_at_sentinels(tgt, sentinels, eos_id)
        print("input        :", _oneline(tok.decode(enc.tolist())))
        print("decoder wrote:", _oneline(tok.decode(pred.tolist())))
        for i, span in truth.items():
            guess = tok.decode(predicted.get(i, []))
            print(
                f"  {tok.decode([sentinels[i]])}: target {tok.decode(span)!r}, predicted {guess!r}"
            )
        span_examples.append(
            {"input": tok.decode(enc.tolist()), "target": tok.decode(tgt.tolist()),
             "prediction": tok.decode(pred.tolist())}
        )  # fmt: skip

    print(
        "(a small model learns the format first: sentinels in order, then eos; the words "
        "inside the spans take far more training than a lesson can afford)"
    )

    print("\n== 4. The same model learns a task: numbers in words -> digits ==")
    numbers = list(range(1000))
    random.Random(0).shuffle(numbers)
    train_nums, test_nums = numbers[:800], numbers[800:]
    for n in train_nums[:3]:
        print(f"  {number_in_words(n)!r} -> {str(n)!r}")
    most_common = Counter(str(n) for n in train_nums).most_common(1)[0][0]
    baseline = sum(str(n) == most_common for n in test_nums) / len(test_nums)
    print(
        f"trivial baseline, always the commonest training answer: {baseline:.1%} (every held-out"
        " number is new, so no amount of memorising the 800 training pairs scores above 0)"
    )
    # The Trainer draws windows from a token file; a task comes as (input, output) pairs, so
    # fine-tuning is a plain AdamW loop with the Trainer's optimizer groups and schedule.
    print("fine-tuning all weights on the 800 training pairs (teacher forcing, greedy decoding)")
    steps = 400 if quick else 1200
    lr = 2e-3
    optimizer = build_optimizer(model, lr, 0.01, (0.9, 0.99))
    gen = torch.Generator().manual_seed(0)
    history: list[tuple[int, float, float]] = []  # (step, train loss, held-out accuracy)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, lr=lr, min_lr=lr / 10, warmup_steps=30, max_steps=steps)
        batch = [train_nums[i] for i in torch.randint(0, 800, (32,), generator=gen).tolist()]
        inputs, targets = _pairs_to_batch(tok, batch, pad_id, eos_id)
        _, loss = model(inputs.to(run_device), targets.to(run_device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % (steps // 4) == 0:
            acc, _ = _exact_match(model, tok, test_nums, pad_id, eos_id)
            model.train()
            history.append((step + 1, loss.item(), acc))
            print(
                f"  step {step + 1}: train loss {loss.item():.3f}, held-out exact match {acc:.1%}"
            )
    accuracy, answers = _exact_match(model, tok, test_nums, pad_id, eos_id)
    examples = [(number_in_words(n), a, str(n)) for n, a in zip(test_nums, answers, strict=True)]
    for words, answer, truth in examples[:6]:
        print(f"  {words!r:<36} -> {answer!r:<7} {'ok' if answer == truth else 'want ' + truth}")
    print(f"held-out exact match {accuracy:.1%} vs baseline {baseline:.1%}")

    records = read_metrics(out / "pretrain" / "metrics.jsonl")
    plot_path = out / "span_pretraining_and_task.png"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for kind, key, label in (("train", "loss", "train"), ("eval", "val_loss", "val")):
        xs, ys = series(records, kind, key)
        ax1.plot(xs, ys, "-o" if kind == "eval" else "-", label=label, markersize=3)
    ax1.axhline(math.log(tok.vocab_size), color="grey", linestyle="--", label="ln V")
    ax1.set(
        xlabel="step", ylabel="loss (nats per target token)", title="Span-corruption pretraining"
    )
    ax1.legend()
    xs = [h[0] for h in history]
    ax2.plot(xs, [h[2] for h in history], "-o", label="held-out exact match")
    ax2.axhline(baseline, color="grey", linestyle="--", label="trivial baseline")
    ax2.set(
        xlabel="fine-tuning step",
        ylabel="accuracy",
        ylim=(-0.02, 1.02),
        title="Words -> digits on 200 unseen numbers",
    )
    ax2.legend()
    fig.tight_layout()
    save_figure(fig, plot_path, dpi=110)

    return {
        "noise_fraction": noise_fraction,
        "mean_span_length": mean_span,
        "pretrain_loss_before": pre_before,
        "pretrain_loss_after": pre_after,
        "span_examples": span_examples,
        "task_accuracy": accuracy,
        "baseline_accuracy": baseline,
        "task_history": history,
        "task_examples": examples[:20],
        "plots": [str(plot_path)],
    }


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/08_seq2seq_span_corruption",
        quick_help="small model, few steps (< 30 s)",
        device_help="cpu, cuda, mps (default: auto)",
    )
