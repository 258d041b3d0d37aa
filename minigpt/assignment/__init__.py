"""The course kit: hand the library out as homework, with parts cut out, and grade it.

`exercises.py` is the registry (what to write, where, which lesson, which tests, points),
`regions.py` reads and cuts the `### BEGIN SOLUTION` / `### END SOLUTION` regions in the
library's source, `make.py` writes a student's copy of the repository, `grade.py` runs each
exercise's tests in its own process and scores them (a table, Gradescope's JSON), and
`report.py` is the pytest plugin those processes load. `minigpt assignment list | make |
grade` is the command line; README.md's "Teaching with minigpt" is the walk-through.
"""
