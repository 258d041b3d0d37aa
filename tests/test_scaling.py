"""Scaling arithmetic: parameter counts equal the real tensors, 6ND, petaflop/s-days, the
Chinchilla split and the course's table, and the fits recover known laws."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.config import PRESETS, ModelConfig
from minigpt.models import MODEL_CLASSES, build_model
from minigpt.scaling import (
    COURSE_MODELS,
    PFLOPS_DAY,
    chinchilla_optimal,
    compute_optimal_tokens,
    count_parameters,
    fit_power_law,
    flops_per_token,
    from_pflops_days,
    isoflop_optimum,
    to_pflops_days,
    training_flops,
)

VARIANTS = [{}, {"tie_weights": False}, {"bias": False, "positional": "learned"},
            {"norm_first": False, "positional": "rope"}]  # fmt: skip


@pytest.mark.parametrize("model_class", list(MODEL_CLASSES))
@pytest.mark.parametrize("preset", list(PRESETS))
def test_formula_counts_the_real_tensors(model_class, preset):
    for overrides in VARIANTS:
        config = ModelConfig.from_preset(preset, pad_id=0, start_id=0, **overrides)
        with torch.device("meta"):  # the real modules, no memory
            model = build_model(model_class, config)
        for exclude in (False, True):
            assert count_parameters(config, model_class, exclude) == model.num_parameters(
                exclude
            ), (overrides, exclude)
        assert model.flops_per_token(16) == flops_per_token(config, model_class, 16)


def test_known_sizes_and_errors():
    assert count_parameters(ModelConfig.from_preset("gpt2-small")) == 124_439_808
    with pytest.raises(ValueError, match="unknown model class"):
        count_parameters(ModelConfig.from_preset("tiny"), "LSTM")


def test_budgets_and_chinchilla():
    assert training_flops(1e9, 20e9) == 1.2e20
    assert PFLOPS_DAY == 8.64e19
    assert from_pflops_days(to_pflops_days(3.14e23)) == pytest.approx(3.14e23)
    assert to_pflops_days(training_flops(175e9, 300e9)) == pytest.approx(3646, rel=1e-3)
    n, d = chinchilla_optimal(training_flops(70e9, 1.4e12))
    assert n == pytest.approx(70e9) and d == pytest.approx(1.4e12)
    n10, d10 = chinchilla_optimal(10 * training_flops(70e9, 1.4e12))
    assert n10 / n == pytest.approx(math.sqrt(10)) and d10 / d == pytest.approx(math.sqrt(10))
    with pytest.raises(ValueError):
        chinchilla_optimal(0)
    # the course's table: compute-optimal tokens ~20x parameters
    table = {m.name: compute_optimal_tokens(m.n_params) for m in COURSE_MODELS}
    assert table["Chinchilla"] == pytest.approx(1.4e12)
    assert table["LLaMA-65B"] == pytest.approx(1.3e12)
    assert table["GPT-3"] == table["OPT-175B"] == pytest.approx(3.5e12)
    assert table["BLOOM"] == pytest.approx(3.52e12)
    undertrained = [m.name for m in COURSE_MODELS if m.tokens < 0.5 * table[m.name]]
    assert undertrained == ["GPT-3", "OPT-175B", "BLOOM"]


def test_fits_recover_known_laws():
    xs = [1e3, 1e4, 1e5, 1e6]
    k, a = fit_power_law(xs, [5.0 * x**-0.3 for x in xs])
    assert k == pytest.approx(5.0) and a == pytest.approx(-0.3)
    with pytest.raises(ValueError):
        fit_power_law([1.0, 1.0], [2.0, 3.0])
    ns = [1e4, 3e4, 1e5, 3e5, 1e6]
    losses = [(math.log(n) - math.log(7e4)) ** 2 + 2.0 for n in ns]
    assert isoflop_optimum(ns, losses) == pytest.approx(7e4, rel=1e-6)
    falling = [3.0, 2.5, 2.2, 2.0, 1.9]  # no minimum inside: the best measured point
    assert isoflop_optimum(ns, falling) == 1e6
