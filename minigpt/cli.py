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
from typing import Any

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
    from minigpt.corpora import CORPORA
    from minigpt.tokenizer import TOKENIZER_KINDS

    p.add_argument(
        "--data",
        default="pydoc",
        metavar="SOURCE",
        help="corpus: 'pydoc' (embedded Python docs, offline), a named download ("
        + ", ".join(CORPORA) + "; see data/README.md), or a path to a .txt file / folder "
        "(default: pydoc)",
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

    kwargs = {"source": args.data, "tokenizer": args.tokenizer, "out_dir": args.data_dir,
              "workers": args.workers}  # fmt: skip
    if args.vocab_size is not None:
        kwargs["vocab_size"] = args.vocab_size
    if args.val_fraction is not None:
        kwargs["val_fraction"] = args.val_fraction
    if args.tokenizer_sample_mb is not None:
        if args.tokenizer_sample_mb <= 0:
            raise UsageError(f"--tokenizer-sample-mb must be > 0, got {args.tokenizer_sample_mb}")
        kwargs["tokenizer_sample_bytes"] = round(args.tokenizer_sample_mb * 1e6)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
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
    ("target_seconds", "target_seconds"),
    ("lr", "lr"),
    ("warmup_steps", "warmup_steps"),
    ("weight_decay", "weight_decay"),
    ("ema_decay", "ema_decay"),
    ("eval_interval", "eval_interval"),
    ("eval_batches", "eval_batches"),
    ("precision", "precision"),
    ("device", "device"),
    ("compile", "compile"),
    ("activation_checkpointing", "activation_checkpointing"),
    ("parallel", "parallel"),
    ("ddp_strategy", "ddp_strategy"),
    ("bucket_size_mb", "bucket_size_mb"),
    ("stages", "stages"),
    ("microbatches", "microbatches"),
    ("schedule", "schedule"),
    ("checkpoint_interval", "checkpoint_interval"),
    ("seed", "seed"),
    ("out", "out_dir"),
    ("resume", "resume"),
]


def cmd_train(args: argparse.Namespace) -> int:
    from minigpt.training.run import run_training
    from minigpt.training.settings import with_recipe

    values = {}
    for flag, field in _TRAIN_FIELDS:
        value = getattr(args, flag)
        if value is None or value is False:  # not given: keep TrainConfig's default
            continue
        values[field] = value
    cfg = with_recipe(**values)  # flags first, then the preset's recipe, then the defaults
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.parallel == "none" and launched > 1:
        raise UsageError(f"started as {launched} processes (torchrun) but --parallel is none: "
                         "each would train alone; add --parallel ddp (or zero1, torch-ddp, "
                         "fsdp, pipeline)")
    if cfg.parallel == "none":
        result = run_training(cfg)
    else:  # one process of several, started by torchrun
        from minigpt.parallel.run import run_parallel_training

        result = run_parallel_training(cfg)
        if result["rank"] != 0:
            return 0  # rank 0 reports for the run
    print(
        f"done: {result['steps']} steps, {result['tokens']:,} tokens in {result['seconds']:.0f} s "
        f"({result['tokens_per_s']:,.0f} tokens/s"
        + ("" if result.get("mfu") is None else f", MFU {100 * result['mfu']:.1f}%") + ")"
    )
    print(f"val loss {result['val_loss']:.4f}  perplexity {math.exp(result['val_loss']):.2f}"
          + _bpb_text(result["val_bpb"]))
    ckpt = Path(result["checkpoint"])
    print(f"checkpoint {ckpt}")
    if cfg.objective == "clm" and not args.no_sample:
        print("\nsample:")
        print(_sample(ckpt, prompt=cfg.sample_prompt, max_new_tokens=200, temperature=0.8,
                      top_k=50, top_p=None, seed=args.seed if args.seed is not None else 0,
                      device=args.device))
        print(f"\n(more with: minigpt sample {ckpt} --prompt 'The ')")
    return 0


# ----------------------------------------------------------------------------- sample / eval


def _bpb_text(bpb: float | None) -> str:
    return f"  bits per byte {bpb:.3f}" if bpb is not None else "  (bits per byte: clm only)"


def _load_for_sampling(checkpoint: Path, device: str | None) -> tuple[Any, Any]:
    """(model, tokenizer) from a ckpt.pt, or from a folder holding GPT-2's published weights
    (model.safetensors or pytorch_model.bin) beside its encoder.json and vocab.bpe."""
    from minigpt.training.checkpoint import load_model_for_inference

    if checkpoint.is_dir():
        from minigpt.device import resolve_device
        from minigpt.models import DecoderLM
        from minigpt.tokenizer import BPETokenizer

        files = [checkpoint / "encoder.json", checkpoint / "vocab.bpe"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{checkpoint} has no {' or '.join(missing)}: put GPT-2's tokenizer files "
                "beside its weights"
            )
        model = DecoderLM.from_gpt2(checkpoint).to(resolve_device(device or "auto"))
        return model.eval(), BPETokenizer.from_gpt2_files(*files)
    model, tokenizer, _ = load_model_for_inference(checkpoint, device=device or "auto")
    return model, tokenizer


def _sample(
    checkpoint: Path,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int,
    device: str | None,
    **settings: Any,
) -> str:
    """Load a checkpoint and sample from it with `generation.sample_text` (seeded)."""
    from minigpt.generate import GenerationConfig, sample_text

    model, tokenizer = _load_for_sampling(checkpoint, device)
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=seed, **settings)  # fmt: skip
    return sample_text(model, tokenizer, prompt, config)


def _read_shots(path: Path) -> list[tuple[str, str]]:
    """(input, label) examples from a text file: one `input<TAB>label` per line."""
    if not path.is_file():
        raise FileNotFoundError(f"--shots file {path} not found")
    shots = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if "\t" not in line:
            raise UsageError(f"{path}:{n}: expected 'input<TAB>label', got {line[:40]!r}")
        text, label = line.rsplit("\t", 1)
        shots.append((text.strip(), label.strip()))
    if not shots:
        raise UsageError(f"--shots file {path} holds no 'input<TAB>label' lines")
    return shots


def cmd_sample(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    if args.beam < 1:
        raise UsageError(f"--beam must be at least 1, got {args.beam}")
    if args.repetition_penalty <= 0:
        raise UsageError(f"--repetition-penalty must be > 0, got {args.repetition_penalty}")
    if args.num_samples < 1:
        raise UsageError(f"--num-samples must be at least 1, got {args.num_samples}")
    from minigpt.generate import GenerationConfig, classify, few_shot_prompt, sample_text
    from minigpt.models import EncoderLM

    shots = _read_shots(Path(args.shots)) if args.shots else None
    model, tokenizer = _load_for_sampling(Path(args.checkpoint), args.device)
    if shots is not None:  # in-context learning: build the prompt, score the labels
        if isinstance(model, EncoderLM):
            raise UsageError("--shots needs a GPT or seq2seq checkpoint (an MLM fills [MASK])")
        from minigpt.generate import score_labels

        prompt = few_shot_prompt(args.prompt, shots)
        labels = list(dict.fromkeys(label for _, label in shots))
        scores = score_labels(model, tokenizer, prompt, labels)
        print(prompt)
        for label, logp in scores.items():
            print(f"  log p({label!r}) = {logp:.3f}")
        print(f"answer: {classify(model, tokenizer, prompt, labels)}")
        return 0
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        config = GenerationConfig(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
            top_p=args.top_p, greedy=args.greedy, seed=args.seed + i, stop=tuple(args.stop),
            repetition_penalty=args.repetition_penalty, num_beams=args.beam,
        )  # fmt: skip
        if args.stream:
            sample_text(model, tokenizer, args.prompt, config,
                        on_text=lambda piece: print(piece, end="", flush=True))  # fmt: skip
            print()
        else:
            print(sample_text(model, tokenizer, args.prompt, config))
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


def _info_source(args: argparse.Namespace) -> tuple[Any, str, str]:
    """(config, model_class, description) from --checkpoint, or the preset with overrides."""
    from minigpt.config import ModelConfig
    from minigpt.training.settings import OBJECTIVES

    if args.checkpoint:
        from minigpt.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
        config = ModelConfig.from_dict(ckpt["model_config"])
        return config, ckpt["model_class"], f"checkpoint {args.checkpoint} ({ckpt['model_class']})"
    overrides = {k: v for k, v in (("vocab_size", args.vocab_size), ("d_model", args.d_model),
                                   ("n_layers", args.n_layers), ("n_heads", args.n_heads),
                                   ("d_ff", args.d_ff), ("max_len", args.block_size))
                 if v is not None}  # fmt: skip
    # a seq2seq model needs its pad/start token ids, which come from a tokenizer; any id
    # gives the same sizes, and info has no tokenizer, so 0 stands in
    config = ModelConfig.from_preset(args.preset, pad_id=0, start_id=0, **overrides)
    model_class = OBJECTIVES[args.objective].model_class
    return config, model_class, f"preset {args.preset} ({model_class}, objective {args.objective})"


def cmd_info(args: argparse.Namespace) -> int:
    from minigpt import memory
    from minigpt.scaling import count_parameters, flops_per_token

    if args.batch_size < 1 or args.gpus < 1:
        raise UsageError(f"--batch-size and --gpus must be at least 1, got {args.batch_size}, "
                         f"{args.gpus}")  # fmt: skip
    config, model_class, source = _info_source(args)
    n_params = count_parameters(config, model_class)
    n_body = count_parameters(config, model_class, exclude_embeddings=True)
    b, t, gib = args.batch_size, config.max_len, memory.GIB
    print(f"{'model':18s}{source}")
    print(f"{'shape':18s}d_model {config.d_model}, {config.n_layers} layers, "
          f"{config.n_heads} heads, d_ff {config.d_ff}, block {t}, vocab {config.vocab_size:,}")
    print(f"{'parameters':18s}{n_params:,} ({n_body:,} without embeddings)")
    print(f"{'training FLOPs':18s}{flops_per_token(config, model_class):,.0f} per token "
          "(forward + backward)")
    print("\nweights alone (inference):  "
          + ", ".join(f"{p} {memory.model_bytes(n_params, p) / gib:.3g} GiB"
                      for p in memory.PRECISIONS))  # fmt: skip
    if model_class != "DecoderLM":
        print("(the activation estimate below counts a GPT's blocks; this family differs)")
    print(f"\ntraining with Adam, micro-batch {b} x {t} tokens (GiB; activations: "
          "minigpt.memory.activation_bytes):")
    print(f"  {'precision':10s}{'weights':>9s}{'grads':>9s}{'optim.':>9s}{'activ.':>9s}"
          f"{'total':>9s}{'peak':>9s}")
    for precision in ("fp32", "bf16"):
        value = memory.BYTES_PER_VALUE[precision]
        acts = memory.activation_bytes(config, b, bytes_per_value=value)
        m = memory.training_bytes(n_params, precision, acts)
        peak = memory.peak_training_bytes(m, memory.logits_bytes(config, b, bytes_per_value=value))
        label = precision if precision == "fp32" else "bf16/fp16"
        print(f"  {label:10s}" + "".join(f"{x / gib:9.3f}" for x in (*m, m.total, peak)))
    print("  optim. = Adam's two moments (+ fp32 master weights in 16-bit); peak = backward's "
          "start\n  (memory.peak_training_bytes); int8 only stores a trained model "
          "(`minigpt quantize`)")
    n_dev = args.gpus if args.gpus > 1 else 8
    print(f"\nmodel states per device across {n_dev} devices, bf16 mixed precision "
          "(2 + 2 + 12 bytes per parameter, Rajbhandari et al. 2020):")
    print("  " + "   ".join(
        f"{name} {memory.zero_bytes_per_device(n_params, n_dev, stage) / gib:.3g} GiB"
        for stage, name in enumerate(("DDP", "ZeRO-1", "ZeRO-2", "ZeRO-3"))))  # fmt: skip
    where = f"{args.gpus} of each card" if args.gpus > 1 else "one card"
    print(f"\ndoes it train on my GPU? (batch {b}, {where}, 90% of the memory usable)")
    cards = dict(memory.GPU_CARDS)
    if args.gpu_memory:
        cards[f"your card ({args.gpu_memory:g} GiB)"] = args.gpu_memory
    for card, size in cards.items():
        setting = memory.smallest_fitting_setting(config, n_params, size * gib, b, t, args.gpus)
        answer = f"yes: {setting.describe()}" if setting else "no setting fits"
        print(f"  {card:26s}{answer}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from minigpt.training.checkpoint import quantize_checkpoint

    if not args.int8:
        raise UsageError("choose a format: --int8 (the one minigpt quantizes to)")
    src = Path(args.checkpoint)
    out = Path(args.out) if args.out else src.with_name(src.stem + "-int8" + src.suffix)
    if out.resolve() == src.resolve():
        raise UsageError(f"--out {out} is the input checkpoint; write the int8 model elsewhere")
    path = quantize_checkpoint(src, out, per_channel=not args.per_tensor)
    before, after = src.stat().st_size, path.stat().st_size
    print(f"wrote {path}: {after / 2**20:.2f} MiB (was {before / 2**20:.2f} MiB with the "
          f"optimizer state); sample and eval it like any checkpoint")
    return 0


# ----------------------------------------------------------------------------- assignment


def cmd_assignment_list(args: argparse.Namespace) -> int:
    import textwrap

    from minigpt.assignment.exercises import EXERCISES

    for e in EXERCISES.values():
        after = f", builds on {', '.join(e.builds_on)}" if e.builds_on else ""
        print(f"{e.name} (lesson {e.lesson:02d}, {e.points} points{after}): {e.title}")
        print(textwrap.fill(e.statement, 96, initial_indent="    ", subsequent_indent="    "))
        print(f"    files: {', '.join(e.files)}")
        print("    tests: " + "\n           ".join(e.tests))
    print(f"{len(EXERCISES)} exercises, {sum(e.points for e in EXERCISES.values())} points")
    return 0


def cmd_assignment_make(args: argparse.Namespace) -> int:
    from minigpt.assignment.exercises import select
    from minigpt.assignment.make import make_assignment

    exercises = select(args.exercises)
    stubbed = make_assignment(exercises, Path(args.out))
    files = sorted({r.path for r in stubbed})
    print(f"wrote {args.out}: {len(stubbed)} regions of {len(exercises)} exercises stubbed "
          f"({', '.join(e.name for e in exercises)}) in {len(files)} files")
    print(f"grade it with: minigpt assignment grade {args.out}")
    return 0


def cmd_assignment_grade(args: argparse.Namespace) -> int:
    import json

    from minigpt.assignment.exercises import select
    from minigpt.assignment.grade import grade, gradescope_results, score_table, total

    def progress(result: Any) -> None:
        print(f"  {result.exercise.name}: {result.status} ({result.seconds:.1f} s)",
              file=sys.stderr, flush=True)  # fmt: skip

    results = grade(Path(args.directory), select(args.exercises), timeout=args.timeout,
                    jobs=args.jobs, on_result=progress)  # fmt: skip
    print(score_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(gradescope_results(results), indent=2) + "\n")
        print(f"wrote {args.json}")
    scored, possible = total(results)
    return 0 if scored == possible else 1


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from minigpt.config import ACTIVATIONS, POSITIONALS, PRESETS
    from minigpt.device import DEVICES
    from minigpt.generate import GenerationConfig
    from minigpt.parallel.ddp import STRATEGIES
    from minigpt.training.precision import PRECISIONS
    from minigpt.training.settings import OBJECTIVES, PARALLEL_MODES, PIPELINE_SCHEDULES, RECIPES

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

    from minigpt.data import TOKENIZER_SAMPLE_BYTES

    p = sub.add_parser("prepare", help="tokenize a corpus into train/val token files",
                       description="Tokenize a corpus once into train/val token files.")
    _add_data_flags(p)
    p.add_argument("--val-fraction", type=float, default=None,
                   help="fraction of the text (its end) kept for validation (default 0.1; "
                   "ignored by corpora with their own validation text, e.g. wikitext103)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes that tokenize in parallel; the files are the same for any N "
                   "(default: 1 for small corpora, else one per core, at most 8)")
    p.add_argument("--tokenizer-sample-mb", type=float, default=None, metavar="MB",
                   help="BPE is trained on the whole training split up to this size, on evenly "
                   f"spaced slices of it beyond (default {TOKENIZER_SAMPLE_BYTES / 1e6:g}); the "
                   "text itself is streamed, never held in memory whole")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help=f"pretrain a model ({', '.join(OBJECTIVES)})",
                       description="Pretrain a model with one of the objectives.")
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default=None,
                   help=f"{objectives} (default: clm)")
    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="model size, a preset of minigpt.config (default: tiny); "
                   f"{' and '.join(RECIPES)} also bring a training recipe (RECIPES in "
                   "minigpt.training.settings; each flag given overrides it), tiny's the CPU "
                   f"main job's: {', '.join(f'{k} {v}' for k, v in RECIPES['tiny'].items())}")
    for flag, kind, text in (
        ("--d-model", int, "width of the residual stream (with --d-ff: replaces both of "
         "the recipe's widths)"),
        ("--n-layers", int, "number of transformer layers"),
        ("--n-heads", int, "attention heads per layer"),
        ("--d-ff", int, "hidden width of the feed-forward block"),
        ("--block-size", int, "context length in tokens"),
        ("--dropout", float, "dropout probability"),
        ("--batch-size", int, "sequences per micro-batch"),
        ("--grad-accum", int, "micro-batches accumulated per optimizer step"),
        ("--max-steps", int, "optimizer steps to train for (default: 2,000, or as many as "
         "fit in --target-seconds on this machine, measured over the first 20 steps)"),
        ("--max-tokens", int, "alternative budget: stop after this many training tokens"),
        ("--time-limit", float, "alternative budget: stop after this many seconds"),
        ("--target-seconds", float, "with no budget given: size the steps (at most 2,000) to "
         "train about this long (default 150; 0 = always 2,000)"),
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
    p.set_defaults(data=None, tokenizer=None)  # not given: the preset's recipe, else pydoc / bpe
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="numeric precision (default: auto = fastest that converges)")
    p.add_argument("--device", default=None, help=f"{devices} (default: auto)")
    p.add_argument("--compile", action="store_true", help="use torch.compile")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute each block's activations in backward: less memory, ~1/3 "
                   "more compute (for a model or batch that does not fit otherwise)")
    p.add_argument("--parallel", choices=PARALLEL_MODES, default=None,
                   help="train on several processes started by `torchrun --nproc_per_node N "
                   "-m minigpt train --parallel MODE ...`: ddp / zero1 are minigpt's own data "
                   "parallelism (zero1 also shards Adam's state), torch-ddp / fsdp PyTorch's "
                   "(default: none, one process)")
    p.add_argument("--ddp-strategy", choices=STRATEGIES, default=None,
                   help="with --parallel ddp/zero1: how gradients are averaged (default: "
                   "overlap, bucketed all-reduces launched during backward)")
    p.add_argument("--stages", type=int, default=None,
                   help="with --parallel pipeline: stages the model's blocks are cut into; the "
                   "process count must be stages x replicas (default 2)")
    p.add_argument("--microbatches", type=int, default=None,
                   help="with --parallel pipeline: micro-batches each replica's batch is split "
                   "into (default 4; at most batch size x grad accum)")
    p.add_argument("--schedule", choices=PIPELINE_SCHEDULES, default=None,
                   help="with --parallel pipeline: the order of passes: gpipe (all forwards, "
                   "then backwards), 1f1b (less memory), zb (zero-bubble ZB-H1) (default 1f1b)")
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
    p.add_argument("checkpoint", help="path to a ckpt.pt written by `minigpt train`, or a "
                   "folder with GPT-2's model.safetensors / pytorch_model.bin, encoder.json "
                   "and vocab.bpe")
    p.add_argument("--prompt", default="", help="text to continue / fill (default: empty)")
    panel = GenerationConfig()  # the course's inference panel: the defaults shown in --help
    p.add_argument("--max-new-tokens", type=int, default=panel.max_new_tokens,
                   help=f"at most this many new tokens (default {panel.max_new_tokens})")
    p.add_argument("--temperature", type=float, default=panel.temperature,
                   help=f"softmax temperature; 0 = greedy (default {panel.temperature})")
    p.add_argument("--top-k", type=int, default=panel.top_k,
                   help=f"sample only from the k likeliest (default {panel.top_k})")
    p.add_argument("--top-p", type=float, default=panel.top_p,
                   help="nucleus sampling: smallest set with probability >= p "
                   f"(default {panel.top_p:g} = off)")
    p.add_argument("--greedy", action="store_true",
                   help="always take the likeliest token (same as --temperature 0)")
    p.add_argument("--beam", type=int, default=panel.num_beams, metavar="N",
                   help=f"beam search with N beams (GPT and seq2seq; default {panel.num_beams} "
                   "= off)")
    p.add_argument("--repetition-penalty", type=float, default=panel.repetition_penalty,
                   help=f"make tokens already written less likely, e.g. 1.3 (default "
                   f"{panel.repetition_penalty:g} = off)")
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="end the sample where TEXT appears (repeatable)")
    p.add_argument("--stream", action="store_true", help="print the text as it is generated")
    p.add_argument("--shots", default=None, metavar="FILE",
                   help="in-context learning: FILE holds 'input<TAB>label' examples; the prompt "
                   "is built in the course's 'Classify this review:' format with --prompt as "
                   "the input, and each label is scored by log-likelihood")
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

    p = sub.add_parser("info", help="parameters, FLOPs, memory, and whether it trains on a GPU",
                       description="Parameter count, training FLOPs per token, the memory "
                       "table at each precision and sharding, and the smallest setting that "
                       "trains it on common GPUs (nothing is allocated).")
    p.add_argument("--preset", choices=tuple(PRESETS), default="tiny",
                   help="model size, a preset of minigpt.config (default: tiny)")
    p.add_argument("--checkpoint", default=None, help="describe this ckpt.pt's model instead")
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default="clm",
                   help=f"model family: {families}")
    p.add_argument("--vocab-size", type=int, default=None, help="override the vocabulary size")
    p.add_argument("--d-model", type=int, default=None, help="override the model width")
    p.add_argument("--n-layers", type=int, default=None, help="override the number of layers")
    p.add_argument("--n-heads", type=int, default=None, help="override the attention heads")
    p.add_argument("--d-ff", type=int, default=None, help="override the feed-forward width")
    p.add_argument("--block-size", type=int, default=None, help="override the context length")
    p.add_argument("--batch-size", type=int, default=16,
                   help="sequences per optimizer step, for the activation memory (default 16)")
    p.add_argument("--gpus", type=int, default=1,
                   help="devices to train on (ZeRO shards across them) (default 1)")
    p.add_argument("--gpu-memory", type=float, default=None, metavar="GIB",
                   help="also check a card with this much memory in GiB")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("quantize", help="write an int8 copy of a checkpoint",
                       description="Store a trained model's linear weights as int8 with "
                       "absmax scales; `sample` and `eval` accept the result.")
    p.add_argument("checkpoint", help="path to a ckpt.pt written by `minigpt train`")
    p.add_argument("--int8", action="store_true", help="symmetric absmax int8 weights")
    p.add_argument("--per-tensor", action="store_true",
                   help="one scale per matrix instead of one per output channel")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="where to write it (default: CKPT-int8.pt beside the input)")
    p.set_defaults(func=cmd_quantize)

    from minigpt.assignment.grade import DEFAULT_TIMEOUT_S

    p = sub.add_parser("assignment", help="course kit: list, make and grade exercises",
                       description="Hand the library out as homework: cut exercises out of "
                       "the source as NotImplementedError stubs, then grade a student's copy.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)

    def assignment_usage(args: argparse.Namespace, p: argparse.ArgumentParser = p) -> int:
        p.print_help(sys.stderr)
        return EXIT_USAGE

    p.set_defaults(func=assignment_usage)
    exercises_help = ("comma-separated exercise names (see `minigpt assignment list`) "
                      "or all")  # fmt: skip
    a = actions.add_parser("list", help="the exercises, their files, points and tests",
                           description="List the exercises of the course kit.")
    a.set_defaults(func=cmd_assignment_list)
    a = actions.add_parser("make", help="write a student copy with exercises stubbed",
                           description="Copy the source checkout minigpt is installed from "
                           "(this needs a clone installed with `pip install -e .`, not a wheel) "
                           "to a new folder, leaving out .git, .venv, runs, data and caches; "
                           "each region of the chosen exercises becomes a NotImplementedError "
                           "stub and every solution marker is removed.")
    a.add_argument("--exercises", required=True, help=exercises_help)
    a.add_argument("--out", required=True, metavar="DIR",
                   help="the new folder (must not exist, or be empty)")
    a.set_defaults(func=cmd_assignment_make)
    a = actions.add_parser("grade", help="run each exercise's tests, print the scores",
                           description="Grade a copy: each exercise's tests run in their own "
                           "process with DIR's minigpt first on the path; an exercise whose "
                           "prerequisite fails is reported blocked. Exit status 0 at full "
                           "marks, 1 otherwise.")
    a.add_argument("directory", nargs="?", default=".", metavar="DIR",
                   help="the student's copy (default: the current folder)")
    a.add_argument("--json", default=None, metavar="PATH",
                   help="also write Gradescope's results.json here")
    a.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="seconds each exercise may take before it is killed (default "
                   f"{DEFAULT_TIMEOUT_S:g})")
    a.add_argument("--exercises", default="all", help=exercises_help + " (default: all)")
    a.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="exercises graded at once (default 1)")
    a.set_defaults(func=cmd_assignment_grade)
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
