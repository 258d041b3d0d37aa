"""From text to text: what each model family does with a prompt (`minigpt sample`, the trainer).

`sample_text` is the one place that turns a prompt string into an answer string, so the CLI and
the trainer's periodic samples cannot drift apart. It takes one `GenerationConfig` (the course's
panel: max new tokens 200, top-k 25, top-p 1, temperature 0.8, plus greedy, seed, stop strings,
repetition penalty and beam width) and can stream the text as it is written (`on_text`).

Streaming text is subtler than streaming tokens: a BPE token may hold half of a UTF-8
character (decoded as U+FFFD until its other half arrives), and a stop string may arrive
split over several tokens. `TextStream` therefore re-decodes the whole continuation, emits only
what can no longer change, and holds back a tail that could still become a stop string.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from minigpt.generate.beam import beam_search
from minigpt.generate.decoding import (
    fill_masks,
    fill_sentinels,
    generate,
    generate_seq2seq,
    model_device,
)
from minigpt.generate.settings import GenerationConfig
from minigpt.models import DecoderLM, EncoderLM, Seq2SeqLM
from minigpt.tokenizer import EOT, MASK, N_SENTINELS, sentinel


class TextStream:
    """Collects generated token ids and hands out text pieces that are final.

    `push(id)` returns the new final text (maybe ""), `done` is set once a stop string
    appears; `finish()` returns the rest. `text` is the whole answer, cut before any stop.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = (), eos_id: int | None = None):
        self.tokenizer, self.stop, self.eos_id = tokenizer, stop, eos_id
        self.ids: list[int] = []
        self.emitted = 0  # characters of `text` already handed out
        self.done = False
        self._hold = max((len(s) for s in stop), default=1) - 1

    @property
    def text(self) -> str:
        """The continuation so far, cut before the first stop string (and before eos)."""
        ids = self.ids
        if self.eos_id is not None and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        text = self.tokenizer.decode(ids)
        cuts = [text.find(s) for s in self.stop if s in text]
        return text[: min(cuts)] if cuts else text

    def push(self, token_id: int) -> str:
        """Add one token; return the text that became final."""
        self.ids.append(token_id)
        text = self.text
        full = self.tokenizer.decode(self.ids)
        if len(text) < len(full) or token_id == self.eos_id:
            self.done = True  # a stop string (or eos) arrived: everything before it is final
            return self._take(text, len(text))
        safe = len(text) - self._hold
        while safe > self.emitted and text[safe - 1] == "\ufffd":
            safe -= 1  # half a character: wait for the rest of its bytes
        return self._take(text, safe)

    def finish(self) -> str:
        """Whatever is left when generation ends."""
        return self._take(self.text, len(self.text))

    def _take(self, text: str, end: int) -> str:
        piece = text[self.emitted : max(end, self.emitted)]
        self.emitted = max(end, self.emitted)
        return piece


def sample_text(
    model: DecoderLM | EncoderLM | Seq2SeqLM,
    tokenizer: Any,
    prompt: str = "",
    config: GenerationConfig | None = None,
    generator: torch.Generator | None = None,
    on_text: Callable[[str], None] | None = None,
) -> str:
    """What each family does with a prompt, as text (`minigpt sample` and the trainer call it).

    - `DecoderLM`: continue the prompt (empty: start from the end-of-text token, as GPT-2 does
      for unconditional samples); returns the prompt and its continuation.
    - `EncoderLM`: the prompt must contain [MASK]; returns it with each mask's top-5 fills.
    - `Seq2SeqLM`: encode the prompt and decode an answer; when the prompt holds sentinels
      (<extra_id_0> ...) the answer is put back into the spans they mark.

    `config` defaults to the course panel's `GenerationConfig()`; its `eos_id` defaults to the
    tokenizer's end-of-text. `on_text` receives the continuation piece by piece as it is
    written (GPT and seq2seq without sentinels). `config.num_beams > 1` runs beam search.
    A prompt that does not fit the family raises ValueError with a one-line message.
    """
    cfg = config if config is not None else GenerationConfig()
    dev = model_device(model)
    specials = tokenizer.special_tokens
    if cfg.eos_id is None and EOT in specials:
        cfg = cfg.with_(eos_id=specials[EOT])
    gen = generator if generator is not None else cfg.generator(dev)
    ids = tokenizer.encode(prompt, allowed_special="all") if prompt else []
    stream = TextStream(tokenizer, cfg.stop, cfg.eos_id)

    def on_token(new: torch.Tensor) -> bool:
        piece = stream.push(int(new[0]))
        if piece and on_text is not None:
            on_text(piece)
        return stream.done

    if isinstance(model, DecoderLM):
        start = ids or [specials.get(EOT, 0)]  # unconditional: from end-of-text
        if on_text is not None:
            on_text(prompt)
        if cfg.num_beams > 1:
            found = beam_search(model, start, cfg.max_new_tokens, cfg.num_beams,
                                cfg.length_penalty, cfg.eos_id).tokens  # fmt: skip
            for t in found[len(start) :].tolist():
                on_token(torch.tensor([t]))
        else:
            generate(model, torch.tensor([start], device=dev), config=cfg, generator=gen,
                     on_token=on_token)  # fmt: skip
        rest = stream.finish()
        if rest and on_text is not None:
            on_text(rest)
        return prompt + stream.text
    if isinstance(model, EncoderLM):
        if MASK not in prompt:
            raise ValueError(f"an MLM model fills {MASK} tokens: give a prompt with {MASK} in it")
        lines = [prompt]
        for i, fill in enumerate(fill_masks(model, ids, specials[MASK], top_k=5)):
            shown = ", ".join(f"{tokenizer.decode([t])!r} {p:.2f}"
                              for t, p in zip(fill.token_ids, fill.probs, strict=True))  # fmt: skip
            lines.append(f"  {MASK} #{i + 1}: {shown}")
        if on_text is not None:
            on_text("\n".join(lines))
        return "\n".join(lines)
    if isinstance(model, Seq2SeqLM):
        if not ids:
            raise ValueError(
                "a seq2seq model needs an input: give a prompt "
                "(mark spans to fill with <extra_id_0>, <extra_id_1>, ...)"
            )
        names = [sentinel(i) for i in range(N_SENTINELS)]
        sentinel_ids = [specials[name] for name in names if name in specials]
        spans = any(i in sentinel_ids for i in ids)
        src = torch.tensor(ids, device=dev)
        if cfg.num_beams > 1:
            out = beam_search(model, src, cfg.max_new_tokens, cfg.num_beams, cfg.length_penalty,
                              cfg.eos_id).tokens.tolist()  # fmt: skip
            for t in [] if spans else out:
                if on_token(torch.tensor([t])):
                    break
        else:
            out = generate_seq2seq(model, src, config=cfg, generator=gen,
                                   on_token=None if spans else on_token).tolist()  # fmt: skip
        if spans:  # span filling: the input with spans put back
            filled, _ = fill_sentinels(ids, out, sentinel_ids, eos_id=cfg.eos_id)
            text = tokenizer.decode(filled)
            if on_text is not None:
                on_text(text)
            return text
        rest = stream.finish()
        if rest and on_text is not None:
            on_text(rest)
        return stream.text
    raise ValueError(f"no sampling defined for a {type(model).__name__}")
