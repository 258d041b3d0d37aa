"""The `minigpt` command line: prepare data, train, sample, evaluate, inspect.

This is the only module that parses arguments or prints for users. Every
subcommand maps its flags onto a library call (`minigpt.data.prepare`,
`minigpt.train.run_training`, ...), so anything the CLI does a script can do
too. Mistakes a user can make — a missing file, an unknown preset, sizes that
do not fit together, a corrupt checkpoint — come back as one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from minigpt.config import ACTIVATIONS, POSITIONALS  # plain tuples: cheap to import

EXIT_USAGE = 2


def _busy_cores(interval_s: float = 0.25) -> float | None:
    """How many cores other processes keep busy right now (Linux /proc/stat), else None."""
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = snapshot()
        time.sleep(interval_s)
        busy1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)


def _choose_openmp_wait_policy() -> None:
    """Let OpenMP's idle threads sleep instead of spin when other work already loads the cores.

    Measured on a 2-core machine, 120 `tiny` bf16 steps: idle, spinning waiters are 1.2x
    faster (13.3k vs 11.1k tokens/s); with one other busy job, sleeping waiters are 2.3x
    faster (7.8k vs 3.4k tokens/s). So they sleep only when at least half the cores are busy
    right now (a quarter-second look at /proc/stat; the load average would still count a job
    that ended a minute ago). It must run before torch is imported (every command imports it
    lazily); an explicit OMP_WAIT_POLICY in the environment always wins.
    """
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return
    busy = _busy_cores()
    if busy is not None and busy >= 0.5 * (os.cpu_count() or 1):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse prints the whole usage block on a bad flag; we print one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- prepare


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="pydoc",
        metavar="SOURCE",
        help="corpus: 'pydoc' (embedded Python docs, offline), 'tinyshakespeare', "
        "'tinystories' (downloaded), or a path to a .txt file / folder (default: pydoc)",
    )
    p.add_argument(
        "--tokenizer",
        default="bpe",
        choices=["bpe", "char", "gpt2"],
        help="bpe: train our own byte-level BPE; char: one id per character; "
        "gpt2: GPT-2's vocabulary via tiktoken (needs it cached or the network) (default: bpe)",
    )
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary size")
    p.add_argument("--data-dir", default=None, help="where prepared token files go")


def cmd_prepare(args: argparse.Namespace) -> int:
    from minigpt.data import prepare

    kwargs = {"source": args.data, "tokenizer": args.tokenizer, "out_dir": args.data_dir}
    if args.vocab_size is not None:
        kwargs["vocab_size"] = args.vocab_size
    if args.val_fraction is not None:
        kwargs["val_fraction"] = args.val_fraction
    prepared = prepare(**kwargs)
    meta = prepared.meta
    n_bytes = meta["train_bytes"] + meta["val_bytes"]
    n_tokens = meta["train_tokens"] + meta["val_tokens"]
    print(f"prepared {prepared.out_dir}")
    print(f"  source      {meta['source']}  ({n_bytes:,} bytes)")
    print(f"  tokenizer   {meta.get('tokenizer', args.tokenizer)}  vocab {meta['vocab_size']:,}")
    print(f"  tokens      train {meta['train_tokens']:,}  val {meta['val_tokens']:,}")
    print(f"  compression {n_bytes / max(n_tokens, 1):.2f} bytes per token")
    return 0


# ----------------------------------------------------------------------------- train

# flag name -> TrainConfig field for the plain pass-through options
_TRAIN_FIELDS = [
    ("objective", "objective"),
    ("preset", "preset"),
    ("d_model", "d_model"),
    ("n_layers", "n_layers"),
    ("n_heads", "n_heads"),
    ("d_ff", "d_ff"),
    ("block_size", "block_size"),
    ("dropout", "dropout"),
    ("positional", "positional"),
    ("activation", "activation"),
    ("data", "data"),
    ("tokenizer", "tokenizer"),
    ("vocab_size", "vocab_size"),
    ("data_dir", "data_dir"),
    ("batch_size", "batch_size"),
    ("grad_accum", "grad_accum"),
    ("max_steps", "max_steps"),
    ("max_tokens", "max_tokens"),
    ("time_limit", "time_limit_s"),
    ("lr", "lr"),
    ("warmup_steps", "warmup_steps"),
    ("weight_decay", "weight_decay"),
    ("ema_decay", "ema_decay"),
    ("eval_interval", "eval_interval"),
    ("precision", "precision"),
    ("device", "device"),
    ("compile", "compile"),
    ("seed", "seed"),
    ("out", "out_dir"),
    ("resume", "resume"),
]


def cmd_train(args: argparse.Namespace) -> int:
    from minigpt.train import TrainConfig, run_training

    known = set(TrainConfig.__dataclass_fields__)
    values = {}
    for flag, field in _TRAIN_FIELDS:
        value = getattr(args, flag)
        if value is None or value is False:  # not given: keep TrainConfig's default
            continue
        if field not in known:
            raise UsageError(f"--{flag.replace('_', '-')} is not supported by this trainer")
        values[field] = value
    cfg = TrainConfig(**values)
    result = run_training(cfg)
    print(
        f"done: {result['steps']} steps, {result['tokens']:,} tokens in {result['seconds']:.0f} s "
        f"({result['tokens_per_s']:,.0f} tokens/s)"
    )
    print(f"val loss {result['val_loss']:.4f}  perplexity {math.exp(result['val_loss']):.2f}"
          + _bpb_text(result["val_bpb"]))
    ckpt = Path(result["checkpoint"])
    print(f"checkpoint {ckpt}")
    if cfg.objective == "clm" and not args.no_sample:
        print("\nsample:")
        print(_sample_text(ckpt, prompt="", max_new_tokens=200, temperature=0.8, top_k=50,
                           top_p=None, seed=args.seed if args.seed is not None else 0,
                           device=args.device))
        print(f"\n(more with: minigpt sample {ckpt} --prompt 'The ')")
    return 0


# ----------------------------------------------------------------------------- sample / eval


def _bpb_text(bpb: float | None) -> str:
    return f"  bits per byte {bpb:.3f}" if bpb is not None else "  (bits per byte: clm only)"


def _sample_text(
    checkpoint: Path,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int,
    device: str | None,
) -> str:
    import torch

    from minigpt import generate as gen
    from minigpt.checkpoint import load_model_for_inference
    from minigpt.models import DecoderLM, EncoderLM, Seq2SeqLM
    from minigpt.tokenizer import EOT, MASK, N_SENTINELS, sentinel

    model, tokenizer, _ = load_model_for_inference(checkpoint, device=device or "auto")
    dev = next(model.parameters()).device
    generator = torch.Generator(device=dev).manual_seed(seed)
    specials = tokenizer.special_tokens
    if isinstance(model, DecoderLM):
        ids = tokenizer.encode(prompt, allowed_special="all") if prompt else []
        if not ids:  # start from the end-of-text token, as GPT-2 does for unconditional samples
            ids = [specials[EOT]] if EOT in specials else [0]
            prompt_len = len(ids) if EOT in specials else 0
        else:
            prompt_len = 0
        out = gen.generate(
            model,
            torch.tensor([ids], device=dev),
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            eos_id=specials.get(EOT),
            generator=generator,
        )
        return tokenizer.decode(out[0].tolist()[prompt_len:])
    if isinstance(model, EncoderLM):
        if MASK not in prompt:
            raise UsageError(
                f"an MLM checkpoint fills {MASK} tokens: give --prompt with {MASK} in it"
            )
        ids = torch.tensor(tokenizer.encode(prompt, allowed_special="all"), device=dev)
        lines = [prompt]
        for i, fill in enumerate(gen.fill_masks(model, ids, specials[MASK], top_k=5)):
            shown = ", ".join(f"{tokenizer.decode([t])!r} {p:.2f}"
                              for t, p in zip(fill.token_ids, fill.probs, strict=True))
            lines.append(f"  {MASK} #{i + 1}: {shown}")
        return "\n".join(lines)
    if isinstance(model, Seq2SeqLM):
        if not prompt:
            raise UsageError("a seq2seq checkpoint needs an input: give --prompt TEXT "
                             "(mark spans to fill with <extra_id_0>, <extra_id_1>, ...)")
        ids = tokenizer.encode(prompt, allowed_special="all")
        out = gen.generate_seq2seq(model, torch.tensor(ids, device=dev), max_new_tokens,
                                   temperature=temperature, top_k=top_k, top_p=top_p,
                                   eos_id=specials.get(EOT), generator=generator).tolist()
        names = [sentinel(i) for i in range(N_SENTINELS)]
        sentinel_ids = [specials[name] for name in names if name in specials]
        if any(i in sentinel_ids for i in ids):  # span filling: show the input with spans put back
            filled, _ = gen.fill_sentinels(ids, out, sentinel_ids, eos_id=specials.get(EOT))
            return tokenizer.decode(filled)
        if EOT in specials and specials[EOT] in out:
            out = out[: out.index(specials[EOT])]
        return tokenizer.decode(out)
    raise UsageError(f"{checkpoint}: unknown model type {type(model).__name__}")


def cmd_sample(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(_sample_text(Path(args.checkpoint), args.prompt, args.max_new_tokens,
                           args.temperature, args.top_k, args.top_p, args.seed + i, args.device))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from minigpt.train import evaluate_checkpoint

    kwargs = {"device": args.device or "auto"}
    if args.data_dir:
        kwargs["data_dir"] = args.data_dir
    if args.eval_batches:
        kwargs["eval_batches"] = args.eval_batches
    result = evaluate_checkpoint(Path(args.checkpoint), **kwargs)
    print(f"checkpoint     {args.checkpoint}")
    print(f"val loss       {result['val_loss']:.4f} nats/token")
    print(f"perplexity     {math.exp(result['val_loss']):.2f}")
    if result["val_bpb"] is not None:
        print(f"bits per byte  {result['val_bpb']:.4f}")
    else:
        print("bits per byte  n/a (only next-token prediction codes every byte)")
    return 0


# ----------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from minigpt.models import DecoderLM, EncoderLM, ModelConfig, Seq2SeqLM

    overrides = {k: v for k, v in (("vocab_size", args.vocab_size), ("d_model", args.d_model),
                                   ("n_layers", args.n_layers), ("n_heads", args.n_heads),
                                   ("max_len", args.block_size)) if v is not None}
    config = ModelConfig.from_preset(args.preset, **overrides)
    family = {"clm": DecoderLM, "mlm": EncoderLM, "span": Seq2SeqLM}[args.objective]
    with torch.device("meta"):  # count and estimate without allocating the weights
        model = family(config)
    n_params = model.num_parameters()
    n_body = model.num_parameters(exclude_embeddings=True)
    flops = model.flops_per_token()
    print(f"preset            {args.preset} ({family.__name__}, objective {args.objective})")
    print(f"shape             d_model {config.d_model}, {config.n_layers} layers, "
          f"{config.n_heads} heads, d_ff {config.d_ff}, block {config.max_len}, "
          f"vocab {config.vocab_size:,}")
    print(f"parameters        {n_params:,} ({n_body:,} without embeddings)")
    print(f"training FLOPs    {flops:,.0f} per token (forward + backward)")
    # The course's memory table: fp32 weights 4 bytes/param, gradients +4, Adam's two moments +8,
    # activations and temporaries about +8 more (a high-end estimate) -> ~24 bytes per parameter.
    state_gib = 16 * n_params / 2**30
    total_gib = 24 * n_params / 2**30
    print(f"training memory   ~{state_gib:.2f} GiB weights+grads+Adam (16 B/param), "
          f"~{total_gib:.2f} GiB with activations (24 B/param, the course's rule of thumb)")
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="minigpt",
        description="Train, sample and inspect small transformer language models.",
        epilog="With no arguments, `minigpt train` prepares the embedded corpus and trains "
        "the tiny GPT preset on the CPU in a few minutes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("prepare", help="tokenize a corpus into train/val token files",
                       description="Tokenize a corpus once into train/val token files.")
    _add_data_flags(p)
    p.add_argument("--val-fraction", type=float, default=None,
                   help="fraction of the text (its end) kept for validation (default 0.1)")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="pretrain a model (clm, mlm or span corruption)",
                       description="Pretrain a model with one of three objectives.")
    p.add_argument("--objective", choices=["clm", "mlm", "span"], default=None,
                   help="clm: GPT-style next token; mlm: BERT-style masked tokens; "
                   "span: T5-style span corruption (default: clm)")
    p.add_argument("--preset", default=None,
                   help="model size: tiny, small, homework, gpt2-small (default: tiny)")
    for flag, kind, text in (
        ("--d-model", int, "width of the residual stream"),
        ("--n-layers", int, "number of transformer layers"),
        ("--n-heads", int, "attention heads per layer"),
        ("--d-ff", int, "hidden width of the feed-forward block"),
        ("--block-size", int, "context length in tokens"),
        ("--dropout", float, "dropout probability"),
        ("--batch-size", int, "sequences per micro-batch"),
        ("--grad-accum", int, "micro-batches accumulated per optimizer step"),
        ("--max-steps", int, "optimizer steps to train for"),
        ("--max-tokens", int, "alternative budget: stop after this many training tokens"),
        ("--time-limit", float, "alternative budget: stop after this many seconds"),
        ("--lr", float, "peak learning rate"),
        ("--warmup-steps", int, "linear warm-up steps before cosine decay"),
        ("--weight-decay", float, "AdamW weight decay (matrices only)"),
        ("--ema-decay", float, "evaluate and save an exponential moving average of the "
         "weights with this decay, e.g. 0.99 (default 0: off)"),
        ("--eval-interval", int, "evaluate every N steps"),
        ("--seed", int, "random seed (data order, initialisation, dropout)"),
    ):
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("--positional", choices=POSITIONALS, default=None,
                   help="how positions enter: added sinusoids, an added learned table, or "
                   "rotary (RoPE) inside attention (default: the preset's)")
    p.add_argument("--activation", choices=ACTIVATIONS, default=None,
                   help="feed-forward activation (default: the preset's)")
    _add_data_flags(p)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                   help="numeric precision (default: auto = fastest that converges)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    p.add_argument("--compile", action="store_true", help="use torch.compile")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory for checkpoints, metrics and plots "
                   "(default: runs/<objective>-<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from DIR/ckpt.pt")
    p.add_argument("--no-sample", action="store_true", help="skip the sample printed at the end")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate text from a checkpoint",
                       description="Generate from a checkpoint (GPT: continue a prompt; "
                       "MLM: fill [MASK]; span/seq2seq: generate from an input).")
    p.add_argument("checkpoint", help="path to a ckpt.pt written by `minigpt train`")
    p.add_argument("--prompt", default="", help="text to continue / fill (default: empty)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="softmax temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample only from the k likeliest")
    p.add_argument("--top-p", type=float, default=None,
                   help="nucleus sampling: smallest set with probability >= p")
    p.add_argument("--num-samples", type=int, default=1, help="how many samples to print")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, mps")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="validation loss and bits per byte of a checkpoint",
                       description="Evaluate a checkpoint on its validation split.")
    p.add_argument("checkpoint", help="path to a ckpt.pt written by `minigpt train`")
    p.add_argument("--data-dir", default=None,
                   help="prepared data to evaluate on (default: the run's own)")
    p.add_argument("--eval-batches", type=int, default=None, help="cap on batches evaluated")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, mps")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="parameters, FLOPs per token and memory of a model",
                       description="Parameter count, training FLOPs per token and a memory "
                       "estimate for a preset (nothing is allocated).")
    p.add_argument("--preset", default="tiny", help="tiny, small, homework, gpt2-small")
    p.add_argument("--objective", choices=["clm", "mlm", "span"], default="clm",
                   help="model family: clm = DecoderLM, mlm = EncoderLM, span = Seq2SeqLM")
    p.add_argument("--vocab-size", type=int, default=None, help="override the vocabulary size")
    p.add_argument("--d-model", type=int, default=None, help="override the model width")
    p.add_argument("--n-layers", type=int, default=None, help="override the number of layers")
    p.add_argument("--n-heads", type=int, default=None, help="override the attention heads")
    p.add_argument("--block-size", type=int, default=None, help="override the context length")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "train":
        _choose_openmp_wait_policy()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("minigpt: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, FileNotFoundError, RuntimeError, KeyError) as err:
        # Library code raises these with one-line messages meant for the user.
        # MINIGPT_DEBUG=1 shows the traceback instead, for developers.
        if os.environ.get("MINIGPT_DEBUG"):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"minigpt {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
