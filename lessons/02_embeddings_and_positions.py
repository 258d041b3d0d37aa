"""Lesson 02 — Embeddings and positions: from token ids to vectors that know where they are.

A tokenizer (lesson 01) turns text into integers such as 37, 3145, 11749. Integers carry no
meaning of their own: id 3145 is not "closer" to 3146 than to 12. The first layer of every
transformer is therefore an *embedding table*, a trainable matrix with one row per vocabulary
entry. Looking a token up means taking its row, which is exactly the same as multiplying a
one-hot vector by the matrix, only far cheaper. Each token becomes a point in a
high-dimensional space (512 dimensions in the original transformer, 768 in GPT-2 small), and
training moves related tokens close together, so the angle between two vectors (their cosine
similarity) becomes a measure of how related the words are, as with word2vec before.

Before training, the rows are random. In many dimensions random vectors are almost
perpendicular: their cosine similarity is about 1 / sqrt(d_model). That is good news, as we
will see: vectors can be added together and still be told apart.

Attention, the next lesson's operation, looks at all tokens at once and in parallel. It has no
notion of order: shuffle the input tokens and its outputs are shuffled the same way, nothing
more. "The teacher taught the student" and "The student taught the teacher" would be the same
bag of vectors. The fix of "Attention Is All You Need" is to *add* a position vector to each
token vector. Their sinusoidal encoding gives position pos the vector

    PE(pos, 2i) = sin(pos / 10000^(2i / d_model)),  PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Each column pair is a clock hand turning at its own speed: the first pair turns once every
2*pi positions, the last one 10000 times slower. Two consequences are checked below:

- the dot product PE(p) . PE(p + k) depends only on the distance k, not on p, and it is
  largest at k = 0 and falls off with distance, so "how far apart" is visible to attention;
- PE(p + k) is a fixed rotation of PE(p), the same rotation for every p.

Why does the sum keep word order instead of blurring token and position together? Because
in many dimensions the token vectors and the position vectors are nearly orthogonal to each
other, so both can be read back out of the sum: the lesson decodes the token by its nearest
embedding, subtracts it, and reads the position from what remains. Learned position
embeddings (GPT-2, BERT) are the alternative: one trainable vector per position, flexible but
unable to go past the longest position seen in training.

A third way adds nothing at all. Rotary position embedding (RoPE, Su et al. 2021) takes the
same clocks and, inside attention, turns each query and key vector by the angles of its own
position. A dot product between two turned vectors only sees the *difference* of their angles,
so the attention score of a query at position m and a key at position n depends on m - n alone:
relative position, for free. The last section checks exactly that. minigpt's CPU benchmark
models use it (`--positional rope`).

Measured on a 2-core AMD EPYC CPU (torch 2.13) with one thread, while other jobs kept it busy
(load average 15-26): quick mode 3.5 s, full mode 3.6 s of CPU time (a quiet 2-core machine
needs about that or less); the busy machine took 30 s and 69 s of wall-clock time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 2.8 s,
full mode 6.8 s.

Run:  python lessons/02_embeddings_and_positions.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from minigpt.attention import MultiHeadAttention
from minigpt.embeddings import (
    LearnedPositionalEmbedding,
    RotaryPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
    sinusoidal_table,
)
from minigpt.lesson import run_lesson, save_figure

SENTENCE = "The teacher taught the student with the book ."
SWAPPED = "The student taught the teacher with the book ."


def rotation_for_offset(k: int, d_model: int) -> torch.Tensor:
    """Block-diagonal matrix R_k with PE(p + k) = R_k @ PE(p) for every p (even d_model)."""
    i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angle = k * torch.exp(-math.log(10000.0) * i / d_model)  # one angle per column pair
    r = torch.zeros(d_model, d_model, dtype=torch.float64)
    c, s = torch.cos(angle), torch.sin(angle)
    idx = torch.arange(0, d_model, 2)
    # [sin(a+b), cos(a+b)] = [[cos b, sin b], [-sin b, cos b]] @ [sin a, cos a]
    r[idx, idx], r[idx, idx + 1] = c, s
    r[idx + 1, idx], r[idx + 1, idx + 1] = -s, c
    return r


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/02_embeddings_and_positions",
    seed: int = 0,
) -> dict:
    """Run the lesson; return its key numbers (tests assert on them). `seed` sets the random
    embeddings, attention weights and vectors (the printed figures are for seed 0)."""
    torch.manual_seed(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d_model = 64 if quick else 128
    max_len = 128 if quick else 512
    results: dict = {"d_model": d_model, "max_len": max_len}

    # 1. Embedding lookup: a row of the table, the same as one-hot @ table.
    words = SENTENCE.split()
    vocab = {w: i for i, w in enumerate(sorted(set(words + SWAPPED.split())))}
    ids = torch.tensor([vocab[w] for w in words], device=dev)
    emb = TokenEmbedding(len(vocab), d_model, scale=True).to(dev)
    print(f"1. Embedding lookup  (vocabulary of {len(vocab)} words, d_model={d_model})")
    print(f"   '{SENTENCE}' -> ids {ids.tolist()}")
    with torch.no_grad():
        vectors = emb(ids)  # (T, d_model)
        one_hot = torch.nn.functional.one_hot(ids, len(vocab)).float()
        via_matmul = one_hot @ emb.weight * math.sqrt(d_model)
    results["lookup_vs_onehot_max_diff"] = (vectors - via_matmul).abs().max().item()
    results["embedded_shape"] = tuple(vectors.shape)
    head = ", ".join(f"{v:.2f}" for v in vectors[1, :4].tolist())
    print(f"   vectors: shape {tuple(vectors.shape)}; 'teacher' -> [{head}, ...]")
    print(
        f"   lookup == one-hot @ table: max difference {results['lookup_vs_onehot_max_diff']:.1e}"
    )
    unit = torch.nn.functional.normalize(emb.weight, dim=-1)
    cos = unit @ unit.T
    off_diag = cos[~torch.eye(len(vocab), dtype=torch.bool, device=dev)].abs().mean().item()
    results["mean_abs_cosine_random"] = off_diag
    print(
        f"   untrained rows are nearly perpendicular: mean |cos| = {off_diag:.3f} "
        f"(1/sqrt(d_model) = {1 / math.sqrt(d_model):.3f})"
    )

    # 2. The sinusoidal table as a heat map.
    table = sinusoidal_table(max_len, d_model)  # (max_len, d_model)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    im = ax.imshow(table.T.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xlabel("position")
    ax.set_ylabel("dimension (even = sin, odd = cos)")
    ax.set_title("Sinusoidal positional encoding: fast clocks at the top, slow at the bottom")
    fig.colorbar(im, ax=ax, label="PE value")
    fig.tight_layout()
    print(
        f"\n2. Sinusoidal table {tuple(table.shape)}, values in [-1, 1]: "
        f"min {table.min():.3f}, max {table.max():.3f}"
    )
    print(f"   position 0 is [0, 1, 0, 1, ...]: {table[0, :6].tolist()}")
    save_figure(fig, out / "sinusoidal_heatmap.png", dpi=100)

    # 3. Dot product of position vectors against distance: depends on distance only.
    distances = torch.arange(0, max_len // 2)
    starts = [0, 10, max_len // 4]
    dots = {p: (table[p] * table[p + distances]).sum(-1) for p in starts}  # (n_distances,)
    spread = max((dots[p] - dots[starts[0]]).abs().max().item() for p in starts)
    results["dot_same_distance_spread"] = spread
    results["dot_at_distance"] = {int(k): float(dots[0][k]) for k in (0, 1, 2, 5, 10, 20)}
    print(
        "\n3. PE(p) . PE(p + k): the same for every start p (spread over p: "
        f"{spread:.1e}); it peaks at k = 0 (= d_model / 2 = {d_model // 2})"
    )
    for k, v in results["dot_at_distance"].items():
        print(f"   k = {k:>2}: {v:7.2f}")
    fig, ax = plt.subplots(figsize=(7, 4))
    # The curves coincide (that is the point), so each gets its own width and dash pattern:
    # a wide pale band, a dashed line on it, dots on that; one colour would hide the others.
    styles = [dict(lw=6, alpha=0.35, ls="-"), dict(lw=2, ls="--"), dict(lw=0, marker="o", ms=3)]
    for p, style in zip(starts, styles, strict=True):
        ax.plot(distances.numpy(), dots[p].numpy(), label=f"start p = {p}", **style)
    ax.set_xlabel("distance k")
    ax.set_ylabel("PE(p) . PE(p + k)")
    ax.set_title("Position similarity depends on distance only (the curves overlap)")
    ax.legend()
    fig.tight_layout()
    rot = rotation_for_offset(3, d_model)
    table64 = table.double()
    rot_err = (table64[:-3] @ rot.T - table64[3:]).abs().max().item()
    results["rotation_max_error"] = rot_err
    print(f"   PE(p + 3) = R_3 @ PE(p) for all p: max error {rot_err:.1e}")
    save_figure(fig, out / "position_dot_vs_distance.png", dpi=100)

    # 4. Why we need positions at all: attention is blind to order.
    torch.manual_seed(seed + 1)
    attn = MultiHeadAttention(d_model, n_heads=4).to(dev).eval()
    pos_enc = SinusoidalPositionalEncoding(d_model, max_len).to(dev)
    swapped_ids = torch.tensor([vocab[w] for w in SWAPPED.split()], device=dev)
    perm = [0, 4, 2, 3, 1, 5, 6, 7, 8]  # SWAPPED is SENTENCE with positions 1 and 4 exchanged
    with torch.no_grad():
        a, b = emb(ids)[None], emb(swapped_ids)[None]  # (1, T, d_model)
        out_a = attn(a)[0, perm]
        scale = out_a.abs().mean().item()  # typical size of an output entry
        no_pos = (out_a - attn(b)[0]).abs().max().item() / scale
        with_pos = (attn(pos_enc(a))[0, perm] - attn(pos_enc(b))[0]).abs().max().item() / scale
    results["order_blind_diff_without_positions"] = no_pos
    results["order_diff_with_positions"] = with_pos
    print(f"\n4. '{SENTENCE}' vs '{SWAPPED}'")
    print("   (max difference of the outputs, word by word, relative to their typical size)")
    print(f"   without positions, attention just permutes its outputs: {no_pos:.1e}")
    print(f"   with positions added, the two sentences differ:        {with_pos:.2f}")

    # 5. The sum keeps both: read the token, subtract it, read the position.
    n_tokens = 64 if quick else 256
    big_vocab = 500
    torch.manual_seed(seed + 2)
    big = TokenEmbedding(big_vocab, d_model).to(dev)
    rand_ids = torch.randint(0, big_vocab, (n_tokens,), device=dev)
    pe = table[:n_tokens].to(dev)
    with torch.no_grad():
        summed = big(rand_ids) + pe  # (n_tokens, d_model)
        token_guess = (summed @ big.weight.T).argmax(-1)
        remainder = summed - big(token_guess)
        position_guess = (remainder @ pe.T).argmax(-1)
    results["token_recovery"] = (token_guess == rand_ids).float().mean().item()
    results["position_recovery"] = (
        (position_guess == torch.arange(n_tokens, device=dev)).float().mean().item()
    )
    print(f"\n5. {n_tokens} random tokens (vocabulary {big_vocab}) + their positions, summed:")
    print(f"   token read back by nearest embedding: {results['token_recovery']:.1%}")
    print(f"   position read back from the rest:     {results['position_recovery']:.1%}")

    # 6. The learned alternative has the same interface.
    learned = LearnedPositionalEmbedding(max_len, d_model).to(dev)
    results["learned_shape"] = tuple(learned(vectors[None]).shape)
    results["learned_parameters"] = sum(p.numel() for p in learned.parameters())
    print(
        f"\n6. Learned positions: {results['learned_parameters']} parameters "
        f"({max_len} x {d_model}); sinusoidal: 0 parameters, any length you precompute."
    )

    # 7. RoPE: turn queries and keys instead of adding anything; scores see offsets only.
    d_head = 16
    rope = RotaryPositionalEmbedding(d_head, max_len).double()
    torch.manual_seed(seed + 3)
    q, k = torch.randn(d_head, dtype=torch.float64), torch.randn(d_head, dtype=torch.float64)
    q_turned = rope(q.expand(max_len, d_head).clone())  # row p = q placed at position p
    k_turned = rope(k.expand(max_len, d_head).clone())
    scores = q_turned @ k_turned.T  # (max_len, max_len): query at m, key at n
    offset = 2
    same_offset = torch.stack([scores[m, m - offset] for m in range(offset, max_len)])
    results["rope_same_offset_spread"] = (same_offset.max() - same_offset.min()).item()
    results["rope_norm_change"] = (q_turned.norm(dim=-1) - q.norm()).abs().max().item()
    results["rope_other_offset_diff"] = abs(scores[5, 1] - scores[5, 3]).item()
    print(f"\n7. RoPE: one query and one key (d_head {d_head}) placed at every position")
    print(f"   score of query at m and key at m - {offset}, for every m: "
          f"{same_offset[0]:.4f} (spread {results['rope_same_offset_spread']:.1e})")
    print(f"   turning keeps lengths (max change {results['rope_norm_change']:.1e}); "
          f"another offset gives another score: {scores[5, 1]:.4f} vs {scores[5, 3]:.4f}")

    results["plots"] = [
        str(out / "sinusoidal_heatmap.png"),
        str(out / "position_dot_vs_distance.png"),
    ]
    return results


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/02_embeddings_and_positions",
        quick_help="smaller sizes, a few seconds",
        device_help="cpu, cuda, ... (default: best available)",
    )
