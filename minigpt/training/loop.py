"""The training loop: `Trainer` drives any model whose forward is (inputs, targets) -> loss.

The step itself is `training.step.train_step`; the loop is the bookkeeping around it. Each
step it sets the learning rate (warm-up then cosine, `training.optim`), draws `grad_accum`
micro-batches of windows and turns them into (inputs, targets) with the objective's batch
function, calls `train_step`, and folds the new weights into the EMA when there is one. Every
`log_interval` steps it reads the loss (the loop's only host sync) and logs it; every
`eval_interval` it evaluates on fixed validation windows (`training.evaluation`); every
`checkpoint_interval` it saves everything needed to resume exactly (`training.checkpoint`)
and redraws loss.png. A non-finite loss raises `TrainingDivergedError` before the next
checkpoint is written, so ckpt.pt stays the last good state. Budgets are steps, tokens or
seconds; with a clock, the cosine follows whichever runs out first.

Distributed loops plug in without a copy of this file: only the main process writes files
or prints (`is_main_process`), `grad_sync` is handed to `train_step`, and the optimizer can
be passed in (a sharded one) or built by overriding `make_optimizer`. Lesson 07 runs it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from minigpt.data import PreparedData, sample_windows
from minigpt.device import resolve_device
from minigpt.generate import GenerationConfig, sample_text
from minigpt.models import set_activation_checkpointing
from minigpt.plots import plot_training_curves
from minigpt.training.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from minigpt.training.evaluation import evaluate_loss, val_metrics
from minigpt.training.metrics import MetricsLog
from minigpt.training.mfu import Peak, device_peak, model_flops_utilisation
from minigpt.training.optim import WeightAverage, build_optimizer, lr_at
from minigpt.training.precision import enable_tf32, resolve_precision, time_fp32_and_bf16
from minigpt.training.prefetch import to_device
from minigpt.training.settings import DEFAULT_MAX_STEPS, OBJECTIVES, SIZING_STEPS, TrainConfig
from minigpt.training.step import GradientSync, train_step


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was left in place."""


@dataclass
class _RunState:
    """What one `train()` call keeps between steps: its clock and the losses not yet read."""

    start: float  # perf_counter() when train() began
    pending: torch.Tensor  # sum of the step losses since the last log line (on the device)
    n_pending: int = 0
    paused: float = 0.0  # seconds spent evaluating, sampling and saving: not training time

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def train_seconds(self) -> float:
        return self.elapsed() - self.paused


class Trainer:
    """Trains `model` (forward(inputs, targets) -> (logits, loss)) on prepared data.

    The objective (cfg.objective) only chooses the batch function; everything else is
    shared. Call `train()`; to continue a run, `load_state(load_checkpoint(path))` first.
    For distributed training (minigpt/parallel/run.py): `is_main_process=False` on all but
    one process (they train but write and print nothing), `grad_sync` for `train_step`,
    `optimizer` to use instead of `make_optimizer()`'s AdamW, `forward_model` the wrapper the
    step calls (PyTorch's DDP must see the forward), `shard=(rank, world_size)`: every rank
    draws the same global batch of world_size * batch_size windows and trains on its own
    rows, so N ranks see exactly the windows one process with an N times larger batch would,
    and their generators stay equal (one saved state resumes them all); `mean_across` averages
    the logged loss over the ranks; `model_state` / `load_model_state` read and write the
    full weights of a model whose parameters are sharded (FSDP; a collective on every rank);
    `step_fn` replaces `train_step` (same signature), e.g. a pipeline's step (parallel/pipeline.py).
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        data: PreparedData,
        tokenizer: Any,
        *,
        is_main_process: bool = True,
        grad_sync: GradientSync | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        forward_model: nn.Module | None = None,
        shard: tuple[int, int] = (0, 1),
        mean_across: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_state: Callable[[], dict[str, torch.Tensor]] | None = None,
        load_model_state: Callable[[dict[str, torch.Tensor]], None] | None = None,
        step_fn: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        self.cfg, self.data, self.tokenizer = cfg, data, tokenizer
        self.is_main_process, self.grad_sync = is_main_process, grad_sync
        self.rank, self.world_size = shard
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"shard={shard} must be (rank, world_size) with 0 <= rank < size")
        self.mean_across = mean_across
        self.model_state = model_state or self.model_state_dict
        self.load_model_state = load_model_state or self.load_model_state_dict
        self.step_fn = step_fn or train_step
        self.objective = OBJECTIVES[cfg.objective]
        self.batch_fn = self.objective.batches(tokenizer)
        self.device = resolve_device(cfg.device)
        enable_tf32(self.device)  # CUDA: fp32 matmuls on TF32 tensor cores (a no-op elsewhere)
        if cfg.activation_checkpointing:  # recompute each block in backward: memory for time
            set_activation_checkpointing(model, True)
        if any(p.device != self.device for p in model.parameters()):
            model = model.to(self.device)  # (a sharded model is already placed: FSDP's
        self.model = model  # .to() would replace the parameters its optimizer holds)
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
        self.global_batch = cfg.batch_size * cfg.grad_accum * self.world_size  # windows/step
        self.tokens_per_step = self.global_batch * self.block_size
        if cfg.max_tokens is not None:
            self.max_steps: int | None = math.ceil(cfg.max_tokens / self.tokens_per_step)
        elif cfg.max_steps is not None or cfg.time_limit_s is None:
            self.max_steps = cfg.max_steps or DEFAULT_MAX_STEPS
        else:
            self.max_steps = None  # only the clock limits this run
        # No budget given: the step count is sized from this machine's speed (one process
        # only: a clock differs between processes, and all ranks must stop together).
        no_budget = cfg.max_steps is None and cfg.max_tokens is None and cfg.time_limit_s is None
        self.sizing = no_budget and cfg.target_seconds > 0 and cfg.parallel == "none"
        self.sized_from: dict[str, float] | None = None  # what the sizing measured
        self.min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
        self.optimizer = optimizer if optimizer is not None else self.make_optimizer()
        self.ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.generator = torch.Generator().manual_seed(cfg.seed)  # windows and masks: data order
        self.precision: str | None = None  # resolved when training starts (may probe)
        self.probe_s: tuple[float, float] | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.peak: Peak | None = None  # what MFU is measured against (set when training starts)
        if forward_model is None:
            forward_model = torch.compile(self.model) if cfg.compile else self.model
        self.train_model = forward_model  # what the step calls
        self.step, self.tokens_seen, self.lr = 0, 0, cfg.lr
        self.last_eval: dict[str, float] = {}
        self.resumed = False
        self.saved_step: int | None = None  # step of the last checkpoint this run wrote/read
        self.out_dir = cfg.run_dir
        self.ckpt_path = self.out_dir / "ckpt.pt"
        self.metrics_path = self.out_dir / "metrics.jsonl"
        self.metrics = MetricsLog(self.metrics_path, write=is_main_process)

    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's weights as a checkpoint stores them (a detached copy)."""
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_model_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW with decay on matrices only; override (or pass `optimizer=`) to change it."""
        cfg = self.cfg
        return build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas, self.device)

    # -- precision -------------------------------------------------------------------------

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

    def _probe(self) -> tuple[float, float]:
        """Time fp32 against bf16 on a batch of random ids (its own generator: the data order
        and PyTorch's global RNG are untouched)."""
        gen = torch.Generator().manual_seed(0)
        windows = torch.randint(
            0, self.tokenizer.vocab_size, (self.cfg.batch_size, self.window), generator=gen
        )
        inputs, targets = (t.to(self.device) for t in self.batch_fn(windows, gen))
        self.probe_s = time_fp32_and_bf16(self.model, inputs, targets)
        return self.probe_s

    # -- state -----------------------------------------------------------------------------

    def averaged(self) -> AbstractContextManager[None]:
        """Context in which the model holds the weights meant for use: the EMA when on."""
        return self.ema.applied() if self.ema is not None else nullcontext()

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write everything needed to resume exactly (atomic; see training.checkpoint).

        With an EMA, the checkpoint's model weights are the average (what sample and eval
        use) and `train_state` keeps the raw weights training continues from. Only the main
        process writes; the others just return the path.
        """
        path = Path(path or self.ckpt_path)
        # Every rank joins these two: sharded optimizers and models gather to rank 0 here.
        optimizer_state = self.optimizer.state_dict()
        train_state = self.model_state() if self.ema is not None else None  # the raw weights
        with self.averaged():
            model_state = self.model_state()  # the weights meant for use
        if not self.is_main_process:
            self.saved_step = self.step  # the main process wrote it
            return path
        scaler = self.scaler.state_dict() if self.scaler and self.scaler.is_enabled() else None
        extra = {
            "last_eval": dict(self.last_eval),
            "precision": self.precision,
            "data_dir": str(Path(self.data.out_dir).resolve()),
            "block_size": self.block_size,
            "max_steps": self.max_steps,  # a sized run resumes with the same schedule
        }
        if self.ema is not None:
            extra["ema_updates"] = self.ema.updates
        written = save_checkpoint(
            path, model=self.model, model_state=model_state,
            model_config=self.model.config.to_dict(), tokenizer=self.tokenizer,
            optimizer_state=optimizer_state, scaler_state=scaler, step=self.step,
            tokens_seen=self.tokens_seen, train_config=self.cfg.to_dict(),
            rng_state=capture_rng_state(self.generator), extra=extra, train_state=train_state,
        )  # fmt: skip
        self.saved_step = self.step
        return written

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint dict (as returned by `load_checkpoint`)."""
        extra = ckpt.get("extra") or {}
        train_state = ckpt.get("train_state")
        self.load_model_state(train_state if train_state is not None else ckpt["model_state"])
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
        if self.sizing and self.step >= self._sizing_step():  # sized already: keep its steps
            self.max_steps, self.sizing = int(extra.get("max_steps") or DEFAULT_MAX_STEPS), False
        self.resumed = True
        self.saved_step = self.step

    # -- one step, one evaluation, one sample ------------------------------------------------

    def _train_one_step(self, progress: float | None) -> torch.Tensor:
        """Set the learning rate, draw the micro-batches, take one step; returns the mean loss
        (a tensor on the device)."""
        cfg = self.cfg
        self.lr = lr_at(self.step, lr=cfg.lr, min_lr=self.min_lr, warmup_steps=cfg.warmup_steps,
                        max_steps=self.max_steps, progress=progress)  # fmt: skip
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        micro_batches = []
        mine = slice(self.rank * cfg.batch_size, (self.rank + 1) * cfg.batch_size)
        for _ in range(cfg.grad_accum):
            windows = sample_windows(  # the whole global micro-batch, on every rank
                self.data.train, cfg.batch_size * self.world_size, self.window, self.generator
            )
            inputs, targets = self.batch_fn(windows, self.generator)  # (world * B, T) each
            # this rank's rows; on CUDA pinned and copied asynchronously (training.prefetch)
            micro_batches.append(to_device((inputs[mine], targets[mine]), self.device))
        loss = self.step_fn(self.train_model, micro_batches, self.optimizer,
                            precision=self.precision, device=self.device, scaler=self.scaler,
                            grad_clip=cfg.grad_clip, grad_sync=self.grad_sync)  # fmt: skip
        if self.ema is not None:
            self.ema.update()
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        return loss

    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        """Validation loss, perplexity and bits per byte on the fixed validation windows."""
        precision = self._resolve_precision()
        with self.averaged():
            loss, _ = evaluate_loss(  # the global batch size: N ranks report what 1 would
                self.model, self.data.val, self.batch_fn, self.cfg.batch_size * self.world_size,
                self.window, self.device, precision, max_batches or self.cfg.eval_batches,
                seed=self.cfg.seed,
            )  # fmt: skip
        return val_metrics(loss, self.data.meta, self.objective.name)

    def sample(self) -> str:
        """A continuation of cfg.sample_prompt from the weights meant for use (seeded: the same
        text for the same weights)."""
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        self.model.eval()
        with torch.no_grad(), self.averaged():
            settings = GenerationConfig(max_new_tokens=self.cfg.sample_tokens, top_k=50)
            text = sample_text(self.model, self.tokenizer, self.cfg.sample_prompt, settings,
                               generator=gen)  # fmt: skip
        self.model.train()
        return text

    # -- files and printed lines (main process only) ------------------------------------------

    def _say(self, line: str) -> None:
        if self.cfg.progress and self.is_main_process:
            tqdm.write(line)

    def _write_config(self) -> None:
        """config.json: the settings as given, the model's, and what "auto" resolved to."""
        if not self.is_main_process:
            return
        resolved = {
            "device": str(self.device),
            "precision": self.precision,
            "precision_probe_s": self.probe_s,
            "max_steps": self.max_steps,
            "max_steps_sized_from": self.sized_from,
            "block_size": self.block_size,
            "tokens_per_step": self.tokens_per_step,
            "world_size": self.world_size,
            "global_batch": self.global_batch,
            "min_lr": self.min_lr,
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "data_dir": str(self.data.out_dir),
            "torch": torch.__version__,
        }
        config = {
            "train": self.cfg.to_dict(),
            "model": self.model.config.to_dict(),
            "model_class": self.objective.model_class,
            "resolved": resolved,
            "data": {k: v for k, v in self.data.meta.items() if k != "settings"},
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def _plot(self) -> None:
        if self.is_main_process:
            title = f"{self.cfg.objective} · {self.objective.model_class}"
            plot_training_curves(self.metrics_path, self.out_dir / "loss.png", title=title)

    # -- the loop ----------------------------------------------------------------------------

    def _sizing_step(self) -> int:
        """The step after which a run without a budget fixes its step count. It falls inside
        the warm-up, whose learning rates do not depend on the step count, so `--max-steps N`
        with the printed N repeats the sized run exactly."""
        return min(SIZING_STEPS, max(1, self.cfg.warmup_steps))

    def _size_the_run(self, run: _RunState, timed_from: tuple[int, float]) -> None:
        """Keep as many steps (at most DEFAULT_MAX_STEPS) as fit in cfg.target_seconds at the
        speed of the steps just taken (the first one or two, slower while kernels warm up, are
        left out of the measurement)."""
        first_step, first_s = timed_from
        per_step = (run.train_seconds() - first_s) / max(1, self.step - first_step)
        fit = int(self.cfg.target_seconds / max(per_step, 1e-9))
        self.max_steps = max(self.step + 1, min(DEFAULT_MAX_STEPS, fit))
        self.sizing = False
        self.sized_from = {"seconds_per_step": per_step, "target_seconds": self.cfg.target_seconds}
        self._write_config()
        self._say(
            f"sized to {self.max_steps} steps: {per_step * 1000:.0f} ms per step here, "
            f"~{self.cfg.target_seconds:.0f} s of training (at most {DEFAULT_MAX_STEPS:,} steps); "
            f"repeat exactly with --max-steps {self.max_steps}"
        )

    def _progress(self, run: _RunState) -> float | None:
        """Position in the cosine decay when a clock limits the run: the larger of the time
        and step fractions used (None: the schedule follows the steps alone)."""
        if self.cfg.time_limit_s is None:
            return None
        by_time = run.elapsed() / self.cfg.time_limit_s
        if self.max_steps is None:
            return by_time
        warm = self.cfg.warmup_steps
        return max(by_time, (self.step - warm) / max(1, self.max_steps - warm))

    def _flush_loss(self, run: _RunState, bar: Any) -> None:
        """Check and log the mean loss of the steps since the last log line. This `.item()`
        is the loop's only host sync, so GPU steps otherwise queue up back to back."""
        if run.n_pending == 0:
            return
        mean = run.pending / run.n_pending
        if self.mean_across is not None:
            mean = self.mean_across(mean)  # over all ranks: the global batch's loss
        loss = mean.item()
        run.pending.zero_()
        run.n_pending = 0
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
        tok_s = self.metrics.tokens_per_s(self.tokens_seen, run.train_seconds())
        mfu = self._mfu(tok_s)
        self.metrics.append("train", self.step, self.tokens_seen, loss=loss, lr=self.lr,
                            tokens_per_s=tok_s, mfu=mfu, elapsed_s=run.elapsed())  # fmt: skip
        shown = {} if mfu is None else {"mfu": f"{100 * mfu:.1f}%"}
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:,.0f}", **shown, refresh=False)

    def _resolve_peak(self) -> None:
        """The device's peak FLOP/s in the run's precision (minigpt.training.mfu), once."""
        if self.peak is None and hasattr(self.model, "flops_per_token"):
            self.peak = device_peak(self.device, self._resolve_precision())
            self._say(f"MFU is measured against {self.peak.describe()}")

    def _mfu(self, tokens_per_s: float) -> float | None:
        """Model-FLOPs utilisation of `tokens_per_s` (global tokens, so all ranks' peaks)."""
        if self.peak is None:
            return None
        flops = self.model.flops_per_token(self.block_size)  # 6N + attention (minigpt.scaling)
        return model_flops_utilisation(tokens_per_s, flops, self.peak.flops, self.world_size)

    def _evaluate_and_log(self) -> None:
        self.last_eval = e = self.evaluate()
        self.metrics.append("eval", self.step, self.tokens_seen, **e)
        bpb = "" if e["val_bpb"] is None else f", bpb {e['val_bpb']:.3f}"
        self._say(f"step {self.step}: val loss {e['val_loss']:.4f}{bpb}")

    def _between_steps(self, run: _RunState, bar: Any) -> None:
        """What is due after a step (log, evaluate, sample, save); its time is not training."""
        cfg = self.cfg

        def due(every: int) -> bool:
            return every > 0 and self.step % every == 0

        if due(cfg.log_interval) or due(cfg.eval_interval) or due(cfg.checkpoint_interval):
            self._flush_loss(run, bar)  # before any checkpoint: never save a diverged model
        t0 = time.perf_counter()
        if due(cfg.eval_interval):
            self._evaluate_and_log()
        if due(cfg.sample_every) and cfg.objective == "clm":
            text = self.sample()
            self.metrics.append("sample", self.step, self.tokens_seen, text=text)
            self._say(f"step {self.step} sample: {text!r}")
        if due(cfg.checkpoint_interval):
            self.save_checkpoint()
            self._plot()
        run.paused += time.perf_counter() - t0

    def train(self) -> dict[str, Any]:
        """Run until the step/token budget or the time limit; evaluate, checkpoint, return."""
        cfg = self.cfg
        self._resolve_precision()
        self._resolve_peak()  # before the clock starts: a measured peak is not training time
        self.metrics.start(self.tokens_seen, resume_step=self.step if self.resumed else None)
        self._write_config()
        run = _RunState(time.perf_counter(), torch.zeros((), device=self.device))
        start_tokens, start_step, stopped_by = self.tokens_seen, self.step, "max_steps"
        self.model.train()
        bar = tqdm(total=self.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and self.is_main_process),
                   desc=f"train {cfg.objective}")  # fmt: skip
        timed_from = (self.step, 0.0)  # (step, train seconds) the sizing measures from
        try:
            while self.max_steps is None or self.step < self.max_steps:
                if cfg.time_limit_s and run.elapsed() >= cfg.time_limit_s:
                    stopped_by = "time_limit"
                    break
                run.pending += self._train_one_step(self._progress(run))
                run.n_pending += 1
                bar.update(1)
                if self.sizing and self.step - start_step == min(2, self._sizing_step() - 1):
                    timed_from = (self.step, run.train_seconds())  # warm-up steps left out
                if self.sizing and self.step >= self._sizing_step():
                    self._size_the_run(run, timed_from)
                    bar.total = self.max_steps
                    bar.refresh()
                if self.step == self.max_steps:
                    break  # the final evaluation and checkpoint follow the loop
                self._between_steps(run, bar)
        finally:
            bar.close()
        self._flush_loss(run, bar)
        train_s = run.train_seconds()
        self._evaluate_and_log()
        ckpt = self.save_checkpoint()
        self._plot()
        return {
            **self.last_eval,
            "steps": self.step,
            "tokens": self.tokens_seen,
            "seconds": run.elapsed(),
            "train_seconds": train_s,
            "tokens_per_s": (self.tokens_seen - start_tokens) / max(train_s, 1e-9),
            "mfu": self._mfu((self.tokens_seen - start_tokens) / max(train_s, 1e-9)),
            "mfu_peak": None if self.peak is None else self.peak.describe(),
            "checkpoint": str(ckpt),
            "precision": self.precision,
            "device": str(self.device),
            "stopped_by": stopped_by,
            "rank": self.rank,
            "world_size": self.world_size,
            "global_batch": self.global_batch,
            "lr": cfg.lr,
        }
