"""The final grades, as the course's nbgrader gradebook holds them once people have had their say: the autograded
points, the TA's manual scores and overrides (nbgrader's manual_score wins over auto_score), the bonus as extra
credit, and the late penalty nbgrader's AssignLatePenalties recorded. `python -m grading export` and
`python -m grading feedback` read them here, so that the LMS file, the student's feedback and `nbgrader export`
agree; grades.csv stays autograde's own record, written before any person graded anything.

A student "needs a person" while their grade is not final: a cell still needs grading (a written answer, a bonus
withheld or not graded, the autograded cells of a grader ERROR) or the notebook is flagged (REVIEW, ERROR). The TA
settles it in the formgrader: a score for each cell, and the flag cleared once they have looked.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from grading.assignment import ASSIGNMENT, BY_ID, COURSE_ID, QUESTION_IDS, question_of
from grading.authoring.course import db_url
from grading.records.results import GRADE_FILE, StudentResult, load_result


@dataclass
class FinalCell:
    """One grade cell of a student's notebook: score is nbgrader's (the TA's manual_score where given, else the
    autograded one; None while it still needs grading), extra the extra credit on it, comment the TA's."""

    name: str
    max_score: float
    auto_score: float | None = None
    manual_score: float | None = None
    extra: float | None = None
    needs_grading: bool = False

    @property
    def score(self) -> float | None:
        if self.manual_score is not None:
            return self.manual_score
        return None if self.needs_grading and self.auto_score is None else (self.auto_score or 0.0)

    @property
    def overridden(self) -> bool:
        """Whether a TA replaced an autograded score (not merely graded a written answer)."""
        return self.manual_score is not None and self.auto_score is not None and self.manual_score != self.auto_score


@dataclass
class FinalQuestion:
    """A question's cells; its points count what is graded so far (pending is True while a cell needs grading)."""

    id: str
    cells: list[FinalCell] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # the TA's comments on its answer cells, in the notebook's order

    @property
    def score(self) -> float:
        return sum(c.score or 0.0 for c in self.cells)

    @property
    def extra(self) -> float:
        return sum(c.extra or 0.0 for c in self.cells)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells)

    @property
    def pending(self) -> bool:
        return any(c.needs_grading for c in self.cells)

    @property
    def graded(self) -> bool:
        """Whether any of its points are decided (a bonus never graded is not: it shows empty, not 0)."""
        return any(not c.needs_grading or c.manual_score is not None or c.extra is not None for c in self.cells)


@dataclass
class FinalGrade:
    """A student of the gradebook and where their grade stands. needs_person lists why it is not final yet, in
    words for the TA; submitted is False for a student of the roster who handed nothing in."""

    student_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    lms_user_id: str = ""
    submitted: bool = True
    questions: dict[str, FinalQuestion] = field(default_factory=dict)  # by question id
    late_penalty: float = 0.0
    needs_person: list[str] = field(default_factory=list)

    @property
    def raw_total(self) -> float:
        """Every point so far, extra credit included, before the late penalty."""
        return sum(q.score + q.extra for q in self.questions.values())

    @property
    def total(self) -> float:
        return self.raw_total - self.late_penalty

    def points(self, question: str) -> float | None:
        """A question's points for a table: its score, the bonus's extra credit; None where nothing is graded."""
        q = self.questions.get(question)
        if q is None or not q.graded:
            return None
        return q.score + q.extra


def waiting(course: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """{student: why} of every student of the course whose grade is not final yet (FinalGrade.needs_person)."""
    return {student: grade.needs_person for student, grade in read_final(course, out_dir).items()
            if grade.needs_person}


def solution_question(cell_name: str) -> str:
    """The question a cell of norm.ipynb belongs to: its grade cell's, or for an answer cell the question its id
    starts with (the notebook names them so: q3_make_norm); "" for any other."""
    return question_of(cell_name) or next((q for q in QUESTION_IDS if cell_name.startswith(f"{q}_")), "")


def read_final(course: str | os.PathLike[str],
               out_dir: str | os.PathLike[str] | None = None) -> dict[str, FinalGrade]:
    """{student id: FinalGrade} of every student of the course's gradebook, in id order. out_dir (autograde's OUT),
    where given, tells a grader ERROR from a REVIEW by the student's grade.json."""
    grades: dict[str, FinalGrade] = {}
    with Gradebook(db_url(Path(course)), COURSE_ID) as gb:
        for student in sorted(gb.students, key=lambda s: s.id):
            final = FinalGrade(student.id, student.first_name or "", student.last_name or "", student.email or "",
                               student.lms_user_id or "")
            grades[student.id] = final
            try:
                submission = gb.find_submission(ASSIGNMENT, student.id)
            except MissingEntry:
                final.submitted = False
                continue
            final.late_penalty = float(submission.late_submission_penalty or 0.0)
            flagged = False
            for notebook in submission.notebooks:
                flagged |= bool(notebook.flagged)
                for grade in notebook.grades:
                    question = final.questions.setdefault(question_of(grade.name),
                                                          FinalQuestion(question_of(grade.name)))
                    question.cells.append(FinalCell(grade.name, float(grade.max_score or 0.0), grade.auto_score,
                                                    grade.manual_score, grade.extra_credit,
                                                    bool(grade.needs_manual_grade)))
                for comment in notebook.comments:
                    answered = solution_question(comment.name)
                    if comment.manual_comment and comment.manual_comment.strip() and answered:
                        final.questions.setdefault(answered, FinalQuestion(answered)).comments.append(
                            comment.manual_comment.strip())
            final.questions = {q: final.questions[q] for q in QUESTION_IDS if q in final.questions}
            final.needs_person = reasons(final, flagged, load_result(Path(out_dir) / student.id / GRADE_FILE)
                                         if out_dir else None)
    return grades


def reasons(final: FinalGrade, flagged: bool, result: StudentResult | None) -> list[str]:
    """Why final is not final yet (FinalGrade.needs_person); result is the student's grade.json, or None."""
    if result is not None and result.error and flagged:
        return [f"ERROR: the grading machine failed ({result.error}); run autograde again"]
    found = []
    if flagged:
        why = result.status if result is not None and result.status.startswith("REVIEW") else "REVIEW"
        found.append(f"{why} (flagged in the formgrader: clear the flag once you have looked)")
    pending = [f"{BY_ID[q].title if q in BY_ID else q} ({', '.join(c.name for c in question.cells if c.needs_grading)})"
               for q, question in final.questions.items() if question.pending]
    if pending:
        found.append("to grade by hand: " + "; ".join(pending))
    return found
