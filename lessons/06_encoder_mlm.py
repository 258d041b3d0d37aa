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
sentence and its statistics over a large batch, asks an untrained encoder for its top-5
guesses at some masked sentences, trains it with the same `Trainer` that trains GPT-style
models (only the batch function differs), and asks again.

Two reference losses make the numbers readable. Guessing uniformly over V tokens costs
ln V nats (6.93 for V = 1024): where an untrained model starts. Guessing every hidden token
from word frequencies alone — ignoring the sentence — costs the corpus's unigram cross-
entropy (about 5.9 nats here). A model first learns the frequencies (its guesses become
" the", ",", "." everywhere), and only a loss *below* the unigram line shows it has started
to read the context. (The documentation is hard-wrapped at about 70 characters, so a line
break is among its commonest tokens and a fair guess almost anywhere.) Top-5 lists change
slowly; the *rank* of the hidden word among all tokens shows progress sooner. Like BERT,
the model learns its position embeddings; here that also makes it start using context
sooner than with fixed sinusoids.

Run: python lessons/06_encoder_mlm.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import math
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
from minigpt.plots import plot_curves, read_metrics, series
from minigpt.tokenizer import MASK, PAD
from minigpt.training.loop import Trainer
from minigpt.training.settings import TrainConfig

# Masked sentences in the corpus's own style, each with the hidden word (one token in this
# vocabulary). The first is the course's example: "teaches" is five tokens here and the
# documentation never talks about teachers, so it shows what the model *thinks* fits.
SENTENCES: list[tuple[str, str | None]] = [
    ("The teacher [MASK] the students.", None),
    ("This function returns [MASK] new list.", "a"),
    ("The value of the expression is assigned [MASK] the variable.", "to"),
    ("If the object is [MASK] a list, a TypeError is raised.", "not"),
    ("The first [MASK] is the name of the module.", "argument"),
    ("A dictionary maps each [MASK] to a value.", "key"),
]


def _show(tokenizer: Any, ids: list[int]) -> str:
    """Tokens joined with '|' so a reader sees where the tokenizer cut."""
    return "|".join(tokenizer.decode([i]) for i in ids)


def _fills(
    model: EncoderLM, tokenizer: Any, mask_id: int, k: int = 5
) -> tuple[list[list[str]], list[int | None]]:
    """Top-k guesses (as text) at the single [MASK] of every sentence, and the rank of the
    hidden word among all tokens (1 = the model's first choice; None if no answer)."""
    device = next(model.parameters()).device
    guesses, ranks = [], []
    was_training = model.training
    model.eval()
    for text, answer in SENTENCES:
        ids = torch.tensor(tokenizer.encode(text, allowed_special="all"), device=device)
        fill = fill_masks(model, ids, mask_id, top_k=k)[0]
        guesses.append([tokenizer.decode([t]) for t in fill.token_ids])
        if answer is None:
            ranks.append(None)
            continue
        with torch.no_grad():
            scores = model(ids[None])[0][0, fill.position]  # (V,) logits at the mask
        target = tokenizer.encode(" " + answer)[0]
        ranks.append(int((scores > scores[target]).sum()) + 1)
    model.train(was_training)
    return guesses, ranks


def _unigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats) of predicting each validation token from training frequencies
    alone (add-one smoothed): the best a model that ignores context can do."""
    counts = np.bincount(train, minlength=vocab_size) + 1.0
    log_p = np.log(counts / counts.sum())
    val_counts = np.bincount(val, minlength=vocab_size)
    return float(-(val_counts * log_p).sum() / val_counts.sum())


def _print_fills(title: str, fills: list[list[str]], ranks: list[int | None]) -> int:
    print(title)
    hits = 0
    for (text, answer), guesses, rank in zip(SENTENCES, fills, ranks, strict=True):
        hits += answer is not None and answer in [g.strip() for g in guesses]
        shown = " | ".join(repr(g) for g in guesses)
        note = f"   ({answer!r} ranks {rank})" if answer is not None else ""
        print(f"  {text:<62} -> {shown}{note}")
    return hits


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/06_encoder_mlm",
) -> dict[str, Any]:
    """Prepare data, show MLM corruption, train an EncoderLM, compare fills before and after."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    print("== 1. Data: Python's documentation, BPE with 1024 tokens ==")
    data = prepare("pydoc", "bpe", 1024, out_dir=out / "data", progress=False)
    tok = data.tokenizer
    mask_id, pad_id = tok.special_tokens[MASK], tok.special_tokens[PAD]
    special = sorted(tok.special_tokens.values())
    print(f"{data.meta['train_tokens']:,} training tokens, vocabulary {tok.vocab_size}")

    print("\n== 2. The corruption: 15% chosen; of those 80% [MASK], 10% random, 10% kept ==")
    gen = torch.Generator().manual_seed(0)
    sentence = tok.encode("The return value is None if the key is not found in the mapping.")
    ids = torch.tensor(sentence)
    inputs, labels = mask_tokens(ids, mask_id, tok.vocab_size, special, prob=0.3, generator=gen)
    print("original :", _show(tok, sentence))
    print("input    :", _show(tok, inputs.tolist()))
    print(
        "labels   :",
        " ".join(tok.decode([t]) if t != IGNORE_INDEX else "." for t in labels.tolist()),
    )
    print("(prob=0.3 here so a short sentence shows all three cases; training uses 0.15)")
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
    block = 64 if quick else 128
    config = ModelConfig(
        vocab_size=tok.vocab_size, max_len=block, d_model=64 if quick else 128, n_heads=4,
        n_layers=2 if quick else 3, d_ff=256 if quick else 512, pad_id=pad_id,
        positional="learned",  # as BERT: here it also learns to use context sooner
    )  # fmt: skip
    model = EncoderLM(config)
    print(f"EncoderLM: {model.num_parameters():,} parameters, context {block}")
    fills_before, ranks_before = _fills(model, tok, mask_id)
    hits_before = _print_fills("top-5 guesses before training:", fills_before, ranks_before)

    print("\n== 4. Training with the shared Trainer (objective 'mlm') ==")
    steps = 250 if quick else 1000
    cfg = TrainConfig(
        objective="mlm", block_size=block, batch_size=32, max_steps=steps,
        lr=3e-3 if quick else 2e-3, warmup_steps=20 if quick else 100,
        eval_interval=max(steps // 5, 1), eval_batches=4 if quick else 20,
        checkpoint_interval=10**9, log_interval=10, precision="fp32" if quick else "auto",
        device=device or "auto", progress=not quick, out_dir=str(out / "run"), seed=0,
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
    fills_after, ranks_after = _fills(model, tok, mask_id)
    hits_after = _print_fills("top-5 guesses after training:", fills_after, ranks_after)
    median_before = float(np.median([r for r in ranks_before if r is not None]))
    median_after = float(np.median([r for r in ranks_after if r is not None]))
    print(
        f"hidden word in the top 5: {hits_before} before, {hits_after} after; its median rank "
        f"among {tok.vocab_size} tokens: {median_before:.0f} before, {median_after:.0f} after"
    )

    records = read_metrics(out / "run" / "metrics.jsonl")
    loss_png = plot_curves(
        {"train loss": series(records, "train", "loss"),
         "val loss": series(records, "eval", "val_loss")},
        out / "mlm_loss.png", title="Masked LM: loss at the chosen 15% of positions",
        hline=(unigram, "word frequencies alone (unigram)"),
    )  # fmt: skip
    print()
    report_plot(loss_png)
    split_png = out / "mask_split.png"
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(list(shares), list(shares.values()), color=["tab:blue", "tab:orange", "tab:green"])
    for x, v in enumerate(shares.values()):
        ax.text(x, v + 0.01, f"{v:.1%}", ha="center")
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
        "fills_before": fills_before,
        "fills_after": fills_after,
        "hits_before": hits_before,
        "hits_after": hits_after,
        "ranks_before": ranks_before,
        "ranks_after": ranks_after,
        "median_rank_before": median_before,
        "median_rank_after": median_after,
        "steps": result["steps"],
        "plots": [str(loss_png), str(split_png)],
    }


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/06_encoder_mlm",
        quick_help="small model, few steps (< 30 s)",
        device_help="cpu, cuda, mps (default: auto)",
    )
