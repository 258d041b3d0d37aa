"""Whole models: a validated config, the encoder/decoder stacks, and three language models.

The three families of the course share one set of parts and differ in how they use them:

- `EncoderLM` (BERT): a bidirectional encoder that fills in masked tokens (MLM);
- `DecoderLM` (GPT): a causal decoder that predicts the next token (CLM);
- `Seq2SeqLM` (T5/BART): an encoder reads the input, a decoder writes the output while
  attending to it (span corruption, translation).

Each is `embedding -> stack of layers -> (final norm) -> LM head`, built from one `ModelConfig`,
called as `model(inputs, targets) -> (logits, loss)` so one trainer drives all three. The shared
code lives in `InputEmbedding`, the stacks (`Encoder`, `Decoder`, `EncoderDecoder`) and the
`LanguageModel` base class (loss, parameter and FLOP counts, weight tying, initialisation).
Lesson 05 builds the blocks, lessons 06-08 train the three families.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minigpt.attention import padding_mask
from minigpt.config import (  # noqa: F401  (re-exported: models.ModelConfig is the public name)
    ACTIVATIONS,
    IGNORE_INDEX,
    POSITIONALS,
    PRESETS,
    ModelConfig,
)
from minigpt.dropout import Dropout
from minigpt.embeddings import (
    LearnedPositionalEmbedding,
    RotaryPositionalEmbedding,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
)
from minigpt.layers import DecoderLayer, EncoderLayer, LayerCache


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

    def forward(self, ids: Tensor, offset: int = 0) -> Tensor:
        """ids (B, T) -> (B, T, d_model); `offset` = position of the first id (KV caching)."""
        x = self.token(ids)
        if self.position is not None:
            x = self.position(x, offset)
        return self.dropout(x)


def rotary_for(config: ModelConfig) -> RotaryPositionalEmbedding | None:
    """One RoPE module for a stack's self-attention layers (they share it), or None."""
    if config.positional != "rope":
        return None
    return RotaryPositionalEmbedding(config.d_model // config.n_heads, config.max_len)


def _final_norm(config: ModelConfig) -> nn.LayerNorm | None:
    # Pre-norm never normalises the residual stream itself, so the stack ends with one norm;
    # post-norm layers already end in a norm.
    if not config.norm_first:
        return None
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)


def _layer_kwargs(config: ModelConfig) -> dict[str, Any]:
    c = config
    return dict(
        d_model=c.d_model, n_heads=c.n_heads, d_ff=c.d_ff, dropout=c.dropout,
        activation=c.activation, norm_first=c.norm_first, layer_norm_eps=c.layer_norm_eps,
        bias=c.bias,
    )  # fmt: skip


class Encoder(nn.Module):
    """Embedding + `encoder_layers` bidirectional EncoderLayers + final norm (pre-norm only).

    `embedding` may be passed in to share one table with a decoder (EncoderDecoder).
    """

    def __init__(self, config: ModelConfig, embedding: InputEmbedding | None = None) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding if embedding is not None else InputEmbedding(config)
        kw = _layer_kwargs(config)
        rotary = rotary_for(config)
        self.layers = nn.ModuleList(
            EncoderLayer(**kw, rotary=rotary) for _ in range(config.encoder_layers)
        )
        self.norm = _final_norm(config)
        init_weights(self, config.encoder_layers, config.init_std)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """ids (B, S) -> hidden states (B, S, d_model); `mask` e.g. a (B, 1, 1, S) keep mask."""
        return self.run_layers(self.embedding(ids), mask)

    def run_layers(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The stack without the embedding: x (B, S, d_model) -> (B, S, d_model)."""
        for layer in self.layers:
            x = layer(x, mask=mask)
        return x if self.norm is None else self.norm(x)


class Decoder(nn.Module):
    """Embedding + `decoder_layers` causal DecoderLayers + final norm (pre-norm only).

    With `cross_attention=False` it is a GPT stack; otherwise every layer also attends to an
    encoder `memory`. `cache` (a list from `new_cache()`) turns on incremental decoding.
    """

    def __init__(
        self,
        config: ModelConfig,
        cross_attention: bool = True,
        embedding: InputEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.embedding = embedding if embedding is not None else InputEmbedding(config)
        kw = _layer_kwargs(config)
        rotary = rotary_for(config)
        self.layers = nn.ModuleList(
            DecoderLayer(**kw, cross_attention=cross_attention, rotary=rotary)
            for _ in range(config.decoder_layers)
        )
        self.norm = _final_norm(config)
        init_weights(self, config.decoder_layers, config.init_std)

    def new_cache(self) -> list[LayerCache]:
        """One empty LayerCache per layer, for `forward(..., cache=...)`."""
        return [layer.new_cache() for layer in self.layers]

    def forward(
        self,
        ids: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
    ) -> Tensor:
        """ids (B, T) -> hidden states (B, T, d_model). With `cache`, ids are only the new
        tokens: they are placed after the cached positions and attend to all of them."""
        offset = 0 if cache is None else cache[0].length
        return self.run_layers(self.embedding(ids, offset), memory, self_mask, memory_mask, cache)

    def run_layers(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
    ) -> Tensor:
        """The stack without the embedding: x (B, T, d_model) -> (B, T, d_model)."""
        if cache is not None and len(cache) != len(self.layers):
            raise ValueError(
                f"cache has {len(cache)} entries for {len(self.layers)} layers; "
                "make it with model.new_cache()"
            )
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache[i]
            x = layer(x, memory, self_mask, memory_mask, is_causal=True, cache=layer_cache)
        return x if self.norm is None else self.norm(x)


class EncoderDecoder(nn.Module):
    """The original transformer: an Encoder and a cross-attending Decoder sharing one embedding."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, cross_attention=True, embedding=self.encoder.embedding)

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
    """What the three families share: the LM head, the loss, parameter and FLOP counts.

    A subclass builds its stacks, then calls `_make_head(embedding)`, and implements
    `input_embedding` and `_attention_layers()` (how many T x T attention maps one token goes
    through, for FLOPs).
    """

    config: ModelConfig
    lm_head: nn.Linear

    @property
    def input_embedding(self) -> InputEmbedding:
        """The token + position embedding the model reads its ids with."""
        raise NotImplementedError

    def _make_head(self, embedding: InputEmbedding, bias: bool = False) -> nn.Linear:
        """The d_model -> vocab projection; with `tie_weights` it *is* the token embedding
        table (Press & Wolf 2017): one matrix for reading and writing tokens, V * d fewer
        parameters, and rare tokens' output rows get gradient through their input use too."""
        c = self.config
        head = nn.Linear(c.d_model, c.vocab_size, bias=bias)
        if c.tie_weights:
            head.weight = embedding.token.weight
        else:
            init_weights(head, 1, c.init_std)
        if bias:
            nn.init.zeros_(head.bias)
        return head

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

    def _attention_layers(self) -> int:
        raise NotImplementedError

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token at context `seq_len` (default max_len).

        6 * N + 6 * L_attn * T * d_model, Kaplan et al. 2020 table 1 (forward 2N + 2 n_layer
        n_ctx d_attn; backward twice the forward); Chinchilla (Hoffmann et al. 2022, app. F)
        also counts the output projection. Here N = non-embedding parameters + the vocab x
        d_model output projection (a real matmul per token, tied or not; input lookups cost no
        FLOPs); L_attn = attention maps per token (Seq2SeqLM: encoder + 2 x decoder, for self-
        and cross-attention), counted unmasked although a causal model computes about half.
        PaLM (Chowdhery et al. 2022, app. B) and nanoGPT's MFU use 12 * L * T * d instead
        (both QK^T and the weighted sum of V); the extra term is T / (12 d_model) of 6N.
        """
        c = self.config
        t = c.max_len if seq_len is None else seq_len
        n_matmul = self.num_parameters(exclude_embeddings=True) + c.vocab_size * c.d_model
        return 6 * n_matmul + 6 * self._attention_layers() * t * c.d_model


class DecoderLM(LanguageModel):
    """GPT: a causal Decoder without cross-attention, final norm, LM head (tied by default).

    `forward(idx, targets=None, cache=None) -> (logits, loss)`. Incremental decoding:
    `cache = model.new_cache()`, then `model(prompt, cache=cache)` followed by
    `model(next_token[:, None], cache=cache)` per step; each call only computes the new tokens
    and gives the logits a full forward over the whole sequence would give.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = Decoder(config, cross_attention=False)
        self.lm_head = self._make_head(self.decoder.embedding)

    @property
    def input_embedding(self) -> InputEmbedding:
        """The decoder's token + position embedding."""
        return self.decoder.embedding

    def new_cache(self) -> list[LayerCache]:
        """Empty per-layer key/value caches for incremental decoding."""
        return self.decoder.new_cache()

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, cache: list[LayerCache] | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) -> logits (B, T, vocab), loss vs targets (B, T) or None."""
        h = self.decoder(idx, cache=cache)  # (B, T, d_model); fused causal attention
        logits = self.lm_head(h)  # (B, T, vocab)
        return logits, self.loss(logits, targets)

    def _attention_layers(self) -> int:
        return self.config.decoder_layers


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
        self.lm_head = self._make_head(self.encoder.embedding, bias=True)

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

    def _attention_layers(self) -> int:
        return self.config.encoder_layers


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
        self.lm_head = self._make_head(self.model.encoder.embedding)

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

    def _attention_layers(self) -> int:
        return self.config.encoder_layers + 2 * self.config.decoder_layers
