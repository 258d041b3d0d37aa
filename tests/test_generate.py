"""Sampling filters on the course's example distribution, and generation with the three families.

The course's inference slide ranks next words as cake 0.20, donut 0.10, banana 0.02,
apple 0.01, ... ; the rest of the vocabulary (0.67) is spread here over 134 words of
0.005 each, so every listed word stays in its rank.
"""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.config import ModelConfig
from minigpt.generate import (
    apply_temperature,
    fill_masks,
    fill_sentinels,
    generate,
    generate_seq2seq,
    sample_next,
    top_k_filter,
    top_p_filter,
)
from minigpt.models import DecoderLM, EncoderLM, Seq2SeqLM

CAKE, DONUT, BANANA, APPLE = 0, 1, 2, 3
COURSE_PROBS = torch.tensor([0.20, 0.10, 0.02, 0.01] + [0.005] * 134)


def _course_logits() -> torch.Tensor:
    return COURSE_PROBS.log()


def _kept(logits: torch.Tensor) -> set[int]:
    return set(torch.isfinite(logits).nonzero().flatten().tolist())


# ----------------------------------------------------------------------- filters


def test_random_weighted_sampling_draws_each_word_at_its_probability():
    """Temperature 1, no filter: "banana" at 0.02 is drawn about 2% of the time."""
    n = 20_000
    gen = torch.Generator().manual_seed(0)
    draws = sample_next(_course_logits().expand(n, -1), 1.0, generator=gen)
    freq = torch.bincount(draws, minlength=len(COURSE_PROBS)).double() / n
    for word in (CAKE, DONUT, BANANA, APPLE):
        p = COURSE_PROBS[word].item()
        assert abs(freq[word].item() - p) < 5 * math.sqrt(p * (1 - p) / n)  # 5 sigma


def test_top_k_keeps_exactly_k():
    assert _kept(top_k_filter(_course_logits(), 3)) == {CAKE, DONUT, BANANA}
    ties = torch.zeros(2, 10)  # all equal: a threshold would keep all ten
    assert (torch.isfinite(top_k_filter(ties, 4)).sum(-1) == 4).all()
    assert torch.equal(top_k_filter(ties, 50), ties)
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(ties, 0)


@pytest.mark.parametrize(
    "p, expected",
    [
        (0.30, {CAKE, DONUT}),  # the slide's p = 0.3: 0.20 + 0.10 reaches it exactly
        (0.31, {CAKE, DONUT, BANANA}),
        (0.20, {CAKE}),
        (0.05, {CAKE}),  # at least one token, always
        (0.325, {CAKE, DONUT, BANANA, APPLE}),
    ],
)
def test_top_p_on_the_course_example(p, expected):
    assert _kept(top_p_filter(_course_logits(), p)) == expected


def test_top_p_batched_and_identity():
    logits = torch.stack([_course_logits(), _course_logits().flip(0)])
    kept = torch.isfinite(top_p_filter(logits, 0.3))
    assert kept.sum(-1).tolist() == [2, 2]
    assert kept[1, -1] and kept[1, -2]
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(logits, 0.0)


def test_temperature_sharpens_and_flattens():
    logits = _course_logits()
    p1 = logits.softmax(-1)
    assert torch.allclose(apply_temperature(logits, 1.0).softmax(-1), p1)
    assert apply_temperature(logits, 0.5).softmax(-1)[CAKE] > p1[CAKE]
    assert apply_temperature(logits, 2.0).softmax(-1)[CAKE] < p1[CAKE]
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(logits, 0.0)


def test_greedy_is_argmax():
    logits = torch.randn(5, 40, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(sample_next(logits, top_k=1), logits.argmax(-1))
    assert sample_next(_course_logits(), temperature=0).item() == CAKE


def test_sampling_is_seeded_and_follows_the_filtered_distribution():
    logits = _course_logits().expand(20000, -1)
    a = sample_next(logits, top_k=3, generator=torch.Generator().manual_seed(1))
    b = sample_next(logits, top_k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {CAKE, DONUT, BANANA}
    # renormalised top-3: cake 0.20 / 0.32 = 0.625; std over 20,000 draws 0.0034 -> tol 0.02
    assert abs((a == CAKE).float().mean().item() - 0.625) < 0.02
    # plain sampling picks words outside the top 3 about 68% of the time
    c = sample_next(logits, generator=torch.Generator().manual_seed(2))
    assert abs((c > BANANA).float().mean().item() - 0.68) < 0.02


# -------------------------------------------------------------------- generation

VOCAB = 50


def _decoder(positional: str = "sinusoidal", max_len: int = 16) -> DecoderLM:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=VOCAB, max_len=max_len, d_model=32, n_heads=4, n_layers=2, d_ff=64,
        positional=positional,
    )  # fmt: skip
    return DecoderLM(cfg)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope"])
def test_cached_and_uncached_greedy_agree(positional):
    model = _decoder(positional)
    prompt = torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(3))
    # 20 new tokens on a max_len of 16: the cache is used, then the window slides
    cached = generate(model, prompt, 20, temperature=0, use_cache=True)
    plain = generate(model, prompt, 20, temperature=0, use_cache=False)
    assert cached.shape == (3, 25)
    assert torch.equal(cached, plain)
    assert torch.equal(cached[:, :5], prompt)


def test_greedy_generation_matches_argmax_of_a_full_forward():
    model = _decoder().eval()
    prompt = torch.tensor([1, 2, 3])
    out = generate(model, prompt, 4, temperature=0)
    assert out.dim() == 1 and out.numel() == 7
    for t in range(3, 7):
        logits, _ = model(out[None, :t])
        assert logits[0, -1].argmax().item() == out[t].item()


def test_generation_is_deterministic_with_a_generator_and_restores_mode():
    model = _decoder()
    model.train()
    prompt = torch.tensor([[4, 5]])
    a = generate(model, prompt, 8, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(7))
    b = generate(model, prompt, 8, top_k=10, top_p=0.9, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert model.training


def test_generation_stops_at_eos_and_pads_finished_rows():
    model = _decoder()
    prompt = torch.tensor([[1, 2], [3, 4]])
    free = generate(model, prompt, 6, temperature=0)
    eos = free[0, 2].item()  # the first token row 0 writes greedily
    out = generate(model, prompt, 6, temperature=0, eos_id=eos)
    assert out[0, 2] == eos and (out[0, 2:] == eos).all()
    assert out.size(1) <= 8
    with pytest.raises(ValueError, match="shape"):
        generate(model, torch.tensor([], dtype=torch.long), 3)


def test_fill_masks_returns_top_k_per_mask():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, max_len=16, d_model=32, n_heads=4, n_layers=1, d_ff=64)
    model = EncoderLM(cfg)
    mask_id = 7
    ids = torch.tensor([1, mask_id, 3, mask_id, 5])
    fills = fill_masks(model, ids, mask_id, top_k=5)
    assert [f.position for f in fills] == [1, 3]
    for f in fills:
        assert len(f.token_ids) == 5 and f.probs == sorted(f.probs, reverse=True)
        logits, _ = model(ids[None])
        assert f.token_ids[0] == logits[0, f.position].argmax().item()
    batched = fill_masks(model, ids[None].repeat(2, 1), mask_id, top_k=3)
    assert len(batched) == 2 and len(batched[1]) == 2


def test_seq2seq_generation_cache_and_sentinel_filling():
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=VOCAB, max_len=16, d_model=32, n_heads=4, n_layers=2, d_ff=64,
        pad_id=0, start_id=0,
    )  # fmt: skip
    model = Seq2SeqLM(cfg)
    src = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    cached = generate_seq2seq(model, src, 10, temperature=0)
    plain = generate_seq2seq(model, src, 10, temperature=0, use_cache=False)
    assert cached.shape == (2, 10) and torch.equal(cached, plain)
    # greedy: each token is the argmax of a teacher-forced forward on the tokens before it
    model.eval()
    logits, _ = model(
        src, decoder_inputs=torch.cat([torch.zeros(2, 1, dtype=torch.long), cached[:, :-1]], dim=1)
    )
    assert torch.equal(logits.argmax(-1), cached)
    one = generate_seq2seq(model, src[0], 30, temperature=0)
    assert one.dim() == 1 and one.numel() == cfg.max_len  # capped at the decoder's positions

    sentinels = [40, 41, 42]
    filled, spans = fill_sentinels([5, 40, 8, 41], [40, 6, 7, 41, 9, 1], sentinels, eos_id=1)
    assert filled == [5, 6, 7, 8, 9] and spans == {0: [6, 7], 1: [9]}
