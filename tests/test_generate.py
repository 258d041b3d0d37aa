"""Sampling filters on the course's example distribution, and generation with the three families.

The course's inference slide ranks next words as cake 0.20, donut 0.10, banana 0.02,
apple 0.01, ... ; the rest of the vocabulary (0.67) is spread here over 134 words of
0.005 each, so every listed word stays in its rank.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_float_close

from minigpt.attention import StaticKVCache
from minigpt.config import ModelConfig
from minigpt.generate import (
    GenerationConfig,
    apply_repetition_penalty,
    apply_temperature,
    beam_search,
    continuation_log_probs,
    few_shot_prompt,
    fill_masks,
    fill_sentinels,
    generate,
    generate_seq2seq,
    one_shot_prompt,
    sample_next,
    sample_text,
    score_labels,
    top_k_filter,
    top_p_filter,
    zero_shot_prompt,
)
from minigpt.models import DecoderLM, EncoderLM, Seq2SeqLM
from minigpt.tokenizer import EOT, CharTokenizer

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
    cached = generate(model, prompt, 20, temperature=0, cache="growing")
    plain = generate(model, prompt, 20, temperature=0, cache="none")
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


# ------------------------------------------------------------- the generation config


def test_generation_config_defaults_are_the_course_panel_and_validate():
    cfg = GenerationConfig()
    assert (cfg.max_new_tokens, cfg.top_k, cfg.top_p, cfg.temperature) == (200, 25, 1.0, 0.8)
    assert not cfg.is_greedy and GenerationConfig(greedy=True).sampling_temperature == 0
    assert GenerationConfig(stop="\n").stop == ("\n",)
    for bad in (dict(top_k=0), dict(top_p=0.0), dict(temperature=-1), dict(num_beams=0),
                dict(repetition_penalty=0), dict(max_new_tokens=-1), dict(stop=("",))):
        with pytest.raises(ValueError):
            GenerationConfig(**bad)
    model = _decoder()
    with pytest.raises(ValueError, match="GenerationConfig"):
        generate(model, [1, 2], config=cfg, temperature=0.5)


def test_greedy_flag_and_seeds_repeat_exactly():
    model = _decoder()
    prompt = torch.tensor([[3, 4, 5]])
    assert torch.equal(generate(model, prompt, 8, greedy=True), generate(model, prompt, 8, 0.0))
    a = generate(model, prompt, 10, seed=11)
    assert torch.equal(a, generate(model, prompt, 10, seed=11))
    assert not torch.equal(a, generate(model, prompt, 10, seed=12))  # 50^10 outcomes
    cfg = GenerationConfig(max_new_tokens=10, seed=5)
    assert torch.equal(generate(model, prompt, config=cfg), generate(model, prompt, config=cfg))


def test_repetition_penalty_lowers_seen_tokens_only():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]
    assert torch.equal(apply_repetition_penalty(logits, torch.tensor([[0]]), 1.0), logits)


# ------------------------------------------------------------------ the static cache


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope"])
def test_static_cache_logits_equal_full_recomputation_at_every_step(positional):
    model = _decoder(positional).eval()
    seq = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(4))
    cache = model.new_cache(16)
    with torch.no_grad():
        logits, _ = model(seq[:, :5], cache=cache)
        assert_float_close(logits, model(seq[:, :5])[0])
        for t in range(5, 16):
            step, _ = model(seq[:, t : t + 1], cache=cache)
            full, _ = model(seq[:, : t + 1])
            assert_float_close(step[:, 0], full[:, -1], msg=f"step {t}")
    assert cache[0].length == 16
    with pytest.raises(ValueError, match="max_len=16"):  # one-line error, not a crash
        model(seq[:, :1], cache=cache)
    with pytest.raises(ValueError, match="max_len"):
        model.new_cache(17)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope"])
def test_static_growing_and_no_cache_generate_the_same_past_max_len(positional):
    model = _decoder(positional)
    prompt = torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(3))
    outs = [generate(model, prompt, 20, greedy=True, cache=kind)  # 25 tokens, max_len 16
            for kind in ("static", "growing", "none")]
    assert outs[0].shape == (3, 25)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    long_prompt = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(5))
    assert generate(model, long_prompt, 3, greedy=True).shape == (1, 23)  # no crash either


def test_static_cache_writes_in_place_without_reallocating():
    cache = StaticKVCache(8)
    k, v = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    k_all, _ = cache.append(k, v)
    ptr = cache.k_buffer.data_ptr()
    for _ in range(5):
        k_all, v_all = cache.append(torch.randn(2, 4, 1, 5), torch.randn(2, 4, 1, 5))
    assert cache.k_buffer.data_ptr() == ptr and k_all.data_ptr() == ptr  # a view, no copy
    assert k_all.shape == (2, 4, 8, 5) and torch.equal(k_all[:, :, :3], k)
    with pytest.raises(ValueError, match="static KV cache holds 8 positions, 9 needed"):
        cache.append(torch.randn(2, 4, 1, 5), torch.randn(2, 4, 1, 5))
    cache.reorder(torch.tensor([1, 1, 0]))
    assert cache.k.shape == (3, 4, 8, 5) and torch.equal(cache.k[0], cache.k[1])
    cache.reset()
    assert cache.length == 0 and cache.k is None


# --------------------------------------------------------- prompts of different lengths


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope"])
def test_left_padded_batch_rows_equal_generating_each_prompt_alone(positional):
    model = _decoder(positional, max_len=32)
    g = torch.Generator().manual_seed(6)
    prompts = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in (2, 7, 4)]
    alone = [generate(model, p, 12, greedy=True) for p in prompts]
    eos = int(alone[0][4])  # a token row 0 writes: it finishes early, the others go on
    batched = generate(model, prompts, 12, greedy=True, eos_id=eos)
    for p, row in zip(prompts, batched, strict=True):
        assert torch.equal(row, generate(model, p, 12, greedy=True, eos_id=eos))
    assert len(batched[0]) < len(batched[1]) and int(batched[0][-1]) == eos
    # logits too: a padded row's last-position logits equal its own forward
    scores = continuation_log_probs(model, prompts, [[1], [2, 3]])
    for i, p in enumerate(prompts):
        alone_scores = continuation_log_probs(model, [p], [[1], [2, 3]])[0]
        assert_float_close(scores[i], alone_scores)
    # and past max_len the padded batch still matches
    long = generate(model, prompts, 30, greedy=True)
    for p, row in zip(prompts, long, strict=True):
        assert torch.equal(row, generate(model, p, 30, greedy=True))


def test_streaming_callback_sees_every_token_and_can_stop():
    model = _decoder()
    seen: list[int] = []
    out = generate(model, [1, 2], 6, greedy=True, on_token=lambda t: seen.append(int(t[0])))
    assert seen == out[2:].tolist()
    n: list[int] = []
    out = generate(model, [1, 2], 6, greedy=True, on_token=lambda t: n.append(1) or len(n) == 3)
    assert out.numel() == 5


def test_sample_text_streams_pieces_and_cuts_at_stop_strings():
    text = "abcab cab abc cab\n" * 3
    tok = CharTokenizer.train(text, special_tokens=[EOT])
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_len=32, d_model=32, n_heads=4, n_layers=1,
                      d_ff=64)
    model = DecoderLM(cfg)
    settings = GenerationConfig(max_new_tokens=40, seed=3, temperature=1.5, top_k=None)
    pieces: list[str] = []
    full = sample_text(model, tok, "ab", settings, on_text=pieces.append)
    assert "".join(pieces) == full and full.startswith("ab")
    assert full == sample_text(model, tok, "ab", settings)  # seeded: same text
    stop = next(c for c in full[2:] if c != "\ufffd")
    cut = sample_text(model, tok, "ab", settings.with_(stop=(stop,)))
    assert cut == full[: full.index(stop, 2)] and stop not in cut[2:]


# ------------------------------------------------------------------------ beam search


def test_beam_width_one_is_greedy():
    model = _decoder(max_len=32)
    for prompt in ([1, 2, 3], [7]):
        greedy = generate(model, prompt, 10, greedy=True)
        assert torch.equal(beam_search(model, prompt, 10, beam_width=1).tokens, greedy)
        eos = int(greedy[len(prompt) + 3])
        greedy = generate(model, prompt, 10, greedy=True, eos_id=eos)
        found = beam_search(model, prompt, 10, beam_width=1, eos_id=eos).tokens
        assert torch.equal(found, greedy)
    s2s = _seq2seq()
    src = torch.tensor([5, 6, 7, 8])
    assert torch.equal(beam_search(s2s, src, 8, beam_width=1).tokens,
                       generate_seq2seq(s2s, src, 8, greedy=True))


def _seq2seq() -> Seq2SeqLM:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=VOCAB, max_len=16, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                      pad_id=0, start_id=0)
    return Seq2SeqLM(cfg)


# The constructed case: after the prompt P, "A" comes 40% of the time but is followed by one of
# four tokens X1..X4 evenly (each whole answer 10%); "B" comes 35% and is always followed by "Y"
# (35%); "C" 25%, then "Z". Greedy writes A then some X (10%); a beam of 2 keeps B and finds
# "B Y" (35%), the likeliest answer.
P, A, B, C, Y, Z, EOS = 1, 2, 3, 4, 5, 6, 7
XS = (8, 9, 10, 11)


def _constructed_answers(n: int, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(n, generator=g)
    first = torch.where(u < 0.4, A, torch.where(u < 0.75, B, C))
    x = torch.tensor(XS)[torch.randint(0, 4, (n,), generator=g)]
    second = torch.where(first == A, x, torch.where(first == B, Y, Z))
    return torch.stack([first, second, torch.full((n,), EOS)], dim=1)  # (n, 3)


def _train_constructed(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cfg = ModelConfig(vocab_size=12, max_len=8, d_model=32, n_heads=2, n_layers=1, d_ff=64,
                      pad_id=0, start_id=0)
    model = DecoderLM(cfg) if family == "decoder" else Seq2SeqLM(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    steps = 200
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)  # settle at the end
    for _ in range(steps):
        answers = _constructed_answers(256, g)
        if family == "decoder":
            seq = torch.cat([torch.full((256, 1), P), answers], dim=1)
            _, loss = model(seq[:, :-1], seq[:, 1:])
        else:
            _, loss = model(torch.full((256, 1), P), answers)
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    return model.eval()


@pytest.mark.parametrize("family", ["decoder", "seq2seq"])
def test_beam_search_beats_greedy_on_a_trained_constructed_case(family):
    model = _train_constructed(family)
    prompt = [P]
    answers = [[A, x, EOS] for x in XS] + [[B, Y, EOS], [C, Z, EOS]]
    logp = continuation_log_probs(model, [prompt], answers)[0].exp()
    # the model learned the distribution (0.1 x 4, 0.35, 0.25) to within 0.03
    torch.testing.assert_close(logp, torch.tensor([0.1] * 4 + [0.35, 0.25]), atol=0.03, rtol=0)
    if family == "decoder":
        greedy = generate(model, prompt, 3, greedy=True, eos_id=EOS)[1:].tolist()
        result = beam_search(model, prompt, 3, beam_width=2, eos_id=EOS)
        found = result.tokens[1:].tolist()
    else:
        greedy = generate_seq2seq(model, prompt, 3, greedy=True, eos_id=EOS).tolist()
        result = beam_search(model, prompt, 3, beam_width=2, eos_id=EOS)
        found = result.tokens.tolist()
    assert greedy[0] == A and greedy[1] in XS  # greedy takes the likelier first token...
    assert found == [B, Y, EOS]  # ...beam search finds the likelier answer
    assert math.exp(result.log_prob) > 3 * logp[answers.index(greedy)].item()
    assert_float_close(torch.tensor(result.log_prob), logp[4].log(), ulps=1e3)


def test_length_penalty_trades_length_for_probability():
    model = _decoder(max_len=32)
    plain = beam_search(model, [1, 2], 6, beam_width=3, length_penalty=0.0)
    normed = beam_search(model, [1, 2], 6, beam_width=3, length_penalty=1.0)
    assert plain.score == pytest.approx(plain.log_prob)
    assert normed.score == pytest.approx(normed.log_prob / 6)


# -------------------------------------------------------------- in-context learning


def test_zero_one_few_shot_prompts_in_the_course_format():
    assert zero_shot_prompt("I loved this movie!") == (
        "Classify this review:\nI loved this movie!\nSentiment:"
    )
    one = one_shot_prompt("I don't like this chair.", ("I loved this movie!", "Positive"))
    assert one == (
        "Classify this review:\nI loved this movie!\nSentiment: Positive\n\n"
        "Classify this review:\nI don't like this chair.\nSentiment:"
    )
    few = few_shot_prompt("Who would use this product?",
                          [("I loved this movie!", "Positive"), ("I don't like this chair.",
                                                                  "Negative")])
    assert few.count("Classify this review:") == 3 and few.endswith("Sentiment:")


def test_label_scores_are_the_log_likelihood_of_each_label():
    text = "Classify this review:\nSentiment: Positive Negative\n"
    tok = CharTokenizer.train(text)
    torch.manual_seed(1)
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_len=64, d_model=32, n_heads=4,
                      n_layers=1, d_ff=64)
    model = DecoderLM(cfg).eval()
    prompt = "Sentiment:"
    scores = score_labels(model, tok, prompt, ["Positive", "Negative"])
    ids = tok.encode(prompt + " Positive")
    with torch.no_grad():
        logp = model(torch.tensor([ids]))[0][0].log_softmax(-1)
    n = len(prompt)
    manual = sum(logp[t - 1, ids[t]].item() for t in range(n, len(ids)))
    assert scores["Positive"] == pytest.approx(manual, rel=1e-5)
    assert scores["Positive"] != scores["Negative"]
