"""Recording a student's result in the nbgrader course, as nbgrader's autograde would. Only the main process writes.

The course gets submitted/<student>/norm/ (the files that were graded, with timestamp.txt) and
autograded/<student>/norm/ (the judged notebook beside them), and the gradebook gets its scores from nbgrader's
own SaveAutoGrades, then SaveJudgement and AssignLatePenalties: the RECORD chain of grading/pipeline.py, with the
course's configuration. Only the cells of the questions being graded are recorded, so --questions keeps the
others, and nbgrader keeps the manual scores a TA already gave. Each step is one transaction.
"""
import shutil
import warnings
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.utils import is_grade, parse_utc

from grading import pipeline
from grading.course import db_url
from grading.intake import unpack
from grading.settings import (ASSIGNMENT, COURSE_ID, KERNEL_QUESTIONS, NOTEBOOK, NOTEBOOK_ID, PYFILE, QUESTION_IDS,
                              question_of)

# nbgrader 0.9 trips over SQLAlchemy 2's session rules in its own code; the rows it writes are right.
warnings.filterwarnings("ignore", message=".*not in session, add operation along.*")


def nbgrader_timestamp(text):
    """A submission time as nbgrader writes it in timestamp.txt (UTC), or None."""
    return parse_utc(text).strftime("%Y-%m-%d %H:%M:%S.%f UTC") if text else None


def record(course_root, submission, result, judged, questions, config, released):
    """Store result (a StudentResult) and the judged notebook (None when grading failed: the questions score 0)
    for the given questions; released is the released notebook, recorded as submitted in place of a notebook that
    could not be graded."""
    root = Path(course_root)
    student = result.student_id
    timestamp = nbgrader_timestamp(result.timestamp)
    submitted = root / "submitted" / student / ASSIGNMENT
    shutil.rmtree(submitted, ignore_errors=True)
    submitted.mkdir(parents=True)
    taken = unpack(submission, submitted)
    if any(not q.graded for name, q in result.questions.items() if name in KERNEL_QUESTIONS):
        nbformat.write(nbformat.from_dict(released), submitted / NOTEBOOK)
    autograded = root / "autograded" / student / ASSIGNMENT
    earlier = read_earlier(autograded / NOTEBOOK) if set(questions) != set(QUESTION_IDS) else None
    shutil.rmtree(autograded, ignore_errors=True)  # nbgrader's autograde leaves its files read-only
    autograded.mkdir(parents=True)
    for path in (submitted, autograded):
        if timestamp:
            (path / "timestamp.txt").write_text(timestamp)
        else:
            (path / "timestamp.txt").unlink(missing_ok=True)
    if taken.pyfile is not None:
        shutil.copy(taken.pyfile, autograded / PYFILE)
    with Gradebook(db_url(root), COURSE_ID) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(ASSIGNMENT, student, **({"timestamp": timestamp} if timestamp else {}))
        if judged is None:
            for grade in gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, student).grades:
                if question_of(grade.cell.name) in questions and grade.manual_score is None:
                    grade.auto_score, grade.needs_manual_grade = 0.0, False
            gb.db.commit()
            return
    nbformat.write(judged if earlier is None else merge(earlier, judged, questions), autograded / NOTEBOOK)
    chosen = nbformat.from_dict(judged)
    chosen.cells = [c for c in chosen.cells if not is_grade(c) or question_of(c.metadata.nbgrader.grade_id)
                    in questions]
    resources = {"nbgrader": {"notebook": NOTEBOOK_ID, "assignment": ASSIGNMENT, "student": student,
                              "db_url": db_url(root)}, "normlab": {"result": result.to_json()}}
    pipeline.run(pipeline.RECORD, chosen, resources, config)


def read_earlier(path):
    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return None


def merge(earlier, judged, questions):
    """The earlier judged notebook, with the outputs of the grade cells of questions taken from judged."""
    fresh = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in judged.cells}
    for cell in earlier.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if question_of(grade_id) in questions and grade_id in fresh and cell.cell_type == "code":
            cell.outputs = fresh[grade_id].outputs
    return earlier
