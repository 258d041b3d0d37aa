"""`minigpt/plots.py`: what a reader needs to read a plot is on it.

Loss curves start where the untrained model did, sparse series carry markers, and an
attention map writes every weight in its cell at the rounding the lessons print, beside a
colour bar.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from minigpt.plots import SPARSE_POINTS, curve_style, draw_attention_map, training_curves

RECORDS = [
    {"kind": "train", "step": 10, "loss": 3.9},
    {"kind": "train", "step": 20, "loss": 3.1},
    {"kind": "eval", "step": 20, "val_loss": 3.2},
    {"kind": "sample", "step": 20, "text": "The "},
    {"kind": "train", "step": 30, "loss": 2.7},
    {"kind": "eval", "step": 30, "val_loss": 2.9},
]


def test_loss_curves_start_at_the_loss_before_training():
    curves = training_curves(RECORDS, initial_loss=4.6)
    assert curves["val loss"] == ([0, 20, 30], [4.6, 3.2, 2.9])
    assert curves["train loss"] == ([10, 20, 30], [3.9, 3.1, 2.7])
    assert training_curves(RECORDS)["val loss"] == ([20, 30], [3.2, 2.9])  # nothing invented


def test_a_run_that_evaluated_at_step_0_keeps_its_own_point():
    records = [{"kind": "eval", "step": 0, "val_loss": 4.5}, *RECORDS]
    assert training_curves(records, initial_loss=4.6)["val loss"] == ([0, 20, 30], [4.5, 3.2, 2.9])
    assert training_curves(records, initial_loss=float("nan"))["val loss"][0] == [0, 20, 30]


def test_sparse_series_get_markers_dense_ones_a_plain_line():
    assert curve_style(1) == ("", "o")  # one point: a marker, no line
    assert curve_style(3) == ("-", "o")  # three evaluations: each point visible
    assert curve_style(SPARSE_POINTS + 1) == ("-", None)


def test_attention_map_writes_every_weight_as_printed_and_has_a_colour_bar():
    weights = torch.tensor([[0.996, 0.004, 0.0], [0.5, 0.25, 0.25], [0.046, 0.904, 0.05]])
    words = ["a", "b", "c"]
    fig, ax = plt.subplots()
    try:
        image = draw_attention_map(ax, weights, words, title="t")
        cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
                 for t in ax.texts}  # fmt: skip
        # every cell, small weights included, with the rounding the lessons print ("{:.2f}")
        assert cells == {(i, j): f"{weights[i, j].item():.2f}" for i in range(3) for j in range(3)}
        assert cells[(0, 1)] == "0.00" and cells[(2, 0)] == "0.05"
        assert image.get_clim() == (0.0, 1.0)  # a probability scale, the same for every head
        assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "attention weight"
        assert ax.get_xlabel() and ax.get_ylabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == words
    finally:
        plt.close(fig)


def test_attention_map_without_colour_bar_and_with_other_rounding():
    fig, ax = plt.subplots()
    try:
        draw_attention_map(ax, [[0.123, 0.877]], ["x", "y"], queries=["q"], decimals=1,
                           colorbar=False)  # fmt: skip
        assert sorted(t.get_text() for t in ax.texts) == ["0.1", "0.9"]
        assert len(fig.axes) == 1
        assert [t.get_text() for t in ax.get_yticklabels()] == ["q"]
    finally:
        plt.close(fig)


@pytest.mark.parametrize("value", [0.59, 0.61])
def test_cell_text_stays_readable_on_dark_and_bright_cells(value):
    fig, ax = plt.subplots()
    try:
        draw_attention_map(ax, [[value]], ["x"], colorbar=False)
        assert ax.texts[0].get_color() == ("white" if value <= 0.6 else "black")
    finally:
        plt.close(fig)
