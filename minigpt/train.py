"""One trainer for every pretraining objective (GPT's clm, BERT's mlm, T5's span corruption).

Pretraining is the same loop whatever the family: draw windows of token ids, turn
them into (inputs, targets) with the objective's batch function, run the model,
which returns `(logits, loss)`, and take an optimizer step. What differs per
objective is data, not code, so `OBJECTIVES` maps each name to a model class, the
extra tokens a window needs (next-token prediction shifts by one), and a factory
that builds the batch function from the tokenizer's special ids. Lesson 07 runs it.

The loop, and why each piece is there:

- **AdamW, decay on matrices only.** Weight decay shrinks weights toward zero; it
  regularises the >=2-D weight matrices (and the tied embedding) but would only
  fight LayerNorm gains and biases, so 1-D parameters get none.
- **Warm-up then cosine.** Adam's moment estimates are noise for the first steps,
  so the learning rate climbs linearly for `warmup_steps`, then follows half a
  cosine down to `min_lr` (default lr/10, as Chinchilla did) at the end of the
  budget. With `time_limit_s`, the decay follows whichever budget runs out first.
- **Gradient accumulation.** `grad_accum` micro-batches of `batch_size` windows
  are summed before one step: the same update as one big batch, in less memory.
- **Clipping** the global gradient norm (default 1.0) tames rare loss spikes.
- **Mixed precision.** Under bf16 autocast matmuls run in bfloat16 while weights,
  optimizer state and the loss stay float32; bf16 has float32's exponent range,
  so no loss scaling is needed. fp16 (CUDA only) has a narrow range and needs a
  `GradScaler`. "auto" picks bf16 on CUDA cards that support it, else fp16; fp32
  on MPS; on a CPU, bf16 only if the CPU has native bf16 and a short probe on the
  actual model measures it faster (see `resolve_precision`).
- **Evaluation** on fixed, non-overlapping validation windows (`iter_windows`),
  so two evaluations of one model give one number: loss (nats/token), perplexity
  = e^loss and bits per byte = loss * val_tokens / (val_bytes * ln 2), which,
  unlike loss, compares models with different tokenizers.
- **Weight average (optional).** With `ema_decay` > 0 an exponential moving average
  of the weights is kept (`optim.WeightAverage`); evaluations, samples and the saved
  model use it, while training continues from the raw weights (also saved).
- **Exact resume.** The step, optimizer, every RNG and the batch generator (the
  data position) go into the checkpoint (`minigpt.checkpoint`); the learning rate
  is recomputed from the step. N steps straight equal N/2 + resume + N/2.
- **Divergence.** A non-finite loss raises `TrainingDivergedError` before the
  next checkpoint is written, so ckpt.pt stays the last good state.

Where each piece lives: `train_config` (TrainConfig, OBJECTIVES), `optim` (AdamW groups,
schedule), `precision`, `evaluation` (loss, perplexity, bits per byte), `trainer` (the loop),
`checkpoint` (atomic save, exact resume); this module joins them into the two entry points.

API (the CLI's `minigpt train` / `minigpt eval` are thin wrappers):

- `TrainConfig(...)`: every knob, validated; `to_dict()` / `from_dict()`.
- `run_training(cfg) -> dict`: prepare data, build or resume the model, train.
- `Trainer(model, cfg, data, tokenizer)`: `.train() -> dict`, `.evaluate() -> dict`,
  `.save_checkpoint()`, `.load_state(ckpt)`.
- `evaluate_checkpoint(path, data_dir=None, eval_batches=None, device="auto") -> dict`.
- Results carry val_loss, val_ppl, val_bpb, steps, tokens, seconds, tokens_per_s,
  checkpoint, precision, device, stopped_by.

Files in `out_dir`: ckpt.pt (latest), metrics.jsonl (one JSON object per line:
kind "train" / "eval" / "sample"), config.json (the resolved config), loss.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from minigpt.checkpoint import load_checkpoint
from minigpt.data import load_prepared, prepare
from minigpt.evaluation import evaluate_loss, val_metrics
from minigpt.optim import seed_everything
from minigpt.precision import resolve_precision
from minigpt.train_config import (
    OBJECTIVES,
    TrainConfig,  # noqa: F401  (public name: minigpt.train.TrainConfig)
    build_model_for,
)
from minigpt.trainer import Trainer, TrainingDivergedError  # noqa: F401  (public names)

# ----------------------------------------------------------------------------- entry points


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return key
    return None


def run_training(cfg: TrainConfig) -> dict[str, Any]:
    """Prepare data (a no-op when already prepared), build or resume the model, train.

    Resuming (cfg.resume) continues run_dir/ckpt.pt exactly; the model settings must
    match the checkpoint's, while budgets and learning rates may change (e.g. to extend
    a run). Returns Trainer.train()'s result dict.
    """
    from minigpt.checkpoint import CheckpointError

    ckpt = None
    if cfg.resume:
        path = cfg.run_dir / "ckpt.pt"
        if not path.exists():
            raise CheckpointError(
                f"resume asked for, but there is no checkpoint at {path}; "
                "drop --resume to start a fresh run"
            )
        ckpt = load_checkpoint(path)
    data = prepare(
        cfg.data,
        tokenizer=cfg.tokenizer,
        vocab_size=cfg.vocab_size,
        out_dir=cfg.data_dir,
        progress=cfg.progress,
    )
    seed_everything(cfg.seed)
    model = build_model_for(cfg, data.tokenizer)
    if ckpt is not None:
        if ckpt["model_class"] != type(model).__name__:
            raise CheckpointError(
                f"{cfg.run_dir / 'ckpt.pt'} holds a {ckpt['model_class']}, but "
                f"objective {cfg.objective!r} trains a {type(model).__name__}"
            )
        wanted = model.config.to_dict()
        key = _first_difference(ckpt["model_config"], wanted)
        if key is not None:
            raise CheckpointError(
                f"the checkpoint has {key}={ckpt['model_config'].get(key)!r} but "
                f"this run asks for {wanted.get(key)!r}; resume with the "
                "checkpoint's model settings"
            )
        if ckpt["tokenizer"] != data.tokenizer.to_dict():
            raise CheckpointError(
                "the checkpoint's tokenizer differs from the prepared data's; "
                "resume with the same --data/--tokenizer/--vocab-size"
            )
    trainer = Trainer(model, cfg, data, data.tokenizer)
    if ckpt is not None:
        trainer.load_state(ckpt)
    return trainer.train()


def evaluate_checkpoint(
    path: str | Path,
    data_dir: str | Path | None = None,
    eval_batches: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = "auto",
    precision: str | None = None,
) -> dict[str, Any]:
    """Val loss, perplexity and bits per byte of a saved model (what `minigpt eval` prints).

    By default it uses the run's own prepared data, windows, batch size, eval_batches and
    precision, so it reproduces the number the run reported.
    """
    from minigpt.checkpoint import CheckpointError, load_model_for_inference

    model, tokenizer, meta = load_model_for_inference(path, device)
    tc, extra = meta["train_config"], meta["extra"]
    folder = data_dir or extra.get("data_dir") or tc.get("data_dir")
    if folder is None or not (Path(folder) / "meta.json").exists():
        raise FileNotFoundError(
            f"prepared data {folder} of {path} is not there; pass --data-dir "
            "(or prepare the same data again with `minigpt prepare`)"
        )
    data = load_prepared(folder)
    if data.tokenizer.to_dict() != tokenizer.to_dict():
        raise CheckpointError(
            f"{folder} was tokenized differently from {path}'s tokenizer; "
            "evaluate on data prepared with the run's tokenizer"
        )
    names = {o.model_class: o.name for o in OBJECTIVES.values()}
    objective = OBJECTIVES[meta["objective"] or names[meta["model_class"]]]
    dev = next(model.parameters()).device
    precision = precision or extra.get("precision") or "fp32"
    try:
        precision = resolve_precision(precision if precision != "auto" else "fp32", dev)
    except ValueError:
        precision = "fp32"  # e.g. an fp16 GPU run evaluated on a CPU
    window = (extra.get("block_size") or model.config.max_len) + objective.extra_tokens
    loss, n = evaluate_loss(
        model,
        data.val,
        objective.batches(tokenizer),
        batch_size or tc.get("batch_size", 32),
        window,
        dev,
        precision,
        eval_batches or tc.get("eval_batches"),
        seed=tc.get("seed", 0),
    )
    return {
        **val_metrics(loss, data.meta, objective.name),
        "tokens_evaluated": n,
        "step": meta["step"],
        "precision": precision,
        "objective": objective.name,
    }
