"""Training: everything between a prepared token file and a saved, evaluated model.

Which file holds what (read them in this order; lesson 07 runs the whole path):

- `settings.py`   `TrainConfig` (every knob, validated) and the objectives as data
                  (`Objective`, `OBJECTIVES`, `model_config_for`, `build_model_for`).
- `step.py`       `train_step`: one pure optimizer step over micro-batches, and the
                  `GradientSync` protocol that data-parallel training plugs into it.
- `optim.py`      AdamW with decay on matrices only, warm-up then cosine (`lr_at`), and
                  `WeightAverage` (an EMA of the weights).
- `precision.py`  fp32 / bf16 / fp16: choosing one for a device, the autocast context, and
                  the probe that times fp32 against bf16 on the actual model.
- `evaluation.py` validation loss, perplexity and bits per byte on fixed windows.
- `checkpoint.py` the checkpoint format: atomic save, safe load, RNG capture and restore.
- `metrics.py`    `MetricsLog`: metrics.jsonl for a fresh or resumed run, tokens/s.
- `loop.py`       `Trainer`: the loop around `train_step` (logging, evaluation,
                  checkpoints, samples, plots, time budgets; only the main process writes).
- `run.py`        the entry points `run_training(cfg)` and `evaluate_checkpoint(path)`.
"""
