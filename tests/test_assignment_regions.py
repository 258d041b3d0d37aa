"""Solution regions and the exercise registry, without running any test process: markers are
parsed and rejected exactly, stubs keep files compiling, the registry, the source's markers,
the lessons, the test ids and the README's table all agree, and the grader's scheduling
(blocked exercises, order) holds with the test runs replaced by fakes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from minigpt.assignment.exercises import EXERCISES, Exercise, markdown_table, select
from minigpt.assignment.make import marked_files, regions_of, student_files
from minigpt.assignment.regions import RegionError, find_regions, is_marker, render

ROOT = Path(__file__).resolve().parent.parent
# A student's copy has no markers left (make removes them): the kit's own checks need the
# instructor's checkout.
if not any(is_marker(line) for rel in marked_files() if (ROOT / rel).is_file()
           for line in (ROOT / rel).read_text(encoding="utf-8").splitlines()):  # fmt: skip
    pytest.skip("a student copy: no solution markers to check", allow_module_level=True)

SAMPLE = '''\
def f(x):
    y = 1
    ### BEGIN SOLUTION alpha
    z = x + y
    return z
    ### END SOLUTION


class C:
    def g(self):
        if True:
            ### BEGIN SOLUTION beta
            return 2
            ### END SOLUTION
        return 3
'''


def test_regions_are_found_with_their_exercise_lines_and_indent():
    alpha, beta = find_regions(SAMPLE, "sample.py")
    assert (alpha.exercise, alpha.begin, alpha.end, alpha.indent) == ("alpha", 3, 6, "    ")
    assert alpha.body == "    z = x + y\n    return z\n"
    assert (beta.exercise, beta.begin, beta.end, beta.indent) == ("beta", 12, 14, " " * 12)


def test_render_stubs_selected_regions_at_their_indent_and_drops_every_marker():
    out = render(SAMPLE, {"beta": "raise NotImplementedError('b')"})
    assert "            raise NotImplementedError('b')\n        return 3\n" in out
    assert "    z = x + y\n    return z\n" in out  # alpha not selected: its code stays
    assert "SOLUTION" not in out and "return 2" not in out
    assert len(out.splitlines()) == len(SAMPLE.splitlines()) - 4  # 4 markers; 1 line -> 1 stub
    namespace: dict = {}
    exec(compile(out, "out.py", "exec"), namespace)
    assert namespace["f"](1) == 2
    with pytest.raises(NotImplementedError, match="b"):
        namespace["C"]().g()


def test_render_keeps_windows_line_endings():
    out = render(SAMPLE.replace("\n", "\r\n"), {"alpha": "raise NotImplementedError"})
    assert "    raise NotImplementedError\r\n" in out and "\n" not in out.replace("\r\n", "")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("### BEGIN SOLUTION a\nx = 1\n### BEGIN SOLUTION b\n### END SOLUTION\n", "do not nest"),
        ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "must name its exercise"),
        ("### BEGIN SOLUTION Bad-Name\nx = 1\n### END SOLUTION\n", "must name its exercise"),
        ("x = 1\n### END SOLUTION\n", "without a BEGIN"),
        ("### BEGIN SOLUTION a\nx = 1\n", "never closed"),
        ("### BEGIN SOLUTION a\nx = 1\n### END SOLUTION b\n", "names 'b'"),
        ("if x:\n    ### BEGIN SOLUTION a\n    y = 1\n### END SOLUTION\n", "indented differently"),
        ("def f():\n    ### BEGIN SOLUTION a\n    y = 1\nz = 2\n    ### END SOLUTION\n",
         "less indented"),
        ("### BEGIN SOLUTION a\n\n### END SOLUTION\n", "encloses no code"),
    ],
)
def test_malformed_markers_are_one_line_errors_with_the_line(text, words):
    with pytest.raises(RegionError, match=re.escape(words)) as err:
        find_regions(text, "bad.py")
    assert str(err.value).startswith("bad.py:") and "\n" not in str(err.value)


def test_a_region_that_is_not_whole_statements_is_refused():
    text = "x = (1 +\n### BEGIN SOLUTION a\n     2)\n### END SOLUTION\n"
    find_regions(text, "half.py")  # well formed as markers go...
    with pytest.raises(RegionError, match=r"half\.py:\d+: stubbing a leaves invalid Python"):
        render(text, {"a": "raise NotImplementedError"}, "half.py")  # ...but not as code


def test_select_names_all_and_unknown():
    assert [e.name for e in select("all")] == list(EXERCISES)
    assert [e.name for e in select("sampling, attention")] == ["attention", "sampling"]
    for bad in ("attention,nope", "", " , "):
        with pytest.raises(ValueError, match="choose from bpe_train"):
            select(bad)


def test_registry_entries_are_consistent():
    seen: list[str] = []
    lessons = {int(p.name[:2]) for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py")}
    for e in EXERCISES.values():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", e.name) and e.points > 0
        assert e.lesson in lessons, f"{e.name}: no lesson {e.lesson:02d} in lessons/"
        assert set(e.builds_on) <= set(seen), f"{e.name} builds on a later or unknown exercise"
        assert e.stub == (f'raise NotImplementedError("exercise {e.name}: see lesson '
                          f'{e.lesson:02d}")')  # fmt: skip
        seen.append(e.name)
    assert sum(e.points for e in EXERCISES.values()) == 100


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("exercise", list(EXERCISES.values()), ids=list(EXERCISES))
def test_each_exercises_tests_exist(exercise: Exercise):
    for test in exercise.tests:
        file, _, name = test.partition("::")
        assert (ROOT / file).is_file(), f"{exercise.name}: {file} does not exist"
        if name:
            assert name.split("[")[0] in _test_functions(ROOT / file), f"{test} does not exist"


def test_markers_and_registry_agree_and_every_stub_compiles():
    found = regions_of(ROOT)  # raises if a region, a file or an exercise is unaccounted for
    assert {r.exercise for rs in found.values() for r in rs} == set(EXERCISES)
    for e in EXERCISES.values():  # each exercise alone, then all at once
        student_files(ROOT, [e])
    texts = student_files(ROOT, list(EXERCISES.values()))
    assert not any(is_marker(line) for t in texts.values() for line in t.splitlines())


def test_no_markers_outside_the_registered_files():
    stray = [
        str(p.relative_to(ROOT)) for p in (ROOT / "minigpt").rglob("*.py")
        if str(p.relative_to(ROOT)) not in marked_files()
        and any(is_marker(line) for line in p.read_text(encoding="utf-8").splitlines())
    ]  # fmt: skip
    assert stray == [], "add these files to their exercises' `files` in the registry"


def test_readme_exercise_table_is_the_registrys():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, (
        "README.md's exercise table differs from the registry; paste "
        "minigpt.assignment.exercises.markdown_table() into 'Teaching with minigpt'"
    )


@pytest.mark.parametrize("jobs", [1, 3])
def test_grade_blocks_what_builds_on_a_failure_and_keeps_registry_order(monkeypatch, jobs):
    """The scheduling alone, with the test runs replaced by instant fakes."""
    from minigpt.assignment import grade as grading

    started: list[str] = []

    def fake_run(directory, exercise, timeout):
        started.append(exercise.name)
        status = "failed" if exercise.name == "attention" else "passed"
        return grading.ExerciseResult(exercise, status, passed=1, collected=1, message="boom")

    monkeypatch.setattr(grading, "run_exercise", fake_run)
    results = grading.grade(ROOT, jobs=jobs)
    assert [r.exercise.name for r in results] == list(EXERCISES)
    blocked = {r.exercise.name: r.message for r in results if r.status == "blocked"}
    assert blocked == {"multihead": "blocked by attention", "residual": "blocked by attention",
                       "ddp": "blocked by attention", "zero1": "blocked by ddp"}  # fmt: skip
    assert sorted(started) == sorted(set(EXERCISES) - set(blocked))
    if jobs == 1:
        assert started == [n for n in EXERCISES if n not in blocked]
    lost = sum(EXERCISES[n].points for n in [*blocked, "attention"])
    assert grading.total(results) == (100 - lost, 100)
    table = grading.score_table(results)
    assert "blocked by ddp" in table and table.splitlines()[-1].split()[-1] == "62/100"
