"""nbgrader's own workflow, end to end, in a course built by `python -m grading release`, on a temporary exchange:
release_assignment; three students fetch, fill in and submit (one late, one twice); collect; nbgrader's autograde
(which grades through this project's pipeline); a TA's manual grade and comment on q4_analysis; generate_feedback,
release_feedback, and each student's fetch_feedback. The feedback a student fetches carries the Q1/Q2 checks and
the TA's points and comment, and no line of a hidden test; the scores equal `python -m grading autograde`'s on
the same files."""
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from nbgrader.api import Gradebook

from conftest import REFERENCE, REPO, autograde, results
from grading.authoring.regions import hidden_test_lines, reference_answers
from grading.authoring.samples import Answers, build_submission
from grading.authoring.course import db_url
from grading.assignment import ASSIGNMENT, COURSE_ID, PYFILE, QUESTION_IDS, question_of

STUDENTS = {  # id: answers of each submission, in order
    "alice": [REFERENCE],
    "bob": [Answers(regions={"forward_train": reference_answers(REPO)[PYFILE]["forward_train"]}), REFERENCE],
    "cy": [Answers(base="reference", regions={"q4_analysis": "Normalization kept my training stable.",
                                              "backward": "dx = dgamma = dbeta = None"})],
}
LATE = "cy"
MANUAL = (7.0, "Cite your own numbers next time.")


def nbgrader(*arguments, cwd, exchange, check=True):
    """Run nbgrader in cwd; each student's folder is also their home, where nbgrader keeps their own cache."""
    completed = subprocess.run([sys.executable, "-m", "nbgrader", *arguments, f"--Exchange.root={exchange}"],
                               cwd=cwd, capture_output=True, text=True, timeout=900,
                               env=dict(os.environ, HOME=str(cwd)))
    if check:
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def workflow(release_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("exchange")
    course, exchange = root / "course", root / "exchange"
    shutil.copytree(release_dir / "course", course)
    exchange.mkdir()
    nbgrader("release_assignment", ASSIGNMENT, cwd=course, exchange=exchange)
    for student, submissions in STUDENTS.items():
        home = root / "home" / student
        home.mkdir(parents=True)
        nbgrader("fetch_assignment", ASSIGNMENT, f"--course={COURSE_ID}", cwd=home, exchange=exchange)
        for answers in submissions:
            if student == LATE:
                due = datetime.now(timezone.utc) - timedelta(seconds=0.5)  # after everyone else submitted
                nbgrader("db", "assignment", "add", ASSIGNMENT, f"--duedate={due.isoformat()}", cwd=course,
                         exchange=exchange)
            build_submission(answers, home / ASSIGNMENT, REPO, home / ASSIGNMENT)
            nbgrader("submit", ASSIGNMENT, f"--course={COURSE_ID}", f"--student={student}", cwd=home,
                     exchange=exchange)
            time.sleep(1.1)  # submissions are told apart by their timestamps, to the second
    nbgrader("collect", ASSIGNMENT, cwd=course, exchange=exchange)
    nbgrader("autograde", ASSIGNMENT, cwd=course, exchange=exchange)
    with Gradebook(db_url(course), COURSE_ID) as gb:
        for student in STUDENTS:
            gb.find_grade("q4_analysis", "norm", ASSIGNMENT, student).manual_score = MANUAL[0]
            gb.find_comment("q4_analysis", "norm", ASSIGNMENT, student).manual_comment = MANUAL[1]
        gb.db.commit()
    nbgrader("generate_feedback", ASSIGNMENT, cwd=course, exchange=exchange)
    nbgrader("release_feedback", ASSIGNMENT, cwd=course, exchange=exchange)
    fetched = {}
    for student in STUDENTS:
        home = root / "home" / student
        nbgrader("fetch_feedback", ASSIGNMENT, f"--course={COURSE_ID}", f"--student={student}", cwd=home,
                 exchange=exchange)
        fetched[student] = [p.read_text() for p in sorted((home / ASSIGNMENT / "feedback").rglob("*.html"))]
    ours = autograde(course / "submitted", root / "ours", release_dir, "--jobs", "2")
    assert ours.returncode == 0, ours.stderr[-3000:]
    return course, fetched, results(root / "ours")


def test_each_student_fetches_feedback_without_hidden_tests(workflow):
    _, fetched, _ = workflow
    secrets = hidden_test_lines()
    for student, pages in fetched.items():
        assert len(pages) == 1, f"{student} fetched {len(pages)} feedback pages"
        leaked = [line for line in secrets if line in pages[0]]
        assert not leaked, (student, leaked[:3])


def test_the_feedback_shows_the_q1_q2_checks_and_the_tas_grade_and_comment(workflow):
    _, fetched, _ = workflow
    for student, pages in fetched.items():
        assert "test_train_forward_matches_the_reference" in pages[0]
        assert "test_backward_matches_autograd" in pages[0]
        assert MANUAL[1] in pages[0] and f"{MANUAL[0]:g} / 10" in pages[0].replace("7.0 / 10", "7 / 10")


def test_lateness_and_the_resubmission_are_what_nbgrader_recorded(workflow):
    course, _, ours = workflow
    with Gradebook(db_url(course), COURSE_ID) as gb:
        assert gb.find_submission(ASSIGNMENT, LATE).total_seconds_late > 0
        assert gb.find_submission(ASSIGNMENT, "alice").total_seconds_late == 0
        assert gb.find_submission_notebook("norm", ASSIGNMENT, "bob").score == 80 + MANUAL[0]


def test_nbgraders_autograde_scores_as_python_m_grading_autograde(workflow):
    course, _, ours = workflow
    with Gradebook(db_url(course), COURSE_ID) as gb:
        for student in STUDENTS:
            grades = gb.find_submission_notebook("norm", ASSIGNMENT, student).grades
            by_question = {q: sum(g.auto_score or 0 for g in grades if question_of(g.cell.name) == q)
                           for q in QUESTION_IDS}
            assert by_question == pytest.approx({q: ours[student].questions[q].score for q in QUESTION_IDS}), student
