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
BERT's full-length outputs. Training cuts spans out of BPE tokens, so a span may start or end
inside a word; the examples the lesson prints cut whole words instead (the same function,
with words as its units) so that you can read them.

Pretraining teaches the model the language; a *task* is then taught by training the same
encoder-decoder on (input, output) pairs. Ours is generated in code so it needs no download:
a number written in words goes in, its digits come out ("three hundred forty-two" ->
"342"). The model sees 800 of the numbers 0-999 and is scored by exact match on the other
200, which it has never seen: it must learn how the words compose, not memorise. Does the
pretraining help? The lesson fine-tunes two copies of one network with the same seed, the
same batches and the same number of steps: one after span pretraining, one straight from its
random initial weights, and prints and plots both accuracies.

What the runs show (seed 0). Quick mode pretrains for 80 steps, too few to learn the output
format: the decoder repeats sentinels, and the lesson says so. Full mode pretrains for 600
steps: the decoder writes the sentinels in order and stops with eos in all 32 validation
windows measured, but puts a line break where the words should be (2% of span tokens right).

On the task, span pretraining on Python's docs does not help at this scale. Quick (300
fine-tuning steps, one batch order): 1.0% exact match with pretraining vs 77.0% without; the
pretrained run has not made its jump yet. Where that jump falls is fragile: a run minutes
earlier, against library kernels that rounded differently, gave 3.5% vs 90.0%; that is why
the full mode repeats each arm with three batch orders. Full (600 steps): 96.5% vs 99.2%,
50% reached at step 300 vs 250 in all three orders: pretraining made learning slower. The
pretrained decoder starts further from the task (loss of the first batch 9.57 vs 6.84 nats in
full mode, ln V = 6.93): it begins every answer with a sentinel and must unlearn that first.
We looked for a setting where pretraining helps within a few CPU minutes (one batch order
each, 400 fine-tuning steps): 100 instead of 800 training pairs (52.5% and 58.5% after 80 and
300 pretraining steps vs 82.5% from scratch), 300 pretraining steps with 800 pairs (17.5% vs
98.0%); a 4x lower fine-tuning rate made the pretrained run slower still (2.0% after 400 steps
vs 83.5%). It helped in none. T5's gains come from pretraining on 2^35 (34 billion) tokens;
ours is 145 thousand tokens of documentation, which rarely spells out a number.

Measured on a 2-core AMD EPYC shared with 15-25 other jobs, with one thread: quick mode
25-34 s of CPU time over three runs, full mode 2-3 min (the wall clock on that busy machine:
4-5 and 8.5-10.5 minutes). On an idle machine expect about the CPU time. Training prints
progress lines in both modes.
On the same machine idle (load average below 2, two threads), wall clock: --quick 23 s,
full mode 1 min 55 s.

Run: python lessons/08_seq2seq_span_corruption.py [--quick] [--device D] [--out-dir DIR] [--seed N]
"""

from __future__ import annotations

import copy
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
from minigpt.lesson import Progress, run_lesson, save_figure
from minigpt.models import Seq2SeqLM
from minigpt.objectives import (
    IGNORE_INDEX,
    span_corruption,
    span_corruption_batch,
    split_at_sentinels,
)
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

PASSAGE = (
    "Thank you for inviting me to your party last week. The interpreter reads each line of "
    "the program, turns it into tokens, and runs the statements one after another until it "
    "reaches the end of the file."
)
BLOCK = 64  # tokens per pretraining window (the encoder's and decoder's positions)
FORMAT_WINDOWS = 32  # validation windows the format of the decoder's output is measured on
# Quick: the pretraining is too short to learn the output format, and the lesson says so.
# Full: the same network pretrained long enough to write the sentinels in order, then eos.
QUICK = dict(d_model=64, n_layers=2, d_ff=256, pre_steps=80, pre_batch=16, pre_lr=3e-3,
             warmup=10, eval_batches=4, task_steps=300, task_evals=6, task_seeds=1)  # fmt: skip
FULL = dict(d_model=64, n_layers=2, d_ff=256, pre_steps=600, pre_batch=16, pre_lr=3e-3,
            warmup=30, eval_batches=20, task_steps=600, task_evals=12, task_seeds=3)  # fmt: skip
# Two held-out accuracies differ clearly when they differ by more than this: 10 of the 200
# numbers, about two standard errors of one accuracy near 50% (sqrt(0.25 / 200) = 0.035).
CLEAR_DIFFERENCE = 0.05


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


def corrupt_words(words: list[str], generator: torch.Generator) -> tuple[list[int], list[int]]:
    """T5's span corruption with whole words as the units: (input units, target units), where
    unit i < n is word i, n + j is sentinel j and n + N_SENTINELS is eos. `span_corruption`
    only sees these numbers, so this is the training objective itself, on words."""
    n = len(words)
    marks = list(range(n, n + N_SENTINELS))  # stand-ins for the sentinel ids
    enc, tgt = span_corruption(torch.arange(n), marks, n + N_SENTINELS, generator=generator)
    return enc.tolist(), tgt.tolist()


def show_units(units: list[int], words: list[str]) -> str:
    """Word-level units as text: "Thank you <extra_id_0> me ... <eos>"."""
    n = len(words)
    names = [words[u] if u < n else "<eos>" if u == n + N_SENTINELS else sentinel(u - n)
             for u in units]  # fmt: skip
    return " ".join(names)


def units_to_ids(
    units: list[int], words: list[str], tokenizer: Any, sentinel_ids: list[int], eos_id: int
) -> list[int]:
    """Token ids of word-level units. Word i is encoded with the space in front of it (word 0
    without), which the GPT-2 split pattern keeps with the word: concatenated, the words are
    exactly the tokens of the passage, so a whole-word span is a token span that starts and
    ends on word boundaries."""
    n, ids = len(words), []
    for u in units:
        if u < n:
            ids += tokenizer.encode(words[u] if u == 0 else " " + words[u])
        else:
            ids.append(eos_id if u == n + N_SENTINELS else sentinel_ids[u - n])
    return ids


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


def _prose_windows(tokenizer: Any, tokens: Any, length: int, count: int) -> list[str]:
    """The first `count` windows of `length` tokens that read as one line of prose (the docs
    are full of code and tables, which make poor examples), as text cut to whole words."""
    texts = []
    for start in range(0, len(tokens) - length, length):
        text = _oneline(tokenizer.decode(tokens[start : start + length].tolist()))
        if sum(c.isalpha() or c in " ,.'" for c in text) > 0.97 * len(text):
            texts.append(" ".join(text.split()[1:-1]))  # the ends may be parts of words
            if len(texts) == count:
                break
    return texts or [PASSAGE]


def format_of_outputs(
    model: Seq2SeqLM, tokenizer: Any, windows: torch.Tensor, sentinel_ids: list[int],
    eos_id: int, pad_id: int, generator: torch.Generator,
) -> dict[str, float]:  # fmt: skip
    """How far the decoder's greedy outputs follow the target format, on (B, T) windows
    corrupted as in training: the share that write exactly the target's sentinels, in order,
    before eos; the share that end with eos; the share of spans given any letter or digit (a
    span of spaces is not a guess at a word); the share of span tokens equal to the target's."""
    device = next(model.parameters()).device
    inputs, targets = span_corruption_batch(windows, sentinel_ids, eos_id, pad_id,
                                            generator=generator)  # fmt: skip
    outputs = generate_seq2seq(model, inputs.to(device), targets.size(1) + 8, temperature=0,
                               eos_id=eos_id).tolist()  # fmt: skip
    in_order = ends = worded = spans = right = tokens = 0
    for out, tgt in zip(outputs, targets, strict=True):
        truth = split_at_sentinels(tgt, sentinel_ids, eos_id)
        before_eos = out[: out.index(eos_id)] if eos_id in out else out
        in_order += [t for t in before_eos if t in sentinel_ids] == sentinel_ids[: len(truth)]
        ends += eos_id in out
        guess = split_at_sentinels(out, sentinel_ids, eos_id)
        for i, span in truth.items():
            got = guess.get(i, [])
            worded += any(c.isalnum() for c in tokenizer.decode(got))
            right += sum(a == b for a, b in zip(got, span, strict=False))
            spans, tokens = spans + 1, tokens + len(span)
    n = len(outputs)
    return {"sentinels_in_order": in_order / n, "ends_with_eos": ends / n,
            "spans_with_words": worded / spans, "span_tokens_right": right / tokens}  # fmt: skip


def format_note(f: dict[str, float], windows: int) -> str:
    """The sentence the lesson prints about the decoder's output, chosen by the numbers."""
    shares = (
        f"in {f['sentinels_in_order']:.0%} of {windows} validation windows the decoder wrote the "
        f"target's sentinels in order, in {f['ends_with_eos']:.0%} it ended with eos; "
        f"{f['spans_with_words']:.0%} of its spans hold a letter or digit, and "
        f"{f['span_tokens_right']:.0%} of the span tokens are right"
    )
    if f["sentinels_in_order"] >= 0.5 and f["ends_with_eos"] >= 0.5:
        head = "the model has learned the format (sentinels in order, then eos)"
    elif f["ends_with_eos"] >= 0.5:
        head = ("the model has learned only part of the format: it stops with eos, but does "
                "not yet write each sentinel once, in order")  # fmt: skip
    else:
        head = "the model has not learned the format yet"
    words = ("; the words inside the spans take far more training than a lesson can afford"
             if f["span_tokens_right"] < 0.25 else "")  # fmt: skip
    return f"{head}: {shares}{words}"


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


def fine_tune(
    model: Seq2SeqLM, tokenizer: Any, train_nums: list[int], test_nums: list[int],
    steps: int, evals: int, seed: int, pad_id: int, eos_id: int,
) -> dict[str, list]:  # fmt: skip
    """Teach words -> digits: AdamW with the Trainer's optimizer groups and schedule, batches
    of 32 training pairs drawn by a generator seeded with `seed` (so two models given the same
    seed see the same batches). Returns every step's loss (step 0: before any update) and the
    held-out exact match at step 0 and `evals` evenly spaced steps."""
    device = next(model.parameters()).device
    lr, every = 2e-3, max(1, steps // evals)
    optimizer = build_optimizer(model, lr, 0.01, (0.9, 0.99))
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"loss_steps": [], "loss": [], "eval_steps": [0], "accuracy": []}
    history["accuracy"].append(_exact_match(model, tokenizer, test_nums, pad_id, eos_id)[0])
    progress = Progress(steps, "step", lines=4)
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, lr=lr, min_lr=lr / 10, warmup_steps=30, max_steps=steps)
        picks = torch.randint(0, len(train_nums), (32,), generator=gen).tolist()
        inputs, targets = _pairs_to_batch(tokenizer, [train_nums[i] for i in picks], pad_id,
                                          eos_id)  # fmt: skip
        _, loss = model(inputs.to(device), targets.to(device))
        history["loss_steps"].append(step)  # the loss of the weights before this update
        history["loss"].append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            if history["eval_steps"][-1] != step + 1:
                acc, _ = _exact_match(model, tokenizer, test_nums, pad_id, eos_id)
                model.train()
                history["eval_steps"].append(step + 1)
                history["accuracy"].append(acc)
        if progress.due(step + 1):
            progress(step + 1, loss=loss.item(), held_out_exact_match=history["accuracy"][-1])
    return history


def first_step_at(history: dict[str, list], level: float) -> int | None:
    """The first evaluated step whose held-out accuracy reached `level` (None: never)."""
    return next((s for s, a in zip(history["eval_steps"], history["accuracy"], strict=True)
                 if a >= level), None)  # fmt: skip


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def task_conclusion(pre: list[dict[str, list]], scratch: list[dict[str, list]], steps: int) -> str:
    """What the fine-tuning runs show, worded from their numbers: one run per batch order
    (seed) with and without pretraining; the verdict compares the means over the seeds."""
    finals_pre = [h["accuracy"][-1] for h in pre]
    finals_scr = [h["accuracy"][-1] for h in scratch]
    a_pre, a_scr = _mean(finals_pre), _mean(finals_scr)
    mean_pre = _mean([_mean(h["accuracy"]) for h in pre])  # the area under the curve
    mean_scr = _mean([_mean(h["accuracy"]) for h in scratch])

    def reach(runs: list[dict[str, list]]) -> str:
        steps_at = [first_step_at(h, 0.5) for h in runs]
        return "/".join("never" if s is None else f"step {s}" for s in steps_at)

    seeds = f"{len(pre)} batch orders" if len(pre) > 1 else "one batch order"
    numbers = (
        f"after {steps} steps ({seeds}), held-out exact match {a_pre:.1%} with span pretraining "
        f"vs {a_scr:.1%} without; mean over the evaluations {mean_pre:.1%} vs {mean_scr:.1%}; "
        f"50% reached at {reach(pre)} vs {reach(scratch)}"
    )
    if len(pre) > 1:
        numbers += (f"; per batch order {', '.join(f'{a:.0%}' for a in finals_pre)} vs "
                    f"{', '.join(f'{a:.0%}' for a in finals_scr)}")  # fmt: skip
    if a_pre - a_scr > CLEAR_DIFFERENCE:
        verdict = "span pretraining helped"
    elif a_scr - a_pre > CLEAR_DIFFERENCE:
        verdict = "span pretraining hurt"
    elif mean_pre - mean_scr > CLEAR_DIFFERENCE:
        verdict = "span pretraining made learning faster, not the end result better"
    elif mean_scr - mean_pre > CLEAR_DIFFERENCE:
        verdict = "span pretraining made learning slower, not the end result worse"
    else:
        verdict = ("no clear difference at this scale (the two are within "
                   f"{CLEAR_DIFFERENCE:.0%}, about two standard errors)")  # fmt: skip
    return f"{verdict}: {numbers}"


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/08_seq2seq_span_corruption",
    seed: int = 0,
) -> dict[str, Any]:
    """Show span corruption, pretrain a Seq2SeqLM with it, then teach words -> digits to it
    and to the same network without pretraining. `seed` sets the initial weights, the
    corruptions and the batches."""
    p = QUICK if quick else FULL
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    print("== 1. Data: Python's documentation, BPE with 1024 tokens ==")
    data = prepare("pydoc", "bpe", 1024, out_dir=out / "data", progress=False)
    tok = data.tokenizer
    pad_id, eos_id = tok.special_tokens[PAD], tok.special_tokens[EOT]
    sentinels = [tok.special_tokens[sentinel(i)] for i in range(N_SENTINELS)]
    print(
        f"{data.meta['train_tokens']:,} training tokens; sentinels "
        f"{tok.decode(sentinels[:1])} .. {tok.decode(sentinels[-1:])}"
    )

    print("\n== 2. Span corruption of one passage (noise density 0.15, mean span 3) ==")
    gen = torch.Generator().manual_seed(seed + 1)
    words = PASSAGE.split()
    enc_units, tgt_units = corrupt_words(words, gen)
    cut = [[words[u] for u in span] for span in split_at_sentinels(
        tgt_units, range(len(words), len(words) + N_SENTINELS), len(words) + N_SENTINELS
    ).values()]  # fmt: skip
    n_tokens = len(tok.encode(PASSAGE))
    enc_ids = units_to_ids(enc_units, words, tok, sentinels, eos_id)
    tgt_ids = units_to_ids(tgt_units, words, tok, sentinels, eos_id)
    print(f"cut at whole words so it reads: {len(words)} words -> round(0.15 * {len(words)}) = "
          f"{sum(map(len, cut))} noise words in {len(cut)} spans")  # fmt: skip
    print(f"original ({len(words)} words, {n_tokens} tokens):", PASSAGE)
    print(f"input    ({len(enc_units)} units, {len(enc_ids)} tokens):",
          show_units(enc_units, words))  # fmt: skip
    print(f"target   ({len(tgt_units)} units, {len(tgt_ids)} tokens):",
          show_units(tgt_units, words))  # fmt: skip
    print("(in training the units are BPE tokens, so spans can start or end inside a word)")
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
    config = ModelConfig(
        vocab_size=tok.vocab_size, max_len=BLOCK, d_model=p["d_model"], n_heads=4,
        n_layers=p["n_layers"], d_ff=p["d_ff"],
        pad_id=pad_id, start_id=pad_id,  # T5 starts its decoder from the pad token
    )  # fmt: skip
    model = Seq2SeqLM(config)
    initial_weights = copy.deepcopy(model.state_dict())  # the no-pretraining run starts here
    print(
        f"Seq2SeqLM: {model.num_parameters():,} parameters "
        f"({config.encoder_layers} encoder + {config.decoder_layers} decoder layers), "
        f"{p['pre_steps']} steps of {p['pre_batch']} windows x {BLOCK} tokens"
    )
    cfg = TrainConfig(
        objective="span", block_size=BLOCK, batch_size=p["pre_batch"], max_steps=p["pre_steps"],
        lr=p["pre_lr"], warmup_steps=p["warmup"], eval_interval=max(p["pre_steps"] // 8, 1),
        eval_batches=p["eval_batches"], checkpoint_interval=10**9, log_interval=10,
        precision="fp32", device=device or "auto", progress=True,
        out_dir=str(out / "pretrain"), seed=seed,
    )  # fmt: skip
    trainer = Trainer(model, cfg, data, tok)
    pre_before = trainer.evaluate()["val_loss"]
    pre_after = trainer.train()["val_loss"]
    print(f"val loss on the corrupted spans: {pre_before:.3f} -> {pre_after:.3f} nats "
          f"(ln V = {math.log(tok.vocab_size):.3f}: a uniform guess)")  # fmt: skip
    run_device = next(model.parameters()).device
    print("two validation passages, cut at whole words:")
    span_examples = []
    for text in _prose_windows(tok, data.val, BLOCK, count=2):
        passage = text.split()
        enc_u, tgt_u = corrupt_words(passage, gen)
        enc = torch.tensor(units_to_ids(enc_u, passage, tok, sentinels, eos_id))
        tgt = torch.tensor(units_to_ids(tgt_u, passage, tok, sentinels, eos_id))
        pred = generate_seq2seq(model, enc.to(run_device), tgt.numel() + 8, temperature=0,
                                eos_id=eos_id).cpu()  # fmt: skip
        _, predicted = fill_sentinels(enc, pred, sentinels, eos_id)
        truth = split_at_sentinels(tgt, sentinels, eos_id)
        print("input        :", show_units(enc_u, passage))
        print("decoder wrote:", _oneline(tok.decode(pred.tolist())))
        for i, span in truth.items():
            guess = tok.decode(predicted.get(i, []))
            print(f"  {sentinel(i)}: target {tok.decode(span)!r}, predicted {guess!r}")
        span_examples.append(
            {"input": show_units(enc_u, passage), "target": show_units(tgt_u, passage),
             "prediction": tok.decode(pred.tolist())}
        )  # fmt: skip
    stride = max(1, len(data.val) // BLOCK // FORMAT_WINDOWS) * BLOCK  # spread over the split
    val_windows = torch.stack([
        torch.from_numpy(data.val[i : i + BLOCK].astype("int64"))
        for i in range(0, len(data.val) - BLOCK + 1, stride)
    ][:FORMAT_WINDOWS])  # fmt: skip
    fmt = format_of_outputs(model, tok, val_windows, sentinels, eos_id, pad_id, gen)
    note = format_note(fmt, len(val_windows))
    print(f"({note})")

    print("\n== 4. A task: numbers in words -> digits, with and without span pretraining ==")
    numbers = list(range(1000))
    random.Random(seed).shuffle(numbers)
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
    steps = p["task_steps"]
    print(
        f"fine-tuning all weights, {steps} steps of 32 pairs (teacher forcing), greedy "
        "decoding of the 200 held-out numbers; same seed, batches, steps for both"
    )
    # Where a network's accuracy jumps depends on the order of its batches, so the full mode
    # repeats each arm with several orders; the initial weights are the same in every run.
    pretrained_weights = copy.deepcopy(model.state_dict())
    task_inputs, _ = _pairs_to_batch(tok, test_nums, pad_id, eos_id)
    first = generate_seq2seq(model, task_inputs.to(run_device), 1, temperature=0).flatten()
    sentinel_first = sum(t in sentinels for t in first.tolist()) / len(test_nums)
    habit = ": it still writes span-corruption targets" if sentinel_first >= 0.5 else ""
    print(f"before fine-tuning, the pretrained decoder starts {sentinel_first:.0%} of the "
          f"held-out answers with a sentinel{habit}")  # fmt: skip
    runs: dict[str, list[dict[str, list]]] = {"pretrained": [], "from scratch": []}
    nets: dict[str, Seq2SeqLM] = {}
    for order in range(p["task_seeds"]):
        for name, weights in (("pretrained", pretrained_weights),
                              ("from scratch", initial_weights)):  # fmt: skip
            what = "after span pretraining" if name == "pretrained" else "without pretraining"
            print(f"- {what}, batch order {order + 1} of {p['task_seeds']}:")
            net = Seq2SeqLM(config).to(run_device)
            net.load_state_dict(weights)  # "from scratch" starts where pretraining started
            history = fine_tune(net, tok, train_nums, test_nums, steps, p["task_evals"],
                                seed + 2 + order, pad_id, eos_id)  # fmt: skip
            runs[name].append(history)
            nets.setdefault(name, net)
    _, answers = _exact_match(nets["pretrained"], tok, test_nums, pad_id, eos_id)
    examples = [(number_in_words(n), a, str(n)) for n, a in zip(test_nums, answers, strict=True)]
    print("the pretrained model (batch order 1) on held-out numbers:")
    for words_in, answer, truth in examples[:6]:
        print(f"  {words_in!r:<36} -> {answer!r:<7} {'ok' if answer == truth else 'want ' + truth}")
    start_pre = _mean([h["loss"][0] for h in runs["pretrained"]])
    start_scr = _mean([h["loss"][0] for h in runs["from scratch"]])
    closer = "further from" if start_pre > start_scr else "closer to"
    start_note = (f"loss on the first batch, before any update: {start_pre:.2f} nats pretrained "
                  f"vs {start_scr:.2f} from scratch (ln V = {math.log(tok.vocab_size):.2f}): "
                  f"the pretrained model starts {closer} the task")  # fmt: skip
    print(start_note)
    pre_acc = _mean([h["accuracy"][-1] for h in runs["pretrained"]])
    scratch_acc = _mean([h["accuracy"][-1] for h in runs["from scratch"]])
    conclusion = task_conclusion(runs["pretrained"], runs["from scratch"], steps)
    print(f"held-out exact match (mean over batch orders): {pre_acc:.1%} pretrained, "
          f"{scratch_acc:.1%} from scratch, baseline {baseline:.1%}")  # fmt: skip
    print(f"conclusion: {conclusion}")

    plot_path = _plot(out, read_metrics(out / "pretrain" / "metrics.jsonl"), pre_before,
                      math.log(tok.vocab_size), runs, baseline)  # fmt: skip
    return {
        "noise_fraction": noise_fraction,
        "mean_span_length": mean_span,
        "example_words": words,
        "example_spans": cut,
        "example_input_ids": enc_ids,
        "example_target_ids": tgt_ids,
        "pretrain_loss_before": pre_before,
        "pretrain_loss_after": pre_after,
        "span_examples": span_examples,
        "output_format": fmt,
        "format_note": note,
        "task_accuracy": pre_acc,
        "scratch_accuracy": scratch_acc,
        "baseline_accuracy": baseline,
        "task_history": runs["pretrained"][0],
        "scratch_history": runs["from scratch"][0],
        "task_runs": runs["pretrained"],
        "scratch_runs": runs["from scratch"],
        "task_conclusion": conclusion,
        "sentinel_first_share": sentinel_first,
        "first_batch_loss": {"pretrained": start_pre, "from scratch": start_scr},
        "start_note": start_note,
        "task_examples": examples[:20],
        "plots": [str(plot_path)],
    }


def _plot(out: Path, records: list[dict[str, Any]], pre_before: float, ln_v: float,
          runs: dict[str, list[dict[str, list]]], baseline: float) -> Path:  # fmt: skip
    """Three panels: span pretraining loss, fine-tuning loss (first batch order) and held-out
    accuracy of every run; every loss curve starts at its before-training value (step 0)."""
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.4))
    xs, ys = series(records, "train", "loss")
    ax1.plot(xs, ys, "-", label="train (10-step means)")
    xs, ys = series(records, "eval", "val_loss")
    ax1.plot([0, *xs], [pre_before, *ys], "-o", markersize=4, label="validation")
    ax1.axhline(ln_v, color="grey", linestyle="--", linewidth=1, label="ln V (uniform)")
    ax1.set(xlabel="pretraining step", ylabel="loss (nats per target token)",
            title="Span-corruption pretraining")  # fmt: skip
    colours = {"pretrained": "tab:blue", "from scratch": "tab:orange"}
    for name, histories in runs.items():
        h = histories[0]
        ax2.plot(h["loss_steps"], h["loss"], "-", color=colours[name], linewidth=1, label=name)
        for i, h in enumerate(histories):
            label = name + (f", batch order {i + 1}" if len(histories) > 1 else "")
            ax3.plot(h["eval_steps"], h["accuracy"], ["-o", "--s", ":^"][i % 3],
                     color=colours[name], markersize=4, alpha=1.0 if i == 0 else 0.6,
                     label=f"{label} (final {h['accuracy'][-1]:.1%})")  # fmt: skip
    ax2.set(xlabel="fine-tuning step", ylabel="loss (nats per target token)",
            title="Words -> digits: training loss per batch")  # fmt: skip
    ax3.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="trivial baseline")
    ax3.set(xlabel="fine-tuning step", ylabel="held-out exact match", ylim=(-0.02, 1.02),
            title="Words -> digits on 200 unseen numbers")  # fmt: skip
    for ax in (ax1, ax2, ax3):
        ax.grid(True, alpha=0.3)
    ax1.legend()
    ax2.legend()
    several = len(runs["pretrained"]) > 1  # the curves rise late: keep the legend off them
    ax3.legend(fontsize=7 if several else 9, loc="lower right" if several else "upper left")
    fig.tight_layout()
    return save_figure(fig, out / "span_pretraining_and_task.png", dpi=110)


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/08_seq2seq_span_corruption",
        quick_help="80 pretraining + 2 x 300 fine-tuning steps (25-34 s of CPU time on a "
        "2-core AMD EPYC; the full mode: 600 + 6 x 600 steps, 2-3 min)",
        device_help="cpu, cuda, mps (default: auto)",
    )
