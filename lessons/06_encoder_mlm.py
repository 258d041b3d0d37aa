"""Lesson 06 — BERT-style pretraining: an encoder that fills in the blanks.

The transformer's encoder stack, used alone, is an *autoencoding* model: every position
attends to every other position, left and right. It cannot be trained to predict the next
token — it would simply look at it — so it is trained to *reconstruct* a corrupted input
instead. This is masked language modelling (MLM), the objective of BERT (Devlin et al.
2018) and RoBERTa:

    input :  the teacher [MASK] the students
    target:              teaching

The model predicts the hidden word from context on both sides, which is why encoder-only
models are the usual choice for tasks that classify tokens or sentences: sentiment
analysis, named-entity recognition, word classification.

How the corruption works (`minigpt.objectives.mask_tokens`):

1. choose 15% of the positions (never padding or other special tokens);
2. of those, replace 80% by [MASK], 10% by a random token and leave 10% unchanged;
3. compute the loss only at the chosen positions (labels are -100 elsewhere).

Step 2 exists because [MASK] never appears when the model is later used on real text: if
the model only ever had to predict at [MASK] positions, it could ignore what an ordinary
token means. The price of the objective is efficiency: a causal LM learns from every token
of a window, an MLM from ~15% of them.

This lesson prepares Python's bundled documentation as a corpus, shows the corruption on a
sentence (every position marked: [M] masked, [R] randomised, [K] kept, _ untouched) and its
statistics over a large batch, asks an untrained encoder for its top-5 guesses at a dozen
masked sentences of the documentation, trains it with the same `Trainer` that trains
GPT-style models (only the batch function differs), and asks again: for each sentence, the
rank of the hidden word among all 1024 tokens before -> after, and the probability it gained.

Two reference losses make the numbers readable. Guessing uniformly over V tokens costs
ln V nats (6.93 for V = 1024): where an untrained model starts. Guessing every hidden token
from word frequencies alone — ignoring the sentence — costs the corpus's unigram cross-
entropy (about 5.9 nats here). A model first learns the frequencies (its guesses become
"\n", " the", "s", "." everywhere), and only a loss *below* the unigram line shows it has
started to read the context. (The documentation is hard-wrapped at about 70 characters, so a
line break is among its commonest tokens and a fair guess almost anywhere.) Top-5 lists
change slowly; the *rank* of the hidden word among all tokens shows progress sooner. Like
BERT, the model learns its position embeddings; here that also made it start using context
sooner than fixed sinusoids did (250 steps: 5.62 against 5.96 nats).

What a run shows (seed 0, --quick: 600 steps of a 2-layer, width-64 encoder on 48-token
windows; 300 steps left it on the unigram plateau, every sentence getting the same top 5):
val loss 6.94 -> 5.25 nats, below the unigram line; the hidden word moves up in 11 of the 12
sentences (median rank 444 -> 84 of 1024), most where the neighbours pin it down ("refer
[MASK] the": " to" 134 -> 13; "the number [MASK] expressions": " of" 833 -> 10, p 0.0008 ->
0.0115); the top-5 lists now differ between sentences ("x is [MASK] y" gets '"' and 'x'),
though none holds its hidden word yet. Rarer words ("bound", "raised") can still fall: learning
the frequencies pushes rare tokens down before the context lifts them. Full mode trains the
same model four times longer: val loss 5.05, every hidden word up (median rank 444 -> 62;
" version" 536 -> 14 after "Changed in", " raised" 271 -> 19), and guesses that read the
sentence (" 3" and ":" around "Changed in [MASK] 3.1", " built" after "len() returns the").

Measured on a 2-core AMD EPYC while some fifteen other jobs shared its two cores
(OMP_NUM_THREADS=1): --quick 350 s for 38 s of CPU time, full 857 s for 140 s. The machine was
never idle; there the wall time should come near the CPU time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 28 s,
full mode 1 min 53 s.

Run: python lessons/06_encoder_mlm.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from minigpt.config import ModelConfig
from minigpt.data import prepare
from minigpt.generate import fill_masks
from minigpt.lesson import report_plot, run_lesson, save_figure
from minigpt.models import EncoderLM
from minigpt.objectives import IGNORE_INDEX, mask_tokens
from minigpt.plots import plot_training_curves
from minigpt.tokenizer import MASK, PAD
from minigpt.training.loop import Trainer
from minigpt.training.settings import TrainConfig

# Sentences of the documentation itself (lightly shortened), each with its hidden word: one
# token of this vocabulary, so the model can name it in one guess. What a tiny model trained
# for minutes can learn is the documentation's own phrases ("refer to the", "the number of"),
# so sentences in its style show what it has learned; a sentence about teachers would only
# show that it has never read about teachers.
SENTENCES: list[tuple[str, str]] = [
    ('If an exception is [MASK] during the iteration, it is as if "in" raised that exception.',
     "raised"),
    ('The built-in function "len()" returns the [MASK] of items in a mapping.', "number"),
    ('"x is [MASK] y" yields the inverse truth value.', "not"),
    ("Changed in [MASK] 3.1: Added support for keyword arguments.", "version"),
    ('A call always returns some value, possibly "None", unless it raises an [MASK].',
     "exception"),
    ("The result is then bound to the [MASK] name.", "class"),
    ('When a name is not [MASK], an attempt to evaluate it raises a "NameError" exception.',
     "bound"),
    ("This method returns a [MASK] of all those references still alive.", "list"),
    ("Decimal characters are those that can be [MASK] to form numbers in base 10.", "used"),
    ('For full details of "yield" semantics, refer [MASK] the Yield expressions section.', "to"),
    ('The arguments are the same [MASK] for "break".', "as"),
    ("The length of the tuple is the number [MASK] expressions in the list.", "of"),
]  # fmt: skip

# The two sizes of the experiment. Like BERT, the model learns its position embeddings.
POSITIONAL = "learned"
QUICK = dict(d_model=64, n_layers=2, block=48, batch=32, steps=600, lr=3e-3, warmup=30,
             eval_batches=4)  # fmt: skip
FULL = dict(QUICK, steps=2400, eval_batches=20)  # the same model, four times longer


# How section 2 marks what the corruption did to each position (one source for the printed
# line and its legend). "." is no mark: it is a real token of these sentences.
MARKS = {
    "mask": ("[M]", "replaced by [MASK]"),
    "random": ("[R]", "replaced by a random token"),
    "kept": ("[K]", "kept as it was, still predicted"),
    "none": ("_", "not chosen: no loss here"),
}


def hidden_token(tokenizer: Any, word: str) -> int:
    """The single token id of " word" (the hidden words follow a space), or a clear error."""
    ids = tokenizer.encode(" " + word)
    if len(ids) != 1:
        pieces = [tokenizer.decode([i]) for i in ids]
        raise ValueError(f"hidden word {word!r} is {len(ids)} tokens {pieces}; pick a word "
                         "that is one token of this vocabulary")  # fmt: skip
    return ids[0]


def corruption_marks(original: list[int], inputs: list[int], labels: list[int],
                     mask_id: int) -> list[str]:  # fmt: skip
    """The MARKS key of every position: what `mask_tokens` did there. (A random token that
    happens to equal the original counts as kept: the model cannot tell them apart either.)"""
    kinds = []
    for orig, inp, label in zip(original, inputs, labels, strict=True):
        if label == IGNORE_INDEX:
            kinds.append("none")
        elif inp == mask_id:
            kinds.append("mask")
        else:
            kinds.append("kept" if inp == orig else "random")
    return kinds


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows of cells padded column by column so that a reader's eye runs straight down."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return ["|".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]


def probe(model: EncoderLM, tokenizer: Any, mask_id: int, k: int = 5) -> list[dict[str, Any]]:
    """For every sentence: the model's top-k guesses at its [MASK], and the rank (1 = first
    choice, among all tokens) and probability of the hidden word."""
    device = next(model.parameters()).device
    found = []
    for text, word in SENTENCES:
        ids = torch.tensor(tokenizer.encode(text, allowed_special="all"), device=device)
        fill = fill_masks(model, ids, mask_id, top_k=k)[0]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            probs = model(ids[None])[0][0, fill.position].float().softmax(-1)  # (V,)
        model.train(was_training)
        target = hidden_token(tokenizer, word)
        found.append({
            "top": [tokenizer.decode([t]) for t in fill.token_ids],
            "rank": int((probs > probs[target]).sum()) + 1,
            "prob": probs[target].item(),
        })  # fmt: skip
    return found


def learning_summary(before: list[dict], after: list[dict], k: int = 5) -> dict[str, Any]:
    """What the two probes say, as numbers the printed conclusion is read from."""
    ranks_b, ranks_a = [f["rank"] for f in before], [f["rank"] for f in after]
    return {
        "n": len(before),
        "moved_up": sum(a < b for a, b in zip(ranks_a, ranks_b, strict=True)),
        "median_rank_before": float(np.median(ranks_b)),
        "median_rank_after": float(np.median(ranks_a)),
        "in_top_before": sum(r <= k for r in ranks_b),
        "in_top_after": sum(r <= k for r in ranks_a),
        "top_changed": sum(fb["top"] != fa["top"] for fb, fa in zip(before, after, strict=True)),
        "distinct_top_after": len({tuple(f["top"]) for f in after}),
        "prob_gain_median": float(np.median([a["prob"] - b["prob"]
                                             for a, b in zip(after, before, strict=True)])),
    }  # fmt: skip


def _print_probe(before: list[dict], after: list[dict] | None = None) -> None:
    for i, ((text, word), fb) in enumerate(zip(SENTENCES, before, strict=True), 1):
        print(f"  {i}. {text}")
        if after is None:
            print(f"     {word!r} ranks {fb['rank']} (p {fb['prob']:.4f}); top 5: "
                  + " | ".join(repr(g) for g in fb["top"]))  # fmt: skip
            continue
        fa = after[i - 1]
        print(f"     {word!r}: rank {fb['rank']} -> {fa['rank']}, p {fb['prob']:.4f} -> "
              f"{fa['prob']:.4f} ({fa['prob'] - fb['prob']:+.4f})")  # fmt: skip
        print("     top 5 after : " + " | ".join(repr(g) for g in fa["top"]))


def _unigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats) of predicting each validation token from training frequencies
    alone (add-one smoothed): the best a model that ignores context can do."""
    counts = np.bincount(train, minlength=vocab_size) + 1.0
    log_p = np.log(counts / counts.sum())
    val_counts = np.bincount(val, minlength=vocab_size)
    return float(-(val_counts * log_p).sum() / val_counts.sum())


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/06_encoder_mlm",
    seed: int = 0,
) -> dict[str, Any]:
    """Prepare data, show MLM corruption, train an EncoderLM, compare fills before and after."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    print("== 1. Data: Python's documentation, BPE with 1024 tokens ==")
    data = prepare("pydoc", "bpe", 1024, out_dir=out / "data", progress=False)
    tok = data.tokenizer
    mask_id, pad_id = tok.special_tokens[MASK], tok.special_tokens[PAD]
    special = sorted(tok.special_tokens.values())
    print(f"{data.meta['train_tokens']:,} training tokens, vocabulary {tok.vocab_size}")

    print("\n== 2. The corruption: 15% chosen; of those 80% [MASK], 10% random, 10% kept ==")
    sentence = tok.encode("The return value is None if the key is not found in the mapping.")
    ids = torch.tensor(sentence)
    # prob=0.3 so a short sentence shows all three cases: the first draw (seed, seed+1, ...)
    # that has at least one of each is shown.
    for example_seed in range(seed, seed + 1000):
        gen = torch.Generator().manual_seed(example_seed)
        inputs, labels = mask_tokens(ids, mask_id, tok.vocab_size, special, prob=0.3,
                                     generator=gen)  # fmt: skip
        kinds = corruption_marks(sentence, inputs.tolist(), labels.tolist(), mask_id)
        if {"mask", "random", "kept"} <= set(kinds):
            break
    rows = _aligned([
        [tok.decode([i]) for i in sentence],
        [tok.decode([i]) for i in inputs.tolist()],
        [MARKS[kind][0] for kind in kinds],
    ])  # fmt: skip
    for name, row in zip(("original", "input", "chosen"), rows, strict=True):
        print(f"{name:9s}: {row}")
    print("legend   : " + "; ".join(f"{mark} {meaning}" for mark, meaning in MARKS.values()))
    print("(prob=0.3 here so a short sentence shows all three cases; training uses 0.15)")
    gen = torch.Generator().manual_seed(seed)
    windows = torch.from_numpy(data.train[: 256 * 128].astype("int64")).view(256, 128)
    inputs, labels = mask_tokens(windows, mask_id, tok.vocab_size, special, generator=gen)
    chosen = labels != IGNORE_INDEX
    n = int(chosen.sum())
    shares = {
        "mask": int((chosen & (inputs == mask_id)).sum()) / n,
        "random": int((chosen & (inputs != mask_id) & (inputs != windows)).sum()) / n,
        "kept": int((chosen & (inputs == windows)).sum()) / n,
    }
    selection_rate = n / windows.numel()
    print(
        f"over {windows.numel():,} tokens: {selection_rate:.1%} chosen; of those "
        + ", ".join(f"{k} {v:.1%}" for k, v in shares.items())
    )

    print("\n== 3. An untrained encoder guesses ==")
    s = QUICK if quick else FULL
    config = ModelConfig(
        vocab_size=tok.vocab_size, max_len=s["block"], d_model=s["d_model"], n_heads=4,
        n_layers=s["n_layers"], d_ff=4 * s["d_model"], pad_id=pad_id, positional=POSITIONAL,
    )  # fmt: skip
    model = EncoderLM(config)
    print(f"EncoderLM: {model.num_parameters():,} parameters, {s['n_layers']} layers of width "
          f"{s['d_model']}, context {s['block']}")  # fmt: skip
    before = probe(model, tok, mask_id)
    print("the hidden word's rank among all tokens (1 = first choice) and probability:")
    _print_probe(before)

    print(f"\n== 4. Training with the shared Trainer (objective 'mlm'), {s['steps']} steps ==")
    cfg = TrainConfig(
        objective="mlm", block_size=s["block"], batch_size=s["batch"], max_steps=s["steps"],
        lr=s["lr"], warmup_steps=s["warmup"], eval_interval=max(s["steps"] // 5, 1),
        eval_batches=s["eval_batches"], checkpoint_interval=10**9,
        log_interval=max(s["steps"] // 50, 1), precision="fp32", device=device or "auto",
        progress=True, out_dir=str(out / "run"), seed=seed,
    )  # fmt: skip
    trainer = Trainer(model, cfg, data, tok)
    loss_before = trainer.evaluate()["val_loss"]
    unigram = _unigram_loss(np.asarray(data.train), np.asarray(data.val), tok.vocab_size)
    result = trainer.train()
    loss_after = result["val_loss"]
    print(
        f"val loss at masked positions: {loss_before:.3f} -> {loss_after:.3f} nats "
        f"(uniform guessing: ln {tok.vocab_size} = {math.log(tok.vocab_size):.3f}; "
        f"word frequencies alone: {unigram:.3f})"
    )

    print("\n== 5. The trained encoder guesses ==")
    after = probe(model, tok, mask_id)
    _print_probe(before, after)
    summary = learning_summary(before, after)
    m = summary
    print(
        f"The hidden word moved up in {m['moved_up']} of {m['n']} sentences (median rank "
        f"{m['median_rank_before']:.0f} -> {m['median_rank_after']:.0f} of {tok.vocab_size}; "
        f"median probability gain {m['prob_gain_median']:+.4f}); in the top 5: "
        f"{m['in_top_before']} before, {m['in_top_after']} after."
    )
    common = Counter(g for f in after for g in f["top"]).most_common(3)
    shared = ", ".join(f"{g!r} in {c}" for g, c in common)
    context = (
        f"the guesses have begun to depend on the sentence, though frequent tokens still fill "
        f"most lists ({shared} of {m['n']})"
        if m["distinct_top_after"] > m["n"] // 2
        else "most sentences get the same guesses: the model still leans on word frequencies"
    )
    print(f"The top 5 changed for {m['top_changed']} of {m['n']} sentences, and after training "
          f"{m['distinct_top_after']} of the {m['n']} lists differ (in tokens or order): "
          f"{context}.")  # fmt: skip

    loss_png = plot_training_curves(
        out / "run" / "metrics.jsonl", out / "mlm_loss.png", initial_loss=loss_before,
        title="Masked LM: loss at the chosen 15% of positions",
        hline=(unigram, "word frequencies alone (unigram)"),
    )  # fmt: skip
    print()
    report_plot(loss_png)
    split_png = out / "mask_split.png"
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(list(shares), list(shares.values()), color=["tab:blue", "tab:orange", "tab:green"])
    for x, v in enumerate(shares.values()):
        ax.text(x, v + 0.02, f"{v:.1%}", ha="center")
    ax.set_ylim(0, 1)  # room above the tallest bar for its label
    ax.set_xlabel("what a chosen token becomes")
    ax.set_ylabel("share of chosen positions")
    ax.set_title(f"What happens to the {selection_rate:.1%} chosen tokens")
    fig.tight_layout()
    save_figure(fig, split_png, dpi=110)

    return {
        "loss_before": loss_before,
        "loss_after": loss_after,
        "unigram_loss": unigram,
        "selection_rate": selection_rate,
        "mask_share": shares["mask"],
        "random_share": shares["random"],
        "kept_share": shares["kept"],
        "example_marks": kinds,
        "fills_before": [f["top"] for f in before],
        "fills_after": [f["top"] for f in after],
        "ranks_before": [f["rank"] for f in before],
        "ranks_after": [f["rank"] for f in after],
        "probs_before": [f["prob"] for f in before],
        "probs_after": [f["prob"] for f in after],
        **summary,
        "steps": result["steps"],
        "plots": [str(loss_png), str(split_png)],
    }


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/06_encoder_mlm",
        quick_help="600 instead of 2400 training steps (times below)",
        device_help="cpu, cuda, mps (default: auto)",
    )
