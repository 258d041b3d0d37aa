"""Plots of training runs: loss curves read from a run's metrics.jsonl.

A loss curve is the first thing to look at after (or during) a run: a falling
training loss says the optimizer works; a validation loss that tracks it says the
model generalises instead of memorising; a gap that opens says it has started to
overfit; a curve that jumps up says the learning rate is too high. The trainer
(`minigpt.training.loop`, through `minigpt.training.metrics.MetricsLog`) appends
one JSON object per line to `metrics.jsonl` — kind "train" (step, tokens, loss,
lr, tokens_per_s), "eval" (val_loss, val_ppl, val_bpb) or "sample" — and calls
`plot_training_curves` to redraw `loss.png` at every checkpoint. Lessons 06-08
use the same functions for their figures, and lessons 03-04 draw their attention
maps with `draw_attention_map`.

matplotlib is imported inside the functions with the non-interactive Agg backend,
so importing minigpt never needs a display or pays matplotlib's start-up cost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file, in order (a missing file gives [])."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # a run killed mid-write leaves half a last line: skip it
                continue
            raise ValueError(f"{path}:{number} is not valid JSON; delete that line") from None
    return records


def series(
    records: Iterable[Mapping[str, Any]], kind: str, key: str, x: str = "step"
) -> tuple[list[float], list[float]]:
    """(xs, ys) of `key` over `x` for the records of one kind, skipping non-finite values."""
    xs, ys = [], []
    for r in records:
        if r.get("kind") == kind and key in r and x in r and math.isfinite(r[key]):
            xs.append(r[x])
            ys.append(r[key])
    return xs, ys


SPARSE_POINTS = 30  # a series with at most this many points is drawn with markers


def curve_style(n_points: int) -> tuple[str, str | None]:
    """(line style, marker) for a series of `n_points`: a sparse series (a few evaluations)
    gets a marker on every point, since a bare line through three points looks like data
    measured everywhere between them; a single point is a marker alone."""
    marker = "o" if n_points <= SPARSE_POINTS else None
    return ("-" if n_points > 1 else "", marker)


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    xlabel: str = "step",
    ylabel: str = "loss (nats per token)",
    title: str | None = None,
    hline: tuple[float, str] | None = None,
    logy: bool = False,
) -> Path:
    """Draw named (xs, ys) curves on one axis and save a PNG; returns the path.

    `hline=(value, label)` adds a dashed reference line, e.g. ln(vocab_size), the loss
    of a model that guesses uniformly.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (xs, ys) in curves.items():
        if len(xs) == 0:
            continue
        style, marker = curve_style(len(xs))
        ax.plot(xs, ys, style, marker=marker, label=label, linewidth=1.5, markersize=4)
    if hline is not None:
        ax.axhline(hline[0], color="grey", linestyle="--", linewidth=1, label=hline[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_training_curves(
    metrics: str | Path | Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    hline: tuple[float, str] | None = None,
    initial_loss: float | None = None,
) -> Path:
    """Training and validation loss against step, from a metrics.jsonl path or its records.

    `initial_loss` is the validation loss measured before the first step: it becomes the
    validation curve's first point, at step 0, so the curve starts where the untrained model
    did (near ln V) instead of at the first evaluation, after the steepest fall is over.
    """
    records = read_metrics(metrics) if isinstance(metrics, (str, Path)) else list(metrics)
    curves = training_curves(records, initial_loss=initial_loss)
    return plot_curves(curves, path, title=title, hline=hline)


def training_curves(
    records: Iterable[Mapping[str, Any]], *, initial_loss: float | None = None
) -> dict[str, tuple[list[float], list[float]]]:
    """The "train loss" and "val loss" series of a run's records; `initial_loss` (measured
    before training) is put first on the validation curve, at step 0, unless the run already
    evaluated at step 0."""
    records = list(records)
    val_xs, val_ys = series(records, "eval", "val_loss")
    if initial_loss is not None and math.isfinite(initial_loss) and (not val_xs or val_xs[0] > 0):
        val_xs, val_ys = [0, *val_xs], [initial_loss, *val_ys]
    return {"train loss": series(records, "train", "loss"), "val loss": (val_xs, val_ys)}


def draw_attention_map(
    ax: Any,
    weights: Any,
    keys: Sequence[str],
    queries: Sequence[str] | None = None,
    *,
    title: str | None = None,
    decimals: int = 2,
    colorbar: bool = True,
) -> Any:
    """Draw one attention map (rows: query words, columns: the words they attend to) on a
    matplotlib axis; returns the image.

    The colour scale is fixed to 0..1 (a weight is a probability, so maps of different heads
    compare by eye) and shown in a colour bar; every cell carries its weight rounded to
    `decimals`, the rounding a lesson prints its matrices with, so the plot and the printed
    matrix say the same number, 0.00 included (a blank cell would hide a small weight).
    """
    import numpy as np

    values = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights,
                        dtype=float)  # fmt: skip
    queries = list(keys) if queries is None else list(queries)
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(keys)), list(keys), rotation=60)
    ax.set_yticks(range(len(queries)), queries)
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("word (query)")
    if title:
        ax.set_title(title)
    size = 7 if max(values.shape) <= 10 else 5.5
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            w = values[i, j]
            colour = "black" if w > 0.6 else "white"  # viridis is bright (yellow) near 1
            ax.text(j, i, f"{w:.{decimals}f}", ha="center", va="center", fontsize=size,
                    color=colour)  # fmt: skip
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return image


# Colours of a pipeline timeline's passes: forward, backward (input gradient), weight
# gradient; waiting in a receive is drawn as a thin grey bar under the stage's row.
_PIPE_COLOURS = {"F": "#4c72b0", "B": "#dd8452", "W": "#55a868"}


def plot_pipeline_timeline(
    panels: Mapping[str, Sequence[Any]],
    path: str | Path,
    *,
    title: str | None = None,
    xlabel: str = "time (units of one forward)",
    scale: float = 1.0,
) -> Path:
    """Gantt charts of pipeline timelines (lesson 13), one panel per named timeline.

    Each timeline is a sequence of `minigpt.parallel.schedules.Event` (stage, op, microbatch,
    start, end): simulated by `simulate` or measured by the executor. One row per stage,
    stage 0 on top; F, B and W bars carry their micro-batch number, the white gaps are the
    bubble, grey bars under a row are time spent waiting in a receive. `scale` multiplies the
    times (1000 turns measured seconds into milliseconds).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_stages = max(1 + max(e.stage for e in events) for events in panels.values())
    height = 0.9 + (0.42 * n_stages + 0.75) * len(panels)
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, figsize=(10, height))
    span = max(e.end for events in panels.values() for e in events) * scale
    for ax, (name, events) in zip(axes[:, 0], panels.items(), strict=True):
        for e in events:
            start, width = e.start * scale, (e.end - e.start) * scale
            if e.op in _PIPE_COLOURS:
                ax.barh(e.stage, width, left=start, height=0.72, color=_PIPE_COLOURS[e.op],
                        edgecolor="white", linewidth=0.5)  # fmt: skip
                if width > span / 90:
                    ax.text(start + width / 2, e.stage, str(e.microbatch), ha="center",
                            va="center", fontsize=6.5, color="white")  # fmt: skip
            elif e.op == "recv" and width > 0:
                ax.barh(e.stage + 0.43, width, left=start, height=0.1, color="0.6")
        ax.set_ylim(n_stages - 0.45, -0.6)
        ax.set_yticks(range(n_stages), [f"stage {s}" for s in range(n_stages)], fontsize=8)
        ax.set_xlim(0, span * 1.01)
        ax.set_title(name, fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel(xlabel, fontsize=8)  # every panel: each is read on its own
    used = {e.op for events in panels.values() for e in events}
    names = {"F": "forward", "B": "backward (B: input gradient only, where W is split off)",
             "W": "weight gradient (W)"}  # fmt: skip
    if "W" not in used:
        names["B"] = "backward"
    handles = [Patch(color=c, label=names[op]) for op, c in _PIPE_COLOURS.items() if op in used]
    if "recv" in used:
        handles.append(Patch(color="0.6", label="waiting in a receive"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.3 / height))  # room: legend, title
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
