"""records/gradebook.py: a judged notebook and its StudentResult are recorded in a real nbgrader course as
nbgrader's autograde records them: the files, the scores of the graded questions only, extra credit for the bonus,
a REVIEW flag, and zeros where grading failed."""
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbgrader.api import Gradebook

from grading.assignment import (ASSIGNMENT, AUTOGRADED_POINTS, BY_ID, COURSE_ID, NOTEBOOK, NOTEBOOK_ID, PYFILE,
                                 QUESTION_IDS)
from grading.authoring.course import db_url
from grading.nbgrader_support import course_config
from grading.pipeline.verdicts import write_verdicts
from grading.records.gradebook import record
from grading.records.results import QuestionScore, StudentResult
from grading.records.results import Test as Check


@pytest.fixture
def course(release_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(release_dir / "course", tmp_path / "course")
    return tmp_path / "course"


def released(course: Path) -> nbformat.NotebookNode:
    return nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)


def judged(course: Path, student: str, share: float, questions: Sequence[str] = QUESTION_IDS,
           **result_fields: Any) -> tuple[StudentResult, nbformat.NotebookNode]:
    """(StudentResult, judged notebook): every autograded cell of questions earns share of its points."""
    result = StudentResult(student, timestamp="2026-11-20 10:00:00.000000 UTC", **result_fields)
    for q in questions:
        tests = [Check(f"test_{cell}", share * points, points, share == 1, "", True, cell)
                 for cell, points in BY_ID[q].autograded.items()]
        result.questions[q] = QuestionScore(sum(t.score for t in tests), BY_ID[q].points, tests=tests)
    nb = released(course)
    write_verdicts(nb, result)
    return result, nb


def taken(tmp_path: Path, course: Path) -> Path:
    """The files intake took from alice's submission."""
    folder = tmp_path / "taken"
    folder.mkdir(exist_ok=True)
    (folder / PYFILE).write_text("# the student's file\n")
    nbformat.write(released(course), folder / NOTEBOOK)
    return folder


def scores(course: Path, student: str) -> dict[str, float]:
    with Gradebook(db_url(course), COURSE_ID) as gb:
        return {g.cell.name: g.auto_score for g in gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, student).grades
                if g.cell.name in AUTOGRADED_POINTS}


def test_scores_files_and_the_submission_time_are_recorded(course: Path, tmp_path: Path) -> None:
    result, nb = judged(course, "alice", 0.5)
    record(course, taken(tmp_path, course), result, nb, QUESTION_IDS, course_config(course), released(course))
    assert scores(course, "alice") == {cell: 0.5 * points for cell, points in AUTOGRADED_POINTS.items()}
    submitted, autograded = (course / step / "alice" / ASSIGNMENT for step in ("submitted", "autograded"))
    assert {p.name for p in submitted.iterdir()} == {PYFILE, NOTEBOOK, "timestamp.txt"}
    assert {p.name for p in autograded.iterdir()} == {PYFILE, NOTEBOOK, "timestamp.txt"}
    assert (submitted / "timestamp.txt").read_text() == result.timestamp


def test_regrading_some_questions_keeps_the_others(course: Path, tmp_path: Path) -> None:
    config = course_config(course)
    result, nb = judged(course, "alice", 1.0)
    record(course, taken(tmp_path, course), result, nb, QUESTION_IDS, config, released(course))
    result, nb = judged(course, "alice", 0.0, questions=("q1",))
    record(course, taken(tmp_path, course), result, nb, ("q1",), config, released(course))
    recorded = scores(course, "alice")
    assert recorded["q1_forward"] == 0 and recorded["q2_backward"] == 20 and recorded["q5_cifar_stem"] == 10


def test_a_grader_error_records_no_points_keeps_a_tas_score_and_flags_what_failed(course: Path, tmp_path: Path) -> None:
    config = course_config(course)
    result, nb = judged(course, "alice", 1.0)
    record(course, taken(tmp_path, course), result, nb, QUESTION_IDS, config, released(course))
    with Gradebook(db_url(course), COURSE_ID) as gb:
        gb.find_grade("q2_backward", NOTEBOOK_ID, ASSIGNMENT, "alice").manual_score = 15.0
        gb.db.commit()
    failed = StudentResult("alice", status="ERROR: the kernel could not be started", error="the kernel could "
                           "not be started", questions={q: QuestionScore(graded=False) for q in QUESTION_IDS})
    record(course, taken(tmp_path, course), failed, None, QUESTION_IDS, config, released(course))
    assert {cell: score for cell, score in scores(course, "alice").items() if cell != "q2_backward"} == \
        {cell: None for cell in AUTOGRADED_POINTS if cell not in ("q2_backward", "bonus")} | {"bonus": 0.0}
    with Gradebook(db_url(course), COURSE_ID) as gb:
        assert gb.find_grade("q2_backward", NOTEBOOK_ID, ASSIGNMENT, "alice").score == 15.0
        notebook = gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, "alice")
        assert notebook.flagged and notebook.needs_manual_grade
        assert any("Not graded: the grading machine failed (the kernel could not be started)" in c.comment
                   for c in notebook.comments if c.comment)
    notebook = nbformat.read(course / "submitted" / "alice" / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert notebook.cells == released(course).cells  # the student's own notebook, kept for the regrade


def test_the_bonus_is_extra_credit_and_a_flag_carries_its_reason(course: Path, tmp_path: Path) -> None:
    result, nb = judged(course, "alice", 1.0, flags=["get_ipython (can rewrite or skip later cells)"])
    result.questions["bonus"] = QuestionScore(7.5, 0.0, extra_max=10.0)
    record(course, taken(tmp_path, course), result, nb, QUESTION_IDS, course_config(course), released(course))
    with Gradebook(db_url(course), COURSE_ID) as gb:
        assert gb.find_grade("bonus", NOTEBOOK_ID, ASSIGNMENT, "alice").extra_credit == 7.5
        notebook = gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, "alice")
        assert notebook.flagged
        comments = [c.comment for c in notebook.comments if c.comment]
        assert any("Flagged for review: the notebook uses get_ipython" in c for c in comments)
        assert gb.find_submission(ASSIGNMENT, "alice").score == 80 + 7.5
