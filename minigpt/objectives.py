"""Pretraining objectives: how raw token windows become (inputs, targets) pairs.

The three transformer families differ less in their layers than in what they are
asked to predict:

- **causal LM** (GPT, lesson 07): predict token t+1 from tokens 0..t, so the targets
  are the inputs shifted left by one;
- **masked LM** (BERT, lesson 06): hide ~15% of the tokens and predict them from
  context on *both* sides ("the teacher [MASK] the students" -> "teaching");
- **span corruption** (T5, lesson 08): cut out random *spans*, replace each with one
  sentinel token, and ask a decoder to write the missing spans back out.

Every function here is a pure tensor function: give it token ids and a seeded
`torch.Generator`, get tensors back. Labels use -100 ("ignore") wherever no
prediction is wanted, the default `ignore_index` of `F.cross_entropy`, so one
trainer can train all three families with the same loss call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index

# What every objective reduces to for the trainer: (windows of ids, generator) -> (inputs, targets).
BatchFn = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _uniform(shape: torch.Size, generator: torch.Generator | None, device: torch.device):
    """Uniform [0, 1) draws made on the generator's device, then moved next to the data.

    Drawing where the generator lives keeps results identical for a seed whether the
    ids sit on the CPU or a GPU.
    """
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def causal_lm_batch(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split (B, T+1) windows into inputs (B, T) and next-token targets (B, T).

    One window of T+1 tokens yields T training examples at once: position t sees
    tokens 0..t (the causal mask hides the rest) and must predict token t+1.
    """
    if windows.dim() != 2 or windows.size(1) < 2:
        raise ValueError(
            f"causal_lm_batch needs windows of shape (B, T+1) with T >= 1, got "
            f"{tuple(windows.shape)}; sample windows of length block_size + 1"
        )
    ### BEGIN SOLUTION causal_lm
    return windows[:, :-1], windows[:, 1:]
    ### END SOLUTION


def mask_tokens(
    ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    prob: float = 0.15,
    mask_rate: float = 0.8,
    random_rate: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption: returns (inputs, labels), labels -100 where unselected.

    Each non-special position is selected with probability `prob` (BERT: 15%). Of the
    selected ones, `mask_rate` (80%) become `mask_id`, `random_rate` (10%) a random
    non-special token and the rest (10%) stay unchanged (Devlin et al. 2018, sec. 3.1).
    The random and unchanged cases exist because [MASK] never appears at fine-tuning
    time: the model must build a good representation of *every* token, not only masks.

    Special ids (pass the pad id here too) and `mask_id` itself are never selected.
    Every row (last dimension) with at least one candidate gets at least one selected
    position, so a short sequence never produces an all-ignored row and a NaN loss.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob={prob} must be in [0, 1]; BERT uses 0.15")
    if mask_rate < 0 or random_rate < 0 or mask_rate + random_rate > 1.0 + 1e-9:
        raise ValueError(
            f"mask_rate={mask_rate} and random_rate={random_rate} must be >= 0 and sum to "
            "at most 1; BERT uses 0.8 and 0.1"
        )
    if ids.dim() == 0 or ids.size(-1) == 0:
        raise ValueError(f"mask_tokens needs a non-empty tensor of ids, got {tuple(ids.shape)}")
    device = ids.device
    special = torch.tensor(sorted({*special_ids, mask_id}), dtype=ids.dtype, device=device)
    candidates = ~torch.isin(ids, special)  # special and padding are never predicted

    ### BEGIN SOLUTION masked_lm
    selected = (_uniform(ids.shape, generator, device) < prob) & candidates
    # Rows that drew nothing get one random candidate, so every row has a label.
    empty = candidates.any(-1) & ~selected.any(-1)  # (...,)
    scores = torch.where(candidates, _uniform(ids.shape, generator, device), -1.0)
    forced = torch.nn.functional.one_hot(scores.argmax(-1), ids.size(-1)).bool()
    selected |= forced & empty.unsqueeze(-1)

    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    r = _uniform(ids.shape, generator, device)
    to_mask = selected & (r < mask_rate)
    to_random = selected & (r >= mask_rate) & (r < mask_rate + random_rate)

    # Random replacements come from ordinary (non-special) ids only: a random sentinel
    # or pad token would teach the model nothing about the language.
    allowed = torch.arange(vocab_size, device=device)
    allowed = allowed[~torch.isin(allowed, special)]
    if allowed.numel() == 0:
        raise ValueError(f"vocab_size={vocab_size} leaves no non-special ids to sample from")
    pick = (_uniform(ids.shape, generator, device) * allowed.numel()).long()
    pick = pick.clamp_(max=allowed.numel() - 1)

    inputs = ids.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = allowed[pick[to_random]]
    return inputs, labels
    ### END SOLUTION


def mlm_batch(
    windows: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    generator: torch.Generator | None = None,
    prob: float = 0.15,
    mask_rate: float = 0.8,
    random_rate: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-LM batch from (B, T) windows: inputs (B, T) and labels (B, T), -100 = ignore.

    Unlike the causal objective no shift is needed: the encoder sees the whole
    corrupted window and predicts the original token at each selected position.
    """
    if windows.dim() != 2:
        raise ValueError(f"mlm_batch needs windows of shape (B, T), got {tuple(windows.shape)}")
    return mask_tokens(
        windows, mask_id, vocab_size, special_ids, prob, mask_rate, random_rate, generator
    )


def random_segmentation(
    num_items: int, num_segments: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Split `num_items` into `num_segments` non-empty parts, all splits equally likely.

    Choosing num_segments - 1 distinct cut points among the num_items - 1 gaps gives
    every composition the same probability, as `_random_segmentation` inside T5's
    `random_spans_noise_mask` does (text-to-text-transfer-transformer,
    t5/data/preprocessors.py). Returns a LongTensor of lengths (num_segments,).
    """
    if not 1 <= num_segments <= num_items:
        raise ValueError(
            f"cannot split {num_items} items into {num_segments} non-empty segments; "
            "need 1 <= num_segments <= num_items"
        )
    device = generator.device if generator is not None else "cpu"
    cuts = torch.randperm(num_items - 1, generator=generator, device=device).cpu()
    cuts = cuts[: num_segments - 1] + 1
    bounds = torch.cat([torch.tensor([0]), cuts.sort().values, torch.tensor([num_items])])
    return bounds.diff()


def span_corruption(
    ids: torch.Tensor,
    sentinel_ids: Sequence[int],
    eos_id: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """T5's span corruption of one sequence: returns (encoder_inputs, targets), both 1-D.

    Counts follow T5's `random_spans_noise_mask` (Raffel et al. 2020, sec. 3.1.4):
    num_noise = round(len * noise_density) clamped to [1, len - 1], and
    num_spans = max(1, round(num_noise / mean_span_length)). The noise tokens and the
    kept tokens are each cut into num_spans random non-empty pieces and interleaved,
    kept piece first, so the sequence always ends inside a noise span (as in T5).

    "the cat sat on the mat" with spans "cat" and "the mat" becomes
    inputs  = the <extra_id_0> sat on <extra_id_1>
    targets = <extra_id_0> cat <extra_id_1> the mat <eos>
    The inputs shrink by ~noise_density, which is why T5 trains faster than BERT.
    """
    if ids.dim() != 1:
        raise ValueError(f"span_corruption takes one 1-D sequence, got shape {tuple(ids.shape)}")
    n = ids.numel()
    if n < 2:
        raise ValueError(f"span_corruption needs a sequence of at least 2 tokens, got {n}")
    if not 0.0 < noise_density < 1.0 or mean_span_length < 1.0:
        raise ValueError(
            f"noise_density={noise_density} must be in (0, 1) and "
            f"mean_span_length={mean_span_length} >= 1; T5 uses 0.15 and 3.0"
        )
    ### BEGIN SOLUTION span_corruption
    num_noise = min(max(round(n * noise_density), 1), n - 1)
    num_spans = max(round(num_noise / mean_span_length), 1)
    # Every span needs a kept piece in front of it; only matters at extreme densities.
    num_spans = min(num_spans, n - num_noise)
    if num_spans > len(sentinel_ids):
        raise ValueError(
            f"{num_spans} noise spans need {num_spans} sentinels but only "
            f"{len(sentinel_ids)} were given; use shorter sequences or more sentinel tokens"
        )
    noise_lengths = random_segmentation(num_noise, num_spans, generator)
    kept_lengths = random_segmentation(n - num_noise, num_spans, generator)
    lengths = torch.stack([kept_lengths, noise_lengths], dim=1).flatten().tolist()  # (2S,)

    enc_parts, tgt_parts, pos = [], [], 0
    for i in range(num_spans):
        kept, noise = lengths[2 * i], lengths[2 * i + 1]
        sentinel = ids.new_tensor([sentinel_ids[i]])
        enc_parts += [ids[pos : pos + kept], sentinel]
        tgt_parts += [sentinel, ids[pos + kept : pos + kept + noise]]
        pos += kept + noise
    tgt_parts.append(ids.new_tensor([eos_id]))
    return torch.cat(enc_parts), torch.cat(tgt_parts)
    ### END SOLUTION


def span_corruption_batch(
    windows: torch.Tensor,
    sentinel_ids: Sequence[int],
    eos_id: int,
    pad_id: int,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Span-corrupt each row of (B, T) windows: inputs (B, S) padded with pad_id, targets
    (B, U) padded with -100 so padding never counts in the loss.

    Trailing `pad_id` tokens of a row are stripped before corruption, so right-padded
    sentences of different lengths can share a batch.
    """
    if windows.dim() != 2:
        raise ValueError(
            f"span_corruption_batch needs windows of shape (B, T), got {tuple(windows.shape)}"
        )
    inputs, targets = [], []
    for row in windows:
        keep = (row != pad_id).nonzero()
        length = int(keep.max()) + 1 if keep.numel() else 0
        enc, tgt = span_corruption(
            row[:length], sentinel_ids, eos_id, noise_density, mean_span_length, generator
        )
        inputs.append(enc)
        targets.append(tgt)
    return _pad(inputs, pad_id), _pad(targets, IGNORE_INDEX)


def _pad(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    """Stack 1-D tensors of different lengths into (B, max_len), right-padded with value."""
    out = rows[0].new_full((len(rows), max(r.numel() for r in rows)), value)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r
    return out


def split_at_sentinels(
    targets: Sequence[int] | torch.Tensor, sentinel_ids: Sequence[int], eos_id: int | None = None
) -> dict[int, list[int]]:
    """Read a span-corruption target (or a model's prediction) as {sentinel index: span}.

    Tokens before the first sentinel are dropped, reading stops at eos, -100 padding is
    skipped; a sentinel that never appears is simply absent from the result.
    """
    index = {s: i for i, s in enumerate(sentinel_ids)}
    spans: dict[int, list[int]] = {}
    current: int | None = None
    for tok in torch.as_tensor(targets).tolist():
        if tok == eos_id:
            break
        if tok in index:
            current = index[tok]
            spans.setdefault(current, [])
        elif current is not None and tok != IGNORE_INDEX:
            spans[current].append(tok)
    return spans


def restore_spans(
    encoder_inputs: Sequence[int] | torch.Tensor,
    targets: Sequence[int] | torch.Tensor,
    sentinel_ids: Sequence[int],
    eos_id: int | None = None,
    pad_id: int | None = None,
) -> list[int]:
    """Put each target span back at its sentinel: undoes `span_corruption` exactly.

    Used by tests (the round trip must reproduce the original) and by generation,
    which fills a corrupted input with the spans a model predicted.
    """
    spans = split_at_sentinels(targets, sentinel_ids, eos_id)
    index = {s: i for i, s in enumerate(sentinel_ids)}
    out: list[int] = []
    for tok in torch.as_tensor(encoder_inputs).tolist():
        if pad_id is not None and tok == pad_id:
            continue
        out.extend(spans.get(index[tok], []) if tok in index else [tok])
    return out
