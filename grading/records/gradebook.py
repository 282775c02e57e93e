"""Recording a student's result in the nbgrader course, as nbgrader's autograde would. Only the main process writes.

The course gets submitted/<student>/norm/ (the files that were graded, with timestamp.txt) and
autograded/<student>/norm/ (the judged notebook beside them), and the gradebook gets its scores from the RECORD
chain: nbgrader's own SaveAutoGrades, then SaveJudgement (below) and nbgrader's AssignLatePenalties, with the
course's configuration. nbgrader's autograde runs the same chain (pipeline/chains.py). Only the cells of the
questions being graded are recorded, so --questions keeps the others, and nbgrader keeps the manual scores a TA
already gave. Each step is one transaction. A grader error records no points: the autograded cells are left
ungraded (no score, needing a grade), and the submission is flagged with what failed, for the formgrader.
"""
import os
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbgrader.api import Gradebook
from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, NbGraderPreprocessor, SaveAutoGrades
from nbgrader.utils import is_grade, is_solution
from traitlets.config import Config

from grading.assignment import (ASSIGNMENT, COURSE_ID, KERNEL_QUESTIONS, NOTEBOOK, NOTEBOOK_ID, PYFILE,
                                 QUESTION_IDS, question_of)
from grading.authoring.course import db_url
from grading.handoff import SubmissionContext
from grading.records.results import StudentResult
from grading.nbgrader_support import apply_chain
from grading.stages import stage


class SaveJudgement(NbGraderPreprocessor):
    """Records what SaveAutoGrades cannot: the bonus as extra credit (or as needing a TA where it could not be
    graded or was withheld for review), and a REVIEW flag on the submitted notebook with its reasons as a comment."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        context = resources.get("normlab")
        if context is None or context.result is None:
            return nb, resources
        result = context.result
        ids = resources["nbgrader"]
        keys = (ids["notebook"], ids["assignment"], ids["student"])
        with Gradebook(ids["db_url"]) as gb:
            bonus = result.questions.get("bonus")
            if bonus is not None:
                grade = gb.find_grade("bonus", *keys)
                grade.extra_credit = bonus.score if bonus.graded else None
                grade.needs_manual_grade = not bonus.graded or bool(bonus.review) or grade.manual_score is not None
            reasons = [f"the notebook uses {', '.join(result.flags)}. Its checks ran outside the notebook, so this "
                       "cannot change a score; a TA may want to look."] if result.flags else []
            if bonus is not None and bonus.review:
                reasons.append(f"{bonus.review}. If the model is genuine, add those points by hand to the bonus "
                               "cell's extra credit.")
            if reasons:
                gb.find_submission_notebook(*keys).flagged = True
                first_answer = next(c.metadata.nbgrader.grade_id for c in nb.cells if is_solution(c))
                gb.find_comment(first_answer, *keys).auto_comment = "Flagged for review: " + " ".join(reasons)
            gb.db.commit()
        return nb, resources


RECORD = [SaveAutoGrades, SaveJudgement, AssignLatePenalties, CheckCellMetadata]


@stage("recording into the gradebook")
def record(course_root: str | os.PathLike[str], taken: str | os.PathLike[str], result: StudentResult,
           judged: NotebookNode | None, questions: Collection[str], config: Config, released: NotebookNode) -> None:
    """Store result (a StudentResult) and the judged notebook (None for a grader error) for the given questions.
    taken is the folder holding the files taken from the submission (Intake.folder); released is the released
    notebook, recorded as submitted in place of a notebook that could not be graded."""
    root = Path(course_root)
    student = result.student_id
    submitted = root / "submitted" / student / ASSIGNMENT
    shutil.rmtree(submitted, ignore_errors=True)
    shutil.copytree(taken, submitted)
    unreadable = any(not q.graded for name, q in result.questions.items() if name in KERNEL_QUESTIONS)
    if unreadable and not result.error:
        nbformat.write(nbformat.from_dict(released), submitted / NOTEBOOK)
    autograded = root / "autograded" / student / ASSIGNMENT
    earlier = read_earlier(autograded / NOTEBOOK) if set(questions) != set(QUESTION_IDS) else None
    shutil.rmtree(autograded, ignore_errors=True)  # nbgrader's autograde leaves its files read-only
    autograded.mkdir(parents=True)
    if (submitted / PYFILE).is_file():
        shutil.copy(submitted / PYFILE, autograded / PYFILE)
    for path in (submitted, autograded):
        if result.timestamp:
            (path / "timestamp.txt").write_text(result.timestamp)
        else:
            (path / "timestamp.txt").unlink(missing_ok=True)
    with Gradebook(db_url(root), COURSE_ID) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(ASSIGNMENT, student,
                                       **({"timestamp": result.timestamp} if result.timestamp else {}))
        if result.error:
            flag_grader_error(gb, student, result.error, questions, released)
            return
    assert judged is not None, "a verdict comes with its judged notebook"
    nbformat.write(judged if earlier is None else merge(earlier, judged, questions), autograded / NOTEBOOK)
    chosen = nbformat.from_dict(judged)
    chosen.cells = [c for c in chosen.cells if not is_grade(c) or question_of(c.metadata.nbgrader.grade_id)
                    in questions]
    resources = {"nbgrader": {"notebook": NOTEBOOK_ID, "assignment": ASSIGNMENT, "student": student,
                              "db_url": db_url(root)}, "normlab": SubmissionContext(result=result)}
    apply_chain(RECORD, chosen, resources, config)


def flag_grader_error(gb: Gradebook, student: str, error: str, questions: Collection[str],
                      released: NotebookNode) -> None:
    """No points for the questions: their autograded cells are left ungraded, needing a grade, and the notebook is
    flagged, with what failed as the comment on its first answer, until a run grades it."""
    notebook = gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, student)
    for grade in notebook.grades:
        if question_of(grade.cell.name) in questions and grade.manual_score is None and grade.max_score:
            grade.auto_score, grade.needs_manual_grade = None, True
    notebook.flagged = True
    first_answer = next(c.metadata.nbgrader.grade_id for c in released.cells if is_solution(c))
    gb.find_comment(first_answer, NOTEBOOK_ID, ASSIGNMENT, student).auto_comment = (
        f"Not graded: the grading machine failed ({error}). No points were recorded; run the grader again.")
    gb.db.commit()


def read_earlier(path: str | os.PathLike[str]) -> NotebookNode | None:
    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return None


def merge(earlier: NotebookNode, judged: NotebookNode, questions: Collection[str]) -> NotebookNode:
    """The earlier judged notebook, with the outputs of the grade cells of questions taken from judged."""
    fresh = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in judged.cells}
    for cell in earlier.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if question_of(grade_id) in questions and grade_id in fresh and cell.cell_type == "code":
            cell.outputs = fresh[grade_id].outputs
    return earlier
