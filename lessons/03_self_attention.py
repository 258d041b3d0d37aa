"""Lesson 03 — Self-attention, one step at a time.

Take the sentence "The teacher taught the student with the book." Who has the book: the
teacher or the student? A reader settles it from context, and the transformer's answer to
"use the context" is self-attention: every word looks at every other word in the sentence,
decides how relevant each one is to it, and rebuilds itself as a weighted mix of them. The
resulting table of weights, one row per word, is the *attention map*.

The recipe ("Attention Is All You Need", eq. 1) has four steps:

1. Projections. Every word vector x is turned into a query q = x W_q ("what am I looking
   for?"), a key k = x W_k ("what do I offer?") and a value v = x W_v ("what do I pass on?").
   In a trained model these matrices are learned; here we set them by hand.
2. Scores. The score of word i for word j is the dot product q_i . k_j: large when what i
   looks for matches what j offers. All scores at once: S = Q K^T, a T x T matrix.
3. Scaling and softmax. The scores are divided by sqrt(d_k), then each row goes through a
   softmax, so every word's weights are positive and sum to 1. Why the division: a dot
   product of two random d_k-dimensional vectors with unit-variance entries has standard
   deviation sqrt(d_k); without the division, large heads produce huge scores, softmax gives
   almost all weight to one word, and its gradient nearly vanishes.
4. Weighted sum. Each word's output is its row of weights times V: a blend of the values of
   the words it attends to.

The lesson uses a tiny hand-made embedding with six readable features (person, action,
object, article, relation, end of sentence) and hand-set projections: an object looks for
people (who could have the book?), an action looks for the people involved, a person looks
for the action, "with" looks for an object, the full stop looks for the action. The map
shows "book" attending to "teacher" and "student" — and splitting its attention evenly
between them: attention tells the model where to look; deciding who has the book is what
many layers of trained attention are for.

Finally the causal mask: a language model that predicts the next word must not peek at it,
so word i may only attend to words 0..i. The mask sets the scores of later words to -inf
before the softmax, which makes their weights exactly zero; the map becomes lower triangular.

Measured on a 2-core AMD EPYC CPU (torch 2.13) with one thread, while other jobs kept it busy
(load average 15-26): quick mode 4.1 s, full mode 4 s of CPU time (a quiet 2-core machine needs
about that or less); the busy machine took 57 s and 80 s of wall-clock time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 3.3 s,
full mode 3.4 s.

Run:  python lessons/03_self_attention.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from minigpt.attention import causal_mask, scaled_dot_product_attention
from minigpt.lesson import run_lesson, save_figure
from minigpt.plots import draw_attention_map

SENTENCE = "The teacher taught the student with the book ."
FEATURES = ["person", "action", "object", "article", "relation", "end"]
# One row per word: which features it has (a hand-made 6-dimensional embedding).
WORD_FEATURES = {
    "the": "article",
    "teacher": "person",
    "taught": "action",
    "student": "person",
    "with": "relation",
    "book": "object",
    ".": "end",
}
# What each kind of word looks for (its query), with the weight of each wish.
LOOKS_FOR = {
    "object": {"person": 1.0},
    "action": {"person": 1.0},
    "person": {"action": 1.0},
    "article": {"person": 0.5, "object": 0.5},
    "relation": {"object": 1.0},
    "end": {"action": 1.0},
}
STRENGTH = 5.0  # how sharply queries prefer what they look for


def hand_made_embedding(words: list[str]) -> torch.Tensor:
    """(T, 6) one-hot feature vectors; 'The' and 'the' share a row (case folded)."""
    x = torch.zeros(len(words), len(FEATURES))
    for t, word in enumerate(words):
        x[t, FEATURES.index(WORD_FEATURES[word.lower()])] = 1.0
    return x


def hand_made_projections() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W_q from LOOKS_FOR; W_k and W_v are identities (keys and values are the features)."""
    d = len(FEATURES)
    w_q = torch.zeros(d, d)
    for kind, wishes in LOOKS_FOR.items():
        for target, weight in wishes.items():
            w_q[FEATURES.index(kind), FEATURES.index(target)] = STRENGTH * weight
    return w_q, torch.eye(d), torch.eye(d)


def print_matrix(name: str, m: torch.Tensor, rows: list[str], cols: list[str]) -> None:
    """Print a small labelled matrix with two decimals."""
    print(f"   {name}")
    print("   " + " " * 9 + "".join(f"{c[:7]:>8}" for c in cols))
    for r, row in zip(rows, m.tolist(), strict=True):
        print(f"   {r[:8]:<9}" + "".join(f"{v:8.2f}" for v in row))


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/03_self_attention",
    seed: int = 0,
) -> dict:
    """Run the lesson; return its key numbers (tests assert on them). `seed` only changes
    the random queries and keys of the sqrt(d_k) experiment: the head is made by hand."""
    torch.manual_seed(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = SENTENCE.split()
    t = len(words)
    results: dict = {"words": words}

    print(f"Sentence: {SENTENCE!r} -> {t} tokens")
    x = hand_made_embedding(words).to(dev)  # (T, d)
    print_matrix("embedding X (one feature per word)", x.cpu(), words, FEATURES)

    # Step 1: queries, keys, values.
    w_q, w_k, w_v = (w.to(dev) for w in hand_made_projections())
    q, k, v = x @ w_q, x @ w_k, x @ w_v  # (T, d_k) each
    d_k = q.size(-1)
    print("\nStep 1: Q = X W_q says what each word looks for; K = X, V = X here.")
    print_matrix("Q", q.cpu(), words, FEATURES)

    # Step 2: raw scores.
    scores = q @ k.T  # (T, T)
    print("\nStep 2: scores S = Q K^T (row = word asking, column = word answering)")
    print_matrix("S", scores.cpu(), words, words)

    # Step 3: scale and softmax.
    scaled = scores / math.sqrt(d_k)
    weights = torch.softmax(scaled, dim=-1)  # (T, T), rows sum to 1
    print(f"\nStep 3: divide by sqrt(d_k) = sqrt({d_k}) = {math.sqrt(d_k):.2f}, softmax each row")
    print_matrix("attention weights", weights.cpu(), words, words)

    # Step 4: weighted sum of values.
    output = weights @ v  # (T, d_v)
    print("\nStep 4: output = weights V (each word becomes a mix of what it attended to)")
    print_matrix("output", output.cpu(), words, FEATURES)

    book = words.index("book")
    top2 = weights[book].topk(2).indices.tolist()
    results["book_top2"] = [words[i] for i in sorted(top2)]  # in sentence order
    results["book_weights"] = {w: round(weights[book, j].item(), 4) for j, w in enumerate(words)}
    results["book_person_feature"] = output[book, FEATURES.index("person")].item()
    print(
        f"\n'book' attends most to {results['book_top2']} "
        f"({weights[book, top2[0]]:.2f} each): who could have the book. Its output now carries "
        f"{results['book_person_feature']:.2f} of the 'person' feature."
    )

    lib_out, lib_weights = scaled_dot_product_attention(q, k, v)
    results["manual_vs_library_max_diff"] = max(
        (lib_out - output).abs().max().item(), (lib_weights - weights).abs().max().item()
    )
    results["weights_shape"] = tuple(weights.shape)
    results["row_sums"] = weights.sum(-1).tolist()
    print(
        "minigpt.attention.scaled_dot_product_attention gives the same: max difference "
        f"{results['manual_vs_library_max_diff']:.1e}"
    )

    fig, ax = plt.subplots(figsize=(6, 5.5))
    draw_attention_map(ax, weights, words, title="Self-attention map (hand-made head)")
    fig.tight_layout()
    save_figure(fig, out / "attention_map.png", dpi=100)

    # Why sqrt(d_k): random queries and keys, with and without the division.
    n = 200 if quick else 2000
    d_big = 64
    rq, rk = torch.randn(n, t, d_big, device=dev), torch.randn(n, t, d_big, device=dev)
    raw = rq @ rk.transpose(-2, -1)  # (n, T, T)
    results["score_std_unscaled"] = raw.std().item()
    results["score_std_scaled"] = (raw / math.sqrt(d_big)).std().item()
    results["max_weight_unscaled"] = torch.softmax(raw, -1).amax(-1).mean().item()
    results["max_weight_scaled"] = torch.softmax(raw / math.sqrt(d_big), -1).amax(-1).mean().item()
    print(
        f"\nWhy scale? Random q, k with d_k = {d_big}: "
        f"score std {results['score_std_unscaled']:.1f}"
        f" unscaled vs {results['score_std_scaled']:.2f} scaled; the largest softmax weight"
        f" averages {results['max_weight_unscaled']:.2f} unscaled (nearly one-hot) vs"
        f" {results['max_weight_scaled']:.2f} scaled."
    )

    # The causal mask.
    keep = causal_mask(t, device=dev)  # (T, T) bool, True = may attend
    print("\nCausal mask (1 = may attend): word i sees words 0..i only")
    for word, row in zip(words, keep.int().tolist(), strict=True):
        print(f"   {word[:8]:<9}" + " ".join(str(b) for b in row))
    causal_out, causal_weights = scaled_dot_product_attention(q, k, v, mask=keep)
    results["causal_upper_max"] = causal_weights.triu(diagonal=1).abs().max().item()
    results["causal_first_row"] = causal_weights[0].tolist()
    taught = words.index("taught")
    print_matrix("causal attention weights", causal_weights.cpu(), words, words)
    print(
        f"'taught' can no longer see 'student' (weight {causal_weights[taught, 4]:.2f}); "
        f"'The' can only attend to itself (weight {causal_weights[0, 0]:.2f})."
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    axes[0].imshow(keep.cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    axes[0].set_xticks(range(t), words, rotation=60)
    axes[0].set_yticks(range(t), words)
    axes[0].set_xlabel("attends to (key)")
    axes[0].set_ylabel("word (query)")
    axes[0].set_title("causal keep mask (white = may attend)")
    draw_attention_map(axes[1], causal_weights, words, title="causal self-attention map")
    fig.tight_layout()
    save_figure(fig, out / "causal_attention_map.png", dpi=100)
    results["plots"] = [str(out / "attention_map.png"), str(out / "causal_attention_map.png")]
    return results


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/03_self_attention",
        quick_help="fewer random samples",
        device_help="cpu, cuda, ... (default: best available)",
    )
