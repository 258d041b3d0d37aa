"""Make a student's copy of the repository with some exercises cut out.

`make_assignment` copies the source checkout the installed package lives in (the package is
`<root>/minigpt`, so this needs a clone or an unpacked source tree, not a wheel install) to
a new folder, leaving out what is not source: version control, the virtual environment,
runs, prepared data, caches. In the files that hold solution regions, each region of a
selected exercise becomes its one-line `raise NotImplementedError("exercise <name>: see lesson
NN")` stub, and every marker line is removed, the unselected exercises' markers too: the
student's copy reads like the library itself, with code where nothing is asked and a raise
where something is. Everything is rendered and checked (markers well formed, each region's
exercise registered for that file, every file still compiles) before anything is written,
so a refused `make` leaves nothing behind.
"""

from __future__ import annotations

import fnmatch
import shutil
from collections.abc import Sequence
from pathlib import Path

import minigpt
from minigpt.assignment.exercises import EXERCISES, Exercise
from minigpt.assignment.regions import Region, RegionError, find_regions, render

# Top-level folders and names anywhere in the tree that a student copy leaves out (the
# generated and local parts of .gitignore, plus version control).
SKIPPED_AT_ROOT = (".git", ".venv", "venv", "runs", "build", "dist", "shared")
SKIPPED_ANYWHERE = ("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".mypy_cache",
                    ".hypothesis", "*.egg-info", ".ipynb_checkpoints")  # fmt: skip
KEPT_IN_DATA = ("README.md",)  # data/ holds prepared corpora; only its README is source


def repository_root() -> Path:
    """The source checkout the installed package belongs to (the parent of `minigpt/`)."""
    root = Path(minigpt.__file__).resolve().parent.parent
    if not (root / "tests").is_dir() or not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"minigpt is installed from {root}, which is not a source checkout (no tests/ or "
            "pyproject.toml); clone the repository and `pip install -e .` it to make assignments"
        )
    return root


def marked_files() -> list[str]:
    """Every file that holds solution regions, in registry order (paths relative to the root)."""
    return list(dict.fromkeys(f for e in EXERCISES.values() for f in e.files))


def regions_of(root: Path) -> dict[str, list[Region]]:
    """Each marked file's regions, checked against the registry (RegionError if they disagree)."""
    found: dict[str, list[Region]] = {}
    for rel in marked_files():
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in the exercise registry but missing")
        regions = find_regions(path.read_text(encoding="utf-8"), rel)
        for r in regions:
            if r.exercise not in EXERCISES:
                raise RegionError(f"{rel}:{r.begin}: region of unknown exercise {r.exercise!r}; "
                                  "add it to minigpt/assignment/exercises.py")  # fmt: skip
            if rel not in EXERCISES[r.exercise].files:
                raise RegionError(f"{rel}:{r.begin}: exercise {r.exercise!r} does not list "
                                  "this file in its registry entry")  # fmt: skip
        found[rel] = regions
    for e in EXERCISES.values():
        for rel in e.files:
            if not any(r.exercise == e.name for r in found[rel]):
                raise RegionError(f"exercise {e.name!r} lists {rel} but it holds no region "
                                  f"'### BEGIN SOLUTION {e.name}'")  # fmt: skip
    return found


def student_files(root: Path, exercises: Sequence[Exercise]) -> dict[str, str]:
    """The student's text of every marked file: the selected exercises stubbed, markers gone."""
    regions_of(root)  # registry and markers agree
    stubs = {e.name: e.stub for e in exercises}
    return {rel: render((root / rel).read_text(encoding="utf-8"), stubs, rel)
            for rel in marked_files()}  # fmt: skip


def _ignore(root: Path, out: Path):
    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder).resolve()
        skipped = {n for n in names if any(fnmatch.fnmatch(n, p) for p in SKIPPED_ANYWHERE)}
        skipped |= {n for n in names if (here / n).resolve() == out}  # --out inside the root
        if here == root:
            skipped |= set(SKIPPED_AT_ROOT) & set(names)
        if here == root / "data":
            skipped |= set(names) - set(KEPT_IN_DATA)
        return skipped

    return ignore


# What a stub leaves behind that the linter flags: imports and variables only the cut-out code
# used, and a name defined again once its first import lost its use. The copy's pyproject.toml
# silences exactly these in exactly the stubbed files, so `ruff check` stays clean for the
# student until they write code of their own.
STUB_LINT_CODES = ("F401", "F811", "F841")
_IGNORES_TABLE = "[tool.ruff.lint.per-file-ignores]"


def quiet_stub_lint(pyproject: str, stubbed_files: Sequence[str]) -> str:
    """`pyproject` (text) with STUB_LINT_CODES ignored in each of `stubbed_files`."""
    codes = ", ".join(f'"{code}"' for code in STUB_LINT_CODES)
    lines = "".join(f'"{rel}" = [{codes}]  # stubbed by minigpt assignment make\n'
                    for rel in sorted(stubbed_files))  # fmt: skip
    if _IGNORES_TABLE not in pyproject:
        return pyproject.rstrip("\n") + f"\n\n{_IGNORES_TABLE}\n{lines}"
    listed = [rel for rel in stubbed_files if f'\n"{rel}" =' in pyproject]
    if listed:  # a second key for the same file would make the TOML invalid
        raise ValueError(f"pyproject.toml already has ruff ignores for {listed[0]}; merge by hand")
    return pyproject.replace(_IGNORES_TABLE + "\n", f"{_IGNORES_TABLE}\n{lines}", 1)


def make_assignment(
    exercises: Sequence[Exercise], out: str | Path, root: str | Path | None = None
) -> list[Region]:
    """Write a student copy of `root` (default: `repository_root()`) to the new folder `out`
    with `exercises` stubbed; returns the regions that became stubs.

    `out` must not exist or be an empty folder (ValueError otherwise), so a make never mixes
    with an older copy or a student's work.
    """
    root = repository_root() if root is None else Path(root).resolve()
    out = Path(out).resolve()
    if not exercises:
        raise ValueError("no exercises selected; pass --exercises a,b or all")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not empty; choose a new folder")
    if out == root or root.is_relative_to(out):
        raise ValueError(f"--out {out} would contain the repository itself; choose a new folder")
    texts = student_files(root, exercises)  # everything checked before anything is written
    stubbed = [r for regions in regions_of(root).values() for r in regions
               if r.exercise in {e.name for e in exercises}]  # fmt: skip
    shutil.copytree(root, out, ignore=_ignore(root, out), symlinks=True, dirs_exist_ok=True)
    for rel, text in texts.items():
        (out / rel).write_text(text, encoding="utf-8")
    pyproject = out / "pyproject.toml"
    if pyproject.is_file():
        stubbed_files = sorted({r.path for r in stubbed})
        pyproject.write_text(quiet_stub_lint(pyproject.read_text("utf-8"), stubbed_files), "utf-8")
    return stubbed
