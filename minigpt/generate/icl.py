"""In-context learning: teach a task with examples in the prompt, and read the answer by scoring.

A pretrained model can do a task it was never trained on when the prompt shows it: the course
calls a prompt with only the input *zero-shot* ("Classify this review: I loved this movie!
Sentiment:"), with one solved example first *one-shot*, with several *few-shot* (beyond five
or six shots, it says, little more is gained). `few_shot_prompt` builds them in that format
from (input, label) pairs.

Reading the answer by sampling mixes two questions: does the model know the label, and did the
dice pick it. When the answers form a fixed set (Positive / Negative), it is cleaner to ask the
model how likely each label is as the continuation of the prompt and take the likeliest:
`continuation_log_probs` sums log p(label tokens | prompt) for every prompt and label at once
(prompts of different lengths are left-padded and masked, as in `generate`), `score_labels` and
`classify` do it from text. Lesson 09 uses them on an associative-recall task where ICL
provably emerges in a 2-layer model, and on the course's review example with GPT-2's weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from minigpt.generate.decoding import left_pad, model_device


@dataclass(frozen=True)
class PromptFormat:
    """How one example is written: instruction, input, then the label after `label_prefix`."""

    instruction: str = "Classify this review:"
    label_prefix: str = "Sentiment:"
    separator: str = "\n\n"  # between examples

    def example(self, text: str, label: str | None = None) -> str:
        """One block; without a label it ends at the prefix, where the model must answer."""
        block = f"{self.instruction}\n{text}\n{self.label_prefix}"
        return block if label is None else f"{block} {label}"


REVIEW_FORMAT = PromptFormat()  # the course's "Classify this review: ... Sentiment: ..."


def few_shot_prompt(
    query: str, examples: Sequence[tuple[str, str]] = (), fmt: PromptFormat = REVIEW_FORMAT
) -> str:
    """The solved `examples` (input, label), then `query` left for the model to label.

    No examples: zero-shot; one: one-shot; more: few-shot.
    """
    blocks = [fmt.example(text, label) for text, label in examples]
    return fmt.separator.join([*blocks, fmt.example(query)])


def zero_shot_prompt(query: str, fmt: PromptFormat = REVIEW_FORMAT) -> str:
    """Just the instruction and the input (the course's zero-shot inference)."""
    return few_shot_prompt(query, (), fmt)


def one_shot_prompt(
    query: str, example: tuple[str, str], fmt: PromptFormat = REVIEW_FORMAT
) -> str:
    """One solved example before the input (the course's one-shot inference)."""
    return few_shot_prompt(query, (example,), fmt)


@torch.no_grad()
def continuation_log_probs(
    model: Any,
    prompts: Sequence[Sequence[int]] | torch.Tensor,
    continuations: Sequence[Sequence[int]],
) -> torch.Tensor:
    """log p(continuation | prompt), summed over its tokens: (n_prompts, n_continuations).

    `model`: a `DecoderLM` (the continuation follows the prompt) or a `Seq2SeqLM` (the prompt is
    the encoder's input and the continuation the decoder's output). Teacher forcing: one
    forward per continuation scores every prompt.
    """
    if any(len(c) == 0 for c in continuations):
        raise ValueError("every continuation needs at least one token")
    rows = [list(map(int, p)) for p in prompts]
    dev = model_device(model)
    was_training = model.training
    model.eval()
    out = torch.empty(len(rows), len(continuations))
    try:
        for j, cont in enumerate(continuations):
            cont = list(map(int, cont))
            target = torch.tensor(cont, device=dev)
            if hasattr(model, "encode"):  # Seq2SeqLM: score the decoder's output
                dec_in = torch.tensor([[model.config.start_id, *cont[:-1]]], device=dev)
                for i, row in enumerate(rows):
                    memory, mask = model.encode(torch.tensor([row], device=dev))
                    logp = model.decode(dec_in, memory, mask)[0].float().log_softmax(-1)
                    out[i, j] = logp.gather(-1, target[:, None]).sum()
                continue
            max_len = model.config.max_len
            ids, key_mask = left_pad([r + cont for r in rows], device=dev)
            ids, key_mask = ids[:, -max_len:], key_mask[:, -max_len:]
            logits, _ = model(ids, key_mask=None if bool(key_mask.all()) else key_mask)
            n = len(cont)  # left padding puts every continuation in the last n columns
            logp = logits[:, -n - 1 : -1].float().log_softmax(-1)  # (B, n, V)
            out[:, j] = logp.gather(-1, target.expand(len(rows), n)[..., None]).sum((1, 2)).cpu()
    finally:
        model.train(was_training)
    return out


def score_labels(
    model: Any, tokenizer: Any, prompt: str, labels: Sequence[str]
) -> dict[str, float]:
    """{label: log p(" label" | prompt)} for a fixed label set, in the order given.

    Each label is scored as the text that follows the prompt, with the space a writer would
    put after "Sentiment:".
    """
    if not labels:
        raise ValueError("give at least one label to score")
    prompt_ids = tokenizer.encode(prompt, allowed_special="all")
    if not prompt_ids:
        raise ValueError("the prompt is empty")
    conts = [tokenizer.encode(" " + label) for label in labels]
    scores = continuation_log_probs(model, [prompt_ids], conts)[0]
    return {label: float(s) for label, s in zip(labels, scores, strict=True)}


def classify(model: Any, tokenizer: Any, prompt: str, labels: Sequence[str]) -> str:
    """The label the model finds likeliest after the prompt (no sampling involved)."""
    scores = score_labels(model, tokenizer, prompt, labels)
    return max(scores, key=scores.__getitem__)
