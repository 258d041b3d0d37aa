"""Beam search: keep the `width` most likely partial outputs instead of one.

Greedy decoding commits to the single most likely next token, and a likely first token can
lead into an unlikely sequence: if "A" has probability 0.4 but spreads what follows over four
tokens (0.1 each), while "B" (0.35) is followed by one sure token, greedy writes "A ?" (0.1)
and misses "B Y" (0.35). Beam search keeps `width` candidates ("beams") at every step, extends
each by every token, and keeps the `width` best sums of log-probabilities. A beam that writes
`eos_id` is finished; its score is divided by length^alpha (`length_penalty`, alpha = 1 is the
average log-probability per token, 0 is the plain sum, which favours short outputs, Wu et al.
2016, section 7). The search ends when `width` beams have finished and the best live beam,
scored as it stands, does not beat them (the common rule; a live beam could still creep up
when alpha > 0), or after `max_new_tokens`. Width 1 is exactly greedy.

Beams are batch rows: the prompt is read once, its KV cache copied to `width` rows, and after
each step the caches follow the surviving beams (`cache.reorder`). Works for `DecoderLM`
(continuing a prompt) and `Seq2SeqLM` (decoding from its input). Lesson 09 compares it with
greedy; tests/test_generate.py proves it better on a model trained to a constructed case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from minigpt.generate.decoding import as_batch, model_device


@dataclass
class BeamResult:
    """The best sequence found, its total log-probability and its length-normalised score.

    `tokens`: a DecoderLM's prompt + continuation, or a Seq2SeqLM's output (no start token);
    an output that ended with eos includes it.
    """

    tokens: torch.Tensor
    log_prob: float
    score: float


def _normalise(log_prob: float, length: int, length_penalty: float) -> float:
    return log_prob / max(length, 1) ** length_penalty


@torch.no_grad()
def beam_search(
    model: Any,
    prompt_ids: torch.Tensor | Sequence[int],
    max_new_tokens: int,
    beam_width: int = 4,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
) -> BeamResult:
    """The likeliest continuation of ONE prompt (T,) that a beam of `beam_width` finds.

    `model` is a `DecoderLM` (returns prompt + new tokens) or a `Seq2SeqLM` (returns the
    decoder's output). Log-probabilities are the model's own, at temperature 1.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width={beam_width} must be >= 1")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
    dev = model_device(model)
    prompt, single = as_batch(prompt_ids, dev)
    if not single and prompt.size(0) != 1:
        raise ValueError(f"beam_search takes one prompt, got a batch of {prompt.size(0)}")
    seq2seq = hasattr(model, "encode")
    was_training = model.training
    model.eval()
    try:
        if seq2seq:
            steps = min(max_new_tokens, model.config.max_len)
            memory, memory_mask = model.encode(prompt)  # (1, S, d_model)
            cache = model.new_cache()
            start = prompt.new_full((1, 1), model.config.start_id)

            def step(tokens: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
                nonlocal memory, memory_mask
                if index is not None:
                    memory, memory_mask = memory[index], memory_mask[index]
                    for c in cache:
                        c.reorder(index)
                return model.decode(tokens, memory, memory_mask, cache)[:, -1]

            first_logits = step(start, None)
            seqs = start
        else:
            steps = min(max_new_tokens, model.config.max_len - prompt.size(1))
            cache = model.new_cache(min(model.config.max_len, prompt.size(1) + steps))

            def step(tokens: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
                if index is not None:
                    for c in cache:
                        c.reorder(index)
                return model(tokens, cache=cache)[0][:, -1]

            first_logits = step(prompt, None)
            seqs = prompt
        return _search(step, first_logits, seqs, steps, beam_width, length_penalty, eos_id,
                       drop_first=seq2seq)  # fmt: skip
    finally:
        model.train(was_training)


def _search(
    step: Any,
    logits: torch.Tensor,
    seqs: torch.Tensor,
    steps: int,
    width: int,
    length_penalty: float,
    eos_id: int | None,
    drop_first: bool,
) -> BeamResult:
    """The beam loop over `step(last_tokens (W, 1), reorder_index) -> next logits (W, V)`."""
    prefix = seqs.size(1)
    scores = torch.zeros(1, device=seqs.device)  # (W,) summed log-probs of the live beams
    finished: list[tuple[float, float, torch.Tensor]] = []  # (score, log_prob, tokens)
    stopped = False
    for t in range(steps):
        log_probs = scores[:, None] + logits.float().log_softmax(dim=-1)  # (W, V)
        vocab = log_probs.size(-1)
        top = log_probs.flatten().topk(min(2 * width, log_probs.numel()))
        keep_beam, keep_token, keep_score = [], [], []
        for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            beam, token = divmod(flat, vocab)
            if eos_id is not None and token == eos_id:
                done = torch.cat([seqs[beam], seqs.new_tensor([token])])
                finished.append((_normalise(value, t + 1, length_penalty), value, done))
            else:
                keep_beam.append(beam)
                keep_token.append(token)
                keep_score.append(value)
            if len(keep_beam) == width:
                break
        finished = sorted(finished, key=lambda f: f[0], reverse=True)[:width]
        # The usual stopping rule: `width` beams have finished and the best live beam, scored
        # now, does not beat the worst of them (2 * width candidates leave >= width live ones).
        best_live = _normalise(max(keep_score), t + 1, length_penalty) if keep_score else None
        if len(finished) >= width and (best_live is None or best_live <= finished[-1][0]):
            stopped = True
            break
        index = torch.tensor(keep_beam, device=seqs.device)
        tokens = torch.tensor(keep_token, device=seqs.device)
        seqs = torch.cat([seqs[index], tokens[:, None]], dim=1)  # (W, prefix + t + 1)
        scores = torch.tensor(keep_score, device=seqs.device)
        if t + 1 < steps:
            logits = step(tokens[:, None], index)
    if not stopped:  # out of steps: live beams compete as they are
        length = seqs.size(1) - prefix
        for b in range(seqs.size(0)):
            lp = float(scores[b])
            finished.append((_normalise(lp, length, length_penalty), lp, seqs[b]))
    score, log_prob, tokens = max(finished, key=lambda f: f[0])
    return BeamResult(tokens[1:] if drop_first else tokens, log_prob, score)
