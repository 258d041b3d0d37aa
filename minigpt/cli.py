"""The `minigpt` command line: prepare data, train, sample, evaluate, inspect.

This is the only module that parses arguments or prints for users. Every
subcommand maps its flags onto a library call (`minigpt.data.prepare`,
`minigpt.training.run.run_training`, `minigpt.generate.sample_text`, ...), so
anything the CLI does a script can do too. The choices a flag offers come from
the registries that define them (objectives, presets, precisions, tokenizer
kinds, positionals, activations), never from a list of their own. Mistakes a
user can make — a missing file, an unknown preset, sizes that do not fit
together, a corrupt checkpoint — come back as one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

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
    that ended a minute ago). It must run before torch is imported: `main` calls it first,
    before the parser (whose choices come from modules that import torch) is built; an
    explicit OMP_WAIT_POLICY in the environment always wins.
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
    from minigpt.tokenizer import TOKENIZER_KINDS

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
        choices=TOKENIZER_KINDS,
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
    ("eval_batches", "eval_batches"),
    ("precision", "precision"),
    ("device", "device"),
    ("compile", "compile"),
    ("parallel", "parallel"),
    ("ddp_strategy", "ddp_strategy"),
    ("bucket_size_mb", "bucket_size_mb"),
    ("checkpoint_interval", "checkpoint_interval"),
    ("seed", "seed"),
    ("out", "out_dir"),
    ("resume", "resume"),
]


def cmd_train(args: argparse.Namespace) -> int:
    from minigpt.training.run import run_training
    from minigpt.training.settings import TrainConfig

    values = {}
    for flag, field in _TRAIN_FIELDS:
        value = getattr(args, flag)
        if value is None or value is False:  # not given: keep TrainConfig's default
            continue
        values[field] = value
    cfg = TrainConfig(**values)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.parallel == "none" and launched > 1:
        raise UsageError(f"started as {launched} processes (torchrun) but --parallel is none: "
                         "each would train alone; add --parallel ddp (or zero1, torch-ddp, fsdp)")
    if cfg.parallel == "none":
        result = run_training(cfg)
    else:  # one process of several, started by torchrun
        from minigpt.parallel.run import run_parallel_training

        result = run_parallel_training(cfg)
        if result["rank"] != 0:
            return 0  # rank 0 reports for the run
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
        print(_sample(ckpt, prompt="", max_new_tokens=200, temperature=0.8, top_k=50,
                      top_p=None, seed=args.seed if args.seed is not None else 0,
                      device=args.device))
        print(f"\n(more with: minigpt sample {ckpt} --prompt 'The ')")
    return 0


# ----------------------------------------------------------------------------- sample / eval


def _bpb_text(bpb: float | None) -> str:
    return f"  bits per byte {bpb:.3f}" if bpb is not None else "  (bits per byte: clm only)"


def _sample(
    checkpoint: Path,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int,
    device: str | None,
) -> str:
    """Load a checkpoint and sample from it with `generate.sample_text` (seeded)."""
    import torch

    from minigpt.generate import sample_text
    from minigpt.training.checkpoint import load_model_for_inference

    model, tokenizer, _ = load_model_for_inference(checkpoint, device=device or "auto")
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    return sample_text(model, tokenizer, prompt, max_new_tokens, temperature=temperature,
                       top_k=top_k, top_p=top_p, generator=generator)  # fmt: skip


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
        print(_sample(Path(args.checkpoint), args.prompt, args.max_new_tokens,
                      args.temperature, args.top_k, args.top_p, args.seed + i, args.device))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from minigpt.training.run import evaluate_checkpoint

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

    from minigpt.config import ModelConfig
    from minigpt.models import build_model
    from minigpt.training.settings import OBJECTIVES

    overrides = {k: v for k, v in (("vocab_size", args.vocab_size), ("d_model", args.d_model),
                                   ("n_layers", args.n_layers), ("n_heads", args.n_heads),
                                   ("max_len", args.block_size)) if v is not None}
    # a seq2seq model needs its pad/start token ids, which come from a tokenizer; any id
    # gives the same sizes, and info has no tokenizer, so 0 stands in
    config = ModelConfig.from_preset(args.preset, pad_id=0, start_id=0, **overrides)
    model_class = OBJECTIVES[args.objective].model_class
    with torch.device("meta"):  # count and estimate without allocating the weights
        model = build_model(model_class, config)
    n_params = model.num_parameters()
    n_body = model.num_parameters(exclude_embeddings=True)
    flops = model.flops_per_token()
    print(f"preset            {args.preset} ({model_class}, objective {args.objective})")
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
    from minigpt.config import ACTIVATIONS, POSITIONALS, PRESETS
    from minigpt.device import DEVICES
    from minigpt.parallel.ddp import STRATEGIES
    from minigpt.training.precision import PRECISIONS
    from minigpt.training.settings import OBJECTIVES, PARALLEL_MODES

    objectives = "; ".join(f"{o.name}: {o.summary}" for o in OBJECTIVES.values())
    families = ", ".join(f"{o.name} = {o.model_class}" for o in OBJECTIVES.values())
    devices = ", ".join(d if d != "cuda" else "cuda, cuda:1" for d in DEVICES)
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

    p = sub.add_parser("train", help=f"pretrain a model ({', '.join(OBJECTIVES)})",
                       description="Pretrain a model with one of the objectives.")
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default=None,
                   help=f"{objectives} (default: clm)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="model size, a preset of minigpt.config (default: tiny)")
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
        ("--eval-batches", int, "validation batches per evaluation (default 20)"),
        ("--checkpoint-interval", int, "write ckpt.pt every N steps (and at the end)"),
        ("--bucket-size-mb", float, "--parallel ddp/zero1: gradient bucket size (default 25)"),
        ("--seed", int, "random seed (data order, initialisation, dropout)"),
    ):
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument("--positional", choices=POSITIONALS, default=None,
                   help="how positions enter: added sinusoids, an added learned table, or "
                   "rotary (RoPE) inside attention (default: the preset's)")
    p.add_argument("--activation", choices=ACTIVATIONS, default=None,
                   help="feed-forward activation (default: the preset's)")
    _add_data_flags(p)
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="numeric precision (default: auto = fastest that converges)")
    p.add_argument("--device", default=None, help=f"{devices} (default: auto)")
    p.add_argument("--compile", action="store_true", help="use torch.compile")
    p.add_argument("--parallel", choices=PARALLEL_MODES, default=None,
                   help="train on several processes started by `torchrun --nproc_per_node N "
                   "-m minigpt train --parallel MODE ...`: ddp / zero1 are minigpt's own data "
                   "parallelism (zero1 also shards Adam's state), torch-ddp / fsdp PyTorch's "
                   "(default: none, one process)")
    p.add_argument("--ddp-strategy", choices=STRATEGIES, default=None,
                   help="with --parallel ddp/zero1: how gradients are averaged (default: "
                   "overlap, bucketed all-reduces launched during backward)")
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
    p.add_argument("--device", default=None, help=devices)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="validation loss and bits per byte of a checkpoint",
                       description="Evaluate a checkpoint on its validation split.")
    p.add_argument("checkpoint", help="path to a ckpt.pt written by `minigpt train`")
    p.add_argument("--data-dir", default=None,
                   help="prepared data to evaluate on (default: the run's own)")
    p.add_argument("--eval-batches", type=int, default=None, help="cap on batches evaluated")
    p.add_argument("--device", default=None, help=devices)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", help="parameters, FLOPs per token and memory of a model",
                       description="Parameter count, training FLOPs per token and a memory "
                       "estimate for a preset (nothing is allocated).")
    p.add_argument("--preset", choices=tuple(PRESETS), default="tiny",
                   help="model size, a preset of minigpt.config (default: tiny)")
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default="clm",
                   help=f"model family: {families}")
    p.add_argument("--vocab-size", type=int, default=None, help="override the vocabulary size")
    p.add_argument("--d-model", type=int, default=None, help="override the model width")
    p.add_argument("--n-layers", type=int, default=None, help="override the number of layers")
    p.add_argument("--n-heads", type=int, default=None, help="override the attention heads")
    p.add_argument("--block-size", type=int, default=None, help="override the context length")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        _choose_openmp_wait_policy()  # before build_parser: its registries import torch
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
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
