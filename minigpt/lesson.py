"""The lesson harness: what every `lessons/NN_topic.py` does around its chapter.

Each lesson is a chapter a student runs, so its own code should be the chapter: the
experiment, the prose it prints, the plots it draws. What is the same in all of them lives
here, written once: the flags (`--quick`, `--device`, `--out-dir`), checking the device
*before* any work starts (a typo or `--device cuda` on a laptop is one line and exit status 2,
not a PyTorch traceback after a minute of data preparation), the elapsed time at the end, and
saving a figure so that every PNG's path is printed where the reader will look for it.

A lesson's `if __name__ == "__main__":` block is one call::

    run_lesson(main, __doc__, "runs/lessons/03_self_attention", quick_help="fewer samples")

`main(quick=..., device=..., out_dir=...)` stays a plain function, so tests call it directly.
This module is in layer 6 with the CLI: it is the only lesson code that parses arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from minigpt.device import resolve_device


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
    """The flags every lesson has; a lesson with more adds them to the returned parser."""
    title = (doc or "").strip().splitlines()[0] if (doc or "").strip() else lesson_name(default_out)
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--device", default=None, help=device_help)
    parser.add_argument(
        "--out-dir",
        default=str(default_out),
        help=out_help or f"where the lesson's files and plots go (default {default_out})",
    )
    return parser


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


def lesson_args(
    doc: str | None,
    default_out: str | Path,
    *,
    quick_help: str = "small, fast settings",
    device_help: str | None = None,
    out_help: str | None = None,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Parse a lesson's flags and check `--device` before the lesson does any work."""
    kwargs = {"device_help": device_help} if device_help else {}
    parser = lesson_parser(doc, default_out, quick_help=quick_help, out_help=out_help, **kwargs)
    args = parser.parse_args(argv)
    args.device = check_device(lesson_name(default_out), args.device)
    return args


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
    """Parse the flags, run `main(quick=, device=, out_dir=)`, print how long it took."""
    args = lesson_args(doc, default_out, quick_help=quick_help, device_help=device_help,
                       out_help=out_help, argv=argv)  # fmt: skip
    start = time.perf_counter()
    result = main(quick=args.quick, device=args.device, out_dir=args.out_dir)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return result


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
