"""Lesson 04 — Multi-head attention: several ways of looking at one sentence, at once.

One attention head gives each word one set of weights, so one weighted average: it can look
for the verb *or* for the previous word, not both. Multi-head attention runs several heads
side by side and lets each learn its own notion of relevance. The course's intuition is
that each head learns a different aspect of language — one links people to the actions they
take, another tracks the activity of the sentence — and real models use between 12 and 100
heads (GPT-2 small: 12 heads of 64 dimensions in d_model = 768).

Heads cost nothing extra. Instead of H separate modules, q, k and v are each projected once
to d_model dimensions and then *split*: the vector of size d_model is viewed as H pieces of
d_head = d_model / H, giving tensors of shape (B, H, T, d_head), and attention runs on all
heads in one batched matrix product. The H outputs are then *merged* back by the reverse
reshape to (B, T, d_model), and an output projection W_o mixes what the heads found.

The lesson builds a 4-head module by hand for "The teacher taught the student with the
book.", with word features (as in lesson 03) and a one-hot position in the input:

- head 0 looks at the previous word (it uses only the positions),
- head 1 links people and the action (who did what),
- head 2 links the book to the people who could have it, and "with" to the book,
- head 3 looks at words of the same kind ("the" and "The", "teacher" and "student").

Its per-head maps are drawn in one figure, and the module's output is checked against four
single-head computations on the slices, concatenated.

Two paths, one answer. `MultiHeadAttention` has an explicit path (the formula written out,
which keeps the weights for plots) and a fast path (PyTorch's fused
`F.scaled_dot_product_attention`, which never stores the T x T weights). The lesson shows they
agree to float precision, match `nn.MultiheadAttention`, and times them: the fused kernel is
what training uses.

Measured on a 2-core AMD EPYC CPU (torch 2.13) with one thread, while other jobs kept it busy
(load average 15-26): quick mode 5.2 s, full mode 9.3 s of CPU time (a quiet 2-core machine
needs about that or less); the busy machine took 1 min 48 s and 2 min 48 s of wall-clock time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 3.8 s,
full mode 8.3 s.

Run:  python lessons/04_multi_head_attention.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from minigpt.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from minigpt.lesson import run_lesson, save_figure
from minigpt.plots import draw_attention_map

SENTENCE = "The teacher taught the student with the book ."
FEATURES = ["person", "action", "object", "article", "relation", "end"]
KIND = {
    "the": "article",
    "teacher": "person",
    "taught": "action",
    "student": "person",
    "with": "relation",
    "book": "object",
    ".": "end",
}
HEAD_NAMES = ["previous word", "who did what", "who could have the book", "same kind of word"]
D_MODEL, N_HEADS = 64, 4
D_HEAD = D_MODEL // N_HEADS
POS = 16  # input dims 0..5 hold word features, 16..31 a one-hot position


def sentence_input(words: list[str]) -> torch.Tensor:
    """(1, T, 64) input: word-kind one-hot in dims 0..5, position one-hot in dims 16..31."""
    x = torch.zeros(1, len(words), D_MODEL)
    for t, word in enumerate(words):
        x[0, t, FEATURES.index(KIND[word.lower()])] = 1.0
        x[0, t, POS + t] = 1.0
    return x


def hand_made_heads() -> MultiHeadAttention:
    """A 4-head module whose heads look for the four relations listed in the docstring."""
    mha = MultiHeadAttention(D_MODEL, N_HEADS, bias=False)
    m_q, m_k, m_v = (torch.zeros(D_MODEL, D_MODEL) for _ in range(3))  # (in, out): y = x @ M
    f = FEATURES.index
    strength = 16.0  # score / sqrt(d_head) = 4 for a perfect match: sharp but not one-hot
    # head 0: query at position t asks for position t - 1; keys offer their position.
    for t in range(1, D_HEAD):
        m_q[POS + t, 0 * D_HEAD + t - 1] = strength
    for t in range(D_HEAD):
        m_k[POS + t, 0 * D_HEAD + t] = 1.0
    # heads 1-3 read word features: query = what the word looks for, key = what it is.
    wishes = {
        1: [("person", "action"), ("action", "person")],
        2: [("object", "person"), ("relation", "object")],
        3: [(kind, kind) for kind in FEATURES],
    }
    for head, pairs in wishes.items():
        for asker, target in pairs:
            m_q[f(asker), head * D_HEAD + f(target)] = strength
        for kind in FEATURES:
            m_k[f(kind), head * D_HEAD + f(kind)] = 1.0
    for head in range(N_HEADS):  # every head passes on the word features it gathers
        for kind in FEATURES:
            m_v[f(kind), head * D_HEAD + f(kind)] = 1.0
    with torch.no_grad():
        mha.q_proj.weight.copy_(m_q.T)  # nn.Linear stores (out, in)
        mha.k_proj.weight.copy_(m_k.T)
        mha.v_proj.weight.copy_(m_v.T)
        mha.out_proj.weight.copy_(torch.eye(D_MODEL))  # merged heads pass through unchanged
    return mha.eval()


def time_paths(
    b: int, t: int, d_model: int, n_heads: int, repeats: int, dev: torch.device, seed: int = 0
) -> dict[str, float]:
    """Agreement and median forward+backward time of both paths, run alternately."""
    torch.manual_seed(seed)
    mha = MultiHeadAttention(d_model, n_heads).to(dev)
    x = torch.randn(b, t, d_model, device=dev)
    outputs, grads, times = {}, {}, {"explicit": [], "fast": []}
    for i in range(repeats + 1):  # the first round warms up and is not timed
        for path in ("explicit", "fast"):
            mha.record_weights = path == "explicit"
            xi = x.clone().requires_grad_(True)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = mha(xi, is_causal=True)
            out.sum().backward()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i > 0:
                times[path].append(time.perf_counter() - start)
            outputs[path], grads[path] = out.detach(), xi.grad
            mha.zero_grad()
    medians = {p: statistics.median(ts) for p, ts in times.items()}
    return {
        "max_abs_diff": (outputs["explicit"] - outputs["fast"]).abs().max().item(),
        "grad_max_abs_diff": (grads["explicit"] - grads["fast"]).abs().max().item(),
        "explicit_ms": medians["explicit"] * 1e3,
        "fast_ms": medians["fast"] * 1e3,
        "speed_ratio": medians["explicit"] / medians["fast"],
    }


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/04_multi_head_attention",
    seed: int = 0,
) -> dict:
    """Run the lesson; return its key numbers (tests assert on them). `seed` changes the
    random module, inputs and timing run of section 4: the four heads are made by hand."""
    torch.manual_seed(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = SENTENCE.split()
    t = len(words)
    results: dict = {}

    # 1. Split and merge.
    x = sentence_input(words).to(dev)  # (1, T, d_model)
    split = x.view(1, t, N_HEADS, D_HEAD).transpose(1, 2)  # (1, H, T, d_head)
    merged = split.transpose(1, 2).reshape(1, t, D_MODEL)  # (1, T, d_model)
    results["split_shape"] = tuple(split.shape)
    results["merged_shape"] = tuple(merged.shape)
    results["split_merge_exact"] = bool(torch.equal(merged, x))
    print(f"1. d_model = {D_MODEL} split into {N_HEADS} heads of d_head = {D_HEAD}:")
    print(
        f"   (B, T, d_model) {tuple(x.shape)} -> view (B, T, H, d_head) -> transpose "
        f"(B, H, T, d_head) {tuple(split.shape)}"
    )
    print(
        f"   merge reverses it: {tuple(merged.shape)}, identical to the input: "
        f"{results['split_merge_exact']}"
    )

    # 2. A hand-made 4-head module and its maps.
    mha = hand_made_heads().to(dev)
    mha.record_weights = True
    with torch.no_grad():
        y = mha(x)  # (1, T, d_model)
    weights = mha.last_weights[0].cpu()  # (H, T, T)
    results["weights_shape"] = tuple(mha.last_weights.shape)
    print(
        f"\n2. Hand-made heads on {SENTENCE!r}: weights {results['weights_shape']} (B, H, T_q, T_k)"
    )
    focus = {}
    for h, name in enumerate(HEAD_NAMES):
        # the keys a word clearly prefers: weight well above the uniform 1 / T
        tops = [[words[j] for j in range(t) if row[j] > 0.25] for row in weights[h].tolist()]
        focus[name] = tops
        pairs = ", ".join(f"{w}->{'+'.join(tw)}" for w, tw in zip(words, tops, strict=True) if tw)
        print(f"   head {h} ({name}): {pairs}")
    results["head_focus"] = focus
    results["book_top2_head2"] = [words[j] for j in sorted(weights[2, 7].topk(2).indices.tolist())]

    fig, axes = plt.subplots(2, 2, figsize=(12, 11))
    for h, ax in enumerate(axes.flat):
        draw_attention_map(ax, weights[h], words, title=f"head {h}: {HEAD_NAMES[h]}")
    fig.suptitle("Per-head attention maps (rows: query word, columns: attended word)")
    fig.tight_layout()
    save_figure(fig, out / "head_maps.png", dpi=100)

    # 3. The module equals four single heads on slices, concatenated, then W_o.
    with torch.no_grad():
        q, k, v = mha.q_proj(x), mha.k_proj(x), mha.v_proj(x)  # (1, T, d_model)
        heads = []
        for h in range(N_HEADS):
            sl = slice(h * D_HEAD, (h + 1) * D_HEAD)
            heads.append(scaled_dot_product_attention(q[..., sl], k[..., sl], v[..., sl])[0])
        by_hand = mha.out_proj(torch.cat(heads, dim=-1))
    results["heads_by_hand_max_diff"] = (by_hand - y).abs().max().item()
    print(
        f"\n3. Four single-head attentions on the slices, concatenated, then W_o: "
        f"max difference to the module {results['heads_by_hand_max_diff']:.1e}"
    )
    book = words.index("book")
    gathered = {FEATURES[i]: round(y[0, book, 2 * D_HEAD + i].item(), 2) for i in range(6)}
    print(f"   head 2's part of the merged output for 'book' (features it gathered): {gathered}")

    # 4. Explicit vs fast path, and PyTorch's own module.
    torch.manual_seed(seed + 1)
    rnd = MultiHeadAttention(D_MODEL, N_HEADS).to(dev).eval()
    ref = nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True).to(dev).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(
            torch.cat([rnd.q_proj.weight, rnd.k_proj.weight, rnd.v_proj.weight])
        )
        ref.in_proj_bias.copy_(torch.cat([rnd.q_proj.bias, rnd.k_proj.bias, rnd.v_proj.bias]))
        ref.out_proj.load_state_dict(rnd.out_proj.state_dict())
        xr = torch.randn(2, 12, D_MODEL, device=dev)
        fast = rnd(xr, is_causal=True)
        rnd.record_weights = True
        explicit = rnd(xr, is_causal=True)
        mask = ~causal_mask(12, device=dev)  # PyTorch's boolean masks mean "blocked"
        torch_out, _ = ref(xr, xr, xr, attn_mask=mask, need_weights=False)
    results["explicit_vs_fast_max_diff"] = (explicit - fast).abs().max().item()
    results["ours_vs_torch_max_diff"] = (fast - torch_out).abs().max().item()
    print(f"\n4. Causal self-attention on random input (2, 12, {D_MODEL}):")
    print(
        f"   explicit vs fast path:           max difference "
        f"{results['explicit_vs_fast_max_diff']:.1e}"
    )
    print(
        f"   ours vs nn.MultiheadAttention:   max difference "
        f"{results['ours_vs_torch_max_diff']:.1e}"
    )

    shape = (2, 256, 128, 4) if quick else (8, 256, 384, 6)
    timing = time_paths(*shape, repeats=5 if quick else 15, dev=dev, seed=seed)
    results["timing_shape"] = shape
    results |= {f"timing_{key}": value for key, value in timing.items()}
    print(f"   forward+backward at (B, T, d_model, heads) = {shape}, median, alternating runs:")
    print(
        f"   explicit {timing['explicit_ms']:.1f} ms, fast {timing['fast_ms']:.1f} ms: the "
        f"explicit path takes {timing['speed_ratio']:.2f}x the fast path's time (outputs differ by "
        f"{timing['max_abs_diff']:.1e}, input gradients by {timing['grad_max_abs_diff']:.1e})"
    )
    scores_mb = shape[0] * shape[3] * shape[1] ** 2 * 4 / 2**20
    print(
        f"   the explicit path also stores the {scores_mb:.0f} MiB of T x T weights per layer "
        "that the fused kernel never materialises."
    )
    results["plots"] = [str(out / "head_maps.png")]
    return results


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/04_multi_head_attention",
        quick_help="smaller timing run",
        device_help="cpu, cuda, ... (default: best available)",
    )
