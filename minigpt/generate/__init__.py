"""Generation: turning a model's next-token distributions into text (lesson 09).

One idea per file:

- `filters.py` — temperature, top-k, top-p, greedy, repetition penalty: pure functions on logits;
- `settings.py` — `GenerationConfig`, the course's inference panel (200 / 25 / 1 / 0.8);
- `decoding.py` — the decoding loop (`generate`: static or growing KV cache, left-padded
  batches, streaming), `generate_seq2seq`, `fill_masks`, `fill_sentinels`;
- `beam.py` — `beam_search` for DecoderLM and Seq2SeqLM;
- `icl.py` — zero/one/few-shot prompts and label scoring by log-likelihood;
- `text.py` — `sample_text`, text in and text out (what `minigpt sample` and the trainer call).

Import every name from `minigpt.generate`.
"""

from minigpt.generate.beam import BeamResult, beam_search
from minigpt.generate.decoding import (
    CACHE_KINDS,
    MaskFill,
    fill_masks,
    fill_sentinels,
    generate,
    generate_seq2seq,
    left_pad,
)
from minigpt.generate.filters import (
    apply_repetition_penalty,
    apply_temperature,
    filter_logits,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from minigpt.generate.icl import (
    REVIEW_FORMAT,
    PromptFormat,
    classify,
    continuation_log_probs,
    few_shot_prompt,
    one_shot_prompt,
    score_labels,
    zero_shot_prompt,
)
from minigpt.generate.settings import GenerationConfig
from minigpt.generate.text import TextStream, sample_text

__all__ = [
    "CACHE_KINDS", "REVIEW_FORMAT", "BeamResult", "GenerationConfig", "MaskFill", "PromptFormat",
    "TextStream", "apply_repetition_penalty", "apply_temperature", "beam_search", "classify",
    "continuation_log_probs", "few_shot_prompt", "fill_masks", "fill_sentinels", "filter_logits",
    "generate", "generate_seq2seq", "left_pad", "one_shot_prompt", "sample_next", "sample_text",
    "score_labels", "top_k_filter", "top_p_filter", "zero_shot_prompt",
]  # fmt: skip
