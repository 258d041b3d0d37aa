"""The decoding loop: one model call per new token, with a KV cache, padding and streaming.

`generate` continues prompts with a GPT-style `DecoderLM`: run the model, take the last
position's logits, pick a token (`filters.sample_next`), append it, repeat. Three details make
it practical:

- **the KV cache.** Keys and values of earlier tokens never change, so each step computes only
  the new token's. The *static* cache (`attention.StaticKVCache`, the default) is preallocated
  for prompt + new tokens and written in place; the *growing* one (`attention.KVCache`) is
  concatenated each step. Both give the logits a full recomputation gives.
- **max_len.** Positions past `config.max_len` have no encoding, so once the text is longer the
  cache cannot slide (every absolute position would shift): the remaining steps recompute the
  last max_len tokens without a cache, exactly what the no-cache path does. Never a crash.
- **prompts of different lengths.** A list of prompts is left-padded into one batch, and the
  model gets a key mask: each row's tokens get the positions they would have alone and never
  attend to the padding, so every row continues as if generated alone.

`on_token` sees every step's new tokens as they come (streaming). `generate_seq2seq` does the
same for a T5-style `Seq2SeqLM` (the encoder reads the input once), `fill_masks` asks a
BERT-style `EncoderLM` for its guesses at each [MASK]. Lesson 09 uses all of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from minigpt.generate.filters import apply_repetition_penalty, sample_next
from minigpt.generate.settings import GenerationConfig
from minigpt.objectives import restore_spans, split_at_sentinels

CACHE_KINDS = ("static", "growing", "none")

# Called with the (B,) tokens just picked; returning True stops generation early.
TokenCallback = Callable[[torch.Tensor], "bool | None"]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters live on."""
    return next(model.parameters()).device


def as_batch(ids: torch.Tensor | Sequence[int], device: torch.device) -> tuple[torch.Tensor, bool]:
    """ids as a (B, T) LongTensor on device, and whether the caller gave a single 1-D sequence."""
    ids = torch.as_tensor(ids, dtype=torch.long, device=device)
    if ids.dim() not in (1, 2) or ids.size(-1) == 0:
        raise ValueError(
            f"expected token ids of shape (T,) or (B, T) with T >= 1, got {tuple(ids.shape)}"
        )
    return (ids.unsqueeze(0), True) if ids.dim() == 1 else (ids, False)


def left_pad(
    prompts: Sequence[Sequence[int] | torch.Tensor],
    pad_id: int = 0,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> ids (B, T_max) padded on the left, and the (B, T_max)
    key mask (True at real tokens).

    Left, because generation appends on the right: every row's newest token then sits in the
    last column, where one model call reads all rows' next-token logits.
    """
    rows = [torch.as_tensor(p, dtype=torch.long).flatten() for p in prompts]
    if not rows or any(r.numel() == 0 for r in rows):
        raise ValueError("every prompt needs at least one token")
    t = max(r.numel() for r in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), t, dtype=torch.bool)
    for b, r in enumerate(rows):
        ids[b, t - r.numel() :] = r
        mask[b, t - r.numel() :] = True
    return ids.to(device), mask.to(device)


def resolve_config(
    config: GenerationConfig | None, max_new_tokens: int | None, **settings: Any
) -> GenerationConfig:
    """One GenerationConfig from either `config` or keyword settings (not both).

    `settings` hold the keyword arguments with their function defaults; with a config, only
    `max_new_tokens` may be given as well (it overrides the config's).
    """
    if config is None:
        if max_new_tokens is None:
            raise ValueError("give max_new_tokens (or a GenerationConfig)")
        return GenerationConfig(max_new_tokens=max_new_tokens, **settings)
    changed = [k for k, v in settings.items() if v != _KEYWORD_DEFAULTS[k]]
    if changed:
        raise ValueError(f"pass {', '.join(changed)} in the GenerationConfig, not beside it")
    return config if max_new_tokens is None else config.with_(max_new_tokens=max_new_tokens)


# What `generate` means when called with keywords only: plain sampling at temperature 1.
_KEYWORD_DEFAULTS: dict[str, Any] = dict(
    temperature=1.0, top_k=None, top_p=None, eos_id=None, greedy=False, seed=None,
    repetition_penalty=1.0,
)  # fmt: skip


def pick_next(
    logits: torch.Tensor,
    cfg: GenerationConfig,
    previous: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The config's rule applied to last-position logits (B, V) -> (B,) token ids."""
    if cfg.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, previous, cfg.repetition_penalty)
    return sample_next(logits, cfg.sampling_temperature, cfg.top_k, cfg.top_p, generator)


def stop_finished(
    next_ids: torch.Tensor, finished: torch.Tensor, eos_id: int | None
) -> torch.Tensor:
    """Rows that already produced eos keep emitting eos (padding); mark rows that just did."""
    if eos_id is None:
        return next_ids
    next_ids = next_ids.masked_fill(finished, eos_id)
    finished |= next_ids == eos_id
    return next_ids


def _trim_after_eos(row: torch.Tensor, start: int, eos_id: int | None) -> torch.Tensor:
    """A row cut after the first eos among its new tokens (what generating it alone returns)."""
    if eos_id is None:
        return row
    hits = (row[start:] == eos_id).nonzero()
    return row if hits.numel() == 0 else row[: start + int(hits[0]) + 1]


@torch.no_grad()
def generate(
    model: Any,
    prompt_ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]],
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    *,
    greedy: bool = False,
    seed: int | None = None,
    repetition_penalty: float = 1.0,
    config: GenerationConfig | None = None,
    cache: str = "static",
    pad_id: int = 0,
    on_token: TokenCallback | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Continue prompts with a `DecoderLM`: (T,) -> (T + n,), (B, T) -> (B, T + n), or a list
    of prompts of different lengths -> a list of 1-D tensors (each prompt + its continuation).

    Settings come as keywords (defaults: plain sampling at temperature 1) or as one
    `GenerationConfig`. `greedy=True` takes the argmax; `seed` (or a `generator`) makes
    sampling repeat exactly. `cache`: "static" (preallocated, default), "growing" or "none".
    Generation stops early once every row has produced `eos_id`;
    finished rows of a tensor batch are padded with eos, rows of a list end at their eos.
    `on_token(new_ids)` is called with each step's (B,) tokens; returning True stops.
    """
    cfg = resolve_config(
        config, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        eos_id=eos_id, greedy=greedy, seed=seed, repetition_penalty=repetition_penalty,
    )  # fmt: skip
    if cache not in CACHE_KINDS:
        raise ValueError(f"cache={cache!r} is unknown; use one of {CACHE_KINDS}")
    dev = model_device(model)
    ragged = isinstance(prompt_ids, (list, tuple)) and any(
        isinstance(p, (list, tuple, torch.Tensor)) for p in prompt_ids
    )
    key_mask = None
    if ragged:
        idx, key_mask = left_pad(prompt_ids, pad_id, dev)  # type: ignore[arg-type]
        single = False
        if bool(key_mask.all()):
            key_mask = None  # equal lengths: no padding to hide
    else:
        idx, single = as_batch(prompt_ids, dev)  # (B, T)
    gen = generator if generator is not None else cfg.generator(dev)
    prompt_len, max_len = idx.size(1), model.config.max_len
    kv = None
    if cache != "none" and prompt_len <= max_len:
        capacity = min(prompt_len + cfg.max_new_tokens, max_len)
        kv = model.new_cache(capacity) if cache == "static" else model.new_cache()
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=dev)
    fed = 0  # how many columns of idx the cache already holds
    was_training = model.training
    model.eval()  # no dropout while generating
    try:
        for _ in range(cfg.max_new_tokens):
            if kv is not None and idx.size(1) <= max_len:
                logits, _ = model(idx[:, fed:], cache=kv, key_mask=key_mask)  # only new columns
                fed = idx.size(1)
            else:  # past max_len (or no cache): recompute the last max_len tokens
                window = None if key_mask is None else key_mask[:, -max_len:]
                logits, _ = model(idx[:, -max_len:], key_mask=window)  # (B, <=max_len, V)
            previous = idx if key_mask is None else idx.where(key_mask, idx[:, -1:])
            next_ids = pick_next(logits[:, -1], cfg, previous, gen)  # (B,)
            next_ids = stop_finished(next_ids, finished, cfg.eos_id)
            idx = torch.cat([idx, next_ids[:, None]], dim=1)  # (B, T + 1)
            if key_mask is not None:
                key_mask = torch.cat([key_mask, key_mask.new_ones(idx.size(0), 1)], dim=1)
            stop = on_token is not None and on_token(next_ids) is True
            if stop or (cfg.eos_id is not None and bool(finished.all())):
                break
    finally:
        model.train(was_training)
    if ragged:
        rows = [idx[b] if key_mask is None else idx[b][key_mask[b]] for b in range(idx.size(0))]
        lengths = [len(p) for p in prompt_ids]  # type: ignore[arg-type]
        return [_trim_after_eos(r, n, cfg.eos_id) for r, n in zip(rows, lengths, strict=True)]
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
    batch, single = as_batch(ids, model_device(model))  # (B, T)
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
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    *,
    greedy: bool = False,
    seed: int | None = None,
    repetition_penalty: float = 1.0,
    config: GenerationConfig | None = None,
    on_token: TokenCallback | None = None,
) -> torch.Tensor:
    """Decode a `Seq2SeqLM`'s output for an input: (S,) -> (n,) or (B, S) -> (B, n).

    The encoder reads the input once; the decoder starts from `config.start_id` and writes
    one token at a time, attending to the encoder memory, until every row produced `eos_id`
    (finished rows are padded with eos) or `max_new_tokens` (at most `config.max_len`, the
    decoder's positions) are written. The start token is not part of the result. Settings as
    in `generate`.
    """
    cfg = resolve_config(
        config, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        eos_id=eos_id, greedy=greedy, seed=seed, repetition_penalty=repetition_penalty,
    )  # fmt: skip
    dev = model_device(model)
    src, single = as_batch(input_ids, dev)  # (B, S)
    gen = generator if generator is not None else cfg.generator(dev)
    steps = min(cfg.max_new_tokens, model.config.max_len)
    was_training = model.training
    model.eval()
    out = src.new_full((src.size(0), 1), model.config.start_id)  # (B, 1) decoder inputs
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=dev)
    try:
        memory, memory_mask = model.encode(src)  # (B, S, d_model), (B, 1, 1, S)
        kv = model.new_cache() if use_cache else None
        for _ in range(steps):
            step_ids = out[:, -1:] if kv is not None else out
            logits = model.decode(step_ids, memory, memory_mask, kv)  # (B, U, V)
            next_ids = pick_next(logits[:, -1], cfg, out, gen)
            next_ids = stop_finished(next_ids, finished, cfg.eos_id)
            out = torch.cat([out, next_ids[:, None]], dim=1)  # (B, U + 1)
            stop = on_token is not None and on_token(next_ids) is True
            if stop or (cfg.eos_id is not None and bool(finished.all())):
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
