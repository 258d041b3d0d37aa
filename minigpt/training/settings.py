"""What a training run is: its settings (`TrainConfig`) and the three objectives as data.

Pretraining is one loop for every family; what differs per objective is data, not code, so
`OBJECTIVES` maps each name to a model class, the extra tokens a window needs (next-token
prediction shifts by one) and a factory that builds the batch function from the tokenizer's
special ids. `TrainConfig` validates every knob with a one-line message, so a bad flag fails
before any data is prepared; its choices come from the registries that define them (objectives
here, presets, positionals and activations in `minigpt.config`, precisions, devices, tokenizer
kinds), so the CLI and the config cannot disagree. A preset may bring a recipe, its training
settings (`RECIPES`: the course's homework run), which `with_recipe` fills in under the flags
given. `minigpt.training.run` runs it; lessons 06-08 use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from minigpt.config import ACTIVATIONS, POSITIONALS, PRESETS, ModelConfig
from minigpt.device import check_device_name
from minigpt.models import MODEL_CLASSES, build_model
from minigpt.objectives import BatchFn, causal_lm_batch, mlm_batch, span_corruption_batch
from minigpt.tokenizer import EOT, MASK, N_SENTINELS, PAD, TOKENIZER_KINDS, sentinel
from minigpt.training.precision import PRECISIONS

# When no budget (steps, tokens or time) is given, a run trains DEFAULT_MAX_STEPS steps, or
# fewer where the machine is slow: after SIZING_STEPS real steps the trainer measures its speed
# and keeps only as many steps as fit in `target_seconds` (Trainer._size_the_run). A fixed step
# count would not keep "a few minutes" on every CPU: 2,000 steps of `tiny` took 3 min 20 s on an
# Intel Xeon with AMX bf16 and 14 min 25 s on an AMD EPYC without native bf16 (fp32).
DEFAULT_MAX_STEPS = 2000
SIZING_STEPS = 20


# ----------------------------------------------------------------------------- objectives


def _special_id(tokenizer: Any, token: str, objective: str) -> int:
    if token not in tokenizer.special_tokens:
        raise ValueError(
            f"objective {objective!r} needs the special token {token!r}, which this "
            "tokenizer lacks; prepare the data with --tokenizer bpe or char"
        )
    return tokenizer.special_tokens[token]


def _clm_batches(tokenizer: Any) -> BatchFn:
    return lambda windows, generator: causal_lm_batch(windows)  # (B, T+1) -> (B, T), (B, T)


def _mlm_batches(tokenizer: Any) -> BatchFn:
    mask_id = _special_id(tokenizer, MASK, "mlm")
    special_ids = sorted(tokenizer.special_tokens.values())  # never masked, never predicted
    vocab_size = tokenizer.vocab_size
    return lambda windows, generator: mlm_batch(
        windows, mask_id, vocab_size, special_ids, generator=generator
    )


def _span_batches(tokenizer: Any) -> BatchFn:
    sentinels = [_special_id(tokenizer, sentinel(i), "span") for i in range(N_SENTINELS)]
    eos_id, pad_id = _special_id(tokenizer, EOT, "span"), _special_id(tokenizer, PAD, "span")
    return lambda windows, generator: span_corruption_batch(
        windows, sentinels, eos_id, pad_id, generator=generator
    )


def _no_ids(tokenizer: Any) -> dict[str, int]:
    return {}


def _pad_ids(tokenizer: Any) -> dict[str, int]:
    return {"pad_id": _special_id(tokenizer, PAD, "mlm")}


def _seq2seq_ids(tokenizer: Any) -> dict[str, int]:
    pad_id = _special_id(tokenizer, PAD, "span")
    return {"pad_id": pad_id, "start_id": pad_id}  # T5 starts its decoder from the pad token


@dataclass(frozen=True)
class Objective:
    """How one objective differs from another: all data, no copy of the training loop."""

    name: str
    model_class: str  # a key of minigpt.models.MODEL_CLASSES
    extra_tokens: int  # windows hold block_size + extra_tokens ids (clm shifts by one)
    batches: Callable[[Any], BatchFn]  # tokenizer -> (windows, generator) -> (inputs, targets)
    model_ids: Callable[[Any], dict[str, int]]  # tokenizer -> special ids the model config needs
    summary: str  # one phrase for help texts

    def __post_init__(self) -> None:
        if self.model_class not in MODEL_CLASSES:
            raise ValueError(
                f"objective {self.name!r} names model class {self.model_class!r}; "
                f"use one of {', '.join(MODEL_CLASSES)}"
            )


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("clm", "DecoderLM", 1, _clm_batches, _no_ids, "GPT-style next token"),
        Objective("mlm", "EncoderLM", 0, _mlm_batches, _pad_ids, "BERT-style masked tokens"),
        Objective("span", "Seq2SeqLM", 0, _span_batches, _seq2seq_ids,
                  "T5-style span corruption"),  # fmt: skip
    )
}


# ----------------------------------------------------------------------------- config

# How many processes train one model, and how they share the work (minigpt/parallel/run.py):
# none (one process), ddp / zero1 (our data parallelism, plain or with ZeRO-1 optimizer
# sharding), torch-ddp / fsdp (PyTorch's DistributedDataParallel and FullyShardedDataParallel),
# pipeline (our pipeline parallelism, parallel/pipeline.py: the model cut into stages, times
# data-parallel replicas when the world size is stages x replicas).
PARALLEL_MODES = ("none", "ddp", "zero1", "torch-ddp", "fsdp", "pipeline")
# --parallel pipeline: the order of micro-batch passes (parallel/schedules.py, lesson 13).
PIPELINE_SCHEDULES = ("gpipe", "1f1b", "zb")

_OPTIONAL_POSITIVE = "d_model n_layers n_heads d_ff block_size max_steps max_tokens".split()
_POSITIVE = ("vocab_size batch_size grad_accum eval_interval eval_batches log_interval "
             "checkpoint_interval sample_tokens").split()  # fmt: skip


@dataclass
class TrainConfig:
    """Every setting of a run. None for a model size means "the preset's value".

    The optimisation defaults suit `tiny` on a CPU (embedded corpus, BPE 1024, bf16): with
    minutes of compute, more (smaller) steps beat bigger batches (150 s runs: batch 16 at lr
    2e-3 reached 1.75 bits per byte, batch 32 at lr 1e-3 only 2.29), and with dropout 0.1
    lr 1e-3 beat 2e-3 (2,000 steps: 1.646 vs 1.672). The main job's half-width model takes
    2e-3 from its recipe (`RECIPES`).
    """

    objective: str = "clm"  # a key of OBJECTIVES: clm | mlm | span
    preset: str = "tiny"  # a key of minigpt.config.PRESETS
    d_model: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    d_ff: int | None = None
    block_size: int | None = None  # context length; becomes the model's max_len
    dropout: float | None = None
    positional: str | None = None  # sinusoidal | learned | rope (None: the preset's)
    activation: str | None = None  # relu | gelu (None: the preset's)
    data: str = "pydoc"  # corpus source, as for minigpt.data.prepare
    tokenizer: str = "bpe"  # bpe | char | gpt2
    vocab_size: int = 1024  # BPE only
    data_dir: str | None = None  # default: prepare's data/<source>-<tokenizer>-<vocab>
    batch_size: int = 16  # windows per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int | None = None  # budget in steps ...
    max_tokens: int | None = None  # ... or in training tokens (not both)
    time_limit_s: float | None = None  # wall-clock budget: stop, then evaluate
    # No budget above: train at most DEFAULT_MAX_STEPS steps, sized from the first steps' speed
    # to take about this many seconds of training (0 = always DEFAULT_MAX_STEPS).
    target_seconds: float = 150.0
    lr: float = 1e-3
    min_lr: float | None = None  # end of the cosine; default lr / 10
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    ema_decay: float = 0.0  # evaluate/save an EMA of the weights with this decay; 0 = off
    betas: tuple[float, float] = (0.9, 0.99)
    eval_interval: int = 250
    eval_batches: int = 20
    log_interval: int = 10
    checkpoint_interval: int = 250
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda[:i] | mps
    compile: bool = False
    activation_checkpointing: bool = False  # recompute each block in backward: less memory
    parallel: str = "none"  # a PARALLEL_MODES entry; the others start under torchrun
    ddp_strategy: str = "overlap"  # ddp / zero1: naive | bucketed | overlap (parallel/ddp.py)
    bucket_size_mb: float = 25.0  # ddp / zero1 (bucketed, overlap): gradient bucket size
    stages: int = 2  # pipeline: how many stages the model's blocks are cut into
    microbatches: int = 4  # pipeline: micro-batches each step's batch is split into
    schedule: str = "1f1b"  # pipeline: gpipe | 1f1b | zb (PIPELINE_SCHEDULES)
    seed: int = 1337
    out_dir: str | None = None  # default runs/<objective>-<preset>
    resume: bool = False
    sample_every: int = 0  # clm only: print a sample every N steps (0 = never)
    sample_prompt: str = ""
    sample_tokens: int = 100
    progress: bool = True  # tqdm bar and printed evaluations

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {rule}")

        choices = {
            "objective": tuple(OBJECTIVES),
            "preset": tuple(PRESETS),
            "positional": (None, *POSITIONALS),
            "activation": (None, *ACTIVATIONS),
            "precision": PRECISIONS,
            "tokenizer": TOKENIZER_KINDS,
            "parallel": PARALLEL_MODES,
            "schedule": PIPELINE_SCHEDULES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                fail(name, f"use one of {', '.join(a for a in allowed if a is not None)}")
        try:
            check_device_name(self.device)
        except ValueError:
            fail("device", "use auto, cpu, cuda, cuda:N or mps")
        for name in _OPTIONAL_POSITIVE:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                fail(name, "must be a positive integer (or unset)")
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                fail(name, "must be at least 1")
        for name in ("warmup_steps", "weight_decay", "grad_clip", "sample_every"):
            if getattr(self, name) < 0:
                fail(name, "must be >= 0")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be in [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            fail("ema_decay", "must be in [0, 1): 0 turns the average off, 0.99 is typical")
        if self.max_steps is not None and self.max_tokens is not None:
            fail("max_tokens", "give max_steps or max_tokens, not both")
        if self.target_seconds < 0:
            fail("target_seconds", "must be >= 0 seconds (0 turns step sizing off)")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            fail("time_limit_s", "must be > 0 seconds (or unset)")
        if not self.lr > 0:
            fail("lr", "must be > 0")
        for name in ("stages", "microbatches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, "must be a positive integer")
        if not self.bucket_size_mb > 0:
            fail("bucket_size_mb", "must be > 0 MB (PyTorch's DDP uses 25)")
        if self.parallel != "none" and self.time_limit_s is not None:
            fail("time_limit_s", "a clock differs between processes: with --parallel give "
                 "--max-steps or --max-tokens")  # fmt: skip
        if self.parallel == "pipeline":
            if self.objective != "clm":
                fail("objective", "--parallel pipeline cuts a GPT (DecoderLM) into stages; "
                     "use --objective clm")  # fmt: skip
            if self.ema_decay > 0:
                fail("ema_decay", "is not supported with --parallel pipeline (each rank "
                     "trains only its stage's weights); drop --ema-decay")  # fmt: skip
            if self.compile:
                fail("compile", "is not supported with --parallel pipeline; drop --compile")
            if self.activation_checkpointing:
                fail("activation_checkpointing", "is not supported with --parallel pipeline "
                     "(stages run their blocks themselves); drop --activation-checkpointing")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            fail("min_lr", f"must be between 0 and lr={self.lr}")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            fail("betas", "must be two numbers in [0, 1), e.g. (0.9, 0.99)")
        self.out_dir = None if self.out_dir is None else str(self.out_dir)
        self.data_dir = None if self.data_dir is None else str(self.data_dir)

    @property
    def run_dir(self) -> Path:
        """Where ckpt.pt, metrics.jsonl, config.json and loss.png go."""
        return Path(self.out_dir or f"runs/{self.objective}-{self.preset}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"unknown TrainConfig field(s) {', '.join(unknown)}; "
                "was this config written by another minigpt version?"
            )
        return cls(**d)


# ----------------------------------------------------------------------------- recipes

# A recipe is a preset's training settings: `--preset NAME` fills them in for every flag not
# given (`with_recipe`). "homework" is the course's run (lecture "ChatGPT from scratch": 35M
# parameters, 105M tokens, ~100M tokens an hour on the lecturer's desktop GPU): the `homework`
# preset with GPT-2's 50,257-token vocabulary (35,269,632 parameters) on WikiText-103, about
# one pass over its training text. Sized for a 24 GB card: 32 windows of 512 tokens (16,384
# tokens a step, 6,409 steps; `minigpt.memory.setting_bytes` estimates 8.3 GiB at bf16, so a
# 16 GB card fits too). lr 6e-4 decaying to 6e-5 and betas (0.9, 0.95) are GPT-3's for its
# smallest models (Brown et al. 2020, table 2.1 and appendix B); no dropout, since one pass
# over the text never sees a window twice. 40 evaluation batches (655k tokens) cover all of
# WikiText-103's validation split; samples continue the course's prompt. Not yet measured on
# a GPU: the README says so.
#
# "tiny" is the main job, `minigpt train` with no flags: minutes of CPU training on the embedded
# corpus, its step count sized to ~150 s on the machine at hand (`target_seconds`). It takes the
# two choices that won the one-minute runs of benchmarks/quality_per_second.py (65 s, Intel
# Xeon, each against the one before): rotary positions (1.705 -> 1.682 bits per byte) and relu
# (-> 1.645-1.653), and keeps the preset's dropout 0.1, because the sized run repeats the small
# corpus many times (without it, 4 x 256 in bf16: 1,828 steps and 1.812 at the end, best 1.719
# at step 750: it memorised the text). It trains the preset's 4 layers at half its width, 128
# (d_ff 512, 0.9M parameters), at lr 2e-3: ~150 s buys a CPU too few steps for 256. Measured as
# `minigpt train` on an idle 2-core AMD EPYC (Zen 4), final validation bits per byte:
#
#   width, lr        fp32 (as on a CPU without native bf16)   bf16 (the probe's choice there)
#   256, 1e-3        525 steps, 1.775                         1,053 steps, 1.655
#   192, 1e-3        1,003 steps, 1.690
#   192, 2e-3        835 steps, 1.664                         1,774 steps, 1.655 (3 min 38 s)
#   128, 2e-3        1,304 steps, 1.665                       2,000 steps (the cap), 1.647
#
# and 128 at 2,000 steps in fp32 (a faster CPU's run): 1.630.
RECIPES: dict[str, dict[str, Any]] = {
    "tiny": dict(positional="rope", activation="relu", d_model=128, d_ff=512, lr=2e-3),
    "homework": dict(
        data="wikitext103", tokenizer="gpt2", block_size=512, batch_size=32,
        max_tokens=105_000_000, lr=6e-4, min_lr=6e-5, warmup_steps=500, betas=(0.9, 0.95),
        dropout=0.0, eval_interval=500, eval_batches=40, checkpoint_interval=500,
        log_interval=50, sample_every=1000, sample_prompt="Thomas Jefferson was",
        sample_tokens=100,
    ),
}  # fmt: skip
# Settings that choose how long a run is: one given replaces all of the recipe's.
_BUDGET_FIELDS = ("max_steps", "max_tokens", "time_limit_s", "target_seconds")
# The widths a recipe may set: one given replaces both, so `--d-model 256` is the preset's
# 256-wide block with its own d_ff (1024), not 256 wide over the recipe's 512 hidden units.
_WIDTH_FIELDS = ("d_model", "d_ff")


def with_recipe(**given: Any) -> TrainConfig:
    """The TrainConfig of the settings `given` (e.g. the CLI's flags), where each setting not
    given comes from the preset's recipe (`RECIPES`), and only then from TrainConfig's default.

    A budget given (steps, tokens, seconds) replaces the recipe's, so `--preset homework
    --max-steps 2` is a two-step run of the recipe, not an error about two budgets; likewise
    a width given (d_model or d_ff) replaces both of the recipe's widths.
    """
    recipe = dict(RECIPES.get(given.get("preset", TrainConfig.preset), {}))
    for group in (_BUDGET_FIELDS, _WIDTH_FIELDS):
        if any(given.get(name) is not None for name in group):
            for name in group:
                recipe.pop(name, None)
    return TrainConfig(**{**recipe, **given})


def model_config_for(cfg: TrainConfig, tokenizer: Any) -> ModelConfig:
    """The preset, with the config's overrides and the tokenizer's vocabulary and special ids."""
    overrides = {
        k: getattr(cfg, k)
        for k in ("d_model", "n_layers", "n_heads", "d_ff", "dropout", "positional", "activation")
        if getattr(cfg, k) is not None
    }
    if cfg.block_size is not None:
        overrides["max_len"] = cfg.block_size
    overrides.update(OBJECTIVES[cfg.objective].model_ids(tokenizer))
    return ModelConfig.from_preset(cfg.preset, vocab_size=tokenizer.vocab_size, **overrides)


def build_model_for(cfg: TrainConfig, tokenizer: Any) -> nn.Module:
    """A freshly initialised model of the objective's family.

    Initialisation draws from PyTorch's global generator and this function does not seed it:
    the caller seeds first (`seed_everything(cfg.seed)`, as `run_training` does) when the
    weights must repeat.
    """
    return build_model(OBJECTIVES[cfg.objective].model_class, model_config_for(cfg, tokenizer))
