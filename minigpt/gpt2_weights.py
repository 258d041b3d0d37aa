"""OpenAI's GPT-2 weights, read from the files its model hub publishes, renamed into a DecoderLM.

GPT-2 small (124M) is the decoder-only model the course keeps naming: learned positions, pre-norm
blocks, GELU in its tanh approximation, a final LayerNorm and a head tied to the token table,
1024 positions. Its published checkpoint (`pytorch_model.bin`, or `model.safetensors`, on the
Hugging Face hub's `gpt2` page) names the parts differently from us, and stores every
projection as a "Conv1D": a (in, out) matrix used as x @ W + b, the transpose of an
`nn.Linear`'s (out, in) weight. Its attention projects q, k and v with one matrix `c_attn`
(d, 3d), in that order. The names (facts of the format, listed in `_LAYER_NAMES`):

    wte.weight (V, d)            token table          -> embedding.token.embedding.weight
    wpe.weight (n_ctx, d)        position table       -> embedding.position.embedding.weight
    h.{i}.ln_1 / ln_2            the two block norms  -> blocks.{i}.norm1 / norm2
    h.{i}.attn.c_attn (d, 3d)    q | k | v            -> blocks.{i}.self_attn.{q,k,v}_proj
    h.{i}.attn.c_proj (d, d)     attention output     -> blocks.{i}.self_attn.out_proj
    h.{i}.mlp.c_fc (d, 4d), c_proj (4d, d)            -> blocks.{i}.ffn.fc1 / fc2
    ln_f                         final norm           -> norm

Checkpoints saved from the LM-head model prefix these with `transformer.` and add
`lm_head.weight` (the tied table again); older ones keep the causal-mask buffers `attn.bias` /
`attn.masked_bias`. Both are accepted. The sizes are read off the tensors, so any GPT-2 size
(and the small random stand-in the tests build) loads; the head count is not in the shapes, and
every GPT-2 uses 64-wide heads. `safetensors` files are read here directly (an 8-byte length,
a JSON header naming each tensor's dtype, shape and byte range, then the raw bytes), so no
extra package is needed. Lesson 09 and `minigpt sample` use it through `DecoderLM.from_gpt2`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from minigpt.config import ModelConfig

FILE_NAMES = ("model.safetensors", "pytorch_model.bin")
GPT2_HEAD_SIZE = 64
_SAFETENSORS_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
    "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip
# GPT-2 name within block i -> our name within blocks.i, and whether it is a Conv1D weight.
_LAYER_NAMES = {
    "ln_1.weight": ("norm1.weight", False), "ln_1.bias": ("norm1.bias", False),
    "ln_2.weight": ("norm2.weight", False), "ln_2.bias": ("norm2.bias", False),
    "attn.c_proj.weight": ("self_attn.out_proj.weight", True),
    "attn.c_proj.bias": ("self_attn.out_proj.bias", False),
    "mlp.c_fc.weight": ("ffn.fc1.weight", True), "mlp.c_fc.bias": ("ffn.fc1.bias", False),
    "mlp.c_proj.weight": ("ffn.fc2.weight", True), "mlp.c_proj.bias": ("ffn.fc2.bias", False),
}  # fmt: skip
_IGNORED = ("attn.bias", "attn.masked_bias")  # causal-mask buffers, not weights


def find_checkpoint(path: str | Path) -> Path:
    """The weights file at `path` (the file itself, or a folder holding one of FILE_NAMES)."""
    p = Path(path)
    if p.is_file():
        return p
    for name in FILE_NAMES:
        if (p / name).is_file():
            return p / name
    raise FileNotFoundError(
        f"no GPT-2 weights at {p}: put model.safetensors or pytorch_model.bin (from the "
        f"Hugging Face hub's gpt2 page) in that folder"
    )


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """Every tensor of a .safetensors file, as CPU tensors (header-described raw bytes)."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path} is too short to be a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a safetensors file (bad header: {err})") from None
    body = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        raw = bytearray(body[start:end])  # a writable copy, so torch owns its memory
        flat = torch.frombuffer(raw, dtype=_SAFETENSORS_DTYPES[info["dtype"]]) if raw else None
        shape = info["shape"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        tensors[name] = flat.reshape(shape) if flat is not None else torch.empty(shape, dtype=dtype)
    return tensors


def read_gpt2_file(path: str | Path) -> dict[str, Tensor]:
    """The raw GPT-2 state dict from `model.safetensors` or `pytorch_model.bin`."""
    file = find_checkpoint(path)
    if file.suffix == ".safetensors":
        return read_safetensors(file)
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{file} does not hold a state dict")
    return dict(state)


def gpt2_config(state: Mapping[str, Tensor], n_heads: int | None = None) -> ModelConfig:
    """A ModelConfig shaped like the GPT-2 whose (un-prefixed) state dict is `state`."""
    vocab_size, d_model = state["wte.weight"].shape
    max_len = state["wpe.weight"].size(0)
    n_layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("h."))
    d_ff = state["h.0.mlp.c_fc.weight"].size(1)
    return ModelConfig(
        vocab_size=vocab_size, max_len=max_len, d_model=d_model,
        n_heads=n_heads or max(1, d_model // GPT2_HEAD_SIZE), n_layers=n_layers, d_ff=d_ff,
        dropout=0.0, activation="gelu_tanh", norm_first=True, positional="learned",
        tie_weights=True, bias=True, scale_embeddings=False, layer_norm_eps=1e-5,
    )  # fmt: skip


def convert_gpt2_state_dict(
    state: Mapping[str, Tensor], n_heads: int | None = None
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """GPT-2's names and Conv1D layout -> (config, a `DecoderLM` state dict)."""
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    for required in ("wte.weight", "wpe.weight", "ln_f.weight", "h.0.attn.c_attn.weight"):
        if required not in state:
            raise ValueError(f"not a GPT-2 checkpoint: tensor {required!r} is missing")
    config = gpt2_config(state, n_heads)
    out = {
        "embedding.token.embedding.weight": state["wte.weight"],
        "embedding.position.embedding.weight": state["wpe.weight"],
        "norm.weight": state["ln_f.weight"],
        "norm.bias": state["ln_f.bias"],
        "lm_head.weight": state["wte.weight"],  # tied: the head is the token table
    }
    for key, value in state.items():
        if not key.startswith("h."):
            continue
        _, i, rest = key.split(".", 2)
        if rest in _IGNORED:
            continue
        block = f"blocks.{i}."
        if rest in ("attn.c_attn.weight", "attn.c_attn.bias"):
            kind = rest.rsplit(".", 1)[1]
            w = value.t() if kind == "weight" else value  # Conv1D (d, 3d) -> 3 x (d, d)
            for name, part in zip(("q", "k", "v"), w.chunk(3, dim=0), strict=True):
                out[f"{block}self_attn.{name}_proj.{kind}"] = part.contiguous()
        elif rest in _LAYER_NAMES:
            ours, conv1d = _LAYER_NAMES[rest]
            out[block + ours] = value.t().contiguous() if conv1d else value
        else:
            raise ValueError(f"unexpected tensor {key!r} in a GPT-2 checkpoint")
    return config, {k: v.float() for k, v in out.items()}


def load_gpt2_checkpoint(
    path: str | Path, n_heads: int | None = None
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Read and convert GPT-2's published weights at `path` (see `find_checkpoint`)."""
    return convert_gpt2_state_dict(read_gpt2_file(path), n_heads)
