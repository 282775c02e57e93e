"""What the grader writes into the judged notebook and its messages: failure messages cleaned of every solution and
hidden-test line, the verdict lines under each grade cell with its score, and the REVIEW flags of code that reaches
into the kernel."""
import re
import textwrap

import nbformat
from nbgrader.utils import is_grade, is_solution

from grading.assignment import question_of
from grading.authoring.regions import unreadable_lines
from grading.settings import Settings

# Code that changes how the kernel runs or reports. The checks no longer run in the kernel, so this cannot change a
# score; a TA may still want to look (grading/SECURITY.md).
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


def points(scores):
    """A sum of points, rounded so that shares such as 3 x 2/3 add up to whole points."""
    return round(sum(scores), 6)


def clean(message):
    """A failure message as students may read it: short, and without a line of a solution or hidden test."""
    kept = [line for line in message.splitlines() if line.strip() not in unreadable_lines()]
    return "\n".join(kept)[:Settings.message_chars]


def tampering_flags(nb):
    """What the student's own code cells do to the kernel (information for a TA, never a score)."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not (
        c.get("metadata", {}).get("nbgrader", {}).get("locked")))
    return [what for pattern, what in TAMPERING.items() if re.search(pattern, code)]


def kernel_said(cell):
    """What a test cell printed or raised in the student's kernel, as plain text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    text, cap = "".join(parts).strip(), Settings.kernel_output_chars
    return text[:cap] + (" [...]" if len(text) > cap else "")


def verdict_lines(cell_id, question):
    """The judgement of one grade cell, as the lines shown under it."""
    tests = [t for t in question.tests if t.cell == cell_id]
    if not question.graded:
        return [f"Not graded: {question.status}"]
    if cell_id == "bonus":
        return question.status.split("; ") if question.status else ["no bonus models were submitted"]
    return [textwrap.fill(f"{t.score:5.2f} / {t.max_score:5.2f}  {t.name}: " + (
        "passed" if t.passed else t.message or "failed"), Settings.line_width, subsequent_indent=" " * 15)
        for t in tests]


def write_verdicts(nb, result):
    """Replace the outputs of every judged grade cell by the grader's lines and its score."""
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
        said = kernel_said(cell)
        if said:
            lines += ["", "What this cell printed in your kernel (information only, not graded):", said]
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n"),
                        nbformat.v4.new_output("execute_result", data={"text/plain": f"{score:g}"},
                                               execution_count=cell.get("execution_count"))]
