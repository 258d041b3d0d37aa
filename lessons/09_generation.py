"""Lesson 09 — Generation: the inference panel, beam search, and in-context learning.

A language model never writes text by itself. At every step it hands back one probability per
token of its vocabulary, and a separate decision turns that distribution into the next token.
The course shows the decision as a panel of sliders — max new tokens 200, sample top K 25,
sample top P 1, temperature 0.8 — and `minigpt.generate.GenerationConfig` is that panel.

1. **Temperature** divides the logits before the softmax. Below 1 the distribution sharpens
   (at 0.5 "cake", 0.20, grows to three quarters of the mass, 0.74); above 1 it flattens
   towards uniform.
2. **Top-k and top-p** cut the distribution before sampling: top-k keeps the k likeliest words,
   top-p the smallest set whose probabilities reach p (p = 0.3 keeps cake + donut, 0.20 +
   0.10). Both keep some randomness while ruling out "banana"-like surprises.
3. **Greedy decoding** always takes the likeliest token. It is repeatable, and on a small
   trained model it soon loops: we count how much of its text is repeated 8-character chunks,
   against sampling and a repetition penalty.
4. **Beam search** keeps several candidate continuations. On a constructed case — the likelier
   first token leads into a spread-out, unlikely answer — a model trained on it shows greedy
   choosing the worse answer and a beam of 2 finding the likeliest one.
5. **In-context learning.** The course's zero-, one- and few-shot prompts ("Classify this
   review: ... Sentiment: ...") teach a task through examples in the prompt. A model trained on
   our small corpus is far too small to do that with reviews, so we train a 2-layer
   transformer on a task where ICL is known to emerge in small models (associative recall, the
   behaviour of "induction heads", Olsson et al. 2022): every training sequence lists pairs
   "key label" of its OWN fresh random mapping (4 keys drawn from 8, 4 labels). At test time
   the model sees n solved pairs of a mapping it has never seen and a query key; we score the
   4 labels by log-likelihood (`continuation_log_probs`, no sampling luck). With 0 shots it
   can only guess (25%); with shots, accuracy climbs towards what a perfect copier reaches,
   1 - 0.75^(n+1) (the query's key appears among n random shots with probability
   1 - 0.75^n). All the learning happened in the prompt: the weights never saw these mappings.

Measured on a 2-core AMD EPYC CPU (torch 2.13; the lesson runs its tiny models on one thread)
while other jobs kept it busy (load average 15-26): quick mode 64 s of CPU time (a quiet 2-core
machine needs about that or less; the busy machine took 14 min 37 s of wall-clock time, and an
earlier run on a quiet machine 40 s), full mode 3 min 46 s of CPU time (38 min 43 s of
wall-clock time on the busy machine). Quick mode spends most of it in the recall training,
which stops 100 steps after induction (step 437 in one run, 559 in a later one); full mode in
its 1500 language-model steps.
On the same machine idle (load average below 2, two threads), wall clock: --quick 53 s,
full mode 3 min 33 s.

With GPT-2's weights at $MINIGPT_GPT2_DIR (model.safetensors or pytorch_model.bin beside
encoder.json and vocab.bpe) the lesson also scores the course's review example with GPT-2;
without them that step is skipped.

Run:  python lessons/09_generation.py [--quick] [--device cpu] [--out-dir DIR]
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from minigpt.config import ModelConfig
from minigpt.corpora import pydoc_corpus
from minigpt.generate import (
    GenerationConfig,
    apply_temperature,
    beam_search,
    classify,
    continuation_log_probs,
    few_shot_prompt,
    generate,
    score_labels,
    top_k_filter,
    top_p_filter,
)
from minigpt.lesson import Progress, run_lesson, save_figure
from minigpt.models import DecoderLM
from minigpt.tokenizer import CharTokenizer

WORDS = ["cake", "donut", "banana", "apple", "bread", "pie", "tea", "jam"]
# The course's ranking: cake 0.20, donut 0.10, banana 0.02, apple 0.01, ...; the remaining 0.67
# is spread here over 134 more words of 0.005 each (the first four of them are drawn as "bread",
# "pie", "tea", "jam"), so every listed word keeps its rank.
COURSE_PROBS = torch.tensor([0.20, 0.10, 0.02, 0.01] + [0.005] * 134)

QUICK = dict(lm_steps=200, lm_d=64, icl_max_steps=800, icl_eval=400)
FULL = dict(lm_steps=1500, lm_d=128, icl_max_steps=2500, icl_eval=2000)

# The associative-recall task: token ids 0..7 are keys, 8..11 labels.
N_KEYS, N_LABELS, KEYS_PER_SEQ, PAIRS = 8, 4, 4, 9
SHOTS = (0, 1, 2, 4, 8)


def recall_batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n sequences of PAIRS "key label" pairs, each from its own fresh random mapping.

    Returns the sequences (n, 2 * PAIRS), and each mapping's keys and labels (n, KEYS_PER_SEQ).
    """
    keys = torch.stack([torch.randperm(N_KEYS, generator=g)[:KEYS_PER_SEQ] for _ in range(n)])
    labels = torch.randint(0, N_LABELS, (n, KEYS_PER_SEQ), generator=g) + N_KEYS
    which = torch.randint(0, KEYS_PER_SEQ, (n, PAIRS), generator=g)
    pairs = torch.stack([keys.gather(1, which), labels.gather(1, which)], dim=2)
    return pairs.reshape(n, 2 * PAIRS), keys, labels


def train_recall_model(
    max_steps: int, device: torch.device, seed: int = 0
) -> tuple[DecoderLM, dict]:
    """A 2-layer GPT trained on recall sequences, the loss on label positions only.

    Induction appears as a drop of the loss after a plateau near 1.2 (where the model only
    copies some label it has seen); training stops 100 steps after the smoothed loss falls
    below 0.8 (a perfect copier scores 0.57 here: the first sight of each key stays a guess)
    or at max_steps.
    """
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=N_KEYS + N_LABELS, max_len=2 * PAIRS, d_model=64, n_heads=4,
                      n_layers=2, d_ff=256, positional="rope", dropout=0.0)  # fmt: skip
    model = DecoderLM(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 1)
    smoothed, found_at, losses, t0 = 1.4, None, [], time.time()
    print(f"  training up to {max_steps} steps (the time left assumes all of them); it stops "
          "100 steps after induction")  # fmt: skip
    progress = Progress(max_steps, "  recall step", indent="")
    for step in range(max_steps):
        seq = recall_batch(128, g)[0].to(device)
        inputs, targets = seq[:, :-1], seq[:, 1:].clone()
        targets[:, 1::2] = -100  # predicting a key is a coin toss: only labels count
        _, loss = model(inputs, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        smoothed = 0.95 * smoothed + 0.05 * losses[-1]
        progress(step + 1, smoothed_loss=smoothed)
        if found_at is None and smoothed < 0.8:
            found_at = step
            print(f"  step {step + 1}: the smoothed loss fell below 0.8 (induction); 100 more")
        if found_at is not None and step >= found_at + 100:
            break
    info = dict(steps=len(losses), induction_step=found_at, seconds=time.time() - t0,
                final_loss=sum(losses[-20:]) / 20, losses=losses)  # fmt: skip
    return model.eval(), info


def icl_curve(model: DecoderLM, n: int, device: torch.device, seed: int = 0) -> dict[int, float]:
    """Accuracy on n fresh mappings for each shot count, labels scored by log-likelihood."""
    g = torch.Generator().manual_seed(seed + 1234)  # held out: a seed training never used
    label_ids = [[N_KEYS + i] for i in range(N_LABELS)]
    acc = {}
    for shots in SHOTS:
        seq, keys, labels = recall_batch(n, g)
        q = torch.randint(0, KEYS_PER_SEQ, (n, 1), generator=g)
        prompts = torch.cat([seq[:, : 2 * shots], keys.gather(1, q)], dim=1).to(device)
        scores = continuation_log_probs(model, prompts, label_ids)  # (n, 4)
        pred = scores.argmax(dim=1) + N_KEYS
        acc[shots] = (pred == labels.gather(1, q)[:, 0]).float().mean().item()
    return acc


def train_char_lm(
    steps: int, d: int, device: torch.device, seed: int = 0
) -> tuple[DecoderLM, CharTokenizer]:
    """A small character-level GPT on the embedded corpus (Python's documentation)."""
    text = pydoc_corpus()[:400_000]
    tok = CharTokenizer.train(text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_len=128, d_model=d, n_heads=4, n_layers=2,
                      d_ff=4 * d, positional="rope")  # fmt: skip
    model = DecoderLM(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    progress = Progress(steps, "  LM step", indent="")
    for step in range(1, steps + 1):
        start = torch.randint(0, data.numel() - 65, (32,), generator=g)
        win = torch.stack([data[s : s + 65] for s in start.tolist()]).to(device)
        _, loss = model(win[:, :-1], win[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress.due(step):
            progress(step, loss=loss.item())
    return model.eval(), tok


def repeated_fraction(text: str, n: int = 8) -> float:
    """Share of the text's n-character chunks that already occurred earlier in it."""
    chunks = [text[i : i + n] for i in range(len(text) - n + 1)]
    seen, repeats = set(), 0
    for c in chunks:
        repeats += c in seen
        seen.add(c)
    return repeats / max(len(chunks), 1)


def constructed_beam_case(device: torch.device, seed: int = 0) -> dict:
    """Train on: P -> A (40%, then one of 4 X's evenly) | B Y (35%) | C Z (25%); greedy vs beam."""
    p, a, b, c, y, z, eos, xs = 1, 2, 3, 4, 5, 6, 7, torch.tensor([8, 9, 10, 11])
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=12, max_len=8, d_model=32, n_heads=2, n_layers=1, d_ff=64)
    model = DecoderLM(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / 200)
    g = torch.Generator().manual_seed(seed)
    for _ in range(200):
        u = torch.rand(256, generator=g)
        first = torch.where(u < 0.4, a, torch.where(u < 0.75, b, c))
        second = torch.where(first == a, xs[torch.randint(0, 4, (256,), generator=g)],
                             torch.where(first == b, y, z))  # fmt: skip
        seq = torch.stack([torch.full((256,), p), first, second, torch.full((256,), eos)], 1)
        _, loss = model(seq[:, :-1].to(device), seq[:, 1:].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    model.eval()
    greedy = generate(model, [p], 3, greedy=True, eos_id=eos)[1:].tolist()
    beam = beam_search(model, [p], 3, beam_width=2, eos_id=eos)
    lp = continuation_log_probs(model, [[p]], [greedy, beam.tokens[1:].tolist()])[0]
    return dict(greedy=greedy, beam=beam.tokens[1:].tolist(), greedy_prob=lp[0].exp().item(),
                beam_prob=lp[1].exp().item())  # fmt: skip


def plot_distributions(out: Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logits = COURSE_PROBS.log()
    shown = len(WORDS)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.27
    for i, t in enumerate((0.5, 1.0, 2.0)):
        probs = apply_temperature(logits, t).softmax(-1)[:shown]
        xs = [j + (i - 1) * width for j in range(shown)]
        ax.bar(xs, probs.tolist(), width, label=f"temperature {t:g}")
    ax.set_xticks(range(shown), WORDS)
    ax.set_xlabel("next word (the course's example; 134 more words of 0.005 not drawn)")
    ax.set_ylabel("probability of the next word")
    ax.set_title("One next-word distribution under three temperatures")
    ax.legend()
    fig.tight_layout()
    temp_path = out / "temperature.png"
    save_figure(fig, temp_path, dpi=110)

    probs = COURSE_PROBS[:shown]
    k_kept = torch.isfinite(top_k_filter(logits, 3))[:shown]
    p_kept = torch.isfinite(top_p_filter(logits, 0.3))[:shown]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kept, title in ((axes[0], k_kept, "top-k, k = 3"),
                            (axes[1], p_kept, "top-p, p = 0.3")):  # fmt: skip
        colors = ["tab:blue" if k else "lightgray" for k in kept.tolist()]
        ax.bar(range(shown), probs.tolist(), color=colors)
        ax.set_xticks(range(shown), WORDS)
        ax.axvline(int(kept.sum()) - 0.5, color="tab:red", linestyle="--", label="cut-off")
        ax.set_title(f"{title}: {int(kept.sum())} words kept (blue)")
        ax.set_xlabel("next word")
        ax.set_ylabel("probability (temperature 1)")
        ax.legend()
    fig.suptitle("The course's example: what top-k and top-p leave to sample from")
    fig.tight_layout()
    cut_path = out / "top_k_top_p.png"
    save_figure(fig, cut_path, dpi=110)
    return temp_path, cut_path


def plot_icl(acc: dict[int, float], losses: list[float], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    shots = list(acc)
    axes[0].plot(shots, [acc[s] for s in shots], "o-", label="2-layer model (held-out mappings)")
    axes[0].plot(shots, [1 - 0.75 ** (s + 1) for s in shots], "k--", label="perfect copier")
    axes[0].axhline(0.25, color="gray", linestyle=":", label="chance (4 labels)")
    for s in shots:  # each value below right of its point, clear of both lines
        axes[0].annotate(f"{acc[s]:.2f}", (s, acc[s]), textcoords="offset points",
                         xytext=(6, -14), ha="left")  # fmt: skip
    axes[0].set_xticks(shots)
    axes[0].set_xlabel("shots (solved examples in the prompt)")
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("In-context learning: accuracy rises with shots")
    axes[0].legend(loc="lower right", bbox_to_anchor=(1, 0.27), fontsize=8)  # between the
    # curve and the chance line, clear of the value labels
    axes[1].plot(losses, linewidth=0.8)
    axes[1].axhline(0.57, color="k", linestyle="--", label="perfect copier (0.57)")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("loss on label positions (nats)")
    axes[1].set_title("Training: a plateau, then induction appears")
    axes[1].legend()
    fig.tight_layout()
    path = out / "icl_curve.png"
    save_figure(fig, path, dpi=110)
    return path


def gpt2_review_example() -> dict | None:
    """The course's review prompts scored by GPT-2, when its files are at $MINIGPT_GPT2_DIR."""
    folder = os.environ.get("MINIGPT_GPT2_DIR")
    if not folder:
        return None
    from minigpt.tokenizer import BPETokenizer

    root = Path(folder)
    model = DecoderLM.from_gpt2(root).eval()
    tok = BPETokenizer.from_gpt2_files(root / "encoder.json", root / "vocab.bpe")
    shots = [("I loved this movie!", "Positive"), ("I don't like this chair.", "Negative")]
    result = {}
    for n in (0, 1, 2):
        prompt = few_shot_prompt("This is not great.", shots[:n])
        result[n] = (classify(model, tok, prompt, ["Positive", "Negative"]),
                     score_labels(model, tok, prompt, ["Positive", "Negative"]))  # fmt: skip
    return result


def main(
    quick: bool = False,
    device: str | None = None,
    out_dir: str | Path = "runs/lessons/09_generation",
    seed: int = 0,
) -> dict:
    """Run the lesson; returns its key numbers (tests assert on them). `seed` sets every
    model's initial weights, the training data and the samples."""
    t_start = time.time()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these models are tiny: splitting their matmuls costs more
    try:
        return _run(quick, device, out_dir, t_start, seed)
    finally:
        torch.set_num_threads(threads)


def _run(quick: bool, device: str | None, out_dir: str | Path, t_start: float, seed: int) -> dict:
    settings = QUICK if quick else FULL
    dev = torch.device(device or "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}

    print("== 1-2. The inference panel on the course's example ==")
    panel = GenerationConfig()
    print(f"panel defaults: max new tokens {panel.max_new_tokens}, top-k {panel.top_k}, "
          f"top-p {panel.top_p:g}, temperature {panel.temperature}")  # fmt: skip
    logits = COURSE_PROBS.log()
    cake = {t: apply_temperature(logits, t).softmax(-1)[0].item() for t in (0.5, 1.0, 2.0)}
    for t, p in cake.items():
        print(f"  temperature {t:g}: p(cake) = {p:.3f}")
    kept_k = [WORDS[i] for i in sorted(torch.isfinite(top_k_filter(logits, 3)).nonzero()[:, 0])]
    kept_p = [WORDS[i] for i in sorted(torch.isfinite(top_p_filter(logits, 0.3)).nonzero()[:, 0])]
    print(f"  top-k 3 keeps {kept_k}; top-p 0.3 keeps {kept_p}")
    results.update(p_cake=cake, top_k_kept=kept_k, top_p_kept=kept_p)
    plots = list(plot_distributions(out))

    print("\n== 3. Greedy's repetition on a small trained model ==")
    lm, tok = train_char_lm(settings["lm_steps"], settings["lm_d"], dev, seed)
    prompt = tok.encode("The ")
    variants = {
        "greedy": GenerationConfig(max_new_tokens=120, greedy=True),
        "greedy + repetition penalty 1.3": GenerationConfig(max_new_tokens=120, greedy=True,
                                                            repetition_penalty=1.3),
        "temperature 0.5": GenerationConfig(max_new_tokens=120, temperature=0.5, seed=seed),
        "panel (0.8, top-k 25)": GenerationConfig(max_new_tokens=120, seed=seed),
        "temperature 1.5, top-p 0.9": GenerationConfig(max_new_tokens=120, temperature=1.5,
                                                       top_p=0.9, top_k=None, seed=seed),
    }  # fmt: skip
    repeats = {}
    for name, cfg in variants.items():
        text = tok.decode(generate(lm, prompt, config=cfg).tolist())
        repeats[name] = repeated_fraction(text[4:])
        print(f"  [{name}] repeated 8-char chunks {repeats[name]:.0%}\n    {text!r}")
    results["repeated_fraction"] = repeats
    more = "more" if repeats["greedy"] > repeats["panel (0.8, top-k 25)"] else "not more"
    print(f"  -> greedy repeats itself {more} than the panel's sampling "
          f"({repeats['greedy']:.0%} vs {repeats['panel (0.8, top-k 25)']:.0%})")

    print("\n== 4. Beam search vs greedy on a constructed case ==")
    case = constructed_beam_case(dev, seed)
    print(f"  greedy writes {case['greedy']} (model probability {case['greedy_prob']:.3f})")
    print(f"  beam of 2 finds {case['beam']} (model probability {case['beam_prob']:.3f}), "
          f"{case['beam_prob'] / case['greedy_prob']:.1f}x likelier")
    results["beam_case"] = case

    print("\n== 5. In-context learning on associative recall ==")
    model, info = train_recall_model(settings["icl_max_steps"], dev, seed)
    print(f"  trained {info['steps']} steps in {info['seconds']:.0f} s; induction at step "
          f"{info['induction_step']}; final label loss {info['final_loss']:.2f}")
    acc = icl_curve(model, settings["icl_eval"], dev, seed)
    for s, a in acc.items():
        print(f"  {s} shots: accuracy {a:.2f}  (perfect copier {1 - 0.75 ** (s + 1):.2f})")
    rising = all(acc[b] >= acc[a] - 0.03 for a, b in zip(SHOTS, SHOTS[1:], strict=False))
    print(f"  -> from {acc[0]:.2f} (chance 0.25) at 0 shots to {acc[8]:.2f} at 8: the mapping "
          f"is learned from the prompt alone; the curve {'rises' if rising else 'does NOT rise'}")
    results.update(icl_accuracy=acc, icl_training=info, icl_rising=rising)
    plots.append(plot_icl(acc, info["losses"], out))
    del info["losses"]

    gpt2 = gpt2_review_example()
    if gpt2 is None:
        print("\n(GPT-2 on the review example: set MINIGPT_GPT2_DIR to run it)")
    else:
        for n, (label, scores) in gpt2.items():
            print(f"  GPT-2, {n}-shot: {label}  {scores}")
    results["gpt2_review"] = gpt2

    results["plots"] = [str(p) for p in plots]
    results["seconds"] = time.time() - t_start
    return results


if __name__ == "__main__":
    run_lesson(
        main,
        __doc__,
        "runs/lessons/09_generation",
        quick_help="small, fast settings (about a minute)",
        device_help="cpu, cuda, ... (default cpu)",
        out_help="where the plots go (default runs/lessons/09_generation)",
    )
