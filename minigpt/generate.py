"""Turning a trained model's next-token distribution into text.

A language model only ever outputs a probability for every token of the vocabulary. How
we pick from it is a separate decision, made with the settings the course's inference
panel shows (max new tokens, top-k, top-p, temperature):

- **greedy** (temperature 0): always take the most likely token ("cake" at 0.20);
  repeatable but prone to loops;
- **random-weighted sampling**: draw a token in proportion to its probability, so
  "banana" at 0.02 is sometimes chosen;
- **temperature** divides the logits before the softmax: below 1 the distribution
  sharpens, above 1 it flattens;
- **top-k** samples only among the k most likely tokens; **top-p** (nucleus) among
  the smallest set whose probabilities add up to at least p (p = 0.3 keeps cake and
  donut, 0.20 + 0.10).

The filters are pure functions on logits (tested alone); `generate` drives a GPT-style
`DecoderLM` with its KV cache, `fill_masks` asks a BERT-style `EncoderLM` for its top-k
guesses at each [MASK], and `generate_seq2seq` / `fill_sentinels` decode a T5-style
`Seq2SeqLM`. `sample_text` does what fits each family, starting from text and ending in text:
`minigpt sample` and the trainer's samples both call it. Lessons 06-08 use the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from minigpt.models import DecoderLM, EncoderLM, Seq2SeqLM
from minigpt.objectives import restore_spans, split_at_sentinels
from minigpt.tokenizer import EOT, MASK, N_SENTINELS, sentinel

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
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of the last dimension, set the others to -inf.

    Exactly k survive even when values tie (indices from `topk`, not a threshold), so
    improbable tokens can never be drawn while some randomness remains.
    """
    if k < 1:
        raise ValueError(f"top_k={k} must be >= 1 (or None to disable)")
    if k >= logits.size(-1):
        return logits
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep.scatter_(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


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
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of all higher-ranked tokens
    keep_sorted = mass_before < p - _TOP_P_TOLERANCE
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


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


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _as_batch(ids: torch.Tensor | Sequence[int], device: torch.device) -> tuple[torch.Tensor, bool]:
    """ids as a (B, T) LongTensor on device, and whether the caller gave a single 1-D sequence."""
    ids = torch.as_tensor(ids, dtype=torch.long, device=device)
    if ids.dim() not in (1, 2) or ids.size(-1) == 0:
        raise ValueError(
            f"expected token ids of shape (T,) or (B, T) with T >= 1, got {tuple(ids.shape)}"
        )
    return (ids.unsqueeze(0), True) if ids.dim() == 1 else (ids, False)


def _stop_finished(
    next_ids: torch.Tensor, finished: torch.Tensor, eos_id: int | None
) -> torch.Tensor:
    """Rows that already produced eos keep emitting eos (padding); mark rows that just did."""
    if eos_id is None:
        return next_ids
    next_ids = next_ids.masked_fill(finished, eos_id)
    finished |= next_ids == eos_id
    return next_ids


@torch.no_grad()
def generate(
    model: Any,
    prompt_ids: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Continue a prompt with a `DecoderLM`: (T,) -> (T + n,) or (B, T) -> (B, T + n).

    One token at a time: run the model, take the last position's logits, pick a token
    (`sample_next`), append it. The context is cropped to the last `config.max_len` tokens,
    because positions past max_len have no encoding. With `use_cache` the model's KV cache
    means each step computes only the new token: keys and values of earlier positions are
    kept, not recomputed. Once the text outgrows max_len the cache cannot slide (absolute
    positions would shift), so the remaining steps recompute the cropped window. Generation
    stops early when every row has produced `eos_id`; finished rows are padded with eos.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
    idx, single = _as_batch(prompt_ids, _model_device(model))  # (B, T)
    max_len = model.config.max_len
    was_training = model.training
    model.eval()  # no dropout while generating
    cache = None
    can_cache = use_cache and hasattr(model, "new_cache")
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    try:
        for _ in range(max_new_tokens):
            if can_cache and idx.size(1) <= max_len:
                if cache is None:
                    cache = model.new_cache()
                    logits, _ = model(idx, cache=cache)  # the whole prompt once
                else:
                    logits, _ = model(idx[:, -1:], cache=cache)  # only the newest token
            else:
                logits, _ = model(idx[:, -max_len:])  # (B, <=max_len, V)
            next_ids = sample_next(logits[:, -1], temperature, top_k, top_p, generator)  # (B,)
            next_ids = _stop_finished(next_ids, finished, eos_id)
            idx = torch.cat([idx, next_ids[:, None]], dim=1)  # (B, T + 1)
            if eos_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return idx[0] if single else idx


@dataclass
class MaskFill:
    """A masked position and the model's top-k guesses for it, most likely first."""

    position: int
    token_ids: list[int]
    probs: list[float]


@torch.no_grad()
def fill_masks(
    model: Any, ids: torch.Tensor | Sequence[int], mask_id: int, top_k: int = 5
) -> list[MaskFill] | list[list[MaskFill]]:
    """Ask an `EncoderLM` what belongs at each `mask_id`: "the teacher [MASK] the students".

    A masked LM sees the whole sentence at once, so all masks are filled in one forward
    pass from context on both sides. Returns one list of `MaskFill` per sequence (a plain
    list for a 1-D input).
    """
    batch, single = _as_batch(ids, _model_device(model))  # (B, T)
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(batch)  # (B, T, V)
    finally:
        model.train(was_training)
    probs = logits.float().softmax(dim=-1)
    k = min(top_k, probs.size(-1))
    result = []
    for b, row in enumerate(batch):
        fills = []
        for pos in (row == mask_id).nonzero().flatten().tolist():
            top = probs[b, pos].topk(k)
            fills.append(MaskFill(pos, top.indices.tolist(), top.values.tolist()))
        result.append(fills)
    return result[0] if single else result


@torch.no_grad()
def generate_seq2seq(
    model: Any,
    input_ids: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Decode a `Seq2SeqLM`'s output for an input: (S,) -> (n,) or (B, S) -> (B, n).

    The encoder reads the input once; the decoder starts from `config.start_id` and writes
    one token at a time, attending to the encoder memory, until every row produced `eos_id`
    (finished rows are padded with eos) or `max_new_tokens` (at most `config.max_len`, the
    decoder's positions) are written. The start token is not part of the result.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
    src, single = _as_batch(input_ids, _model_device(model))  # (B, S)
    steps = min(max_new_tokens, model.config.max_len)
    was_training = model.training
    model.eval()
    out = src.new_full((src.size(0), 1), model.config.start_id)  # (B, 1) decoder inputs
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    try:
        memory, memory_mask = model.encode(src)  # (B, S, d_model), (B, 1, 1, S)
        cache = model.new_cache() if use_cache else None
        for _ in range(steps):
            step_ids = out[:, -1:] if cache is not None else out
            logits = model.decode(step_ids, memory, memory_mask, cache)  # (B, U, V)
            next_ids = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
            next_ids = _stop_finished(next_ids, finished, eos_id)
            out = torch.cat([out, next_ids[:, None]], dim=1)  # (B, U + 1)
            if eos_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return out[0, 1:] if single else out[:, 1:]


def fill_sentinels(
    input_ids: torch.Tensor | Sequence[int],
    output_ids: torch.Tensor | Sequence[int],
    sentinel_ids: Sequence[int],
    eos_id: int | None = None,
    pad_id: int | None = None,
) -> tuple[list[int], dict[int, list[int]]]:
    """Read a span-corruption answer: (input with every sentinel replaced by its predicted
    span, {sentinel index: predicted span}).

    `output_ids` is what the decoder wrote ("<extra_id_0> cat <extra_id_1> the mat <eos>");
    decode the filled ids or each span with the tokenizer to show them as text. A sentinel
    the model never wrote is filled with nothing.
    """
    spans = split_at_sentinels(output_ids, sentinel_ids, eos_id)
    filled = restore_spans(input_ids, output_ids, sentinel_ids, eos_id, pad_id)
    return filled, spans


def sample_text(
    model: DecoderLM | EncoderLM | Seq2SeqLM,
    tokenizer: Any,
    prompt: str = "",
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> str:
    """What each family does with a prompt, as text (`minigpt sample` and the trainer call it).

    - `DecoderLM`: continue the prompt (empty: start from the end-of-text token, as GPT-2 does
      for unconditional samples); returns the prompt and its continuation.
    - `EncoderLM`: the prompt must contain [MASK]; returns it with each mask's top-5 fills.
    - `Seq2SeqLM`: encode the prompt and decode an answer; when the prompt holds sentinels
      (<extra_id_0> ...) the answer is put back into the spans they mark.

    A prompt that does not fit the family raises ValueError with a one-line message.
    """
    dev = _model_device(model)
    specials = tokenizer.special_tokens
    ids = tokenizer.encode(prompt, allowed_special="all") if prompt else []
    if isinstance(model, DecoderLM):
        start = ids or [specials.get(EOT, 0)]  # unconditional: from end-of-text
        out = generate(model, torch.tensor([start], device=dev), max_new_tokens,
                       temperature=temperature, top_k=top_k, top_p=top_p,
                       eos_id=specials.get(EOT), generator=generator)  # fmt: skip
        return tokenizer.decode(out[0].tolist()[len(start) - len(ids) :])
    if isinstance(model, EncoderLM):
        if MASK not in prompt:
            raise ValueError(f"an MLM model fills {MASK} tokens: give a prompt with {MASK} in it")
        lines = [prompt]
        for i, fill in enumerate(fill_masks(model, ids, specials[MASK], top_k=5)):
            shown = ", ".join(f"{tokenizer.decode([t])!r} {p:.2f}"
                              for t, p in zip(fill.token_ids, fill.probs, strict=True))  # fmt: skip
            lines.append(f"  {MASK} #{i + 1}: {shown}")
        return "\n".join(lines)
    if isinstance(model, Seq2SeqLM):
        if not ids:
            raise ValueError(
                "a seq2seq model needs an input: give a prompt "
                "(mark spans to fill with <extra_id_0>, <extra_id_1>, ...)"
            )
        out = generate_seq2seq(model, torch.tensor(ids, device=dev), max_new_tokens,
                               temperature=temperature, top_k=top_k, top_p=top_p,
                               eos_id=specials.get(EOT), generator=generator).tolist()  # fmt: skip
        names = [sentinel(i) for i in range(N_SENTINELS)]
        sentinel_ids = [specials[name] for name in names if name in specials]
        if any(i in sentinel_ids for i in ids):  # span filling: the input with spans put back
            filled, _ = fill_sentinels(ids, out, sentinel_ids, eos_id=specials.get(EOT))
            return tokenizer.decode(filled)
        if EOT in specials and specials[EOT] in out:
            out = out[: out.index(specials[EOT])]
        return tokenizer.decode(out)
    raise ValueError(f"no sampling defined for a {type(model).__name__}")
