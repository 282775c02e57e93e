"""JudgedExecute: the execute step of nbgrader's autograde for this assignment, and of `python -m grading autograde`.

For one submission (the sanitized notebook, and its folder with batchnormalization.py, runs/ and the bonus models)
it runs the student's cells top to bottom in a sandboxed kernel, then the hidden suites in the grader's process:
Q3–Q5 probe the kernel, Q1–Q2 call batchnormalization.py in a sandboxed child, and the bonus models are scored on
the test sets. Student processes hand over only data; every comparison happens here. The verdicts replace the
outputs of the grade cells (a line per check, then the score as an execute_result, which nbgrader's own
SaveAutoGrades records as partial credit); what the cells printed in the kernel is kept as information only. The
whole judgement, as a StudentResult, goes on in resources["normlab"] for SaveJudgement and for our result files.
"""
import os
import re
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
from nbgrader.utils import determine_grade, is_grade, is_solution
from traitlets import Bool, Dict, Integer

from grading.answers import unreadable_lines
from grading.bonus import grade_bonus
from grading.intake import Submission, unpack
from grading.kernel import SandboxedExecute
from grading.pyfile import StudentModule
from grading.results import Question, StudentResult
from grading.sandbox import SCRATCH_PREFIX, Limits, Sandbox, bwrap_works
from grading.settings import (BY_ID, KERNEL_QUESTIONS, PYFILE, PYFILE_QUESTIONS, Settings, question_of)
from grading.suite import KernelProbes, run_hidden_suite
from grading.zygote import zygote_for

MESSAGE_CHARS = 400
KERNEL_OUTPUT_CHARS = 600
LINE_WIDTH = 110
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


class JudgedExecute(SandboxedExecute):
    """nbgrader's execute step, followed by the out-of-process judgement of every autograded cell."""

    settings = Dict(help="grading.settings.Settings as JSON (default: its defaults)").tag(config=True)
    slot = Integer(0, help="worker slot: sandboxed code of different slots runs as different users").tag(config=True)
    require_sandbox = Bool(False, help="refuse to grade without bubblewrap").tag(config=True)

    def preprocess(self, nb, resources):
        settings = Settings.from_json(self.settings) if self.settings else Settings()
        if not bwrap_works() and (self.require_sandbox or settings.require_sandbox):
            raise RuntimeError("bubblewrap (bwrap) is missing or cannot create namespaces here, and the sandbox is "
                               "required")
        grading = resources.setdefault("normlab", {})
        deadline = grading.get("deadline") or time.monotonic() + settings.timeout
        result = judge(self, nb, Path(resources["metadata"]["path"]), resources["nbgrader"]["student"], settings,
                       deadline, self.slot, grading.get("notebook_problem", ""))
        grading["result"] = result.to_json()
        return nb, resources


def judge(executor, nb, folder, student_id, settings, deadline, slot, notebook_problem=""):
    """StudentResult for the questions of settings, with nb's grade cells rewritten to carry the verdicts."""
    questions = settings.question_list
    use_bwrap = bwrap_works()
    result = StudentResult(student_id, sandboxed=use_bwrap)
    if not use_bwrap:
        result.ta_notes.append("graded WITHOUT a sandbox (bubblewrap is missing)")
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir="/tmp"))
    scratch.chmod(0o711)  # sandboxed users must reach their folders inside
    limits = Limits.from_settings(settings)

    def sandbox(name, files, box=None):
        if box is None:
            box = scratch / name
            box.mkdir()
        for source, target in files:
            (box / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, box / target)
        return Sandbox(box, limits, slot, use_bwrap=use_bwrap)

    pyfile_cells = [c for q in questions if q in PYFILE_QUESTIONS for c in BY_ID[q].autograded]
    kernel_cells = [c for q in questions if q in KERNEL_QUESTIONS for c in BY_ID[q].autograded]
    student = kernel = None
    try:
        (scratch / "in").mkdir()
        taken = unpack(Submission(student_id, Path(folder), "folder"), scratch / "in")
        pyfile = [(taken.pyfile, PYFILE)] if taken.pyfile else []
        if pyfile_cells and taken.pyfile:
            student = StudentModule(sandbox("py", pyfile), taken.pyfile.name, settings.call_timeout)
        if kernel_cells and not notebook_problem:
            result.flags = tampering_flags(nb)
            histories = [(p, p.relative_to(scratch / "in")) for p in (scratch / "in" / "runs").rglob("*.json")]
            executor.zygote = zygote_for(slot, limits)
            executor.sandbox = sandbox("nb", pyfile + histories, executor.zygote and executor.zygote.new_folder())
            result.notes += executor.start(nb, {"metadata": {"path": str(executor.sandbox.workdir)}}, deadline,
                                           settings.cell_timeout)
            kernel = KernelProbes(executor, settings.probe_timeout)
        judged = [c for c in pyfile_cells if student] + [c for c in kernel_cells if kernel]
        tests = run_hidden_suite(judged, student, kernel) if judged else {}
        if "bonus" in questions:
            bonus = grade_bonus(taken.bonus, lambda box: Sandbox(box, limits, slot, use_bwrap=use_bwrap), scratch,
                                settings.cifar_root, timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if student is not None:
            student.close()
        if kernel is not None:
            executor.stop()
            if executor.zygote is not None:
                shutil.rmtree(executor.sandbox.workdir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    problems = {q: taken.problems.get("pyfile") or f"no {PYFILE} was submitted" for q in PYFILE_QUESTIONS
                if student is None}
    problems.update({q: notebook_problem for q in KERNEL_QUESTIONS if kernel is None})
    for q in questions:
        result.questions[q] = bonus_question(bonus, taken) if q == "bonus" else \
            question(q, nb, tests, problems.get(q, ""))
    if "bonus" in questions and bonus.not_graded:
        result.ta_notes.append(f"bonus not graded: {bonus.not_graded}")
    result.notes += taken.notes
    write_verdicts(nb, result)
    return result


def question(q, nb, tests, problem):
    """A question's Question from its cells' tests; problem says why it could not be graded ("" if it was)."""
    spec = BY_ID[q]
    written = [c for c in nb.cells if is_grade(c) and is_solution(c) and question_of(c.metadata.nbgrader.grade_id) == q]
    cell_tests = [t for cell in spec.autograded for t in tests.get(cell, [])]
    for test in cell_tests:
        test.message = clean(test.message)
    return Question(points(t.score for t in cell_tests), spec.points, manual_max=spec.written_points,
                    manual_pending=not problem and any(determine_grade(c)[0] is None for c in written),
                    graded=not problem, status=problem, tests=cell_tests)


def bonus_question(bonus, taken):
    status = "; ".join(filter(None, [taken.problems.get("bonus", ""), *bonus.lines]))
    return Question(bonus.score, 0.0, graded=not bonus.not_graded, status=status, extra_max=BY_ID["bonus"].extra)


def points(scores):
    """A sum of points, rounded so that shares such as 3 x 2/3 add up to whole points."""
    return round(sum(scores), 6)


def clean(message):
    """A failure message as students may read it: short, and without a line of a solution or hidden test."""
    kept = [line for line in message.splitlines() if line.strip() not in unreadable_lines()]
    return "\n".join(kept)[:MESSAGE_CHARS]


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
    text = "".join(parts).strip()
    return text[:KERNEL_OUTPUT_CHARS] + (" [...]" if len(text) > KERNEL_OUTPUT_CHARS else "")


def verdict_lines(cell_id, question):
    """The judgement of one grade cell, as the lines shown under it."""
    tests = [t for t in question.tests if t.cell == cell_id]
    if not question.graded:
        return [f"Not graded: {question.status}"]
    if cell_id == "bonus":
        return question.status.split("; ") if question.status else ["no bonus models were submitted"]
    return [textwrap.fill(f"{t.score:5.2f} / {t.max_score:5.2f}  {t.name}: " + (
        "passed" if t.passed else t.message or "failed"), LINE_WIDTH, subsequent_indent=" " * 15) for t in tests]


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
