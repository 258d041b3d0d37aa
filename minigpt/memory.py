"""Memory arithmetic: how many bytes it takes to store a model, and to train it.

"CUDA out of memory" is the first wall a desktop GPU user hits, and it can be computed before
it is hit. A parameter stored in fp32 takes 4 bytes, so 1B parameters take 4 GB; in fp16 or bf16
2 bytes, in int8 1 byte. Training needs far more than the weights: a gradient per parameter,
Adam's two moment estimates, and the activations that forward keeps for backward. This file
writes each of those as a pure function (numbers in, numbers out), so a lesson can print the
course's tables from them and a test can check them against what PyTorch really allocates:

- `model_bytes` (the weights at a precision) and `training_bytes` (weights, gradients, Adam,
  activations) per parameter count;
- `activation_bytes`, counted tensor by tensor for minigpt's pre-norm GPT block from a config,
  a batch size and a sequence length: activations grow with batch x tokens (and attention maps
  with tokens squared), which no bytes-per-parameter rule can show;
- `zero_bytes_per_device`, ZeRO's sharding of the model states over N devices (Rajbhandari et
  al. 2020, Figure 1);
- the course's two rules of thumb (`course_rule_bytes`, `course_deck_training_bytes`), a table
  of common GPUs (`GPU_CARDS`) and `smallest_fitting_setting`, which `minigpt info` uses to
  answer "does it train on my GPU?";
- `measure_training_step`, which runs one real step and reports the bytes it kept and peaked
  at, so every estimate above is checked against a measurement (lesson 10, tests/test_memory.py).

Lesson 10 teaches it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

if TYPE_CHECKING:
    from minigpt.config import ModelConfig

# Bytes to store one value in each format (the course's quantization summary table).
BYTES_PER_VALUE: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
PRECISIONS = tuple(BYTES_PER_VALUE)

# The course's rule of thumb for training in fp32 (from Hugging Face's "anatomy of a model's
# memory"): bytes per parameter for each part; 4 to store + 20 extra = 24 to train.
COURSE_BYTES_PER_PARAM: dict[str, int] = {
    "weights": 4, "adam": 8, "gradients": 4, "activations": 8,
}  # fmt: skip
# The other deck's figures: 1B parameters need 4 GB to store and ~80 GB to train in fp32, 40 GB
# in 16-bit, 20 GB in 8-bit; 175B and 500B need ~14,000 and ~40,000 GB: 20x the stored weights.
COURSE_DECK_TRAINING_FACTOR = 20

GB = 1e9  # the course and the ZeRO paper count decimal gigabytes
GIB = 2**30  # GPU memory is sold in binary gigabytes

# Common cards and their memory in GiB (NVIDIA's data sheets): what a desktop user trains on
# (24 GB consumer cards) and what the course's clusters are made of (V100, A100, H100).
GPU_CARDS: dict[str, float] = {
    "T4 (16 GB)": 16,
    "V100 (32 GB)": 32,
    "RTX 3090 / 4090 (24 GB)": 24,
    "A100 40GB": 40,
    "A100 80GB": 80,
    "H100 80GB": 80,
}


def _check_precision(dtype: str) -> None:
    if dtype not in BYTES_PER_VALUE:
        raise ValueError(f"precision {dtype!r} is unknown; use one of {', '.join(PRECISIONS)}")


def model_bytes(n_params: float, dtype: str = "fp32") -> float:
    """Bytes to store `n_params` weights at `dtype` (1B in fp32 -> 4e9 bytes = 4 GB)."""
    _check_precision(dtype)
    return n_params * BYTES_PER_VALUE[dtype]


class TrainingMemory(NamedTuple):
    """Bytes of each part of training memory; `total` is their sum."""

    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        """Everything together (the peak is a little lower: see `measure_training_step`)."""
        return self.weights + self.gradients + self.optimizer + self.activations


def training_bytes(
    n_params: float, dtype: str = "fp32", activations: float = 0.0
) -> TrainingMemory:
    """Bytes to train `n_params` parameters with Adam at `dtype`, plus given activation bytes.

    fp32: weights 4, gradients 4, Adam's two moments 4 + 4 bytes per parameter (16 in all).
    fp16 / bf16 is mixed precision as the ZeRO paper counts it: 16-bit weights (2) and
    gradients (2), and K = 12 bytes of fp32 optimizer state (a master copy of the weights,
    momentum and variance) — also 16 bytes per parameter: mixed precision saves activation
    memory and time, not model-state memory. (minigpt's autocast keeps fp32 weights and casts
    16-bit copies during forward: 4 + 4 + 8 + 2.) int8 is a storage format; nobody trains in it.
    `activations` comes from `activation_bytes` (it depends on batch and sequence length).
    """
    _check_precision(dtype)
    if dtype == "int8":
        raise ValueError(
            "int8 is for storing and running a trained model (see minigpt.quantize); "
            "train in fp32, or in bf16 / fp16 mixed precision"
        )
    if dtype == "fp32":
        return TrainingMemory(4 * n_params, 4 * n_params, 8 * n_params, activations)
    return TrainingMemory(2 * n_params, 2 * n_params, 12 * n_params, activations)


def logits_bytes(
    config: ModelConfig, batch_size: int, seq_len: int | None = None, bytes_per_value: float = 4
) -> float:
    """Bytes of one (batch, tokens, vocab) tensor of logits: the biggest single activation of a
    small-vocabulary model's step, and the unit of the loss's backward temporaries."""
    return batch_size * (seq_len or config.max_len) * config.vocab_size * bytes_per_value


def peak_training_bytes(memory: TrainingMemory, logits: float = 0.0) -> float:
    """The peak of one training step, from its parts: a little below `memory.total`.

    With `zero_grad(set_to_none=True)` no gradient exists when backward starts, and every
    activation is still alive; the cross-entropy's backward then adds about three
    logits-sized temporaries (`logits` = `logits_bytes(...)`: the softmax, its gradient and
    the logits' gradient). From there gradients appear as fast as backward frees activations,
    so the peak is whichever is larger: activations + temporaries, or all the gradients.
    Measured to a few bytes for `tiny` and `small` at batch 8 and 2 (tests/test_memory.py).
    """
    return memory.weights + memory.optimizer + max(memory.activations + 3 * logits,
                                                   memory.gradients)


def zero_bytes_per_device(
    n_params: float,
    n_devices: int,
    stage: int,
    param_bytes: float = 2,
    grad_bytes: float = 2,
    optimizer_bytes: float = 12,
) -> float:
    """Bytes of model states per device under ZeRO `stage` (0 = plain data parallel, DDP).

    Stage 1 shards the optimizer state over the devices, stage 2 also the gradients, stage 3
    also the weights. Defaults are the paper's mixed-precision Adam: fp16 parameters (2 bytes)
    and gradients (2), and K = 12 bytes of optimizer state (fp32 master weights, momentum,
    variance). Its Figure 1, 7.5B parameters on 64 devices: 120, 31.4, 16.6 and 1.9 GB for
    stages 0-3 (Rajbhandari et al. 2020).
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage={stage} must be 0 (plain DDP), 1, 2 or 3")
    if n_devices < 1:
        raise ValueError(f"n_devices={n_devices} must be >= 1")
    params, grads = param_bytes * n_params, grad_bytes * n_params
    states = optimizer_bytes * n_params
    if stage >= 1:
        states /= n_devices
    if stage >= 2:
        grads /= n_devices
    if stage >= 3:
        params /= n_devices
    return params + grads + states


def course_rule_bytes(n_params: float) -> dict[str, float]:
    """The course's fp32 rule of thumb: 4 bytes to store, 4 + 20 = 24 bytes to train, per part.

    1B parameters: 4 GB of weights, 24 GB to train; 175B -> 4,200 GB, 500B -> 12,000 GB.
    """
    parts = {name: b * n_params for name, b in COURSE_BYTES_PER_PARAM.items()}
    return parts | {"total": sum(parts.values())}


def course_deck_training_bytes(n_params: float, dtype: str = "fp32") -> float:
    """The other deck's figure: training takes ~20x the stored weights (1B: 80 GB in fp32,
    40 GB in 16-bit, 20 GB in 8-bit; 175B: 14,000 GB, 500B: 40,000 GB)."""
    return COURSE_DECK_TRAINING_FACTOR * model_bytes(n_params, dtype)


# ----------------------------------------------------------------------------- activations


def activation_bytes(
    config: ModelConfig,
    batch_size: int,
    seq_len: int | None = None,
    bytes_per_value: float = 4,
    dropout: bool | None = None,
    fused_attention: bool = True,
    fused_qkv: bool = True,
    checkpointing: bool = False,
) -> float:
    """Bytes that forward keeps for backward in a `DecoderLM` (pre-norm GPT blocks), counted
    tensor by tensor from what autograd saves.

    Per block, in values, with b = batch, t = tokens, d = d_model, f = d_ff, h = heads:
    - 8 b t d: the block input and the first norm's output, q, k, v, the attention output,
      the mid-block residual and the second norm's output (layer-norm statistics: 4 b t);
    - 2 b t f (gelu: its input and output) or 1 b t f (relu: its output only);
    - attention maps: none for the fused kernel (it recomputes them; it keeps a log-sum-exp,
      b h t); 2 b h t t for the written-out softmax (minigpt's explicit path), 3 with dropout
      (probabilities, the dropout mask, the dropped probabilities);
    - dropout (p > 0): a mask the size of each dropped tensor, 2 b t d + b t f, plus one b t d
      for the embedding, and relu's dropped output b t f;
    - 3 d^2: the concatenated q/k/v weight the fused projection (minigpt.speedups.project)
      keeps, when `fused_qkv` (it fuses from 256 rows = b t up).
    Outside the blocks: the final norm's input and output (2 b t d), and the log-softmax of the
    logits (b t V, kept by the cross-entropy). Korthikanti et al. 2022 count Megatron's block
    the same way (34 b t d + 5 b h t^2 bytes in 16-bit); our count differs where our code does.
    `bytes_per_value` 4 is fp32 (exact, tested); 2 approximates 16-bit activations.
    `checkpointing`: keep only each block's input and recompute one block at a time in backward
    (Chen et al. 2016): L b t d + one block's activations.
    """
    c = config
    b, t, d, f, h = batch_size, seq_len or c.max_len, c.d_model, c.d_ff, c.n_heads
    drop = (c.dropout > 0) if dropout is None else dropout
    relu = c.activation == "relu"
    per_block = 8 * b * t * d + 4 * b * t
    per_block += (1 if relu else 2) * b * t * f
    if fused_attention and not drop:
        per_block += b * h * t
    else:
        per_block += (3 if drop else 2) * b * h * t * t
    if drop:
        per_block += 2 * b * t * d + b * t * f + (b * t * f if relu else 0)
    if fused_qkv:
        per_block += 3 * d * d
    n_layers = c.decoder_layers
    outside = 2 * b * t * d + 2 * b * t + b * t * c.vocab_size + (b * t * d if drop else 0)
    ids = 8 * b * t  # the int64 token ids the embedding keeps
    if checkpointing:
        return (n_layers * b * t * d + per_block + outside) * bytes_per_value + ids
    return (n_layers * per_block + outside) * bytes_per_value + ids


# ----------------------------------------------------------------------------- will it fit?


class Setting(NamedTuple):
    """One way to train: precision, ZeRO stage, micro-batch x accumulation, checkpointing,
    and its estimated peak bytes per device."""

    precision: str
    zero_stage: int
    micro_batch: int
    grad_accum: int
    checkpointing: bool
    bytes: float

    def describe(self) -> str:
        """One line a user can act on."""
        parts = [self.precision if self.precision == "fp32" else f"{self.precision} mixed"]
        if self.zero_stage:
            parts.append(f"ZeRO-{self.zero_stage}")
        parts.append(f"micro-batch {self.micro_batch} x {self.grad_accum} accumulation")
        if self.checkpointing:
            parts.append("activation checkpointing")
        return ", ".join(parts) + f" ({self.bytes / GIB:.1f} GiB)"


def setting_bytes(
    config: ModelConfig,
    n_params: float,
    precision: str,
    micro_batch: int,
    seq_len: int | None = None,
    zero_stage: int = 0,
    n_devices: int = 1,
    checkpointing: bool = False,
) -> float:
    """Per-device peak training bytes of one setting (`peak_training_bytes` of the sharded
    model states and the micro-batch's activations)."""
    full = training_bytes(n_params, precision)
    per_param = [part / n_params for part in full[:3]]
    # each part sharded as ZeRO's stage does it: the optimizer from stage 1, gradients from 2,
    # weights from 3 (zero_bytes_per_device with only that part's bytes per parameter)
    shares = [zero_bytes_per_device(n_params, n_devices, zero_stage, *one_hot)
              for one_hot in ((per_param[0], 0, 0), (0, per_param[1], 0), (0, 0, per_param[2]))]
    value = BYTES_PER_VALUE[precision]
    acts = activation_bytes(config, micro_batch, seq_len, value, checkpointing=checkpointing)
    sharded = TrainingMemory(shares[0], shares[1], shares[2], acts)
    return peak_training_bytes(sharded, logits_bytes(config, micro_batch, seq_len, value))


def smallest_fitting_setting(
    config: ModelConfig,
    n_params: float,
    memory_bytes: float,
    batch_size: int,
    seq_len: int | None = None,
    n_devices: int = 1,
    headroom: float = 0.9,
) -> Setting | None:
    """The first setting, from the least to the most intrusive change, that fits in
    `headroom` x `memory_bytes` (the CUDA context and the allocator's fragmentation take the
    rest); None when nothing does.

    The order tries what costs nothing first: bf16 mixed precision (faster on modern GPUs,
    half the activations; fp32 only where it alone fits); with several devices ZeRO stages
    1, 2, 3 in turn (stages 1-2 communicate as much as DDP, Rajbhandari et al. 2020; 3 half
    again more); within each, smaller micro-batches with gradient accumulation (the same
    update, more steps), then activation checkpointing (~1/3 more compute).
    """
    budget = headroom * memory_bytes
    stages = (0, 1, 2, 3) if n_devices > 1 else (0,)
    micro_batches = []
    m = batch_size
    while m >= 1:
        micro_batches.append(m)
        m //= 2
    for precision in ("bf16", "fp32"):
        for stage in stages:
            for checkpointing in (False, True):
                for micro in micro_batches:
                    need = setting_bytes(config, n_params, precision, micro, seq_len, stage,
                                         n_devices, checkpointing)  # fmt: skip
                    if need <= budget:
                        accum = math.ceil(batch_size / micro)
                        return Setting(precision, stage, micro, accum, checkpointing, need)
    return None


# ----------------------------------------------------------------------------- measurement


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of distinct storages among `tensors` (a tied or viewed tensor counts once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in an optimizer's state (Adam: the two moments and a step)."""
    return tensor_bytes(
        v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)
    )


def _cpu_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of bytes allocated above the starting point while `fn` runs, on a CPU.

    PyTorch's CPU allocator keeps no statistics, but its profiler records every allocation and
    free with its size; their running sum, in time order, is the allocated memory.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def measure_training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
) -> dict[str, int]:
    """Run training steps and measure, in bytes: the weights, gradients and optimizer state
    (summed tensor storages), the activations forward saved for backward (autograd's
    saved-tensor hooks), and the peak memory of one whole step (forward, backward, optimizer
    step) — the CUDA allocator's `max_memory_allocated` on a GPU, the profiler's running sum
    of allocations on a CPU.

    One warm-up step creates Adam's state first, so the measured step is a steady-state one.
    The peak is a little below weights + gradients + optimizer + activations: gradients appear
    while backward frees the activations, and a few logits-sized temporaries come and go.
    """
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        _, loss = model(inputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # creates the optimizer state
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in param_ptrs:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(inputs, targets)
    loss.backward()
    grads = tensor_bytes(p.grad for p in params if p.grad is not None)
    optimizer.zero_grad(set_to_none=True)
    del loss
    weights = tensor_bytes(model.parameters())
    state = optimizer_state_bytes(optimizer)
    if inputs.device.type == "cuda":
        torch.cuda.synchronize(inputs.device)
        torch.cuda.reset_peak_memory_stats(inputs.device)
        step()
        torch.cuda.synchronize(inputs.device)
        peak = torch.cuda.max_memory_allocated(inputs.device)  # everything, inputs included
    else:
        peak = weights + state + _cpu_peak_bytes(step)  # what was there + the step's peak
    return {
        "weights": weights,
        "gradients": grads,
        "optimizer": state,
        "activations": sum(saved.values()),
        "peak": peak,
    }
