"""The judgement of one submission: the student's cells run top to bottom in a sandboxed kernel, then the hidden
suites judge in the grader's process (Q3–Q5 probe the kernel, Q1–Q2 call batchnormalization.py in a sandboxed
child), and the bonus models are scored on the test sets. Student processes hand over only data; every comparison
happens here. The verdicts replace the outputs of the grade cells (verdicts.py); what the cells printed in the
kernel is kept as information only.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nbgrader.utils import determine_grade, is_grade, is_solution

from grading.assignment import BY_ID, KERNEL_QUESTIONS, PYFILE, PYFILE_QUESTIONS, question_of
from grading.isolation import scratch as scratch_folders
from grading.isolation import users
from grading.failures import Cause, GraderError
from grading.isolation.sandbox import PYTHON, Isolation, Limits, Sandbox
from grading.isolation.student_module import StudentModule
from grading.pipeline.bonus import grade_bonus
from grading.pipeline.hidden_suites import KernelProbes, run_hidden_suite
from grading.stages import stage
from grading.pipeline.verdicts import cell_failures, clean, merge_repeated, points, tampering_flags, write_verdicts
from grading.records.results import QuestionScore, StudentResult, Test

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from grading.handoff import Intake, SubmissionContext
    from grading.pipeline.bonus import BonusResult
    from grading.pipeline.judged_execute import JudgedExecute


@stage("judge", rest="sandboxes, flags, scores, verdicts, ending processes")
def judge(executor: JudgedExecute, nb: NotebookNode, context: SubmissionContext, student_id: str,
          isolation: Isolation) -> StudentResult:
    """StudentResult for the questions of context.settings, with nb's grade cells rewritten to carry the verdicts.
    executor is the JudgedExecute that runs the kernel; context the SubmissionContext, whose intake holds the files
    taken from the submission."""
    settings, intake, slot, deadline = context.settings, context.intake, context.slot, context.deadline
    if intake is None or intake.folder is None or deadline is None:
        raise GraderError("judge was called before the submission was unpacked and given a deadline", Cause.BUG)
    folder = intake.folder
    questions = settings.question_list
    result = StudentResult(student_id, isolation=isolation.value)
    if isolation.note:
        result.ta_notes.append(isolation.note)
    scratch = scratch_folders.make()
    limits = Limits.from_settings(settings)

    def sandbox(name: str, files: Sequence[tuple[Path, Path | str]], box: Path | None = None) -> Sandbox:
        if box is None:
            box = scratch / name
            box.mkdir()
        made = Sandbox(box, limits, slot, isolation)
        made.place(files)
        return made

    pyfile_cells = [c for q in questions if q in PYFILE_QUESTIONS for c in BY_ID[q].autograded]
    kernel_cells = [c for q in questions if q in KERNEL_QUESTIONS for c in BY_ID[q].autograded]
    student = kernel = None
    try:
        pyfile: list[tuple[Path, Path | str]] = [(intake.pyfile, PYFILE)] if intake.pyfile else []
        if pyfile_cells and intake.pyfile:
            with stage("start batchnormalization.py's sandboxed child"):
                student = StudentModule(sandbox("py", pyfile), PYFILE, settings.call_timeout)
        if kernel_cells and not context.notebook_problem:
            result.flags = tampering_flags(nb)
            histories: list[tuple[Path, Path | str]] = [(p, p.relative_to(folder))
                                                         for p in (folder / "runs").rglob("*.json")]
            executor.zygote = context.zygotes.for_slot(slot, limits) if context.zygotes is not None else None
            kernel_folder = executor.zygote.new_folder() if executor.zygote is not None else None
            if kernel_folder is None:
                executor.zygote = None  # gone or retired: the kernel starts cold, in a folder of its own
            executor.sandbox = sandbox("nb", pyfile + histories, kernel_folder)
            with stage("the notebook", rest="the student's cells"):
                result.notes += executor.start(nb, {"metadata": {"path": str(executor.sandbox.workdir)}}, deadline,
                                               settings.cell_timeout)
            kernel = KernelProbes(executor, settings.probe_timeout, cell_failures(nb))
        judged = [c for c in pyfile_cells if student] + [c for c in kernel_cells if kernel]
        tests = run_hidden_suite(judged, student, kernel) if judged else {}
        if "bonus" in questions:
            with stage("bonus"):
                bonus = grade_bonus(intake.bonus, lambda box: Sandbox(box, limits, slot, isolation), scratch,
                                    settings.cifar_root, timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if student is not None:
            student.close()
        if kernel is not None:
            with stage("stop the kernel"):
                executor.stop()  # the zygote's kernel folder is emptied by its owner's sweep, or before the next kernel
        if isolation is Isolation.SEPARATE_USER and not users.end_user(users.uid_of(slot), PYTHON):
            raise GraderError(f"the processes or files of the user {users.uid_of(slot)}, which ran this submission's "
                              "code, could not all be removed", Cause.CLEAN_UP)
        scratch_folders.remove(scratch)
    problems = {q: intake.problems.get("pyfile") or f"no {PYFILE} was submitted" for q in PYFILE_QUESTIONS
                if student is None}
    problems.update({q: context.notebook_problem for q in KERNEL_QUESTIONS if kernel is None})
    for q in questions:
        result.questions[q] = bonus_score(bonus, intake) if q == "bonus" else \
            question_score(q, nb, tests, problems.get(q, ""))
    if "bonus" in questions and bonus.not_graded:
        result.ta_notes.append(f"bonus not graded: {bonus.not_graded}")
    merge_repeated([t for q in result.questions.values() for t in q.tests])
    write_verdicts(nb, result)
    return result


def question_score(q: str, nb: NotebookNode, tests: dict[str, list[Test]], problem: str) -> QuestionScore:
    """A question's QuestionScore from its cells' tests; problem says why it could not be graded ("" if it was)."""
    spec = BY_ID[q]
    written = [c for c in nb.cells if is_grade(c) and is_solution(c) and question_of(c.metadata.nbgrader.grade_id) == q]
    cell_tests = [t for cell in spec.autograded for t in tests.get(cell, [])]
    for test in cell_tests:
        test.message = clean(test.message)
    return QuestionScore(points(t.score for t in cell_tests), spec.points, manual_max=spec.written_points,
                         manual_pending=not problem and any(determine_grade(c)[0] is None for c in written),
                         graded=not problem, status=problem, tests=cell_tests)


def bonus_score(bonus: BonusResult, intake: Intake) -> QuestionScore:
    status = "; ".join(filter(None, [intake.problems.get("bonus", ""), *bonus.lines]))
    return QuestionScore(bonus.score, 0.0, graded=not bonus.not_graded, status=status,
                         review="; ".join(bonus.review), extra_max=BY_ID["bonus"].extra)
