"""nbgrader's own workflow, end to end, in a course built by `python -m grading release`, on a temporary exchange:
release_assignment; three students fetch, fill in and submit (one late, one twice); collect; nbgrader's autograde
(which grades through this project's pipeline); a TA's manual grade and comment on q4_analysis; generate_feedback,
release_feedback, and each student's fetch_feedback. The feedback a student fetches carries the Q1/Q2 checks and
the TA's points and comment, and no line of a hidden test; the scores equal `python -m grading autograde`'s on
the same files.

The front doors are attacked on the way: alice's inbox gains a link to the instructor's solution, the late student
edits their inbox to claim a time before the due date, and a submission whose files link to the instructor's sources
is put into submitted/ by hand (as unzip, tar or rsync -a would) before nbgrader's autograde. Collect takes no link
and records the late time, and both front doors grade the linked submission 0, as autograde grades it."""
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
from grading.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, PYFILE, QUESTION_IDS, question_of
from grading.pipeline.front_door import SECRET
from grading.records.late import read_record
from grading.settings import NBGRADER_TIME_FORMAT, Settings

STUDENTS = {  # id: answers of each submission, in order
    "alice": [REFERENCE],
    "bob": [Answers(regions={"forward_train": reference_answers(REPO)[PYFILE]["forward_train"]}), REFERENCE],
    "cy": [Answers(base="reference", regions={"q4_analysis": "Normalization kept my training stable.",
                                              "backward": "dx = dgamma = dbeta = None"})],
}
LATE = "cy"
LINKED = "eve"  # put into submitted/ by hand, her files links to the instructor's
MANUAL = (7.0, "Cite your own numbers next time.")


def nbgrader(*arguments, cwd, exchange, check=True):
    """Run nbgrader in cwd; each student's folder is also their home, where nbgrader keeps their own cache."""
    completed = subprocess.run([sys.executable, "-m", "nbgrader", *arguments, f"--Exchange.root={exchange}"],
                               cwd=cwd, capture_output=True, text=True, timeout=900,
                               env=dict(os.environ, HOME=str(cwd)))
    if check:
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def inbox(exchange, student):
    """The student's latest folder in the exchange's inbound."""
    return sorted((exchange / COURSE_ID / "inbound").glob(f"{student}+{ASSIGNMENT}+*"))[-1]


def claim_an_earlier_time(folder, earlier):
    """What a student can do to their own inbox: rename it and rewrite its timestamp.txt to claim earlier."""
    stamp = earlier.strftime(NBGRADER_TIME_FORMAT)
    (folder / "timestamp.txt").write_text(stamp)
    student, assignment, _, random = folder.name.split("+")
    folder.rename(folder.with_name(f"{student}+{assignment}+{stamp}+{random}"))


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
    (inbox(exchange, "alice") / "solution.py").symlink_to(REPO / PYFILE)
    claim_an_earlier_time(inbox(exchange, LATE), due - timedelta(hours=1))
    nbgrader("collect", ASSIGNMENT, cwd=course, exchange=exchange)
    linked = course / "submitted" / LINKED / ASSIGNMENT
    linked.mkdir(parents=True)
    for name in (PYFILE, NOTEBOOK):
        (linked / name).symlink_to(REPO / name)
    nbgrader("autograde", ASSIGNMENT, cwd=course, exchange=exchange)
    with Gradebook(db_url(course), COURSE_ID) as gb:
        for student in STUDENTS:
            gb.find_grade("q4_analysis", "norm", ASSIGNMENT, student).manual_score = MANUAL[0]
            gb.find_comment("q4_analysis", "norm", ASSIGNMENT, student).manual_comment = MANUAL[1]
        gb.db.commit()
    # eve's folder, made by hand, has no submission secret for the exchange to release feedback under
    nbgrader("generate_feedback", ASSIGNMENT, f"--CourseDirectory.student_id_exclude={LINKED}", cwd=course,
             exchange=exchange)
    nbgrader("release_feedback", ASSIGNMENT, cwd=course, exchange=exchange)
    fetched = {}
    for student in STUDENTS:
        home = root / "home" / student
        nbgrader("fetch_feedback", ASSIGNMENT, f"--course={COURSE_ID}", f"--student={student}", cwd=home,
                 exchange=exchange)
        fetched[student] = [p.read_text() for p in sorted((home / ASSIGNMENT / "feedback").rglob("*.html"))]
    ours = autograde(course / "submitted", root / "ours", release_dir, "--jobs", "2", "--due", due.isoformat())
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
        assert "test_train_mode_normalizes_each_feature_over_the_batch_then_scales_and_shifts" in pages[0]
        assert "test_backward_matches_autograd" in pages[0]
        assert MANUAL[1] in pages[0] and f"{MANUAL[0]:g} / 10" in pages[0].replace("7.0 / 10", "7 / 10")


def test_lateness_and_the_resubmission_are_what_nbgrader_recorded(workflow):
    course, _, ours = workflow
    with Gradebook(db_url(course), COURSE_ID) as gb:
        late = gb.find_submission(ASSIGNMENT, LATE).total_seconds_late
        assert 0 < late < Settings.exchange_clock_slack  # late, whatever her inbox claims
        assert gb.find_submission(ASSIGNMENT, "alice").total_seconds_late == 0
        assert gb.find_submission_notebook("norm", ASSIGNMENT, "bob").score == 80 + MANUAL[0]
    assert ours[LATE].late_seconds == pytest.approx(late, abs=1e-3) and ours["alice"].late_seconds == 0
    assert "the inbox's last change" in read_record(course / "submitted")[LATE][1]


def test_collect_takes_no_link_and_both_front_doors_grade_linked_files_as_missing(workflow):
    course, _, ours = workflow
    collected = {p.name for p in (course / "submitted" / "alice" / ASSIGNMENT).iterdir()}
    assert collected == {PYFILE, NOTEBOOK, "timestamp.txt", SECRET}  # not solution.py, a link to the instructor's
    with Gradebook(db_url(course), COURSE_ID) as gb:
        assert gb.find_submission_notebook("norm", ASSIGNMENT, "alice").score == 80 + MANUAL[0]
        assert gb.find_submission_notebook("norm", ASSIGNMENT, LINKED).score == 0
    assert ours[LINKED].total == 0 and ours["alice"].total == 80


def test_nbgraders_autograde_scores_as_python_m_grading_autograde(workflow):
    course, _, ours = workflow
    with Gradebook(db_url(course), COURSE_ID) as gb:
        for student in [*STUDENTS, LINKED]:
            grades = gb.find_submission_notebook("norm", ASSIGNMENT, student).grades
            by_question = {q: sum(g.auto_score or 0 for g in grades if question_of(g.cell.name) == q)
                           for q in QUESTION_IDS}
            assert by_question == pytest.approx({q: ours[student].questions[q].score for q in QUESTION_IDS}), student
