"""A pytest plugin that the grader loads into each exercise's test run (`-p
minigpt.assignment.report`): it writes what happened to the JSON file named by the
MINIGPT_GRADE_REPORT environment variable.

Why a plugin rather than reading pytest's printed summary: `-x` stops at the first failure,
and the printout says neither how many tests were selected nor which line failed in a form
stable across pytest versions. The file is rewritten after every test, so a run killed for
its timeout still reports how far it got. It also records where `minigpt` was imported from,
so the grader can refuse a run that graded an installed copy instead of the student's folder.
"""

from __future__ import annotations

import json
import os
from typing import Any

import minigpt

_REPORT: dict[str, Any] = {
    "package": os.path.dirname(os.path.abspath(minigpt.__file__)),
    "collected": 0,
    "passed": 0,
    "skipped": 0,
    "failures": [],  # [nodeid, first line of the error]
}


def _write() -> None:
    path = os.environ.get("MINIGPT_GRADE_REPORT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_REPORT, f)


def _first_line(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "failed"


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _REPORT["failures"].append([report.nodeid, _first_line(report)])
        _write()


def pytest_collection_finish(session: Any) -> None:
    _REPORT["collected"] = len(session.items)
    _write()


def pytest_runtest_logreport(report: Any) -> None:
    if report.failed:
        _REPORT["failures"].append([report.nodeid, _first_line(report)])
    elif report.skipped and report.when != "teardown":
        _REPORT["skipped"] += 1
    elif report.passed and report.when == "call":
        _REPORT["passed"] += 1
    _write()
