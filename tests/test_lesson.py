"""The lesson harness (`minigpt/lesson.py`): flags checked before any work, help for every
flag of every lesson, a seed that makes a run repeat, progress lines, plots whose paths are
printed.

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
from conftest import LESSONS, ROOT, load_lesson

from minigpt.lesson import (
    MAX_SEED,
    Progress,
    lesson_args,
    lesson_parser,
    run_lesson,
    save_figure,
    timing_note,
)

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
    for flag in ("--quick", "--device DEVICE", "--out-dir OUT_DIR", "--seed SEED"):
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

    def main(quick: bool = False, device: str | None = None, out_dir: str = "",
             seed: int = -1) -> dict:  # fmt: skip
        seen.update(quick=quick, device=device, out_dir=out_dir, seed=seed)
        return {"ok": True}

    result = run_lesson(main, "Lesson 99 — a test.", "runs/lessons/99_x",
                        argv=["--quick", "--device", "cpu"])  # fmt: skip
    assert result == {"ok": True}
    assert seen == {"quick": True, "device": "cpu", "out_dir": "runs/lessons/99_x", "seed": 0}
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


# --- the seed --------------------------------------------------------------------------------


def test_bad_seed_is_one_line_and_exit_2_before_any_work(tmp_path, monkeypatch, capsys):
    argv = ["03_self_attention.py", "--seed", "1.5", "--out-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(LESSONS / "03_self_attention.py"), run_name="__main__")
    assert exit_.value.code == 2
    printed = capsys.readouterr()
    assert printed.err.strip().splitlines() == [
        f"lesson 03: error: --seed must be a whole number from 0 to {MAX_SEED}, got '1.5'"
    ]
    assert printed.out == "" and not any(tmp_path.iterdir())  # the lesson never started


@pytest.mark.parametrize("seed", ["-1", str(MAX_SEED + 1), "seven", ""])
def test_seeds_out_of_range_exit_2_with_one_line(seed, capsys):
    with pytest.raises(SystemExit) as exit_:
        lesson_args(None, "runs/lessons/99_x", argv=["--seed", seed])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lesson 99: error: --seed must be")


def test_seed_defaults_to_0_and_reads_whole_numbers():
    assert lesson_args(None, "runs/lessons/99_x", argv=[]).seed == 0
    assert lesson_args(None, "runs/lessons/99_x", argv=["--seed", "17"]).seed == 17
    assert lesson_args(None, "runs/lessons/99_x", argv=["--seed", str(MAX_SEED)]).seed == MAX_SEED


def test_a_main_without_seed_still_runs_seeded_globally(capsys):
    """Lessons written before `--seed` existed take no `seed=`; the harness seeds Python's,
    torch's and numpy's generators for them before `main` starts."""
    import random

    import numpy

    def old_main(quick: bool = False, device: str | None = None, out_dir: str = "") -> list:
        return [torch.rand(3).tolist(), random.random(), float(numpy.random.rand())]

    def run(seed: str) -> list:
        return run_lesson(old_main, "Lesson 99.", "runs/lessons/99_x", argv=["--seed", seed])

    first, again, other = run("5"), run("5"), run("6")
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))  # every generator was seeded
    capsys.readouterr()


def test_same_seed_same_lesson_figures_other_seed_other_figures(tmp_path, capsys):
    """Lesson 02 (about a second) through the harness: the same seed repeats every returned
    figure and every printed line; another seed changes its random embeddings."""
    lesson = load_lesson("02_embeddings_and_positions")

    def run(seed: str) -> tuple[dict, list[str]]:
        argv = ["--quick", "--device", "cpu", "--seed", seed, "--out-dir", str(tmp_path)]
        result = run_lesson(lesson.main, lesson.__doc__, "runs/lessons/02_x", argv=argv)
        printed = capsys.readouterr().out.splitlines()
        assert printed[-1].startswith("done in ")
        return result, printed[:-1]  # all but the elapsed time

    (first, printed), (again, printed_again) = run("3"), run("3")
    assert first == again and printed == printed_again
    other, printed_other = run("4")
    assert other["mean_abs_cosine_random"] != first["mean_abs_cosine_random"]
    assert printed_other != printed
    # what does not depend on chance does not change with the seed
    assert other["dot_at_distance"] == first["dot_at_distance"]


# --- progress lines --------------------------------------------------------------------------


def test_progress_prints_evenly_spaced_lines_ending_at_the_last_step(capsys):
    progress = Progress(103, "step", lines=5)
    for step in range(1, 104):
        progress(step, loss=1.0 / step)
    lines = capsys.readouterr().out.splitlines()
    steps = [int(line.split()[1].split("/")[0]) for line in lines]
    assert steps == [21, 42, 63, 84, 103]  # every round(103 / 5) = 21 steps, and the last
    assert all(line.split()[1].endswith("/103") for line in lines)
    assert "loss 0.048" in lines[0]  # 1 / 21, three decimals
    assert lines[-1].rstrip().endswith("~0 s left)")


def test_progress_due_lets_a_loop_skip_work_and_rejects_no_steps(capsys):
    progress = Progress(10, "epoch", lines=2)
    assert [s for s in range(1, 11) if progress.due(s)] == [5, 10]
    progress(3, loss=0.5)  # not due: prints nothing
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="total >= 1"):
        Progress(0)


# --- the measured times, in --help ------------------------------------------------------------


@pytest.mark.parametrize("stem", ALL_LESSONS)
def test_every_lesson_states_its_measured_quick_time(stem):
    doc = (LESSONS / f"{stem}.py").read_text(encoding="utf-8").split('"""')[1]
    note = timing_note(doc)
    assert note is not None, f"{stem}: no docstring paragraph starts with 'Measured'"
    assert "idle" in note and "wall clock: --quick" in note and "full mode" in note, note


def test_timing_note_is_the_measured_paragraph_on_one_line():
    doc = "Lesson 99 — x.\n\nProse.\n\nMeasured on a 2-core CPU:\nquick 3 s, full 9 s.\n\nRun: x"
    assert timing_note(doc) == "Measured on a 2-core CPU: quick 3 s, full 9 s."
    assert timing_note("Lesson 99 — no times.") is None and timing_note(None) is None
    parser = lesson_parser(doc, "runs/lessons/99_x")
    assert parser.format_help().rstrip().endswith("quick 3 s, full 9 s.")


@pytest.mark.parametrize("stem", [s for s in ALL_LESSONS if s[:2] not in ("05", "06", "08")])
def test_help_states_the_measured_quick_and_full_times(stem, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [f"{stem}.py", "--help"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(LESSONS / f"{stem}.py"), run_name="__main__")
    note = " ".join(capsys.readouterr().out.split("--seed SEED", 1)[1].split())
    assert "Measured on a 2-core AMD EPYC" in note, f"{stem}: no measured times in --help"
    assert "quick mode" in note and "full mode" in note
