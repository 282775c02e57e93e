"""The marked regions of the source files: solutions, hidden tests, and the student regions of the release.

The source marks solutions with nbgrader's `### BEGIN SOLUTION` / `### END SOLUTION`; the release replaces each
region by the code stub of assignment.CODE_STUB, whose first and last lines are markers a machine can find. No line
of a solution or hidden test may reach the release or a message a student reads.
"""
import functools
import os
import textwrap
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from grading.assignment import CODE_STUB, MODEL_CODE_CELL, NOTEBOOK, PYFILE, PYFILE_REGIONS
from grading.compat import stub_solution_regions
from grading.settings import HIDDEN, REPO

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUDENT_BEGIN, STUDENT_END = CODE_STUB.splitlines()[0], CODE_STUB.splitlines()[-1]


def marked_regions(text: str, begin: str, end: str) -> list[tuple[int, int]]:
    """(first, last) line indices of the lines strictly between each begin and end marker line."""
    lines = text.split("\n")
    found: list[tuple[int, int]] = []
    start: int | None = None
    for index, line in enumerate(lines):
        if begin in line:
            start = index + 1
        elif end in line and start is not None:
            found.append((start, index - 1))
            start = None
    return found


def region_code(text: str, begin: str = BEGIN_SOLUTION, end: str = END_SOLUTION) -> list[str]:
    """The dedented code of each marked region of text."""
    lines = text.split("\n")
    return [textwrap.dedent("\n".join(lines[first:last + 1])) for first, last in marked_regions(text, begin, end)]


def cell_id(cell: NotebookNode) -> str:
    """The grade_id of a cell's nbgrader metadata; "" where it has none."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or ""


@functools.lru_cache(maxsize=1)
def provided_model_code(source_dir: str | os.PathLike[str] = REPO) -> str:
    """The source of the notebook's provided model code, as the course wrote it (grading builds its networks from
    this copy, never from a student's)."""
    nb = nbformat.read(Path(source_dir) / NOTEBOOK, as_version=4)
    return next(cell.source for cell in nb.cells if cell_id(cell) == MODEL_CODE_CELL)


def solution_cells(nb: NotebookNode) -> dict[str, NotebookNode]:
    """{grade_id: cell} of the notebook's answer cells (code and written)."""
    return {cell_id(c): c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def reference_answers(source_dir: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """{file: {region: code}} of the solutions in the source files."""
    pyfile = (Path(source_dir) / PYFILE).read_text(encoding="utf-8")
    codes = region_code(pyfile)
    if len(codes) != len(PYFILE_REGIONS):
        raise ValueError(f"{PYFILE} has {len(codes)} solution regions; grading.assignment expects {PYFILE_REGIONS}")
    nb = nbformat.read(Path(source_dir) / NOTEBOOK, as_version=4)
    notebook = {grade_id: region_code(cell.source)[0] for grade_id, cell in solution_cells(nb).items()}
    return {PYFILE: dict(zip(PYFILE_REGIONS, codes)), NOTEBOOK: notebook}


def secret_lines(source_dir: str | os.PathLike[str]) -> set[str]:
    """Every non-blank line of a solution region or hidden test in the source files, stripped: none of them may
    appear in the student release."""
    texts = [(Path(source_dir) / PYFILE).read_text(encoding="utf-8")]
    texts += [cell.source for cell in nbformat.read(Path(source_dir) / NOTEBOOK, as_version=4).cells]
    lines: set[str] = set()
    for text in texts:
        for begin, end in ((BEGIN_SOLUTION, END_SOLUTION), (BEGIN_HIDDEN, END_HIDDEN)):
            for code in region_code(text, begin, end):
                lines.update(line.strip() for line in code.split("\n") if line.strip())
    return lines


def hidden_test_lines() -> set[str]:
    """The lines of the hidden suites, but for short generic ones (imports, brackets)."""
    return {line.strip() for path in sorted(HIDDEN.glob("*.py"))
            for line in path.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 20}


@functools.lru_cache(maxsize=1)
def unreadable_lines() -> frozenset[str]:
    """What the grader's own messages may never quote: a line of a solution or of a hidden suite."""
    return frozenset(secret_lines(REPO) | hidden_test_lines())


def stub_pyfile(text: str) -> str:
    """The student version of a source .py file: each solution region becomes assignment.CODE_STUB, through the
    same nbgrader code that stubs the notebook."""
    cell = nbformat.v4.new_code_cell(text)
    stub_solution_regions(cell, CODE_STUB)
    return cell.source
