"""Sampling filters: pure functions from next-token logits to a pick.

The course's inference panel (max new tokens, top-k, top-p, temperature) as tensor maths:

- **greedy** (temperature 0): always take the most likely token ("cake" at 0.20);
  repeatable but prone to loops;
- **random-weighted sampling**: draw a token in proportion to its probability, so
  "banana" at 0.02 is sometimes chosen;
- **temperature** divides the logits before the softmax: below 1 the distribution
  sharpens, above 1 it flattens;
- **top-k** samples only among the k most likely tokens; **top-p** (nucleus) among
  the smallest set whose probabilities add up to at least p (p = 0.3 keeps cake and
  donut, 0.20 + 0.10);
- a **repetition penalty** makes tokens already in the text less likely, one remedy for
  greedy's loops.

Each is tested alone on the course's cake / donut / banana / apple example (tests/test_generate.py)
and drawn in lesson 09.
"""

from __future__ import annotations

import torch

# Two cumulative probabilities closer than this count as equal, so p = 0.3 on
# (0.2, 0.1, ...) keeps exactly two tokens although 0.2 + 0.1 != 0.3 in floating point.
_TOP_P_TOLERANCE = 1e-6


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by the temperature: softmax(z / T) is sharper for T < 1, flatter for T > 1.

    T = 1 leaves the distribution unchanged; T -> 0 tends to greedy (handled by
    `sample_next` as an exact argmax, since dividing by 0 is undefined).
    """
    if temperature <= 0:
        raise ValueError(
            f"temperature={temperature} must be > 0 here; use sample_next(temperature=0) for greedy"
        )
    ### BEGIN SOLUTION sampling
    return logits / temperature
    ### END SOLUTION


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of the last dimension, set the others to -inf.

    Exactly k survive even when values tie (indices from `topk`, not a threshold), so
    improbable tokens can never be drawn while some randomness remains.
    """
    if k < 1:
        raise ValueError(f"top_k={k} must be >= 1 (or None to disable)")
    if k >= logits.size(-1):
        return logits
    ### BEGIN SOLUTION sampling
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))
    ### END SOLUTION


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al. 2019): keep the smallest set of most likely tokens
    whose probabilities sum to at least p; everything else becomes -inf.

    A token is kept when the tokens ranked above it add up to less than p, so the most
    likely token always survives and the set adapts to how peaked the distribution is.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p={p} must be in (0, 1] (or None to disable)")
    if p >= 1.0:
        return logits
    ### BEGIN SOLUTION sampling
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of all higher-ranked tokens
    keep_sorted = mass_before < p - _TOP_P_TOLERANCE
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))
    ### END SOLUTION


def filter_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the order most libraries use, so the same
    settings mean the same distribution here as in the course's playground."""
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row from logits (B, V) -> (B,) (or (V,) -> scalar tensor).

    temperature == 0 means greedy (argmax); otherwise the filtered distribution is
    sampled, reproducibly when a seeded `generator` is given.
    """
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, temperature, top_k, top_p).float().softmax(dim=-1)
    flat = probs.reshape(-1, probs.size(-1))  # (B, V)
    if generator is not None and generator.device != flat.device:
        flat = flat.to(generator.device)  # draw where the generator lives: same seed, same text
    picks = torch.multinomial(flat, 1, generator=generator).to(logits.device)  # (B, 1)
    return picks.reshape(probs.shape[:-1])


def apply_repetition_penalty(
    logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Make every token already in `previous_ids` (B, T) less likely in logits (B, V).

    CTRL's rule (Keskar et al. 2019, section 4.1): a seen token's logit is divided by the
    penalty when positive and multiplied by it when negative, so it always moves down;
    penalty 1 changes nothing. Greedy decoding's loops come from re-picking what it already
    wrote; this is the usual brake.
    """
    if penalty <= 0:
        raise ValueError(f"repetition_penalty={penalty} must be > 0 (1 = off)")
    if penalty == 1.0 or previous_ids.numel() == 0:
        return logits
    seen = logits.gather(-1, previous_ids)  # (B, T): logits of the tokens already written
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, previous_ids, seen)
