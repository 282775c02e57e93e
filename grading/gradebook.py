"""Recording a student's result in the nbgrader gradebook and course folder. Only the main process writes.

The executed notebook goes to autograded/<student>/norm/norm.ipynb and nbgrader's own SaveAutoGrades stores its
scores; report notebooks for batchnormalization.py and the bonus go beside it, with their scores set directly (the
bonus as extra credit). Only the questions being graded are touched, so --questions keeps the others, and manual
scores a TA already gave are never overwritten. Each student's update is one transaction per gradebook session.
"""
import warnings
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.preprocessors import SaveAutoGrades

from grading.course import OFFLINE_NOTEBOOKS, db_url, offline_report
from grading.settings import ASSIGNMENT, COURSE_ID, NOTEBOOK, NOTEBOOK_ID, question_of

# nbgrader 0.9 trips over SQLAlchemy 2's session rules in its own code; the rows it writes are right.
warnings.filterwarnings("ignore", message=".*not in session, add operation along.*")


def record(course_root, result, executed, questions):
    """Store result (a StudentResult) and its executed notebook (or None) for the given questions."""
    root = Path(course_root)
    url = db_url(root)
    student = result.student_id
    folder = root / "autograded" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    with Gradebook(url, COURSE_ID) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(ASSIGNMENT, student, **({"timestamp": result.timestamp}
                                                               if result.timestamp else {}))
        if executed is None:
            for grade in gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, student).grades:
                if question_of(grade.cell.name) in questions:
                    grade.auto_score, grade.needs_manual_grade = 0.0, False
            gb.db.commit()
        for name, cells in OFFLINE_NOTEBOOKS.items():
            outputs = {}
            for grade_id, _, _ in cells:
                question = result.questions.get(question_of(grade_id))
                if question_of(grade_id) not in questions or question is None:
                    continue
                grade = gb.find_grade(grade_id, name, ASSIGNMENT, student)
                if grade_id == "bonus":
                    grade.auto_score, grade.extra_credit = 0.0, question.score
                else:
                    grade.auto_score = question.score
                grade.needs_manual_grade = grade.manual_score is not None or not question.graded
                outputs[grade_id] = report_lines(question)
            gb.db.commit()
            if outputs:
                nbformat.write(offline_report(name, outputs), folder / f"{name}.ipynb")
    if executed is not None:
        nbformat.write(executed, folder / NOTEBOOK)
        regraded = nbformat.from_dict(executed)
        regraded.cells = [c for c in regraded.cells if question_of(c.metadata.get("nbgrader", {}).get(
            "grade_id", "")) in questions]
        resources = {"nbgrader": {"notebook": NOTEBOOK_ID, "assignment": ASSIGNMENT, "student": student,
                                  "db_url": url}}
        SaveAutoGrades().preprocess(regraded, resources)
        if result.flags:
            with Gradebook(url, COURSE_ID) as gb:
                for grade in gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, student).grades:
                    grade.needs_manual_grade = True
                gb.db.commit()


def report_lines(question):
    lines = [f"{question.status}\n"] if question.status else []
    for test in question.tests:
        verdict = "passed" if test.passed else f"FAILED: {test.message}"
        lines.append(f"{test.score:5.2f} / {test.max_score:5.2f}  {test.name}: {verdict}\n")
    return ["".join(lines)]
