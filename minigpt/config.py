"""The model configuration: one validated dataclass and the named presets.

Every model in minigpt is built from a `ModelConfig`, and every checkpoint stores one, so a
mistake in sizes (a width that does not split into heads, an unknown activation) is caught here,
with a message naming the value and the fix, before any weights are allocated. The presets are
the named sizes the CLI offers, from the 3-minute CPU job to GPT-2 small. Lesson 07 uses them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# The choices a config may name, listed once: the CLI, the trainer's settings and the layers
# read them from here.
# feed-forward non-linearity (minigpt/feedforward.py); "gelu_tanh" is GPT-2's approximation
ACTIVATIONS = ("relu", "gelu", "gelu_tanh")
POSITIONALS = ("sinusoidal", "learned", "rope")  # how positions enter (minigpt/embeddings.py)


@dataclass
class ModelConfig:
    """Every size and switch of a model; saved in checkpoints via `to_dict()`.

    `n_encoder_layers` / `n_decoder_layers` default to `n_layers` (they matter for Seq2SeqLM).
    `pad_id` makes encoders ignore padding keys; `start_id` is the token a Seq2SeqLM decoder
    starts from. `scale_embeddings` multiplies token vectors by sqrt(d_model), as the original
    paper does: the models draw every table from N(0, init_std = 0.02), so unscaled token
    vectors (std 0.02) would be drowned by the sinusoidal table (values in [-1, 1]); scaled, they
    have std 0.02 * sqrt(d_model), 0.32 at d_model 256. GPT-2 (learned positions, also drawn
    at 0.02) does not scale.
    """

    vocab_size: int
    max_len: int
    d_model: int
    n_heads: int
    n_layers: int
    d_ff: int
    dropout: float = 0.0
    activation: str = "gelu"
    norm_first: bool = True
    positional: str = "sinusoidal"
    tie_weights: bool = True
    bias: bool = True
    scale_embeddings: bool = True
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    n_encoder_layers: int | None = None
    n_decoder_layers: int | None = None
    pad_id: int | None = None
    start_id: int | None = None

    def __post_init__(self) -> None:
        sizes = ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_ff")
        optional_sizes = ("n_encoder_layers", "n_decoder_layers")
        for name in sizes + optional_sizes:
            value = getattr(self, name)
            if value is None and name in optional_sizes:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                f"choose d_model = n_heads * head size (e.g. {self.n_heads * 64})"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r} is unknown; use one of {ACTIVATIONS}")
        if self.positional not in POSITIONALS:
            raise ValueError(f"positional={self.positional!r} is unknown; use one of {POSITIONALS}")
        if self.positional == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"positional='rope' turns pairs of coordinates, but the head size "
                f"d_model / n_heads = {self.d_model // self.n_heads} is odd; choose an even one"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1); 0.1 is the usual choice")
        if self.layer_norm_eps <= 0 or self.init_std <= 0:
            raise ValueError(
                f"layer_norm_eps={self.layer_norm_eps} and init_std={self.init_std} must be > 0"
            )
        for name in ("pad_id", "start_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"{name}={value} is outside the vocabulary [0, {self.vocab_size}); "
                    "use a special token's id from the tokenizer"
                )

    @property
    def encoder_layers(self) -> int:
        """Depth of an encoder stack (n_encoder_layers, else n_layers)."""
        return self.n_encoder_layers or self.n_layers

    @property
    def decoder_layers(self) -> int:
        """Depth of a decoder stack (n_decoder_layers, else n_layers)."""
        return self.n_decoder_layers or self.n_layers

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (JSON-safe; stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Rebuild a config from `to_dict()` output; unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; valid: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named preset (see PRESETS), with any field overridden, e.g. vocab_size=..."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


# Named sizes. Override vocab_size to match your tokenizer. Parameter counts (tied weights):
# tiny ~3.4M (1024-token BPE; 64-token windows and dropout 0.1 because a few minutes see the
# 0.47 MB embedded corpus ~14 times, which without dropout ends in memorising: 1.69 bits per
# byte at best, 1.63 with it; the CPU main job trains it at half width, 0.9M, see
# minigpt.training.settings.RECIPES), small ~11M (nanoGPT's Shakespeare shape),
# homework ~35.3M (the course homework's 35M with GPT-2's 50257-token vocabulary),
# gpt2-small 124,439,808 (exactly GPT-2 small: learned positions, no embedding scaling).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vocab_size=1024, max_len=64, d_model=256, n_heads=4, n_layers=4, d_ff=1024, dropout=0.1,
    ),
    "small": dict(vocab_size=1024, max_len=256, d_model=384, n_heads=6, n_layers=6, d_ff=1536),
    "homework": dict(vocab_size=50257, max_len=512, d_model=384, n_heads=6, n_layers=9, d_ff=1536),
    "gpt2-small": dict(
        vocab_size=50257, max_len=1024, d_model=768, n_heads=12, n_layers=12, d_ff=3072,
        positional="learned", scale_embeddings=False,
    ),
}  # fmt: skip
