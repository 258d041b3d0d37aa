"""The lesson harness: what every `lessons/NN_topic.py` does around its chapter.

Each lesson is a chapter a student runs, so its own code should be the chapter: the
experiment, the prose it prints, the plots it draws. What is the same in all of them lives
here, written once: the flags (`--quick`, `--device`, `--out-dir`, `--seed`), checking the device
and the seed *before* any work starts (a typo or `--device cuda` on a laptop is one line and
exit status 2, not a PyTorch traceback after a minute of data preparation), seeding every
random generator so a run repeats exactly, progress lines for the training a lesson does
itself, the elapsed time at the end, and saving a figure so that every PNG's path is printed
where the reader will look for it.

A lesson's `if __name__ == "__main__":` block is one call::

    run_lesson(main, __doc__, "runs/lessons/03_self_attention", quick_help="fewer samples")

`main(quick=..., device=..., out_dir=..., seed=...)` stays a plain function, so tests call it
directly; a `main` without a `seed` parameter still runs (seeded globally, before it starts).
This module is in layer 6 with the CLI: it is the only lesson code that parses arguments.
"""

from __future__ import annotations

import argparse
import inspect
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from minigpt.device import resolve_device

DEFAULT_SEED = 0  # the seed every printed figure in a lesson's docstring and test was made with
MAX_SEED = 2**32 - 1  # the largest seed every generator accepts (numpy's limit)


def lesson_name(default_out: str | Path) -> str:
    """ "lesson 03" for an output folder named like runs/lessons/03_self_attention."""
    number = Path(default_out).name.split("_")[0]
    return f"lesson {number}" if number.isdigit() else Path(default_out).name


def lesson_parser(
    doc: str | None,
    default_out: str | Path,
    *,
    quick_help: str = "small, fast settings",
    device_help: str = "auto, cpu, cuda, cuda:N or mps (default: the lesson's choice)",
    out_help: str | None = None,
) -> argparse.ArgumentParser:
    """The flags every lesson has; a lesson with more adds them to the returned parser.

    `--help` shows the docstring's first line and, after the flags, its paragraph on how long
    the lesson takes (the one starting "Measured"), so the time is stated where a student
    looks before starting a full mode.
    """
    title = (doc or "").strip().splitlines()[0] if (doc or "").strip() else lesson_name(default_out)
    parser = argparse.ArgumentParser(description=title, epilog=timing_note(doc))
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--device", default=None, help=device_help)
    parser.add_argument(
        "--out-dir",
        default=str(default_out),
        help=out_help or f"where the lesson's files and plots go (default {default_out})",
    )
    parser.add_argument(
        "--seed",
        default=str(DEFAULT_SEED),
        help=f"seed of every random generator, 0 to {MAX_SEED} (default {DEFAULT_SEED}: the "
        "figures the lesson's text quotes); another seed shows how much they vary",
    )
    return parser


def timing_note(doc: str | None) -> str | None:
    """The docstring's paragraph that starts with "Measured" (the lesson's measured quick and
    full times), on one line; None when there is none."""
    for paragraph in (doc or "").split("\n\n"):
        if paragraph.strip().startswith("Measured"):
            return " ".join(paragraph.split())
    return None


def check_device(prog: str, device: str | None) -> str | None:
    """The device flag resolved and checked, or exit 2 with one line on stderr.

    None (flag not given) stays None so each lesson keeps its own default; a named device
    comes back resolved ("auto" -> "cuda" or "cpu"), so `torch.device(...)` inside the lesson
    can never meet a name it does not know.
    """
    if device is None:
        return None
    try:
        return str(resolve_device(device))
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def check_seed(prog: str, seed: str | int) -> int:
    """The seed flag as an int, or exit 2 with one line on stderr (argparse's own error would
    print the usage too: two lines)."""
    try:
        value = int(str(seed).strip())
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        print(f"{prog}: error: --seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return value


def seed_everything(seed: int) -> None:
    """Seed Python's, PyTorch's (CPU and every GPU) and numpy's global generators.

    A lesson's own generators (`torch.Generator().manual_seed(seed + k)`) are seeded by the
    lesson from the `seed` it is given; this covers everything else, such as a module's
    random initial weights.
    """
    import torch

    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        import numpy
    except ImportError:  # numpy is optional: nothing to seed
        return
    numpy.random.seed(seed)


def lesson_args(
    doc: str | None,
    default_out: str | Path,
    *,
    quick_help: str = "small, fast settings",
    device_help: str | None = None,
    out_help: str | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Parse a lesson's flags and check `--device` and `--seed` before the lesson does any
    work."""
    kwargs = {"device_help": device_help} if device_help else {}
    parser = lesson_parser(doc, default_out, quick_help=quick_help, out_help=out_help, **kwargs)
    args = parser.parse_args(argv)
    args.device = check_device(lesson_name(default_out), args.device)
    args.seed = check_seed(lesson_name(default_out), args.seed)
    return args


def takes_seed(main: Callable[..., Any]) -> bool:
    """Whether `main` accepts `seed=` (lessons written before the flag existed do not)."""
    params = inspect.signature(main).parameters.values()
    return any(p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def run_lesson(
    main: Callable[..., Any],
    doc: str | None,
    default_out: str | Path,
    *,
    quick_help: str = "small, fast settings",
    device_help: str | None = None,
    out_help: str | None = None,
    argv: Sequence[str] | None = None,
) -> Any:
    """Parse the flags, seed every generator, run `main(quick=, device=, out_dir=, seed=)`
    (`seed` only where `main` takes it), print how long it took."""
    args = lesson_args(doc, default_out, quick_help=quick_help, device_help=device_help,
                       out_help=out_help, argv=argv)  # fmt: skip
    kwargs = {"quick": args.quick, "device": args.device, "out_dir": args.out_dir}
    if takes_seed(main):
        kwargs["seed"] = args.seed
    seed_everything(args.seed)
    start = time.perf_counter()
    result = main(**kwargs)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return result


class Progress:
    """Progress lines for a training loop a lesson writes itself: the step, the numbers the
    lesson passes (a loss), the time so far and an estimate of the time left.

    A student who starts a full mode should never stare at a silent terminal wondering
    whether it hangs: a few lines per run (`lines`, evenly spaced, the last step always
    included) say how far it is and how long the rest will take. Lessons that train through
    `minigpt.training.Trainer` get the trainer's own progress bar instead (`progress=True`).
    Call it once per finished step, counting from 1::

        progress = Progress(steps, "step")
        for step in range(1, steps + 1):
            ...
            progress(step, loss=loss.item())
    """

    def __init__(self, total: int, label: str = "step", *, lines: int = 5,
                 indent: str = "   ") -> None:  # fmt: skip
        if total < 1:
            raise ValueError(f"Progress needs total >= 1 steps, got {total}")
        self.total, self.label, self.indent = total, label, indent
        self.every = max(1, round(total / max(1, lines)))
        self.start = time.perf_counter()

    def due(self, step: int) -> bool:
        """Whether `step` prints a line (callers can skip computing numbers otherwise)."""
        return step == self.total or step % self.every == 0

    def __call__(self, step: int, **numbers: float) -> None:
        if not self.due(step):
            return
        spent = time.perf_counter() - self.start
        left = spent / step * (self.total - step)
        width = len(str(self.total))
        shown = "".join(f"  {name} {value:.3f}" for name, value in numbers.items())
        print(f"{self.indent}{self.label} {step:>{width}}/{self.total}{shown}  "
              f"({spent:.0f} s, ~{left:.0f} s left)", flush=True)  # fmt: skip


def report_plot(path: str | Path) -> Path:
    """Print where a plot was saved (for figures drawn by `minigpt.plots`); returns the path."""
    print(f"saved plot: {path}")
    return Path(path)


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG, close it (figures hold memory until closed) and print
    its path; returns the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return report_plot(path)
