"""`minigpt assignment make` and `grade` end to end, on temporary copies of this repository.

One module fixture does every expensive step once: it makes a copy with all exercises
stubbed, checks that the package still imports, grades two exercises there as handed out,
then restores one exercise (quantize) and puts an infinite loop into another (pipeline) and
grades the whole copy through the CLI, with a short timeout and Gradescope's JSON; and it
grades the untouched repository. The tests below read those results.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt.assignment.exercises import EXERCISES, select
from minigpt.assignment.grade import grade
from minigpt.assignment.make import (
    KEPT_IN_DATA,
    SKIPPED_ANYWHERE,
    SKIPPED_AT_ROOT,
    make_assignment,
    marked_files,
    quiet_stub_lint,
    regions_of,
)
from minigpt.assignment.regions import is_marker, render
from minigpt.cli import main

ROOT = Path(__file__).resolve().parent.parent
RESTORED, LOOPED = "quantize", "pipeline"
TIMEOUT_S = 30  # the looped exercise's cost; every other exercise here fails in seconds
LOOP = "while True: __import__('time').sleep(0.1)"  # a student's hang (asleep: spares the CPUs)

def _has_markers() -> bool:
    return any(is_marker(line) for rel in marked_files() if (ROOT / rel).is_file()
               for line in (ROOT / rel).read_text(encoding="utf-8").splitlines())  # fmt: skip


# The fixture starts 31 interpreters (30 exercise runs, one import check), each importing torch.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

if not _has_markers():
    pytest.skip("a student copy: no solution markers to make an assignment from",
                allow_module_level=True)  # fmt: skip


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _restore(copy: Path, name: str) -> None:
    """What a student who solved `name` hands in: its regions' code back, the rest stubbed."""
    others = {e.name: e.stub for e in EXERCISES.values() if e.name != name}
    for rel in EXERCISES[name].files:
        (copy / rel).write_text(render((ROOT / rel).read_text(encoding="utf-8"), others, rel))


def _hang(copy: Path, name: str) -> None:
    stub = EXERCISES[name].stub
    for rel in EXERCISES[name].files:
        text = (copy / rel).read_text(encoding="utf-8")
        assert stub in text
        (copy / rel).write_text(text.replace(stub, LOOP))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    copy = tmp_path_factory.mktemp("assignment") / "all"
    made = _cli("assignment", "make", "--exercises", "all", "--out", str(copy))
    caches = [str(p) for pat in SKIPPED_ANYWHERE for p in copy.rglob(pat)]
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."],
                          cwd=copy, capture_output=True, text=True, timeout=120)  # fmt: skip
    imports = subprocess.run(
        [sys.executable, "-c", "import importlib, pkgutil, minigpt; "
         "names = [m.name for m in pkgutil.walk_packages(minigpt.__path__, 'minigpt.')]; "
         "[importlib.import_module(n) for n in names]; print(minigpt.__file__, len(names))"],
        cwd=copy, env=dict(os.environ, PYTHONPATH=str(copy)), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    as_handed_out = grade(copy, select([RESTORED, LOOPED]), jobs=2)
    _restore(copy, RESTORED)
    _hang(copy, LOOPED)
    results_json = copy.parent / "results.json"
    graded = _cli("assignment", "grade", str(copy), "--json", str(results_json),
                  "--timeout", str(TIMEOUT_S), "--jobs", "2")  # fmt: skip
    untouched = grade(ROOT, jobs=2)
    return {"copy": copy, "made": made, "caches_after_make": caches, "lint": lint,
            "imports": imports,
            "as_handed_out": as_handed_out, "graded": graded,
            "json": json.loads(results_json.read_text()), "untouched": untouched}  # fmt: skip


def _by_name(table_json: dict) -> dict[str, dict]:
    return {t["name"].split(" ")[0]: t for t in table_json["tests"]}


def test_make_reports_what_it_stubbed(run):
    rc, out, err = run["made"]
    n_regions = sum(len(rs) for rs in regions_of(ROOT).values())
    assert rc == 0 and err == ""
    assert f"{n_regions} regions of {len(EXERCISES)} exercises stubbed" in out
    copy = run["copy"]  # the source, without version control, environments, runs, data, caches
    assert (copy / "pyproject.toml").is_file() and (copy / "tests" / "conftest.py").is_file()
    assert not {p.name for p in copy.iterdir()} & set(SKIPPED_AT_ROOT)
    assert [p.name for p in (copy / "data").iterdir()] == list(KEPT_IN_DATA)
    assert run["caches_after_make"] == []  # (the grades write their own later)


def test_the_copy_as_handed_out_passes_the_linter(run):
    assert run["lint"].returncode == 0, run["lint"].stdout + run["lint"].stderr


def test_lint_ignores_go_to_stubbed_files_only_and_never_twice():
    table = "[tool.ruff.lint.per-file-ignores]\n"
    entry = '"minigpt/a.py" = ["F401", "F811", "F841"]  # stubbed by minigpt assignment make\n'
    lessons = '"lessons/*" = ["E402"]\n'
    assert quiet_stub_lint(table + lessons, ["minigpt/a.py"]) == table + entry + lessons
    assert quiet_stub_lint("[project]\n", ["minigpt/a.py"]) == "[project]\n\n" + table + entry
    with pytest.raises(ValueError, match="already has ruff ignores for lessons/x.py"):
        quiet_stub_lint(table + '"lessons/x.py" = ["E501"]\n', ["lessons/x.py"])


def test_the_package_imports_with_every_exercise_stubbed(run):
    proc = run["imports"]
    assert proc.returncode == 0, proc.stderr
    where, count = proc.stdout.split()
    assert Path(where).resolve().is_relative_to(run["copy"].resolve()) and int(count) > 40


def test_every_exercise_fails_or_is_blocked_as_handed_out(run):
    for r in run["as_handed_out"]:  # the two exercises later restored / looped
        assert r.status == "failed" and f"exercise {r.exercise.name}: see lesson" in r.message
    results = _by_name(run["json"])
    for e in EXERCISES.values():
        if e.name in (RESTORED, LOOPED):
            continue
        output = results[e.name]["output"]
        assert results[e.name]["status"] == "failed" and results[e.name]["score"] == 0
        failing_deps = [d for d in e.builds_on if d != RESTORED]
        if failing_deps:  # reported as blocked by the first of them, and not run
            assert output.startswith(f"blocked by {failing_deps[0]}\n"), output[:200]
        else:  # failed on its own stub: nothing it does not declare got in its way
            assert f"NotImplementedError: exercise {e.name}: see lesson" in output, output[:300]


def test_restoring_one_exercise_passes_exactly_that_one(run):
    results = _by_name(run["json"])
    assert [name for name, t in results.items() if t["status"] == "passed"] == [RESTORED]
    assert run["json"]["score"] == EXERCISES[RESTORED].points


def test_an_infinite_loop_costs_only_its_own_exercise(run):
    results = _by_name(run["json"])
    looped = results[LOOPED]
    assert looped["status"] == "failed" and looped["score"] == 0
    assert looped["output"].startswith(f"timed out after {TIMEOUT_S} s")
    timed_out = [n for n, t in results.items() if t["output"].startswith("timed out")]
    assert timed_out == [LOOPED]
    assert results[RESTORED]["status"] == "passed"  # graded alongside it, unharmed


def test_cli_table_has_every_exercise_blocked_rows_and_the_total(run):
    rc, out, err = run["graded"]
    assert rc == 1  # not full marks
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert set(EXERCISES) <= set(rows)
    assert "blocked by attention" in rows["multihead"] and rows["multihead"].split()[1] == "-"
    assert rows[RESTORED].split()[1:4] == ["4/4", "5/5", "passed"]
    assert rows["total"].split()[1] == f"{EXERCISES[RESTORED].points}/100"
    assert all(f"  {name}: " in err for name in EXERCISES)  # progress, one line each


def test_gradescope_json_has_the_documented_shape(run):
    data = run["json"]
    assert set(data) == {"score", "output", "tests"}
    assert isinstance(data["score"], int) and isinstance(data["output"], str)
    assert len(data["tests"]) == len(EXERCISES)
    for test, e in zip(data["tests"], EXERCISES.values(), strict=True):
        assert set(test) == {"name", "score", "max_score", "status", "output"}
        assert test["name"].startswith(f"{e.name} (lesson {e.lesson:02d}): ")
        assert test["max_score"] == e.points and test["status"] in ("passed", "failed")
        assert test["score"] == (e.points if test["status"] == "passed" else 0)
        assert isinstance(test["output"], str) and test["output"]
    assert data["score"] == sum(t["score"] for t in data["tests"])


def test_the_untouched_repository_gets_full_marks(run):
    results = run["untouched"]
    failed = {r.exercise.name: r.message for r in results if r.status != "passed"}
    assert failed == {}
    assert [r.exercise.name for r in results] == list(EXERCISES)
    assert all(r.passed == r.collected > 0 for r in results)


def _source_files(root: Path) -> set[str]:
    files = set()
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        parts = rel.parts
        if not p.is_file() or parts[0] in SKIPPED_AT_ROOT:
            continue
        if parts[0] == "data" and rel.name not in KEPT_IN_DATA:
            continue
        if any(Path(part).match(pat) for part in parts for pat in SKIPPED_ANYWHERE):
            continue
        files.add(str(rel))
    return files


def test_unselected_exercises_are_untouched(tmp_path):
    # A frozen snapshot of the source files as the root: the comparison cannot race an edit.
    root, out = tmp_path / "snapshot", tmp_path / "one"
    for rel in _source_files(ROOT):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, root / rel)
    stubbed = make_assignment(select("attention"), out, root=root)
    assert {r.exercise for r in stubbed} == {"attention"}
    assert _source_files(out) == _source_files(root)
    stub = EXERCISES["attention"].stub
    for rel in sorted(_source_files(root)):
        original, copied = (root / rel).read_bytes(), (out / rel).read_bytes()
        if rel == "pyproject.toml":  # plus the linter's ignores for the stubbed files only
            files = sorted({r.path for r in stubbed})
            assert copied.decode() == quiet_stub_lint(original.decode(), files)
            continue
        if rel not in marked_files():
            assert copied == original, rel
            continue
        # Marked files: the same lines minus every marker, an attention region -> its stub.
        lines = original.decode().splitlines(keepends=True)
        expected, skipping = [], False
        for line in lines:
            if is_marker(line) and "BEGIN SOLUTION attention" in line:
                expected.append(line[: len(line) - len(line.lstrip())] + stub + "\n")
                skipping = True
            elif is_marker(line):
                skipping = False
            elif not skipping:
                expected.append(line)
        assert copied.decode() == "".join(expected), rel


def test_make_refuses_unknown_exercises_and_a_non_empty_out(tmp_path):
    rc, out, err = _cli("assignment", "make", "--exercises", "attention,telepathy",
                        "--out", str(tmp_path / "new"))  # fmt: skip
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "unknown exercise 'telepathy'" in err and not (tmp_path / "new").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "homework.py").write_text("mine\n")
    rc, out, err = _cli("assignment", "make", "--exercises", "all", "--out", str(tmp_path / "used"))
    assert rc == 2 and err.count("\n") == 1 and "exists and is not empty" in err
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["homework.py"]


def test_grade_refuses_a_folder_that_is_not_a_copy(tmp_path):
    rc, out, err = _cli("assignment", "grade", str(tmp_path))
    assert rc == 2 and err.count("\n") == 1 and "has no minigpt/ and tests/" in err


def test_list_shows_every_exercise_with_files_points_and_tests():
    rc, out, _ = _cli("assignment", "list")
    assert rc == 0
    for e in EXERCISES.values():
        assert f"{e.name} (lesson {e.lesson:02d}, {e.points} points" in out
        assert all(f in out for f in e.files) and all(t in out for t in e.tests)


def test_assignment_actions_document_every_option():
    from minigpt.cli import build_parser

    assignment = build_parser()._subparsers._group_actions[0].choices["assignment"]  # noqa: SLF001
    actions = assignment._subparsers._group_actions[0].choices  # noqa: SLF001
    assert set(actions) == {"list", "make", "grade"}
    for name, parser in actions.items():
        for action in parser._actions:  # noqa: SLF001
            if action.option_strings and action.dest != "help":
                assert action.help, f"assignment {name} {action.option_strings} has no help"
    assert "source checkout" in actions["make"].description
    rc, out, err = _cli("assignment")
    assert rc == 2 and "list" in err and "grade" in err
