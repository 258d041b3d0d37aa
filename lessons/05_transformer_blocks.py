"""Lesson 05 — Transformer blocks: feed-forward networks, residual connections and LayerNorm.

Attention (lessons 03-04) lets positions exchange information, but it only ever takes weighted
averages of value vectors. A transformer *block* wraps it with three more ideas, and stacks
the block N times (6 encoder and 6 decoder layers in "Attention Is All You Need", 12 in GPT-2
small; minigpt's `homework` preset, the course homework's 35M parameters, stacks 9 of width 384).

The position-wise feed-forward network. After attention, each token vector goes on its own
through a two-layer network, FFN(x) = W2 act(W1 x + b1) + b2, widening d_model to d_ff (the
paper: 512 -> 2048, four times wider) and back. The same weights are applied at every position
and positions do not interact, so changing one token changes only that token's output. It holds
about two thirds of a block's parameters: 2 * 512 * 2048 = 2.1M against 4 * 512^2 = 1.0M for
attention's four projections.

Residual connections. Each sub-layer's output is *added* to its input: y = x + f(x). A stack
of blocks then starts out close to the identity, every layer reads and writes one shared
"residual stream", and gradients have a direct path from the loss to every layer.

Layer normalisation. LayerNorm rescales each token's vector to mean 0 and variance 1 over its
d_model features (then applies a learned gain and shift). Unlike batch normalisation it does
not look at other tokens or other sequences, so it works the same at any batch size and at
generation time. It keeps the scale of the residual stream under control.

Where the norm goes. The paper normalises after the residual add: x = LN(x + f(x)) (post-norm).
GPT-2 and most models since normalise the sub-layer's *input*: x = x + f(LN(x)) (pre-norm), with
one last LayerNorm before the output head. The difference shows in the gradients. In post-norm
every gradient that reaches a lower layer has passed through the norms of all the layers above
it, and at the start of training the layers near the output get the largest gradients; Xiong
et al. (2020) show this is why post-norm models need a learning-rate warm-up. In pre-norm the
residual stream is a plain sum, so the gradient reaches every layer along the identity path
(and a lower layer also collects what the sub-layers above it send down); the stream grows
with depth instead, and each layer's norm divides by that growing size. This lesson trains a
post-norm and a pre-norm GPT side by side on a toy language (next token drawn from a fixed
random bigram table) and measures each layer's gradient norm over the first ten updates.

The experiment starts both models from the plain initialisation the original paper's era
used (every weight ~ N(0, 1/fan_in), so each sub-layer's output is as large as its input).
GPT-2's initialisation shrinks the residual projections by 1/sqrt(2 * n_layers) exactly so
that a deep stack starts close to the identity; that is itself a cure for what we want to see:
under it (12 layers, same steps) post-norm's top layer got only 1.2x layer 1's gradient.

What a run shows (seed 0), printed by the lesson from its own numbers: with 12 layers (--quick)
post-norm's gradient rises in 9 of the 11 steps up and layer 12 gets 3.2x layer 1's, while
pre-norm's is largest at layer 1, never rises by more than 4% from one layer to the next and
ends at 0.37x; with 24 layers (full) post-norm rises in 21 of 23 steps to 24x, pre-norm ends
at 0.32x. (Post-norm's first layer gets more than the two or three above it, the one place its
profile falls; layer 1 is also the only one that reads the embeddings rather than a
normalised stream.)

Measured on a 2-core AMD EPYC while some twenty other jobs shared its two cores (load
average 15-20): --quick 136 s (37 s of CPU time), full 866 s (105 s of CPU time); with
OMP_NUM_THREADS=1, which stops PyTorch's two threads fighting the other jobs, --quick took
49 s for 7 s of CPU time. The machine was never idle; there the wall time should come near
the CPU time.
On the same machine idle (load average below 2, two threads), wall clock: --quick 5.6 s,
full mode 13 s.

Finally, proven not claimed: our `EncoderLayer` with weights copied from PyTorch's
`nn.TransformerEncoderLayer` gives the same output to float precision, for both norm positions.

Run:  python lessons/05_transformer_blocks.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import torch
from torch import nn

from minigpt.attention import padding_mask
from minigpt.config import ModelConfig
from minigpt.feedforward import FeedForward
from minigpt.layers import EncoderLayer, load_pytorch_weights
from minigpt.lesson import run_lesson, save_figure
from minigpt.models import DecoderLM

D_MODEL, N_HEADS, D_FF, VOCAB, SEQ, BATCH = 64, 4, 256, 32, 32, 16


def bigram_batches(n: int, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` batches of (inputs, next-token targets) from a fixed random bigram language."""
    table = (3.0 * torch.randn(VOCAB, VOCAB, generator=generator)).softmax(-1)  # low entropy
    batches = []
    for _ in range(n):
        seq = torch.zeros(BATCH, SEQ + 1, dtype=torch.long)
        seq[:, 0] = torch.randint(0, VOCAB, (BATCH,), generator=generator)
        for t in range(SEQ):
            seq[:, t + 1] = torch.multinomial(table[seq[:, t]], 1, generator=generator)[:, 0]
        batches.append((seq[:, :-1], seq[:, 1:]))
    return batches


@torch.no_grad()
def plain_init(model: DecoderLM) -> None:
    """Every weight of every block ~ N(0, 1/fan_in), without GPT-2's 1/sqrt(2 n_layers) on the
    residual projections: each sub-layer's output is then about as large as its input, as in
    the networks Xiong et al. (2020) analyse."""
    for block in model.blocks:
        for module in block.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, module.in_features**-0.5)


def depth_experiment(
    norm_first: bool, n_layers: int, batches: list, lr: float, dev: torch.device, seed: int = 0
) -> dict:
    """Train a GPT a few steps; record each layer's gradient norm and residual-stream size."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=VOCAB, max_len=SEQ, d_model=D_MODEL, n_heads=N_HEADS, n_layers=n_layers,
        d_ff=D_FF, norm_first=norm_first,
    )  # fmt: skip
    model = DecoderLM(cfg).to(dev)
    plain_init(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stream: list[float] = []  # mean |x| of the residual stream leaving each layer
    hooks = [
        layer.register_forward_hook(lambda m, i, o: stream.append(o.norm(dim=-1).mean().item()))
        for layer in model.blocks
    ]
    grad_norms, losses = [], []
    for x, y in batches:
        stream.clear()
        _, loss = model(x.to(dev), y.to(dev))
        opt.zero_grad()
        loss.backward()
        grad_norms.append(
            [
                torch.sqrt(sum(p.grad.pow(2).sum() for p in layer.parameters())).item()
                for layer in model.blocks
            ]
        )
        opt.step()
        losses.append(loss.item())
    for h in hooks:
        h.remove()
    # Averaged from the first update on: the gradient at step 0 reflects only the random draw
    # of the initial weights, before training has given the layers any role.
    per_layer = torch.tensor(grad_norms[1:]).mean(0)
    return {
        "grad_norms": per_layer.tolist(),
        "top_bottom_ratio": (per_layer[-1] / per_layer[0]).item(),
        "stream_norms": list(stream),
        "losses": losses,
    }


def depth_profile(grads: list[float]) -> dict:
    """How a gradient profile (bottom -> top) changes layer by layer: in how many of the
    n_layers - 1 steps up it rises, the largest rise from one layer to the next, and the
    top / bottom ratio. The printed conclusions are read off these numbers."""
    steps_up = [upper / lower for lower, upper in zip(grads[:-1], grads[1:], strict=True)]
    return {
        "rises": sum(r > 1.0 for r in steps_up),
        "steps": len(steps_up),
        "largest_rise": max(steps_up),
        "top_bottom_ratio": grads[-1] / grads[0],
        "largest_at": grads.index(max(grads)) + 1,
    }


def depth_conclusion(name: str, profile: dict, n_layers: int) -> str:
    """One sentence saying what the profile shows, chosen by its numbers (not by its name)."""
    p = profile
    if p["rises"] >= 0.75 * p["steps"] and p["top_bottom_ratio"] > 1.5:
        return (
            f"{name}: grows towards the output, rising in {p['rises']} of {p['steps']} steps "
            f"up; layer {n_layers} gets {p['top_bottom_ratio']:.1f}x layer 1's gradient"
        )
    if p["top_bottom_ratio"] < 1.0 and p["largest_at"] == 1 and p["largest_rise"] < 1.1:
        return (
            f"{name}: largest at layer 1, falling or level above it (it rises in {p['rises']} "
            f"of {p['steps']} steps up, by at most {p['largest_rise'] - 1:.0%}); "
            f"layer {n_layers} gets {p['top_bottom_ratio']:.2f}x layer 1's gradient"
        )
    return (
        f"{name}: no clear trend through depth (rises in {p['rises']} of {p['steps']} steps "
        f"up, top / bottom {p['top_bottom_ratio']:.2f})"
    )


def pytorch_parity(norm_first: bool) -> float:
    """Max |ours - nn.TransformerEncoderLayer| with copied weights and a padding mask."""
    torch.manual_seed(1)
    ref = nn.TransformerEncoderLayer(
        D_MODEL, N_HEADS, D_FF, dropout=0.1, activation="gelu", norm_first=norm_first,
        batch_first=True,
    ).eval()  # fmt: skip
    ours = EncoderLayer(D_MODEL, N_HEADS, D_FF, activation="gelu", norm_first=norm_first).eval()
    load_pytorch_weights(ours, ref)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 0, 0, 0]])  # 0 = padding
    x = torch.randn(2, 6, D_MODEL)
    keep = padding_mask(ids, pad_id=0)  # (B, 1, 1, T), True = may attend
    with torch.no_grad():  # PyTorch's key_padding_mask means the opposite: True = ignore
        diff = ours(x, mask=keep) - ref(x, src_key_padding_mask=ids == 0)
    return diff.abs().max().item()


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/05_transformer_blocks",
    seed: int = 0,
) -> dict:
    """Run the lesson; return its key numbers (tests assert on them)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    torch.manual_seed(seed)

    # 1. The feed-forward network.
    ffn = FeedForward(D_MODEL, D_FF, activation="gelu").eval()
    n_ffn = sum(p.numel() for p in ffn.parameters())
    n_attn = 4 * (D_MODEL * D_MODEL + D_MODEL)
    x = torch.randn(1, 6, D_MODEL)
    changed = x.clone()
    changed[0, 3] += 1.0
    with torch.no_grad():
        moved = (ffn(changed) - ffn(x)).abs().amax(dim=-1)[0]  # (T,)
    results |= {"ffn_params": n_ffn, "attn_params": n_attn, "ffn_moved": moved.tolist()}
    print(f"1. Feed-forward network {D_MODEL} -> {D_FF} -> {D_MODEL}: {n_ffn:,} parameters")
    print(f"   (attention's four {D_MODEL}x{D_MODEL} projections: {n_attn:,}).")
    print(f"   paper sizes 512 -> 2048 -> 512: {2 * 512 * 2048 + 2048 + 512:,} parameters")
    print("   Changing only token 3 changes the outputs by (max per position):")
    print("   " + "  ".join(f"t{t}: {v:.3f}" for t, v in enumerate(moved.tolist())))

    # 2. LayerNorm and the residual connection.
    v = 3.0 + 5.0 * torch.randn(1, 1, D_MODEL)
    normed = nn.LayerNorm(D_MODEL)(v).detach()
    results["layernorm_in"] = (v.mean().item(), v.std(unbiased=False).item())
    results["layernorm_out"] = (normed.mean().item(), normed.std(unbiased=False).item())
    (m_in, s_in), (m_out, s_out) = results["layernorm_in"], results["layernorm_out"]
    print(
        f"\n2. LayerNorm of one token vector: mean {m_in:.2f}, std {s_in:.2f} -> "
        f"mean {m_out:.2f}, std {s_out:.2f}"
    )
    block = DecoderLM(ModelConfig(VOCAB, SEQ, D_MODEL, N_HEADS, 4, D_FF)).blocks[0]
    h = torch.randn(1, 8, D_MODEL)
    with torch.no_grad():
        rel = ((block(h) - h).norm() / h.norm()).item()
    results["block_relative_change"] = rel
    print(
        f"   A freshly initialised pre-norm block changes its input by {rel:.1%}: y = x + f(x) "
        "starts near the identity."
    )

    # 3. Post-norm vs pre-norm through depth.
    n_layers, steps, lr = (12, 11, 1e-3) if quick else (24, 11, 1e-3)
    batches = bigram_batches(steps, torch.Generator().manual_seed(seed))
    print(f"\n3. Two {n_layers}-layer GPTs, weights ~ N(0, 1/fan_in), Adam lr {lr:g}, "
          f"{steps} steps on a bigram language:")  # fmt: skip
    runs = {}
    for name, norm_first in (("post-norm", False), ("pre-norm", True)):
        start = time.perf_counter()
        runs[name] = depth_experiment(norm_first, n_layers, batches, lr, dev, seed)
        print(f"   trained the {name} model: loss {runs[name]['losses'][0]:.2f} -> "
              f"{runs[name]['losses'][-1]:.2f} ({time.perf_counter() - start:.1f} s)")  # fmt: skip
    results["n_layers"] = n_layers
    for name, run in runs.items():
        key = name.replace("-", "_")
        run["profile"] = depth_profile(run["grad_norms"])
        run["conclusion"] = depth_conclusion(name, run["profile"], n_layers)
        results[f"{key}_grad_norms"] = run["grad_norms"]
        results[f"{key}_ratio"] = run["top_bottom_ratio"]
        results[f"{key}_profile"] = run["profile"]
        results[f"{key}_conclusion"] = run["conclusion"]
        results[f"{key}_stream_norms"] = run["stream_norms"]
        results[f"{key}_final_loss"] = run["losses"][-1]
    print(f"   gradient norm per layer (bottom -> top), averaged over steps 1-{steps - 1}:")
    for name, run in runs.items():
        print(f"   {name:9s} " + " ".join(f"{g:.3f}" for g in run["grad_norms"]))
    per_layer = [a / b for a, b in zip(*(r["grad_norms"] for r in runs.values()), strict=True)]
    results["post_over_pre"] = per_layer
    print("   post / pre " + " ".join(f"{v:.2f}" for v in per_layer))
    for run in runs.values():
        print("   " + run["conclusion"] + ".")
    print("   size |x| of the residual stream after each layer (last step):")
    for name, run in runs.items():
        print(f"   {name:9s} " + " ".join(f"{v:.1f}" for v in run["stream_norms"]))
    post_s, pre_s = runs["post-norm"]["stream_norms"], runs["pre-norm"]["stream_norms"]
    results["stream_growth"] = {"post-norm": post_s[-1] / post_s[0],
                                "pre-norm": pre_s[-1] / pre_s[0]}  # fmt: skip
    print(
        f"   Post-norm renormalises the stream to sqrt(d_model) = {D_MODEL**0.5:.0f} after every "
        f"layer (top / bottom {post_s[-1] / post_s[0]:.2f}); pre-norm lets it grow "
        f"({pre_s[-1] / pre_s[0]:.1f}x from layer 1 to layer {n_layers})."
    )

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    layers = range(1, n_layers + 1)
    for name, run in runs.items():
        ax1.plot(layers, run["grad_norms"], marker="o", label=name)
        ax2.plot(layers, run["stream_norms"], marker="o", label=name)
    ax1.set_yscale("log")  # post-norm's top / bottom ratio spans a decade or more
    ax1.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax1.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax1.set(xlabel="layer (1 = next to the input)", ylabel="gradient norm of the layer's weights")
    ax1.set_title(f"Gradients through depth (mean of steps 1-{steps - 1})")
    ax2.set(xlabel="layer", ylabel="mean |x| of the residual stream")
    ax2.set_title("Size of the residual stream")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out / "post_vs_pre_norm.png", dpi=100)

    # 4. Our encoder layer against PyTorch's.
    results["post_norm_parity"] = pytorch_parity(norm_first=False)
    results["pre_norm_parity"] = pytorch_parity(norm_first=True)
    print("\n4. EncoderLayer vs nn.TransformerEncoderLayer, same weights, padding mask:")
    print(f"   post-norm max abs diff {results['post_norm_parity']:.1e}")
    print(f"   pre-norm  max abs diff {results['pre_norm_parity']:.1e}")
    results["plots"] = [str(out / "post_vs_pre_norm.png")]
    return results


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/05_transformer_blocks",
        quick_help="12 instead of 24 layers in the depth experiment (times below)",
        device_help="cpu, cuda, ... (default: best available)",
    )
