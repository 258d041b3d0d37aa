"""Checkpoints: one file that holds everything needed to continue or to use a run.

A training run is more than its weights. To continue *exactly* where it stopped
(the same losses, to the last bit, as a run that never stopped) we also need the
optimizer's moment estimates, the step (the learning rate is a pure function of
it), every random number generator that the run draws from (PyTorch's global one
for dropout and initialisation, NumPy's and Python's in case anything uses them,
and the trainer's own batch generator, which *is* the data position: windows are
drawn from it), and the training config. To *use* a run later, `minigpt sample
runs/x/ckpt.pt` also needs the model's shape and the tokenizer; both go in the
same file, so a checkpoint never depends on files lying next to it.

Two safety rules, both cheap:

- **Atomic writes.** The file is written to a temporary name in the same folder,
  flushed to disk (`fsync`), then renamed over the old one with `os.replace`,
  which POSIX and Windows perform atomically. A crash (or a full disk) half-way
  through leaves the previous checkpoint untouched instead of a truncated file.
- **Safe loads.** `torch.load(weights_only=True)` refuses to unpickle arbitrary
  objects, so a checkpoint from the internet cannot run code. Everything stored is
  therefore a tensor, a number, a string, or a list/dict/tuple of those (RNG
  states are tensors; the tokenizer is its `to_dict()`).

Old files keep working: when a model's parameters are renamed, `minigpt.models`
maps the old names to the new ones (`upgrade_state_dict`), and loading applies it.

Public API (lesson 07 uses it; `minigpt sample` / `minigpt eval` call it):

- `save_checkpoint(path, *, model, model_config, tokenizer, ...) -> Path`
- `load_checkpoint(path, map_location="cpu") -> dict` (raises `CheckpointError`)
- `load_model_for_inference(path, device="auto") -> (model, tokenizer, meta)` (also of a
  quantized checkpoint: its linears are rebuilt as `minigpt.quantize.Int8Linear`)
- `quantize_checkpoint(path, out, per_channel=True) -> Path`: the same run with int8 weights,
  for inference only (`minigpt quantize CKPT --int8`)
- `seed_everything(seed)`, `capture_rng_state(generator) -> dict`,
  `restore_rng_state(state, generator)`
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from minigpt.device import resolve_device
from minigpt.models import MODEL_CLASSES, build_model, upgrade_state_dict
from minigpt.quantize import quantize_model
from minigpt.tokenizer import tokenizer_from_dict

FORMAT = "minigpt-checkpoint"
VERSION = 1  # the fields below; parameter renames inside a model are upgraded, not versioned


# `extra["quantization"]` of a checkpoint whose linears hold int8 weights (minigpt.quantize)
QUANTIZED_PER_CHANNEL, QUANTIZED_PER_TENSOR = "int8-per-channel", "int8-per-tensor"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not one of ours (one-line message)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Snapshot every random number generator a run draws from, as tensors and numbers."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: Mapping[str, Any], generator: torch.Generator | None = None) -> None:
    """Put back the generators captured by `capture_rng_state` (the inverse operation)."""
    torch.set_rng_state(state["torch"].cpu())
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"].cpu())


def model_class_of(model: nn.Module) -> str:
    """The family a model belongs to, by name (a key of MODEL_CLASSES), even when a wrapper
    made a subclass of it on the fly (FSDP's `fully_shard` turns DecoderLM into FSDPDecoderLM)."""
    for cls in type(model).__mro__:
        if cls.__name__ in MODEL_CLASSES:
            return cls.__name__
    return type(model).__name__


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under torch.compile's wrapper, so saved keys never carry `_orig_mod.`."""
    return getattr(model, "_orig_mod", model)


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    model_config: Mapping[str, Any],
    tokenizer: Any,
    model_state: Mapping[str, torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
    scaler_state: Mapping[str, Any] | None = None,
    step: int = 0,
    tokens_seen: int = 0,
    train_config: Mapping[str, Any] | None = None,
    rng_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    train_state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write one self-contained checkpoint atomically (temp file, fsync, os.replace).

    `tokenizer` may be a tokenizer object (its `to_dict()` is stored) or that dict.
    `extra` holds small primitives such as the last evaluation's metrics.
    `model`'s weights are the ones to *use* (sample, evaluate); when they are an average of
    the training weights (`WeightAverage`), `train_state` holds the raw weights that a resumed
    run continues from. `optimizer_state` is an optimizer's `state_dict()` taken already (a
    sharded optimizer gathers it with a collective every rank must join), instead of
    `optimizer`; likewise `model_state` replaces `model.state_dict()` (FSDP's gathered full
    weights). Returns the final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = _unwrap(model)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": model_class_of(inner),
        "model_state": dict(model_state) if model_state is not None else inner.state_dict(),
        "model_config": dict(model_config),
        "tokenizer": tokenizer if isinstance(tokenizer, Mapping) else tokenizer.to_dict(),
        "optimizer": (
            dict(optimizer_state)
            if optimizer_state is not None
            else optimizer.state_dict() if optimizer is not None else None
        ),
        "scaler": dict(scaler_state) if scaler_state else None,
        "step": int(step),
        "tokens_seen": int(tokens_seen),
        "train_config": dict(train_config) if train_config is not None else None,
        "rng": dict(rng_state) if rng_state is not None else None,
        "extra": dict(extra) if extra is not None else {},
        "train_state": dict(train_state) if train_state is not None else None,
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.chmod(tmp_name, 0o644)  # mkstemp makes private files; a checkpoint is a normal one
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:  # persist the rename itself (POSIX); not possible / not needed on Windows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (`weights_only=True`), checking it is a minigpt checkpoint.

    Every failure becomes a one-line `CheckpointError` naming the file, because
    the CLI shows it to a user who may simply have passed the wrong path.
    """
    path = Path(path)
    if path.is_dir():
        hint = f"; did you mean {path / 'ckpt.pt'}?" if (path / "ckpt.pt").exists() else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train one with `minigpt train --out DIR`")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle/zip errors vary by version; all mean "not readable"
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or truncated?): {reason}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a minigpt checkpoint (no '{FORMAT}' marker); "
            "pass a ckpt.pt written by `minigpt train`"
        )
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {ckpt.get('version')!r}, this "
            f"minigpt reads version {VERSION}; retrain or upgrade minigpt"
        )
    needed = ("model_class", "model_state", "model_config", "tokenizer")
    missing = [k for k in needed if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; the file is incomplete")
    if ckpt["model_class"] not in MODEL_CLASSES:
        raise CheckpointError(
            f"{path} holds an unknown model class {ckpt['model_class']!r}; "
            f"expected one of {', '.join(MODEL_CLASSES)}"
        )
    for key in ("model_state", "train_state"):  # files written before a parameter rename
        if ckpt.get(key) is not None:
            ckpt[key] = upgrade_state_dict(ckpt["model_class"], ckpt[key])
    return ckpt


def load_model_for_inference(
    path: str | Path, device: str | torch.device | None = "auto"
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild the trained model (in eval mode, on `device`) and its tokenizer from one file.

    `meta` carries what a caller may want to print or check: model_class, objective,
    step, tokens_seen, model_config, train_config and `extra` (last metrics).
    """
    ckpt = load_checkpoint(path)
    try:
        model = build_model(ckpt["model_class"], ckpt["model_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: stored model config is unusable: {err}") from None
    quantization = (ckpt.get("extra") or {}).get("quantization")
    if quantization is not None:  # int8 weights: give the model int8 linears to load them into
        quantize_model(model, per_channel=quantization == QUANTIZED_PER_CHANNEL)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(
            f"{path}: weights do not fit the stored model config: {first}"
        ) from None
    try:
        tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: stored tokenizer is unreadable: {err}") from None
    if tokenizer.vocab_size > model.config.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model "
            f"only {model.config.vocab_size}; the checkpoint is inconsistent"
        )
    model.to(resolve_device(device)).eval()
    train_config = ckpt.get("train_config") or {}
    meta = {
        "model_class": ckpt["model_class"],
        "objective": train_config.get("objective"),
        "step": ckpt.get("step", 0),
        "tokens_seen": ckpt.get("tokens_seen", 0),
        "model_config": ckpt["model_config"],
        "train_config": train_config,
        "extra": ckpt.get("extra", {}),
    }
    return model, tokenizer, meta


def quantize_checkpoint(path: str | Path, out: str | Path, per_channel: bool = True) -> Path:
    """Write `path`'s model with int8 linears (`minigpt.quantize.quantize_model`) to `out`.

    Everything `sample` and `eval` read is kept (config, tokenizer, step, train config,
    metrics); the optimizer, RNG and raw training weights are dropped: an int8 model is for
    inference, and training continues from the float checkpoint. The scales are float32 and
    the state dict holds only tensors, so it loads with `weights_only=True` like any other.
    """
    ckpt = load_checkpoint(path)
    extra = dict(ckpt.get("extra") or {})
    if extra.get("quantization") is not None:
        raise CheckpointError(f"{path} is already quantized ({extra['quantization']})")
    model, _, _ = load_model_for_inference(path, device="cpu")
    quantize_model(model, per_channel)
    extra["quantization"] = QUANTIZED_PER_CHANNEL if per_channel else QUANTIZED_PER_TENSOR
    return save_checkpoint(
        out, model=model, model_config=ckpt["model_config"], tokenizer=ckpt["tokenizer"],
        step=ckpt.get("step", 0), tokens_seen=ckpt.get("tokens_seen", 0),
        train_config=ckpt.get("train_config"), extra=extra,
    )  # fmt: skip
