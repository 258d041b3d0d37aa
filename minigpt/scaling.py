"""Scaling arithmetic: parameters and FLOPs from a config, compute budgets, compute-optimal size.

How big a model should a budget buy, and how long should it train? Three facts answer it:

- a model's size follows from its config (`count_parameters`, the one formula; the models'
  `num_parameters()` counts the real tensors and the tests check the two agree);
- training costs about 6 N D floating-point operations for N parameters and D tokens: 2 N per
  token forward (a multiply and an add per weight), twice that backward (Kaplan et al. 2020,
  table 1); `flops_per_token` adds the attention maps' share. Budgets are quoted in
  petaflop/s-days: 10^15 operations per second for a day, 8.64e19 operations;
- for a fixed budget the loss is lowest when parameters and tokens grow together, about 20
  tokens per parameter (Hoffmann et al. 2022, "Chinchilla": 70B parameters, 1.4T tokens);
  `chinchilla_optimal` splits a budget that way, and `COURSE_MODELS` holds the course's table
  of models that were (Chinchilla, LLaMA-65B) and were not (GPT-3, OPT, BLOOM) trained so.

`fit_power_law` and `isoflop_optimum` are the two fits lesson 11 uses on its own sweep: a
straight line in log-log space, and the minimum of a parabola in log N along one budget
(Chinchilla's "approach 2"). Lesson 11 teaches it; `minigpt info` prints the counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from minigpt.config import ModelConfig

PFLOPS_DAY = 1e15 * 24 * 3600  # one petaflop/s-day, in floating-point operations
TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal tokens per parameter


# ----------------------------------------------------------------------------- counting


def _layer_norm(d: int, bias: bool) -> int:
    return d * (2 if bias else 1)


def _attention(d: int, bias: bool) -> int:
    return 4 * d * d + (4 * d if bias else 0)  # q, k, v and output projections


def _feedforward(d: int, f: int, bias: bool) -> int:
    return 2 * d * f + ((f + d) if bias else 0)


def count_parameters(
    config: ModelConfig, model_class: str = "DecoderLM", exclude_embeddings: bool = False
) -> int:
    """Parameters of a minigpt model (`DecoderLM`, `EncoderLM` or `Seq2SeqLM`) from its config.

    A tied head is the token table and counts once. `exclude_embeddings=True` leaves out the
    lookup tables (tokens, learned positions) and an untied output matrix: Kaplan et al. 2020's
    "non-embedding" N, the count their scaling laws use. Sinusoidal and rotary positions are
    computed, not learned: no parameters.
    """
    c = config
    d, f, bias = c.d_model, c.d_ff, c.bias
    block = _attention(d, bias) + _feedforward(d, f, bias) + 2 * _layer_norm(d, bias)
    cross_block = block + _attention(d, bias) + _layer_norm(d, bias)  # T5's decoder layer
    final = _layer_norm(d, bias) if c.norm_first else 0
    embeddings = c.vocab_size * d + (c.max_len * d if c.positional == "learned" else 0)
    head = 0 if c.tie_weights else c.vocab_size * d
    if model_class == "DecoderLM":
        body = c.decoder_layers * block + final
    elif model_class == "EncoderLM":
        # BERT's head: dense d x d, gelu, LayerNorm, then the decoder with its own bias
        body = c.encoder_layers * block + final + d * d + (d if bias else 0)
        body += _layer_norm(d, bias) + c.vocab_size
    elif model_class == "Seq2SeqLM":
        body = c.encoder_layers * block + c.decoder_layers * cross_block + 2 * final
    else:
        raise ValueError(
            f"unknown model class {model_class!r}; expected DecoderLM, EncoderLM or Seq2SeqLM"
        )
    return body if exclude_embeddings else body + embeddings + head


def attention_maps(config: ModelConfig, model_class: str = "DecoderLM") -> int:
    """How many T x T attention maps one token goes through (Seq2SeqLM: the encoder's, and the
    decoder's self- and cross-attention)."""
    if model_class == "Seq2SeqLM":
        return config.encoder_layers + 2 * config.decoder_layers
    return config.encoder_layers if model_class == "EncoderLM" else config.decoder_layers


def flops_per_token(
    config: ModelConfig, model_class: str = "DecoderLM", seq_len: int | None = None
) -> int:
    """Training FLOPs (forward + backward) per token at context `seq_len` (default max_len).

    6 * N + 6 * L_attn * T * d_model, Kaplan et al. 2020 table 1 (forward 2N + 2 n_layer
    n_ctx d_attn; backward twice the forward); Chinchilla (Hoffmann et al. 2022, app. F)
    also counts the output projection. Here N = non-embedding parameters + the vocab x
    d_model output projection (a real matmul per token, tied or not; input lookups cost no
    FLOPs); L_attn = `attention_maps`, counted unmasked although a causal model computes
    about half. PaLM (Chowdhery et al. 2022, app. B) and nanoGPT's MFU use 12 * L * T * d
    instead (both QK^T and the weighted sum of V); the extra term is T / (12 d_model) of 6N.
    """
    c = config
    t = c.max_len if seq_len is None else seq_len
    n_matmul = count_parameters(c, model_class, exclude_embeddings=True) + c.vocab_size * c.d_model
    return 6 * n_matmul + 6 * attention_maps(c, model_class) * t * c.d_model


# ----------------------------------------------------------------------------- budgets


def training_flops(n_params: float, n_tokens: float) -> float:
    """C ~ 6 N D: the FLOPs of training N parameters on D tokens (Kaplan et al. 2020)."""
    return 6.0 * n_params * n_tokens


def to_pflops_days(flops: float) -> float:
    """FLOPs -> petaflop/s-days (GPT-3 175B: 3.14e23 FLOPs = ~3,640; Brown et al. 2020)."""
    return flops / PFLOPS_DAY


def from_pflops_days(pflops_days: float) -> float:
    """Petaflop/s-days -> FLOPs."""
    return pflops_days * PFLOPS_DAY


def chinchilla_optimal(
    flops: float, tokens_per_param: float = TOKENS_PER_PARAM
) -> tuple[float, float]:
    """(N, D) that spend `flops` = 6 N D with D = tokens_per_param * N (Hoffmann et al. 2022).

    N = sqrt(C / (6 * 20)): ten times the compute buys ~3.2x the parameters and ~3.2x the
    tokens. Chinchilla's budget, 5.9e23 FLOPs, gives 70B parameters and 1.4T tokens.
    """
    if flops <= 0 or tokens_per_param <= 0:
        raise ValueError(f"flops={flops} and tokens_per_param={tokens_per_param} must be > 0")
    n = math.sqrt(flops / (6.0 * tokens_per_param))
    return n, tokens_per_param * n


class ModelFacts(NamedTuple):
    """A published model's size and training tokens (the course's Chinchilla table)."""

    name: str
    n_params: float
    tokens: float


# Hoffmann et al. 2022 table 1 and Touvron et al. 2023 (LLaMA); the course's table lists the
# compute-optimal tokens (~20x) next to these actual ones.
COURSE_MODELS: tuple[ModelFacts, ...] = (
    ModelFacts("Chinchilla", 70e9, 1.4e12),
    ModelFacts("LLaMA-65B", 65e9, 1.4e12),
    ModelFacts("GPT-3", 175e9, 300e9),
    ModelFacts("OPT-175B", 175e9, 180e9),
    ModelFacts("BLOOM", 176e9, 350e9),
)


def compute_optimal_tokens(n_params: float, tokens_per_param: float = TOKENS_PER_PARAM) -> float:
    """~20 tokens per parameter: the data a model of `n_params` should see (70B -> 1.4T)."""
    return tokens_per_param * n_params


# ----------------------------------------------------------------------------- fits


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(k, a) of y = k * x^a by least squares on log y = log k + a log x (all values > 0)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need at least two (x, y) pairs of equal length, got {len(x)}, {len(y)}")
    if min(x) <= 0 or min(y) <= 0:
        raise ValueError("a power law fits positive values only")
    lx, ly = [math.log(v) for v in x], [math.log(v) for v in y]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    if sxx == 0:
        raise ValueError("all x are equal; a power law needs at least two different x")
    a = sum((u - mx) * (v - my) for u, v in zip(lx, ly, strict=True)) / sxx
    return math.exp(my - a * mx), a


def isoflop_optimum(n_params: Sequence[float], losses: Sequence[float]) -> float:
    """The N of lowest loss along one compute budget: the vertex of the parabola
    loss = a (log N)^2 + b log N + c fitted by least squares (Hoffmann et al. 2022, approach 2).

    With a <= 0 (no minimum in the measured range: the curve still falls or only rises) the
    best measured N is returned instead, so the caller never extrapolates a parabola upwards.
    """
    if len(n_params) != len(losses) or len(n_params) < 3:
        raise ValueError("a parabola needs at least three (N, loss) points")
    center = sum(math.log(n) for n in n_params) / len(n_params)  # centred: well conditioned
    xs = [math.log(n) - center for n in n_params]
    # normal equations of the least-squares quadratic a x^2 + b x + c, by Cramer's rule (3 x 3)
    s = [sum(x**k for x in xs) for k in range(5)]
    t = [sum(y * x**k for x, y in zip(xs, losses, strict=True)) for k in (2, 1, 0)]
    m = [[s[4], s[3], s[2]], [s[3], s[2], s[1]], [s[2], s[1], s[0]]]

    def det(a: list[list[float]]) -> float:
        return (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
                - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))  # fmt: skip

    dm = det(m)
    best = n_params[min(range(len(losses)), key=losses.__getitem__)]
    if abs(dm) < 1e-12:
        return best
    coef = []
    for col in range(3):
        mc = [row[:] for row in m]
        for r in range(3):
            mc[r][col] = t[r]
        coef.append(det(mc) / dm)
    a, b, _ = coef
    if a <= 0:
        return best
    x_opt = -b / (2 * a)
    lo, hi = min(xs), max(xs)
    if not lo <= x_opt <= hi:  # the vertex lies outside the measured sizes: do not trust it
        return best
    return math.exp(x_opt + center)
