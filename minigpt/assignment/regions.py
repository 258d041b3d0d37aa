"""Solution regions: the lines of library code a student writes, and how they are cut out.

An instructor marks the formula a student should write with the delimiters nbgrader made
familiar, one comment line each, indented like the code they enclose, the BEGIN line naming
the exercise the region belongs to (an exercise may own regions in several files):

    <indent>### BEGIN SOLUTION <exercise>
    <indent>...the statements the student writes...
    <indent>### END SOLUTION

`find_regions` reads them (and rejects nesting, a missing name, an unclosed region, a body
less indented than its markers); `render` writes the student's version of a file: every
marker line dropped, and each region of a selected exercise replaced by ONE statement (a
`raise NotImplementedError(...)`) at the region's indentation. Because a region is a run of
whole statements, the raise stands where they stood and the file still compiles; `render`
checks that it does. This module knows nothing of the exercise registry (exercises.py) and
never touches the disk: text in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
# A marker line holds the delimiter and nothing else but, on BEGIN, the exercise's name.
_MARKER = re.compile(r"^(?P<indent>[ \t]*)### (?P<kind>BEGIN|END) SOLUTION(?P<rest>.*?)\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class RegionError(ValueError):
    """A malformed solution region; the message names the file and line."""


@dataclass(frozen=True)
class Region:
    """One marked region: lines `begin` and `end` (1-based) are its two marker lines."""

    exercise: str
    path: str
    begin: int
    end: int
    indent: str
    body: str  # the enclosed lines, as written (the solution)


def is_marker(line: str) -> bool:
    """True for a BEGIN or END SOLUTION line (whatever it names)."""
    return _MARKER.match(line.rstrip("\r\n")) is not None


def find_regions(text: str, path: str = "<text>") -> list[Region]:
    """The regions of `text` in file order; RegionError for any malformed marker."""
    regions: list[Region] = []
    lines = text.splitlines(keepends=True)
    open_at: tuple[int, str, str] | None = None  # (line number, exercise, indent) of a BEGIN
    for number, line in enumerate(lines, 1):
        m = _MARKER.match(line.rstrip("\r\n"))
        if m is None:
            if open_at is not None and line.strip() and not line.startswith(open_at[2]):
                raise RegionError(
                    f"{path}:{number}: this line is less indented than the BEGIN SOLUTION at "
                    f"line {open_at[0]}; a region holds whole statements of one block"
                )
            continue
        indent, kind, rest = m.group("indent"), m.group("kind"), m.group("rest").strip()
        if kind == "BEGIN":
            if open_at is not None:
                raise RegionError(
                    f"{path}:{number}: BEGIN SOLUTION inside the region opened at line "
                    f"{open_at[0]}; close that one with {END!r} first (regions do not nest)"
                )
            if not _NAME.match(rest):
                raise RegionError(
                    f"{path}:{number}: {BEGIN!r} must name its exercise, e.g. "
                    f"'{BEGIN} attention' (lowercase letters, digits, _), got {rest!r}"
                )
            open_at = (number, rest, indent)
            continue
        if open_at is None:
            raise RegionError(f"{path}:{number}: END SOLUTION without a BEGIN SOLUTION before it")
        begin, exercise, begin_indent = open_at
        if rest and rest != exercise:
            raise RegionError(
                f"{path}:{number}: END SOLUTION names {rest!r} but the region opened at line "
                f"{begin} is {exercise!r}"
            )
        if indent != begin_indent:
            raise RegionError(
                f"{path}:{number}: END SOLUTION is indented differently from its BEGIN at line "
                f"{begin}; indent both like the code they enclose"
            )
        body = "".join(lines[begin:number - 1])
        if not body.strip():
            raise RegionError(f"{path}:{begin}: the region of {exercise!r} encloses no code")
        regions.append(Region(exercise, path, begin, number, indent, body))
        open_at = None
    if open_at is not None:
        raise RegionError(
            f"{path}:{open_at[0]}: BEGIN SOLUTION {open_at[1]} is never closed; add {END!r}"
        )
    return regions


def render(text: str, stubs: Mapping[str, str], path: str = "<text>") -> str:
    """The student's `text`: marker lines removed, regions of the exercises in `stubs` replaced
    by `stubs[exercise]` (one statement, e.g. a raise) at the region's indentation.

    Regions of exercises not in `stubs` keep their code. Raises RegionError for malformed
    markers, or when the result does not compile (a region that is not whole statements).
    """
    regions = find_regions(text, path)
    lines = text.splitlines(keepends=True)
    stubbed: dict[int, Region] = {r.begin: r for r in regions if r.exercise in stubs}
    out: list[str] = []
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        region = stubbed.get(number)
        if region is not None:
            newline = "\r\n" if line.endswith("\r\n") else "\n"
            out.append(f"{region.indent}{stubs[region.exercise]}{newline}")
            number = region.end  # skip the body and the END line
        elif not is_marker(line):
            out.append(line)
    result = "".join(out)
    try:
        compile(result, path, "exec")
    except SyntaxError as err:
        names = ", ".join(sorted({r.exercise for r in stubbed.values()})) or "no exercise"
        raise RegionError(
            f"{path}:{err.lineno}: stubbing {names} leaves invalid Python ({err.msg}); "
            "a region must be a run of whole statements of one block"
        ) from None
    return result
