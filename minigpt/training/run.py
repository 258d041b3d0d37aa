"""The two entry points of training: `run_training(cfg)` and `evaluate_checkpoint(path)`.

`minigpt train` and `minigpt eval` are thin wrappers around them, and a script can do anything
the CLI does by calling them. `run_training` joins the pieces: prepare the data (a no-op when
already prepared), seed, build the objective's model, check that a checkpoint to resume fits
the run, and hand over to the `Trainer`. `evaluate_checkpoint` rebuilds a saved model and
reproduces the validation number its run reported. Results carry val_loss, val_ppl, val_bpb,
steps, tokens, seconds, tokens_per_s, checkpoint, precision, device and stopped_by. Files in a
run's folder: ckpt.pt (latest), metrics.jsonl, config.json (the resolved config), loss.png.
Lessons 06-08 drive the Trainer directly; benchmarks/quality_per_second.py calls `run_training`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from minigpt.data import PreparedData, load_prepared, prepare
from minigpt.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_for_inference,
    seed_everything,
)
from minigpt.training.evaluation import evaluate_loss, val_metrics
from minigpt.training.loop import Trainer
from minigpt.training.precision import resolve_precision
from minigpt.training.settings import OBJECTIVES, TrainConfig, build_model_for


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return key
    return None


def load_resume_checkpoint(cfg: TrainConfig) -> dict[str, Any] | None:
    """run_dir/ckpt.pt when cfg.resume asks for it (a one-line error if it is missing)."""
    if not cfg.resume:
        return None
    path = cfg.run_dir / "ckpt.pt"
    if not path.exists():
        raise CheckpointError(
            f"resume asked for, but there is no checkpoint at {path}; "
            "drop --resume to start a fresh run"
        )
    return load_checkpoint(path)


def prepare_data(cfg: TrainConfig) -> PreparedData:
    """The run's token files: prepared on first use, loaded (a no-op) afterwards."""
    return prepare(cfg.data, tokenizer=cfg.tokenizer, vocab_size=cfg.vocab_size,
                   out_dir=cfg.data_dir, progress=cfg.progress)  # fmt: skip


def build_run_model(
    cfg: TrainConfig, data: PreparedData, ckpt: dict[str, Any] | None
) -> torch.nn.Module:
    """Seed, build the objective's model, and check that a checkpoint to resume fits it: the
    same family, model settings and tokenizer (budgets and learning rates may change)."""
    seed_everything(cfg.seed)
    model = build_model_for(cfg, data.tokenizer)
    if ckpt is None:
        return model
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
    return model


def run_training(cfg: TrainConfig) -> dict[str, Any]:
    """Prepare data (a no-op when already prepared), build or resume the model, train.

    Resuming (cfg.resume) continues run_dir/ckpt.pt exactly; the model settings must
    match the checkpoint's, while budgets and learning rates may change (e.g. to extend
    a run). Returns Trainer.train()'s result dict. Several processes (cfg.parallel):
    `minigpt.parallel.run.run_parallel_training`, which reuses the pieces above.
    """
    if cfg.parallel != "none":
        raise ValueError(
            f"parallel={cfg.parallel!r} runs one process per device: start it with "
            "`torchrun --nproc_per_node N -m minigpt train --parallel ...`"
        )
    ckpt = load_resume_checkpoint(cfg)
    data = prepare_data(cfg)
    model = build_run_model(cfg, data, ckpt)
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
