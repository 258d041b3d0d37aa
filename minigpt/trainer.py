"""The training loop itself: `Trainer` drives any model whose forward is (inputs, targets).

Each step draws windows, turns them into (inputs, targets) with the objective's batch
function, accumulates gradients over `grad_accum` micro-batches (the same update as one big
batch, in less memory), clips the global norm (tames rare loss spikes) and steps AdamW.
Evaluation uses fixed, non-overlapping validation windows, so two evaluations of one model
give one number: loss (nats/token), perplexity e^loss, and bits per byte = loss * val_tokens /
(val_bytes * ln 2), which unlike loss compares models with different tokenizers. The step,
optimizer, every RNG and the data position go into the checkpoint, so a resumed run repeats
the straight one exactly; a non-finite loss raises `TrainingDivergedError` before the next
checkpoint is written. Lesson 07 runs it.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from minigpt.checkpoint import resolve_device
from minigpt.data import PreparedData, sample_windows
from minigpt.evaluation import evaluate_loss, val_metrics
from minigpt.optim import WeightAverage, build_optimizer, lr_at
from minigpt.precision import (
    autocast_for,
    resolve_precision,
)
from minigpt.tokenizer import EOT
from minigpt.train_config import DEFAULT_MAX_STEPS, OBJECTIVES, TrainConfig


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was left in place."""



# ----------------------------------------------------------------------------- the trainer


class Trainer:
    """Trains `model` (forward(inputs, targets) -> (logits, loss)) on prepared data.

    The objective (cfg.objective) only chooses the batch function; everything else is
    shared. Call `train()`; to continue a run, `load_state(load_checkpoint(path))` first.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, data: PreparedData, tokenizer: Any):
        self.cfg, self.data, self.tokenizer = cfg, data, tokenizer
        self.objective = OBJECTIVES[cfg.objective]
        self.batch_fn = self.objective.batches(tokenizer)
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        max_len = model.config.max_len
        self.block_size = cfg.block_size or max_len
        if self.block_size > max_len:
            raise ValueError(
                f"block_size {self.block_size} exceeds the model's max_len {max_len}; "
                "lower block_size or build the model with a larger max_len"
            )
        if tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} tokens but the model's "
                f"vocab_size is {model.config.vocab_size}; build the model from it"
            )
        self.window = self.block_size + self.objective.extra_tokens  # ids per window
        for split in ("train", "val"):
            n = len(getattr(data, split))
            if n < self.window:
                raise ValueError(
                    f"the {split} split has {n} tokens, fewer than one window of "
                    f"{self.window}; use a smaller block_size or more text"
                )
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * self.block_size
        if cfg.max_tokens is not None:
            self.max_steps: int | None = math.ceil(cfg.max_tokens / self.tokens_per_step)
        elif cfg.max_steps is not None or cfg.time_limit_s is None:
            self.max_steps = cfg.max_steps or DEFAULT_MAX_STEPS
        else:
            self.max_steps = None  # only the clock limits this run
        self.min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
        self.optimizer = build_optimizer(
            self.model, cfg.lr, cfg.weight_decay, cfg.betas, self.device
        )
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.generator = torch.Generator().manual_seed(cfg.seed)  # windows and masks: data order
        self.precision: str | None = None  # resolved when training starts (may probe)
        self.probe_s: tuple[float, float] | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.train_model = torch.compile(self.model) if cfg.compile else self.model
        self.step, self.tokens_seen, self.lr = 0, 0, cfg.lr
        self.last_eval: dict[str, float] = {}
        self.resumed = False
        self.saved_step: int | None = None  # step of the last checkpoint this run wrote/read
        self.out_dir = cfg.run_dir
        self.ckpt_path = self.out_dir / "ckpt.pt"
        self.metrics_path = self.out_dir / "metrics.jsonl"

    # -- precision -----------------------------------------------------------------------

    def _resolve_precision(self, preferred: str | None = None) -> str:
        if self.precision is None:
            choice = self.cfg.precision
            if choice == "auto" and preferred in ("fp32", "bf16", "fp16"):
                try:  # a resumed run keeps the precision it started with: exactness
                    choice = resolve_precision(preferred, self.device)
                except ValueError:
                    choice = "auto"
            self.precision = resolve_precision(choice, self.device, probe=self._probe)
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        return self.precision

    def _probe(self, repeats: int = 3) -> tuple[float, float]:
        """Seconds of one forward+backward micro-batch in fp32 and under bf16 autocast.

        Alternates the two (noise on a shared machine hits both), keeps each one's fastest
        time after a warm-up round, and leaves weights, gradients and RNGs as they were.
        """
        rng = torch.get_rng_state()
        gen = torch.Generator().manual_seed(0)
        windows = torch.randint(
            0, self.tokenizer.vocab_size, (self.cfg.batch_size, self.window), generator=gen
        )
        inputs, targets = (t.to(self.device) for t in self.batch_fn(windows, gen))
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for rep in range(repeats + 1):
            for mode in times:
                start = time.perf_counter()
                with autocast_for(self.device, mode):
                    _, loss = self.model(inputs, targets)
                loss.backward()
                if rep:
                    times[mode].append(time.perf_counter() - start)
        self.model.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        self.probe_s = (min(times["fp32"]), min(times["bf16"]))
        return self.probe_s

    # -- state -----------------------------------------------------------------------------

    def state_extra(self) -> dict[str, Any]:
        return {
            "last_eval": dict(self.last_eval),
            "precision": self.precision,
            "data_dir": str(Path(self.data.out_dir).resolve()),
            "block_size": self.block_size,
        }

    def averaged(self) -> AbstractContextManager[None]:
        """Context in which the model holds the weights meant for use: the EMA when on."""
        return self.ema.applied() if self.ema is not None else nullcontext()

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write everything needed to resume exactly (atomic; see minigpt.checkpoint).

        With an EMA, the checkpoint's model weights are the average (what sample and eval
        use) and `train_state` keeps the raw weights training continues from.
        """
        from minigpt.checkpoint import capture_rng_state, save_checkpoint

        scaler = self.scaler.state_dict() if self.scaler and self.scaler.is_enabled() else None
        train_state, extra = None, self.state_extra()
        if self.ema is not None:
            train_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            extra["ema_updates"] = self.ema.updates
        with self.averaged():
            written = save_checkpoint(
                path or self.ckpt_path,
                model=self.model,
                model_config=self.model.config.to_dict(),
                tokenizer=self.tokenizer,
                optimizer=self.optimizer,
                scaler_state=scaler,
                step=self.step,
                tokens_seen=self.tokens_seen,
                train_config=self.cfg.to_dict(),
                rng_state=capture_rng_state(self.generator),
                extra=extra,
                train_state=train_state,
            )
        self.saved_step = self.step
        return written

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint dict (as returned by `load_checkpoint`)."""
        from minigpt.checkpoint import restore_rng_state

        extra = ckpt.get("extra") or {}
        train_state = ckpt.get("train_state")
        self.model.load_state_dict(train_state if train_state is not None else ckpt["model_state"])
        if self.ema is not None:  # a run that had no EMA starts one from its weights
            self.ema.load_averaged(ckpt["model_state"], extra.get("ema_updates", 0))
        if ckpt.get("optimizer") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self._resolve_precision(preferred=extra.get("precision"))
        if ckpt.get("scaler") and self.scaler is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.tokens_seen = int(ckpt["step"]), int(ckpt["tokens_seen"])
        if ckpt.get("rng") is not None:
            restore_rng_state(ckpt["rng"], self.generator)
        self.last_eval = dict(extra.get("last_eval") or {})
        self.resumed = True
        self.saved_step = self.step

    # -- one step, one evaluation -------------------------------------------------------------

    def _train_step(self, progress: float | None) -> torch.Tensor:
        """One optimizer step over grad_accum micro-batches; returns the mean loss (a tensor)."""
        cfg = self.cfg
        lr = lr_at(
            self.step,
            lr=cfg.lr,
            min_lr=self.min_lr,
            warmup_steps=cfg.warmup_steps,
            max_steps=self.max_steps,
            progress=progress,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.lr = lr
        total = torch.zeros((), device=self.device)
        for _ in range(cfg.grad_accum):
            windows = sample_windows(self.data.train, cfg.batch_size, self.window, self.generator)
            inputs, targets = self.batch_fn(windows, self.generator)  # (B, T) each
            inputs = inputs.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            with autocast_for(self.device, self.precision):
                _, loss = self.train_model(inputs, targets)
            # mean over micro-batches = the gradient of one batch grad_accum times larger
            self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.detach().float()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        return total / cfg.grad_accum

    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        """Validation loss, perplexity and bits per byte on the fixed validation windows."""
        precision = self._resolve_precision()
        with self.averaged():
            loss, _ = evaluate_loss(
                self.model,
                self.data.val,
                self.batch_fn,
                self.cfg.batch_size,
                self.window,
                self.device,
                precision,
                max_batches or self.cfg.eval_batches,
                seed=self.cfg.seed,
            )
        return val_metrics(loss, self.data.meta, self.objective.name)

    # -- the loop ----------------------------------------------------------------------------

    def _log(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "step": self.step, "tokens": self.tokens_seen, **fields}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _say(self, line: str) -> None:
        if self.cfg.progress:
            tqdm.write(line)

    def _start_files(self) -> None:
        """Fresh run: empty metrics. Resumed: drop records past the checkpoint's step, which
        the interrupted run logged but will now redo, so the file reads like one run."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        if self.resumed and self.metrics_path.exists():
            from minigpt.plots import read_metrics

            kept = [r for r in read_metrics(self.metrics_path) if r.get("step", 0) <= self.step]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        n_params = sum(p.numel() for p in self.model.parameters())
        resolved = {
            "device": str(self.device),
            "precision": self.precision,
            "precision_probe_s": self.probe_s,
            "max_steps": self.max_steps,
            "block_size": self.block_size,
            "tokens_per_step": self.tokens_per_step,
            "min_lr": self.min_lr,
            "n_params": n_params,
            "data_dir": str(self.data.out_dir),
            "torch": torch.__version__,
        }
        config = {
            "train": self.cfg.to_dict(),
            "model": self.model.config.to_dict(),
            "model_class": type(self.model).__name__,
            "resolved": resolved,
            "data": {k: v for k, v in self.data.meta.items() if k != "settings"},
        }
        (self.out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            kept = (
                f"the last good checkpoint ({self.ckpt_path}, step {self.saved_step}) is kept"
                if self.saved_step is not None
                else "no checkpoint of this run had been written yet"
            )
            raise TrainingDivergedError(
                f"loss became {loss} by step {self.step} (lr {self.lr:.3g}); {kept}; lower the lr "
                "or raise warmup_steps, then resume"
            )

    def _sample(self) -> str:
        from minigpt.generate import generate

        self.model.eval()
        prompt = self.cfg.sample_prompt
        ids = self.tokenizer.encode(prompt, allowed_special="all") if prompt else []
        ids = ids or [self.tokenizer.special_tokens.get(EOT, 0)]
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        with torch.no_grad(), self.averaged():
            out = generate(
                self.model,
                torch.tensor([ids], device=self.device),
                self.cfg.sample_tokens,
                temperature=0.8,
                top_k=50,
                generator=gen,
            )
        self.model.train()
        return self.tokenizer.decode(out[0].tolist()[len(ids) :])

    def _plot(self) -> None:
        from minigpt.plots import plot_training_curves

        plot_training_curves(
            self.metrics_path,
            self.out_dir / "loss.png",
            title=f"{self.cfg.objective} · {type(self.model).__name__}",
        )

    def _progress(self) -> float | None:
        """Position in the cosine decay when a clock limits the run: the larger of the time
        and step fractions used (None: the schedule follows the steps alone)."""
        if self.cfg.time_limit_s is None:
            return None
        by_time = (time.perf_counter() - self._clock) / self.cfg.time_limit_s
        if self.max_steps is None:
            return by_time
        warm = self.cfg.warmup_steps
        return max(by_time, (self.step - warm) / max(1, self.max_steps - warm))

    def _flush_loss(self, bar: Any) -> None:
        """Check and log the mean loss of the steps since the last log line. This `.item()`
        is the loop's only host sync, so GPU steps otherwise queue up back to back."""
        if self._n_pending == 0:
            return
        loss = self._pending.item() / self._n_pending
        self._pending.zero_()
        self._n_pending = 0
        self._check_finite(loss)
        now = time.perf_counter()
        tok_s = (self.tokens_seen - self._mark[1]) / max(now - self._mark[0], 1e-9)
        self._mark = (now, self.tokens_seen)
        self._log("train", loss=loss, lr=self.lr, tokens_per_s=tok_s, elapsed_s=now - self._clock)
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)

    def _evaluate_and_log(self) -> None:
        self.last_eval = self.evaluate()
        self._log("eval", **self.last_eval)
        e = self.last_eval
        bpb = "" if e["val_bpb"] is None else f", bpb {e['val_bpb']:.3f}"
        self._say(f"step {self.step}: val loss {e['val_loss']:.4f}{bpb}")

    def train(self) -> dict[str, Any]:
        """Run until the step/token budget or the time limit; evaluate, checkpoint, return."""
        cfg = self.cfg
        self._resolve_precision()
        self._start_files()
        self._clock = time.perf_counter()
        self._mark = (self._clock, self.tokens_seen)  # tokens/s is measured between log lines
        self._pending, self._n_pending = torch.zeros((), device=self.device), 0
        start_tokens, paused, stopped_by = self.tokens_seen, 0.0, "max_steps"
        self.model.train()
        bar = tqdm(total=self.max_steps, initial=self.step, disable=not cfg.progress,
                   unit="step", dynamic_ncols=True, desc=f"train {cfg.objective}")  # fmt: skip
        try:
            while self.max_steps is None or self.step < self.max_steps:
                if cfg.time_limit_s and time.perf_counter() - self._clock >= cfg.time_limit_s:
                    stopped_by = "time_limit"
                    break
                self._pending += self._train_step(self._progress())
                self._n_pending += 1
                bar.update(1)
                if self.step == self.max_steps:
                    break  # the final evaluation and checkpoint follow the loop

                def due(every: int) -> bool:
                    return every > 0 and self.step % every == 0

                if due(cfg.log_interval) or due(cfg.eval_interval) or due(cfg.checkpoint_interval):
                    self._flush_loss(bar)  # before any checkpoint: never save a diverged model
                t0 = time.perf_counter()
                if due(cfg.eval_interval):
                    self._evaluate_and_log()
                if due(cfg.sample_every) and cfg.objective == "clm":
                    text = self._sample()
                    self._log("sample", text=text)
                    self._say(f"step {self.step} sample: {text!r}")
                if due(cfg.checkpoint_interval):
                    self.save_checkpoint()
                    self._plot()
                pause = time.perf_counter() - t0  # evaluating and saving is not training time
                paused += pause
                self._mark = (self._mark[0] + pause, self._mark[1])
        finally:
            bar.close()
        self._flush_loss(bar)
        train_s = time.perf_counter() - self._clock - paused
        self._evaluate_and_log()
        ckpt = self.save_checkpoint()
        self._plot()
        return {
            **self.last_eval,
            "steps": self.step,
            "tokens": self.tokens_seen,
            "seconds": time.perf_counter() - self._clock,
            "train_seconds": train_s,
            "tokens_per_s": (self.tokens_seen - start_tokens) / max(train_s, 1e-9),
            "checkpoint": str(ckpt),
            "precision": self.precision,
            "device": str(self.device),
            "stopped_by": stopped_by,
        }
