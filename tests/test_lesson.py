"""The lesson harness (`minigpt/lesson.py`): flags checked before any work, help for every
flag of every lesson, plots whose paths are printed.

A student's first contact with a lesson is its command line, so a typo in `--device` must be
one readable line and exit status 2 before anything is prepared or trained, and `--help` must
explain every flag.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import LESSONS, ROOT

from minigpt.lesson import lesson_args, run_lesson, save_figure

ALL_LESSONS = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.py"))


def run_script(stem: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(LESSONS / f"{stem}.py"), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip


def test_every_lesson_is_found():
    assert len(ALL_LESSONS) >= 13 and ALL_LESSONS[0] == "01_tokenization"


def test_unknown_device_is_one_line_and_exit_2_before_any_work(tmp_path):
    done = run_script("03_self_attention", "--device", "nonsense", "--out-dir", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "lesson 03: error: unknown device 'nonsense'; use auto, cpu, cuda, cuda:N or mps"
    ]
    assert done.stdout == ""  # the lesson printed nothing: it never started
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_and_exit_2(tmp_path):
    # lesson 06 prepares data first thing: the check must come before that
    done = run_script("06_encoder_mlm", "--quick", "--device", "cuda", "--out-dir", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lesson 06: error: ") and "CUDA" in lines[0]
    assert done.stdout == "" and not any(tmp_path.iterdir())


@pytest.mark.parametrize("stem", ALL_LESSONS)
def test_help_of_every_lesson_explains_every_flag(stem, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [f"{stem}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(LESSONS / f"{stem}.py"), run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "Lesson" in out
    options = " ".join(out.split("-h, --help", 1)[1].split())  # past usage; unwrapped
    for flag in ("--quick", "--device DEVICE", "--out-dir OUT_DIR"):
        assert flag in options, f"{stem}: no {flag}"
        after = options.split(flag, 1)[1].split(" --", 1)[0].strip()
        assert len(after) > 5, f"{stem}: {flag} has no help text"


def test_device_resolved_or_left_to_the_lesson():
    assert lesson_args(None, "runs/lessons/99_x", argv=[]).device is None  # lesson's default
    assert lesson_args(None, "runs/lessons/99_x", argv=["--device", "CPU"]).device == "cpu"
    auto = lesson_args(None, "runs/lessons/99_x", argv=["--device", "auto"]).device
    assert auto in ("cpu", "cuda", "mps")  # never "auto": torch.device cannot read it
    with pytest.raises(SystemExit) as exit_:
        lesson_args(None, "runs/lessons/99_x", argv=["--device", "cuda:x"])
    assert exit_.value.code == 2


def test_run_lesson_passes_the_flags_and_prints_the_time(capsys):
    seen = {}

    def main(quick: bool = False, device: str | None = None, out_dir: str = "") -> dict:
        seen.update(quick=quick, device=device, out_dir=out_dir)
        return {"ok": True}

    result = run_lesson(main, "Lesson 99 — a test.", "runs/lessons/99_x",
                        argv=["--quick", "--device", "cpu"])  # fmt: skip
    assert result == {"ok": True}
    assert seen == {"quick": True, "device": "cpu", "out_dir": "runs/lessons/99_x"}
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done in ") and last.endswith(" s")


def test_save_figure_writes_the_png_prints_its_path_and_closes(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / "line.png")
    assert path == tmp_path / "sub" / "line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out == f"saved plot: {path}\n"
    assert not plt.fignum_exists(fig.number)
    assert isinstance(path, Path)
