"""Objectives: statistical checks over many seeded draws, plus exact invariants.

Tolerances are stated next to each assertion; with the fixed seeds the draws are
deterministic, and every tolerance is at least 4 standard deviations wide so a
different (correct) random stream would pass too.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.objectives import (
    IGNORE_INDEX,
    causal_lm_batch,
    mask_tokens,
    mlm_batch,
    random_segmentation,
    restore_spans,
    span_corruption,
    span_corruption_batch,
    split_at_sentinels,
)

VOCAB = 1000
PAD, MASK, EOS = 0, 1, 2
SENTINELS = list(range(3, 35))  # 32 sentinel ids, like DEFAULT_SPECIAL_TOKENS
SPECIAL = [PAD, MASK, EOS, *SENTINELS]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _text_ids(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randint(len(SPECIAL), VOCAB, shape, generator=_gen(seed))


# --------------------------------------------------------------------- causal LM


def test_causal_lm_batch_shifts_by_one():
    w = torch.arange(12).view(2, 6)
    x, y = causal_lm_batch(w)
    assert x.shape == y.shape == (2, 5)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y, w[:, 1:])


def test_causal_lm_batch_rejects_bad_shape():
    with pytest.raises(ValueError, match="T\\+1"):
        causal_lm_batch(torch.arange(5))


# --------------------------------------------------------------------- masked LM


def test_mask_tokens_rates():
    ids = _text_ids((200, 128))
    ids[:, ::16] = PAD  # sprinkle padding / specials: they must never be chosen
    ids[:, 5::16] = EOS
    inputs, labels = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=_gen(1))
    candidates = ~torch.isin(ids, torch.tensor(SPECIAL))
    selected = labels != IGNORE_INDEX
    n_sel = int(selected.sum())
    rate = n_sel / int(candidates.sum())
    # 22,400 candidates: std of the rate = sqrt(.15 * .85 / 22400) = 0.0024 -> tolerance 0.01
    assert abs(rate - 0.15) < 0.01, rate
    masked = (inputs == MASK) & selected
    unchanged = (inputs == ids) & selected
    replaced = selected & ~masked & ~unchanged
    # ~3,400 selected: std of a 10% share = 0.005, of the 80% share = 0.007 -> tolerance 0.03
    assert abs(int(masked.sum()) / n_sel - 0.8) < 0.03
    assert abs(int(replaced.sum()) / n_sel - 0.1) < 0.03
    assert abs(int(unchanged.sum()) / n_sel - 0.1) < 0.03


def test_mask_tokens_invariants():
    ids = _text_ids((50, 64))
    ids[:, :4] = torch.tensor([PAD, EOS, SENTINELS[0], MASK])
    inputs, labels = mask_tokens(ids, MASK, VOCAB, SPECIAL, prob=0.5, generator=_gen(2))
    special = torch.isin(ids, torch.tensor(SPECIAL))
    assert (labels[special] == IGNORE_INDEX).all()  # special ids never selected
    assert torch.equal(inputs[special], ids[special])  # ... nor altered
    selected = labels != IGNORE_INDEX
    assert torch.equal(labels[selected], ids[selected])  # labels are the originals
    assert torch.equal(inputs[~selected], ids[~selected])  # nothing else changes
    replaced = selected & (inputs != MASK)
    assert not torch.isin(inputs[replaced], torch.tensor(SPECIAL)).any()  # random = ordinary ids
    assert inputs.max() < VOCAB


def test_mask_tokens_is_deterministic_for_a_seed():
    ids = _text_ids((8, 32))
    a = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=_gen(5))
    b = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=_gen(5))
    c = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=_gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_mask_tokens_every_row_gets_a_label():
    ids = _text_ids((500, 3))
    _, labels = mask_tokens(ids, MASK, VOCAB, SPECIAL, generator=_gen(3))
    assert ((labels != IGNORE_INDEX).sum(-1) >= 1).all()
    only_special = torch.tensor([[PAD, PAD, EOS]])
    _, labels = mask_tokens(only_special, MASK, VOCAB, SPECIAL, generator=_gen(3))
    assert (labels == IGNORE_INDEX).all()


def test_mask_tokens_custom_rates_and_errors():
    ids = _text_ids((4, 100))
    inputs, labels = mask_tokens(
        ids, MASK, VOCAB, SPECIAL, prob=1.0, mask_rate=1.0, random_rate=0.0, generator=_gen(0)
    )
    assert (labels == ids).all() and (inputs == MASK).all()
    with pytest.raises(ValueError, match="mask_rate"):
        mask_tokens(ids, MASK, VOCAB, SPECIAL, mask_rate=0.9, random_rate=0.2)
    with pytest.raises(ValueError, match="prob"):
        mask_tokens(ids, MASK, VOCAB, SPECIAL, prob=1.5)


def test_mlm_batch_matches_mask_tokens():
    w = _text_ids((4, 16))
    a = mlm_batch(w, MASK, VOCAB, SPECIAL, generator=_gen(9))
    b = mask_tokens(w, MASK, VOCAB, SPECIAL, generator=_gen(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---------------------------------------------------------------- span corruption


def test_random_segmentation_is_uniform_over_compositions():
    # 5 items in 2 non-empty parts: (1,4) (2,3) (3,2) (4,1), each with probability 1/4.
    g = _gen(0)
    firsts = torch.tensor([int(random_segmentation(5, 2, g)[0]) for _ in range(4000)])
    for k in range(1, 5):
        # std of a 1/4 share over 4000 draws = 0.0068 -> tolerance 0.03
        assert abs((firsts == k).float().mean().item() - 0.25) < 0.03
    parts = random_segmentation(20, 7, g)
    assert parts.sum() == 20 and (parts >= 1).all() and parts.numel() == 7


def _spans(targets: torch.Tensor) -> dict[int, list[int]]:
    return split_at_sentinels(targets, SENTINELS, EOS)


def test_span_corruption_counts_follow_t5():
    g = _gen(0)
    for n in (2, 10, 37, 100, 512):
        ids = _text_ids((n,), seed=n)
        enc, tgt = span_corruption(ids, SENTINELS, EOS, generator=g)
        num_noise = min(max(round(n * 0.15), 1), n - 1)
        num_spans = min(max(round(num_noise / 3.0), 1), n - num_noise)
        spans = _spans(tgt)
        assert len(spans) == num_spans
        assert sum(len(s) for s in spans.values()) == num_noise
        assert enc.numel() == n - num_noise + num_spans
        assert tgt.numel() == num_noise + num_spans + 1


def test_span_corruption_statistics():
    g = _gen(1)
    noise = spans = total = 0
    lengths: list[int] = []
    for i in range(400):
        n = 30 + (i * 7) % 270  # varied lengths 30..299
        _, tgt = span_corruption(_text_ids((n,), seed=i), SENTINELS, EOS, generator=g)
        parts = _spans(tgt)
        lengths += [len(p) for p in parts.values()]
        noise += sum(len(p) for p in parts.values())
        spans += len(parts)
        total += n
    # rounding moves each sequence by at most half a token: tolerance 0.005 on the fraction
    assert abs(noise / total - 0.15) < 0.005
    assert abs(noise / spans - 3.0) < 0.15
    # random segmentation: span lengths really vary (a fixed length 3 would be 0 here)
    assert sum(1 for x in lengths if x == 1) / len(lengths) > 0.15
    assert max(lengths) >= 8


def test_span_corruption_round_trip_and_shape_of_output():
    ids = _text_ids((60,))
    enc, tgt = span_corruption(ids, SENTINELS, EOS, generator=_gen(4))
    assert restore_spans(enc, tgt, SENTINELS, EOS) == ids.tolist()
    assert tgt[-1] == EOS
    sent_in_enc = [t for t in enc.tolist() if t in SENTINELS]
    sent_in_tgt = [t for t in tgt.tolist() if t in SENTINELS]
    assert sent_in_enc == sent_in_tgt == SENTINELS[: len(sent_in_enc)]  # distinct, in order
    assert enc[0] not in SENTINELS  # T5 starts with kept tokens ...
    assert tgt[-2] == ids[-1]  # ... and ends inside a noise span
    is_sent = torch.isin(tgt[:-1], torch.tensor(SENTINELS))
    assert not (is_sent[1:] & is_sent[:-1]).any()  # no empty spans
    assert not (
        torch.isin(enc[1:], torch.tensor(SENTINELS)) & torch.isin(enc[:-1], torch.tensor(SENTINELS))
    ).any()  # no empty kept pieces either


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 200),
    density=st.floats(0.05, 0.6),
    mean_len=st.floats(1.0, 8.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_span_corruption_round_trip_property(n, density, mean_len, seed):
    ids = _text_ids((n,), seed=seed % 1000)
    num_noise = min(max(round(n * density), 1), n - 1)
    if min(max(round(num_noise / mean_len), 1), n - num_noise) > len(SENTINELS):
        return  # covered by the error test
    enc, tgt = span_corruption(ids, SENTINELS, EOS, density, mean_len, _gen(seed))
    assert restore_spans(enc, tgt, SENTINELS, EOS) == ids.tolist()
    assert all(len(s) >= 1 for s in _spans(tgt).values())


def test_span_corruption_determinism_and_errors():
    ids = _text_ids((80,))
    a = span_corruption(ids, SENTINELS, EOS, generator=_gen(7))
    b = span_corruption(ids, SENTINELS, EOS, generator=_gen(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="sentinel"):
        span_corruption(_text_ids((1000,)), SENTINELS[:4], EOS)
    with pytest.raises(ValueError, match="1-D"):
        span_corruption(ids.view(8, 10), SENTINELS, EOS)
    with pytest.raises(ValueError, match="at least 2"):
        span_corruption(ids[:1], SENTINELS, EOS)


def test_span_corruption_batch_pads_and_round_trips():
    w = _text_ids((6, 40))
    w[1, 30:] = PAD  # a shorter, right-padded row
    inputs, targets = span_corruption_batch(w, SENTINELS, EOS, PAD, generator=_gen(8))
    assert inputs.dim() == targets.dim() == 2 and inputs.size(0) == targets.size(0) == 6
    assert inputs.size(1) == 40 - 6 + 2 and targets.size(1) == 6 + 2 + 1
    assert (targets[1] == IGNORE_INDEX).any() and (inputs[1] == PAD).any()
    for i in range(6):
        original = w[i][w[i] != PAD].tolist()
        assert restore_spans(inputs[i], targets[i], SENTINELS, EOS, pad_id=PAD) == original


def test_split_at_sentinels_reads_model_output():
    out = [SENTINELS[0], 50, 51, SENTINELS[1], 60, EOS, 70]
    assert split_at_sentinels(out, SENTINELS, EOS) == {0: [50, 51], 1: [60]}
    enc = [40, SENTINELS[0], 41, SENTINELS[1], SENTINELS[2]]
    assert restore_spans(enc, out, SENTINELS, EOS) == [40, 50, 51, 41, 60]
