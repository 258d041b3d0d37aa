"""Whole models: the three language-model families of the course, and the model registry.

- `DecoderLM` (GPT): token embedding -> causal `GPTBlock`s -> final norm -> LM head, written out
  in one screen; it predicts the next token (CLM). The pipeline-parallel loop cuts it into
  stages by its `blocks`.
- `EncoderLM` (BERT): a bidirectional `Encoder` that fills in masked tokens (MLM);
- `Seq2SeqLM` (T5/BART): an `EncoderDecoder` whose decoder writes the output while attending to
  the encoder's reading of the input (span corruption, translation).

Each is built from one `ModelConfig` (minigpt/config.py) and called as
`model(inputs, targets) -> (logits, loss)`, so one trainer drives all three; `LanguageModel`
holds what they share (the loss, parameter and FLOP counts). The stacks `Encoder`, `Decoder` and
`EncoderDecoder` are also what the parity tests compare with `nn.TransformerEncoder`,
`nn.TransformerDecoder` and `nn.Transformer`. Lesson 05 builds the blocks, lessons 06-08 train
the three families.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from minigpt import scaling, speedups
from minigpt.attention import KVCache, StaticKVCache, padded_positions_and_mask, padding_mask
from minigpt.config import ModelConfig
from minigpt.dropout import Dropout
from minigpt.embeddings import (
    LearnedPositionalEmbedding,
    RotaryPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
)
from minigpt.layers import DecoderLayer, EncoderLayer, GPTBlock, LayerCache
from minigpt.objectives import IGNORE_INDEX


@torch.no_grad()
def init_weights(module: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """GPT-2's initialisation (Radford et al. 2019, section 2.3), applied to every submodule.

    Linear and embedding weights ~ N(0, std), biases 0, LayerNorm gain 1 and shift 0. The
    projections that write into the residual stream (attention `out_proj`, FFN `fc2`) get
    std / sqrt(2 * n_layers): each layer adds two such outputs to the stream, so without the
    scaling its variance would grow with depth.
    """
    residual_std = std / math.sqrt(2 * n_layers)
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            residual = name.endswith("out_proj") or name.endswith("ffn.fc2")
            nn.init.normal_(m.weight, 0.0, residual_std if residual else std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class InputEmbedding(nn.Module):
    """Token vectors + positions (sinusoidal or learned), then dropout: ids (B, T) -> (B, T, D).

    With RoPE (`positional="rope"`) nothing is added here: positions enter inside attention
    (see `rotary_for`), and `position` is None.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.token = TokenEmbedding(c.vocab_size, c.d_model, scale=c.scale_embeddings)
        self.position: nn.Module | None = None
        if c.positional == "sinusoidal":
            self.position = SinusoidalPositionalEncoding(c.d_model, c.max_len)
        elif c.positional == "learned":
            self.position = LearnedPositionalEmbedding(c.max_len, c.d_model)
        self.dropout = Dropout(c.dropout)

    def forward(self, ids: Tensor, offset: int | Tensor = 0) -> Tensor:
        """ids (B, T) -> (B, T, d_model); `offset` = position of the first id (KV caching), or
        a (B, T) tensor of every id's position (left-padded batches)."""
        x = self.token(ids)
        if self.position is not None:
            x = self.position(x, offset)
        return self.dropout(x)


def rotary_for(config: ModelConfig) -> RotaryPositionalEmbedding | None:
    """One RoPE module for a stack's self-attention layers (they share it), or None."""
    if config.positional != "rope":
        return None
    return RotaryPositionalEmbedding(config.d_model // config.n_heads, config.max_len)


def final_norm(config: ModelConfig) -> nn.LayerNorm | None:
    # Pre-norm never normalises the residual stream itself, so the stack ends with one norm;
    # post-norm layers already end in a norm.
    if not config.norm_first:
        return None
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)


def layer_kwargs(config: ModelConfig) -> dict[str, Any]:
    """The sizes and switches every layer of a stack is built with."""
    c = config
    return dict(
        d_model=c.d_model, n_heads=c.n_heads, d_ff=c.d_ff, dropout=c.dropout,
        activation=c.activation, norm_first=c.norm_first, layer_norm_eps=c.layer_norm_eps,
        bias=c.bias,
    )  # fmt: skip


def checkpointed(block: nn.Module, on: bool) -> Callable[..., Tensor]:
    """`block`, or with `on` (and gradients being recorded) the block under activation
    checkpointing (Chen et al. 2016, "Training deep nets with sublinear memory cost").

    Forward then keeps only the block's input, and backward runs the block once more to get the
    activations its gradients need: about a third more compute, for one block's activations in
    memory instead of every block's. `use_reentrant=False` is PyTorch's recommended variant: it
    takes keyword arguments and stashes and restores the random state, so dropout draws the same
    masks again and the gradients equal those of the plain run. Switched on per model by
    `set_activation_checkpointing` (`minigpt train --activation-checkpointing`).
    """
    if not (on and torch.is_grad_enabled()):
        return block
    return partial(torch.utils.checkpoint.checkpoint, block, use_reentrant=False)


def set_activation_checkpointing(model: nn.Module, on: bool = True) -> int:
    """Turn activation checkpointing of every block on (or off) in each stack of `model`
    (DecoderLM's blocks, an Encoder's or Decoder's layers); returns the number of stacks."""
    stacks = [m for m in model.modules() if hasattr(m, "activation_checkpointing")]
    if not stacks:
        raise ValueError(
            f"{type(model).__name__} has no stack of blocks to checkpoint; "
            "use a DecoderLM, EncoderLM or Seq2SeqLM"
        )
    for stack in stacks:
        stack.activation_checkpointing = on
    return len(stacks)


def check_cache(cache: list[Any] | None, n_layers: int) -> None:
    """A KV cache holds one entry per layer; anything else is a caller's mistake."""
    if cache is not None and len(cache) != n_layers:
        raise ValueError(
            f"cache has {len(cache)} entries for {n_layers} layers; make it with model.new_cache()"
        )


def lm_head(config: ModelConfig, tied_to: nn.Parameter | None, bias: bool = False) -> nn.Linear:
    """The d_model -> vocab projection that turns hidden states into next-token scores.

    `tied_to` (the token embedding's table) makes the head *be* that matrix (Press & Wolf 2017):
    one matrix for reading and writing tokens, V * d fewer parameters, and rare tokens' output
    rows get gradient through their input use too.
    """
    head = nn.Linear(config.d_model, config.vocab_size, bias=bias)
    if tied_to is not None:
        head.weight = tied_to
    else:
        init_weights(head, 1, config.init_std)
    if bias:
        nn.init.zeros_(head.bias)
    return head


class Encoder(nn.Module):
    """Embedding + `encoder_layers` bidirectional EncoderLayers + final norm (pre-norm only).

    `embedding` may be passed in to share one table with a decoder (EncoderDecoder).
    """

    activation_checkpointing = False  # recompute each layer in backward (`checkpointed`)

    def __init__(self, config: ModelConfig, embedding: InputEmbedding | None = None) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding if embedding is not None else InputEmbedding(config)
        kw = layer_kwargs(config)
        rotary = rotary_for(config)
        self.layers = nn.ModuleList(
            EncoderLayer(**kw, rotary=rotary) for _ in range(config.encoder_layers)
        )
        self.norm = final_norm(config)
        init_weights(self, config.encoder_layers, config.init_std)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """ids (B, S) -> hidden states (B, S, d_model); `mask` e.g. a (B, 1, 1, S) keep mask."""
        return self.run_layers(self.embedding(ids), mask)

    def run_layers(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The stack without the embedding: x (B, S, d_model) -> (B, S, d_model)."""
        for layer in self.layers:
            layer = checkpointed(layer, self.activation_checkpointing)  # memory saver, when on
            x = layer(x, mask=mask)
        return x if self.norm is None else self.norm(x)


class Decoder(nn.Module):
    """Embedding + `decoder_layers` DecoderLayers (causal, attending to an encoder's memory) +
    final norm (pre-norm only). `cache` (a list from `new_cache()`) turns on incremental
    decoding. A decoder-only GPT needs none of the memory plumbing: see `DecoderLM`.
    """

    activation_checkpointing = False  # recompute each layer in backward (`checkpointed`)

    def __init__(self, config: ModelConfig, embedding: InputEmbedding | None = None) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding if embedding is not None else InputEmbedding(config)
        kw = layer_kwargs(config)
        rotary = rotary_for(config)
        self.layers = nn.ModuleList(
            DecoderLayer(**kw, rotary=rotary) for _ in range(config.decoder_layers)
        )
        self.norm = final_norm(config)
        init_weights(self, config.decoder_layers, config.init_std)

    def new_cache(self) -> list[LayerCache]:
        """One empty LayerCache per layer, for `forward(..., cache=...)`."""
        return [layer.new_cache() for layer in self.layers]

    def forward(
        self,
        ids: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
    ) -> Tensor:
        """ids (B, T), memory (B, S, d_model) -> hidden states (B, T, d_model). With `cache`,
        ids are only the new tokens: they are placed after the cached positions and attend to
        all of them."""
        offset = 0 if cache is None else cache[0].length
        return self.run_layers(self.embedding(ids, offset), memory, self_mask, memory_mask, cache)

    def run_layers(
        self,
        x: Tensor,
        memory: Tensor,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
    ) -> Tensor:
        """The stack without the embedding: x (B, T, d_model) -> (B, T, d_model)."""
        check_cache(cache, len(self.layers))
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[i]
            layer = checkpointed(layer, self.activation_checkpointing)  # memory saver, when on
            x = layer(x, memory, self_mask, memory_mask, is_causal=True, cache=layer_cache)
        return x if self.norm is None else self.norm(x)


class EncoderDecoder(nn.Module):
    """The original transformer: an Encoder and a cross-attending Decoder sharing one embedding."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, embedding=self.encoder.embedding)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src (B, S), tgt (B, T) ids -> decoder hidden states (B, T, d_model).

        `src_mask` (keep mask, e.g. (B, 1, 1, S) padding) hides source keys from the encoder's
        self-attention and from the decoder's cross-attention alike.
        """
        memory = self.encoder(src, src_mask)  # (B, S, d_model)
        return self.decoder(tgt, memory, memory_mask=src_mask)

    def run_layers(self, src_x: Tensor, tgt_x: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Both stacks on already-embedded inputs (what `nn.Transformer.forward` computes)."""
        memory = self.encoder.run_layers(src_x, src_mask)
        return self.decoder.run_layers(tgt_x, memory, memory_mask=src_mask)


class LanguageModel(nn.Module):
    """What the three families share: the loss, parameter and FLOP counts.

    A subclass sets `config` and `lm_head`, and implements `input_embedding`. The FLOP and
    parameter formulas live in `minigpt.scaling`; `num_parameters` counts the real tensors.
    """

    config: ModelConfig
    lm_head: nn.Linear

    @property
    def input_embedding(self) -> InputEmbedding:
        """The token + position embedding the model reads its ids with."""
        raise NotImplementedError

    @staticmethod
    def loss(logits: Tensor, targets: Tensor | None) -> Tensor | None:
        """Mean cross-entropy over targets != -100 (IGNORE_INDEX); None without targets."""
        if targets is None:
            return None
        return F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )

    def _padding_mask(self, ids: Tensor) -> Tensor | None:
        """(B, 1, 1, T) keep mask hiding pad_id keys, or None when the config has no pad_id."""
        return None if self.config.pad_id is None else padding_mask(ids, self.config.pad_id)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Count of distinct parameters (a tied matrix counts once).

        `exclude_embeddings=True` leaves out the lookup tables (token and learned positions)
        and an untied output matrix: Kaplan et al. 2020's "non-embedding" N, the count their
        scaling laws use.
        """
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            tables = {id(p): p for p in self.input_embedding.parameters()}
            tables[id(self.lm_head.weight)] = self.lm_head.weight
            total -= sum(p.numel() for p in tables.values())
        return total

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token at context `seq_len`: `minigpt.scaling.flops_per_token`."""
        family = next(k.__name__ for k in type(self).__mro__ if k.__name__ in MODEL_CLASSES)
        return scaling.flops_per_token(self.config, family, seq_len)


class DecoderLM(LanguageModel):
    """GPT: token embedding (+ positions), a list of causal blocks, final norm, LM head.

    `forward(idx, targets=None, cache=None) -> (logits, loss)`. Incremental decoding:
    `cache = model.new_cache()`, then `model(prompt, cache=cache)` followed by
    `model(next_token[:, None], cache=cache)` per step; each call only computes the new tokens
    and gives the logits a full forward over the whole sequence would give.
    """

    activation_checkpointing = False  # recompute each block in backward (`checkpointed`)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = self.config = config
        self.embedding = InputEmbedding(c)  # ids -> token vectors (+ positions), dropout
        rotary = rotary_for(c)  # RoPE turns q and k inside attention instead (or None)
        self.blocks = nn.ModuleList(
            GPTBlock(**layer_kwargs(c), rotary=rotary) for _ in range(c.decoder_layers)
        )
        self.norm = final_norm(c)  # pre-norm ends the stack with a LayerNorm; post-norm: None
        init_weights(self, c.decoder_layers, c.init_std)
        tied = self.embedding.token.weight if c.tie_weights else None
        self.lm_head = lm_head(c, tied_to=tied)  # with tying, the head *is* the token table

    @property
    def input_embedding(self) -> InputEmbedding:
        """The token + position embedding."""
        return self.embedding

    def new_cache(self, capacity: int | None = None) -> list[KVCache | StaticKVCache]:
        """Empty per-block key/value caches for incremental decoding: growing ones, or static
        ones preallocated for `capacity` positions (at most config.max_len)."""
        if capacity is not None and capacity > self.config.max_len:
            raise ValueError(
                f"cache capacity {capacity} > max_len={self.config.max_len}: positions past "
                "max_len have no encoding"
            )
        return [block.new_cache(capacity) for block in self.blocks]

    @classmethod
    def from_gpt2(cls, path: str | Path, n_heads: int | None = None) -> DecoderLM:
        """GPT-2 with OpenAI's published weights, read from `path` (a folder holding
        `model.safetensors` or `pytorch_model.bin`, or one of those files). See
        `minigpt/gpt2_weights.py`; sizes come from the tensors, n_heads = d_model / 64."""
        from minigpt.gpt2_weights import load_gpt2_checkpoint

        config, state = load_gpt2_checkpoint(path, n_heads=n_heads)
        model = cls(config)
        model.load_state_dict(state)
        return model

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        cache: list[KVCache | StaticKVCache] | None = None,
        key_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) -> logits (B, T, vocab), loss vs targets (B, T) or None.

        `key_mask` (B, T_cached + T), True at real tokens: rows padded (e.g. on the left, to
        batch prompts of different lengths) get per-row positions and never attend to padding.
        """
        check_cache(cache, len(self.blocks))
        offset = 0 if cache is None else cache[0].length  # position of idx's first token
        positions, mask = None, None
        if key_mask is not None:
            positions, mask = padded_positions_and_mask(key_mask, idx.size(1))
        x = self.embedding(idx, offset if positions is None else positions)  # (B, T, d_model)
        for i, block in enumerate(self.blocks):
            layer_cache = None if cache is None else cache[i]
            block = checkpointed(block, self.activation_checkpointing)  # memory saver, when on
            x = block(x, cache=layer_cache, mask=mask, positions=positions)  # sees the past
        if self.norm is not None:
            x = self.norm(x)
        logits = speedups.linear(x, self.lm_head)  # self.lm_head(x) (speedups.py): (B, T, vocab)
        return logits, self.loss(logits, targets)


class EncoderLM(LanguageModel):
    """BERT: a bidirectional Encoder and an MLM head (dense, gelu, LayerNorm, tied decoder).

    The head's extra transform follows BERT (Devlin et al. 2019): it gives the prediction its
    own non-linearity, so the encoder's last layer need not be shaped like the vocabulary.
    Keys equal to `config.pad_id` are masked out of every attention.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        c = config
        self.head_transform = nn.Sequential(
            nn.Linear(c.d_model, c.d_model, bias=c.bias),
            nn.GELU(),
            nn.LayerNorm(c.d_model, eps=c.layer_norm_eps, bias=c.bias),
        )
        init_weights(self.head_transform, 1, c.init_std)
        tied = self.encoder.embedding.token.weight if c.tie_weights else None
        self.lm_head = lm_head(c, tied_to=tied, bias=True)

    @property
    def input_embedding(self) -> InputEmbedding:
        """The encoder's token + position embedding."""
        return self.encoder.embedding

    def forward(
        self, inputs: Tensor, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """inputs (B, T) -> logits (B, T, vocab), loss vs targets (-100 = not masked) or None."""
        h = self.encoder(inputs, self._padding_mask(inputs))  # (B, T, d_model)
        logits = self.lm_head(self.head_transform(h))  # (B, T, vocab)
        return logits, self.loss(logits, targets)


class Seq2SeqLM(LanguageModel):
    """T5/BART: an EncoderDecoder with the LM head tied to the shared embedding.

    Training (teacher forcing): `forward(inputs, targets)`; the decoder reads the targets
    shifted one step right behind `config.start_id`, so position t predicts targets[t] having
    seen targets[:t]. Generation: `memory, mask = model.encode(inputs)`,
    `cache = model.new_cache()`, then `model.decode(last_tokens, memory, mask, cache)` per step
    (the encoder runs once; each layer projects the memory once, at the first step).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        for name in ("pad_id", "start_id"):
            if getattr(config, name) is None:
                raise ValueError(
                    f"Seq2SeqLM needs config.{name}; set it to a special token id "
                    "(T5 uses its pad token for both)"
                )
        self.config = config
        self.model = EncoderDecoder(config)
        tied = self.model.encoder.embedding.token.weight if config.tie_weights else None
        self.lm_head = lm_head(config, tied_to=tied)

    @property
    def input_embedding(self) -> InputEmbedding:
        """The embedding shared by encoder and decoder."""
        return self.model.encoder.embedding

    def shift_right(self, targets: Tensor) -> Tensor:
        """Decoder inputs (B, U): [start_id, targets[:-1]], with -100 replaced by pad_id."""
        start = targets.new_full((targets.size(0), 1), self.config.start_id)
        shifted = torch.cat([start, targets[:, :-1]], dim=1)
        return shifted.masked_fill(shifted == IGNORE_INDEX, self.config.pad_id)

    def new_cache(self) -> list[LayerCache]:
        """Empty per-layer caches (self-attention and the projected memory) for `decode`."""
        return self.model.decoder.new_cache()

    def encode(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """inputs (B, S) -> memory (B, S, d_model) and its (B, 1, 1, S) padding keep mask."""
        mask = padding_mask(inputs, self.config.pad_id)
        return self.model.encoder(inputs, mask), mask

    def decode(
        self,
        decoder_inputs: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
    ) -> Tensor:
        """decoder_inputs (B, U) -> logits (B, U, vocab), attending to the encoder memory."""
        h = self.model.decoder(decoder_inputs, memory, memory_mask=memory_mask, cache=cache)
        return self.lm_head(h)

    def forward(
        self, inputs: Tensor, targets: Tensor | None = None, decoder_inputs: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """inputs (B, S), targets (B, U) -> logits (B, U, vocab), loss or None.

        Pass `decoder_inputs` instead of `targets` to score given decoder inputs without a loss.
        """
        if decoder_inputs is None:
            if targets is None:
                raise ValueError("Seq2SeqLM.forward needs targets (or decoder_inputs)")
            decoder_inputs = self.shift_right(targets)
        memory, mask = self.encode(inputs)
        logits = self.decode(decoder_inputs, memory, mask)
        return logits, self.loss(logits, targets)


# The model registry: every family a checkpoint or an objective may name, by class name. One
# list, so the CLI, the objectives and the checkpoint loader cannot disagree.
MODEL_CLASSES: dict[str, type[LanguageModel]] = {
    "DecoderLM": DecoderLM,
    "EncoderLM": EncoderLM,
    "Seq2SeqLM": Seq2SeqLM,
}


def build_model(model_class: str, config: ModelConfig | Mapping[str, Any]) -> LanguageModel:
    """A freshly initialised model of the family named `model_class` (no weights loaded).

    `config` is a `ModelConfig` or its `to_dict()` (what checkpoints store).
    """
    if model_class not in MODEL_CLASSES:
        raise ValueError(
            f"unknown model class {model_class!r}; expected one of {', '.join(MODEL_CLASSES)}"
        )
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(dict(config))
    return MODEL_CLASSES[model_class](config)


def upgrade_state_dict(model_class: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Parameter names of checkpoints written before `DecoderLM` owned its parts, renamed.

    Until version 0.1's restructuring a DecoderLM kept a `decoder` stack whose GPT layers
    numbered their FFN norm `norm3`; now its embedding, `blocks` and `norm` sit at the top and a
    block's norms are `norm1`, `norm2`. The weights are the same; only the names move, so old
    checkpoints load unchanged. Other families and new checkpoints pass through as they are.
    """
    if model_class != "DecoderLM" or not any(k.startswith("decoder.") for k in state):
        return dict(state)
    renamed = {}
    for key, value in state.items():
        new = key
        if key.startswith("decoder.layers."):
            new = "blocks." + key[len("decoder.layers.") :].replace(".norm3.", ".norm2.")
        elif key.startswith("decoder."):
            new = key[len("decoder.") :]  # decoder.embedding.* -> embedding.*, decoder.norm.*
        renamed[new] = value
    return renamed
