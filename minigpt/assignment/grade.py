"""Grade a student's copy: each exercise's tests in a subprocess, a score table, Gradescope JSON.

Every exercise runs as its own `python -m pytest -q -x <its tests>` with the student's folder
as working directory and first on PYTHONPATH, so the code graded is the student's copy of
`minigpt`, not an installed one (the report plugin, report.py, says where `minigpt` came
from, and a run that imported it from elsewhere stops the grading). One process per exercise
is what makes an exercise cost only itself: a crash, a hang (killed with its whole process
group, multi-process tests included, after `timeout` seconds) or a broken import in one
exercise leaves the others' results untouched. An exercise passes when all its tests pass;
its points are all or nothing, because `-x` stops at the first failure. An exercise whose
`builds_on` exercise did not pass is not run and is reported "blocked by" it: its tests
would run the broken code too, so their failure would say nothing about this exercise.

`gradescope_results` writes the shape Gradescope's autograder reads from
/autograder/results/results.json: top-level `score` and `output`, and `tests`, one per
exercise, each with `name`, `score`, `max_score`, `status` ("passed" / "failed") and `output`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minigpt.assignment.exercises import EXERCISES, Exercise

# What can happen to an exercise; only "passed" scores.
STATUSES = ("passed", "failed", "timed out", "blocked")
DEFAULT_TIMEOUT_S = 120.0
_OUTPUT_CHARS = 4000  # tail of pytest's output kept per exercise (Gradescope shows it)


@dataclass(frozen=True)
class ExerciseResult:
    """How one exercise fared: `message` is the first failure line, or why it was not run."""

    exercise: Exercise
    status: str
    passed: int = 0
    collected: int = 0
    message: str = ""
    output: str = ""
    seconds: float = 0.0

    @property
    def score(self) -> int:
        return self.exercise.points if self.status == "passed" else 0


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the test run and everything it started (spawned ranks share its process group)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows has no process groups
            proc.kill()
    except ProcessLookupError:
        pass


def _short(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1] if "::" in nodeid else nodeid


def run_exercise(directory: Path, exercise: Exercise, timeout: float) -> ExerciseResult:
    """Run one exercise's tests in `directory` in a fresh process; never raises for the
    student's code, only for a grading setup that did not import `directory`'s package."""
    fd, report_path = tempfile.mkstemp(prefix=f"grade-{exercise.name}-", suffix=".json")
    os.close(fd)
    env = dict(os.environ, MINIGPT_GRADE_REPORT=report_path)
    inherited = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([str(directory), *inherited])  # the copy first
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "-p", "minigpt.assignment.report", *exercise.tests]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=directory, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)  # fmt: skip
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a grandchild left its group and holds the pipe
            output = ""
    seconds = time.perf_counter() - start
    try:
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError):
        report = None  # pytest never got as far as collecting (e.g. an import that crashed)
    finally:
        os.unlink(report_path)
    output = output[-_OUTPUT_CHARS:]
    if report is not None and not Path(report["package"]).resolve().is_relative_to(directory):
        raise RuntimeError(
            f"grading {directory} imported minigpt from {report['package']}; run the grader "
            "with an interpreter that does not force another copy onto sys.path"
        )
    passed = report["passed"] if report else 0
    collected = report["collected"] if report else 0
    failures = report["failures"] if report else []
    first = f"{_short(failures[0][0])}: {failures[0][1]}" if failures else ""
    last_line = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    common = dict(passed=passed, collected=collected, output=output, seconds=seconds)
    if timed_out:
        message = f"timed out after {timeout:g} s" + (f" ({first})" if first else "")
        return ExerciseResult(exercise, "timed out", message=message, **common)
    if proc.returncode == 0 and not failures and passed > 0:
        return ExerciseResult(exercise, "passed", **common)
    if proc.returncode == 5:
        message = "no tests collected: the exercise's test ids are missing from this folder"
    else:
        message = first or last_line or f"pytest exited with status {proc.returncode}"
    return ExerciseResult(exercise, "failed", message=message, **common)


def grade(
    directory: str | Path,
    exercises: Sequence[Exercise] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    jobs: int = 1,
    on_result: Callable[[ExerciseResult], None] | None = None,
) -> list[ExerciseResult]:
    """Grade `exercises` (default: all) in `directory`, `jobs` at a time; results in registry
    order. An exercise starts once the exercises it builds on (among those graded) are done."""
    directory = Path(directory).resolve()
    if not (directory / "minigpt").is_dir() or not (directory / "tests").is_dir():
        raise FileNotFoundError(
            f"{directory} has no minigpt/ and tests/ folders; pass the assignment's folder"
        )
    if timeout <= 0 or jobs < 1:
        raise ValueError(f"timeout={timeout} must be > 0 and jobs={jobs} at least 1")
    todo = list(EXERCISES.values() if exercises is None else exercises)
    names = {e.name for e in todo}
    done: dict[str, ExerciseResult] = {}
    running: dict[Future, Exercise] = {}

    def finish(result: ExerciseResult) -> None:
        done[result.exercise.name] = result
        if on_result is not None:
            on_result(result)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while todo or running:
            for e in list(todo):
                deps = [d for d in e.builds_on if d in names]
                if any(d not in done for d in deps):
                    continue  # wait for what it builds on
                broken = [d for d in deps if done[d].status != "passed"]
                if broken:
                    todo.remove(e)
                    finish(ExerciseResult(e, "blocked", message=f"blocked by {broken[0]}"))
                elif len(running) < jobs:
                    todo.remove(e)
                    running[pool.submit(run_exercise, directory, e, timeout)] = e
                else:
                    break  # every worker busy: start the next ready one in registry order
            if running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    finish(future.result())
    return [done[e.name] for e in EXERCISES.values() if e.name in done]


def total(results: Sequence[ExerciseResult]) -> tuple[int, int]:
    """(points scored, points possible)."""
    return sum(r.score for r in results), sum(r.exercise.points for r in results)


def score_table(results: Sequence[ExerciseResult]) -> str:
    """exercise | tests passed | points | result, one row per exercise, then the total."""
    width = max([len("exercise")] + [len(r.exercise.name) for r in results])
    lines = [f"{'exercise':{width}}  {'tests':>7}  {'points':>7}  result"]
    for r in results:
        tests = "-" if r.status == "blocked" else f"{r.passed}/{r.collected}"
        points = f"{r.score}/{r.exercise.points}"
        result = "passed" if r.status == "passed" else r.message
        lines.append(f"{r.exercise.name:{width}}  {tests:>7}  {points:>7}  {result}")
    scored, possible = total(results)
    lines.append(f"{'total':{width}}  {'':>7}  {f'{scored}/{possible}':>7}")
    return "\n".join(lines)


def gradescope_results(results: Sequence[ExerciseResult]) -> dict[str, Any]:
    """The results.json Gradescope's autograder reads (see the module docstring)."""
    tests = []
    for r in results:
        e = r.exercise
        head = "passed" if r.status == "passed" else r.message
        body = f"{head}\ntests: {' '.join(e.tests)}"
        if r.output:
            body += f"\n\n{r.output}"
        tests.append({
            "name": f"{e.name} (lesson {e.lesson:02d}): {e.title}",
            "score": r.score, "max_score": e.points,
            "status": "passed" if r.status == "passed" else "failed",
            "output": body,
        })  # fmt: skip
    return {"score": total(results)[0], "output": score_table(results), "tests": tests}
