"""What the grader writes into the judged notebook and its messages: failure messages cleaned of every solution and
hidden-test line, merged where they repeat, the verdict lines under each grade cell with its score, what an answer
cell that stopped with an error means for the names it should define, and the REVIEW flags of code that reaches
into the kernel."""
import ast
import functools
import itertools
import re
import textwrap
from collections.abc import Iterable

import nbformat
from nbformat import NotebookNode
from nbgrader.utils import is_grade, is_solution

from grading.assignment import NOTEBOOK, question_of
from grading.authoring.regions import cell_id as grade_id_of, solution_cells, unreadable_lines
from grading.records.results import QuestionScore, StudentResult, Test
from grading.settings import REPO, Settings

ANSI_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# where IPython's traceback (IPython 8 and later, then older ones) places an error in the cell that ran
SAME_AS = "the same as {name} in {cell}"  # what merge_repeated leaves in a repeated message
CELL_LINE = re.compile(r"(?:Cell In ?\[\d*\]|Input In ?\[\d*\]|<ipython-input-[^>]*>), line (\d+)")

# Code that changes how the kernel runs or reports. The checks no longer run in the kernel, so this cannot change a
# score; a TA may still want to look (docs/security.md).
TAMPERING = {
    r"\bget_ipython\b": "get_ipython (can rewrite or skip later cells)",
    r"\binput_transformers|\bast_transformers": "IPython input transformers",
    r"\bshowtraceback\b|\bset_custom_exc\b": "IPython error handling",
    r"\bsys\.(settrace|setprofile|_getframe|modules)\b": "interpreter internals (sys)",
    r"\b__builtins__\b|\bimport\s+builtins\b|\bbuiltins\.": "builtins",
    r"\bos\._exit\b|\batexit\b": "process exit hooks",
    r"\bctypes\b|\bgc\.get_objects\b": "ctypes or the garbage collector",
    r"\b(checks|torch|nn|np|numpy)\.\w+(\.\w+)*\s*=[^=]": "rebinding a library function",
}


def points(scores: Iterable[float]) -> float:
    """A sum of points, rounded so that shares such as 3 x 2/3 add up to whole points."""
    return round(sum(scores), 6)


def clean(message: str) -> str:
    """A failure message as students may read it: short, and without a line of a solution or hidden test."""
    kept = [line for line in message.splitlines() if line.strip() not in unreadable_lines()]
    return "\n".join(kept)[:Settings.message_chars]


def merge_repeated(tests: list[Test]) -> None:
    """Failed tests that share a message say it once: the first names how many checks and which cells it applies
    to, the others point to it."""
    by_message: dict[str, list[Test]] = {}
    for test in tests:
        if not test.passed and test.message:
            by_message.setdefault(test.message, []).append(test)
    for message, same in by_message.items():
        if len(same) > 1:
            first, cells = same[0], ", ".join(dict.fromkeys(t.cell for t in same))
            first.message = f"{len(same)} checks, in {cells}: {message}"
            for test in same[1:]:
                test.message = SAME_AS.format(name=first.name, cell=first.cell)
                test.same_as = first.name


@functools.lru_cache(maxsize=1)
def defined_by_answer_cells() -> dict[str, str]:
    """{name: grade id} of what each answer cell of the source notebook defines at its top level."""
    cells = solution_cells(nbformat.read(REPO / NOTEBOOK, as_version=4))
    return {node.name: grade_id for grade_id, cell in cells.items() if cell.cell_type == "code"
            for node in ast.parse(cell.source).body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def cell_failures(nb: NotebookNode) -> dict[str, str]:
    """{name: why it is not defined} for the names of defined_by_answer_cells whose answer cell stopped with an
    error in the student's kernel: the exception, the cell and the line, read from the executed notebook's
    outputs (data the kernel sent; nothing of it is run)."""
    stopped = {grade_id_of(c): o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.get("output_type") == "error"}
    failures = {}
    for name, grade_id in defined_by_answer_cells().items():
        error = stopped.get(grade_id)
        if error is not None:
            where = CELL_LINE.search(ANSI_CODES.sub("", "\n".join(error.get("traceback", []))))
            where = where or re.search(r"line (\d+)\)$", str(error.get("evalue", "")))
            said = re.sub(r" \([^()]*, line \d+\)$", "", ANSI_CODES.sub("", str(error.get("evalue", ""))))
            failures[name] = (f"{name} is not defined: its cell, {grade_id}, stopped with {error.get('ename')}"
                              + (f" at line {where.group(1)}" if where else "") + (f": {said}" if said else ""))
    return failures


def tampering_flags(nb: NotebookNode) -> list[str]:
    """What the student's own code cells do to the kernel (information for a TA, never a score)."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not (
        c.get("metadata", {}).get("nbgrader", {}).get("locked")))
    return [what for pattern, what in TAMPERING.items() if re.search(pattern, code)]


def kernel_said(cell: NotebookNode, undefined: dict[str, str] | None = None) -> str:
    """What a test cell printed or raised in the student's kernel, as plain text; a NameError for a name in
    undefined (cell_failures) says why the name is missing instead."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            missing = re.fullmatch(r"name '(\w+)' is not defined", str(output.evalue))
            why = (undefined or {}).get(missing.group(1)) if output.ename == "NameError" and missing else None
            parts.append(why or f"{output.ename}: {output.evalue}")
    text, cap = "".join(parts).strip(), Settings.kernel_output_chars
    return text[:cap] + (" [...]" if len(text) > cap else "")


def verdict_lines(cell_id: str, question: QuestionScore) -> list[str]:
    """The judgement of one grade cell, as the lines shown under it."""
    tests = [t for t in question.tests if t.cell == cell_id]
    if not question.graded:
        return [f"Not graded: {question.status}"]
    if cell_id == "bonus":
        return question.status.split("; ") if question.status else ["no bonus models were submitted"]
    lines = []  # one line per test that passed, and per run of failed tests that say the same
    for _, grouped in itertools.groupby(tests, key=lambda t: id(t) if t.passed else said_first_by(t)):
        run = list(grouped)
        said = "passed" if run[0].passed else run[0].message or "failed"
        lines.append(textwrap.fill(f"{points(t.score for t in run):5.2f} / {points(t.max_score for t in run):5.2f}  "
                                   f"{', '.join(t.name for t in run)}: {said}", Settings.line_width,
                                   subsequent_indent=" " * 15))
    return lines


def said_first_by(test: Test) -> str:
    """The name of the test whose message a failed test says (merge_repeated leaves a reference to the first)."""
    return test.same_as or test.name


def write_verdicts(nb: NotebookNode, result: StudentResult) -> None:
    """Replace the outputs of every judged grade cell by the grader's lines and its score."""
    undefined = cell_failures(nb)
    for cell in nb.cells:
        cell_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        question = result.questions.get(question_of(cell_id))
        if question is None or cell.cell_type != "code" or not is_grade(cell) or is_solution(cell):
            continue
        tests = [t for t in question.tests if t.cell == cell_id]
        score = points(t.score for t in tests)
        lines = ["Graded by the grader's hidden checks, outside your notebook:", *verdict_lines(cell_id, question)]
        if cell_id == "bonus":
            lines[0] = "Graded on the CIFAR test sets (extra credit):"
            score = 0.0  # extra credit is recorded beside the score, not in it
        said = kernel_said(cell, undefined)
        if said:
            lines += ["", "What this cell printed in your kernel (information only, not graded):", said]
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n"),
                        nbformat.v4.new_output("execute_result", data={"text/plain": f"{score:g}"},
                                               execution_count=cell.get("execution_count"))]
