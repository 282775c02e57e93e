"""nbgrader's own workflow, end to end, in a course built by `python -m grading release`, on a temporary exchange,
with a user of this machine per student and a TA who is not root, as a course on a shared JupyterHub has them: the
TA releases; three students fetch, fill in and submit as themselves (one late, one twice, one with an unusual id);
the TA collects; nbgrader's autograde (which grades through this project's pipeline); a TA's manual grade and
comment on q4_analysis; generate_feedback, release_feedback, and each student's fetch_feedback. The feedback a
student fetches carries the Q1/Q2 checks and the TA's points and comment, and no line of a hidden test; the scores
equal `python -m grading autograde`'s on the same files.

The front doors are attacked on the way: alice's inbox gains a link to the instructor's solution, the late student
edits their inbox to claim a time before the due date, mallory makes an inbox in alice's name claiming tomorrow and
two of her own, one whose time cannot be read and one she made unreadable (mode 000), and a submission whose files
link to the instructor's sources is put into submitted/ by hand (as unzip, tar or rsync -a would) before nbgrader's
autograde. Collect takes no link, records the late time, refuses mallory's inboxes and collects everyone else, and
both front doors grade the linked submission 0, as autograde grades it."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from conftest import REFERENCE, REPO, autograde, results
from unix_users import as_user, new_tag, unix_users
from grading.authoring.regions import hidden_test_lines, reference_answers
from grading.authoring.samples import Answers, build_submission
from grading.authoring.course import db_url
from grading.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, PYFILE, QUESTION_IDS, question_of
from grading.pipeline.front_door import SECRET
from grading.records.late import read_record
from grading.settings import NBGRADER_TIME_FORMAT, Settings

TAG = new_tag()  # the users of this run: students' ids are their user names
ALICE, OBRIEN, LATE, MALLORY, TA = f"alice-{TAG}", f"o.brien-{TAG}@uni", f"cy-{TAG}", f"mallory-{TAG}", f"ta-{TAG}"
STUDENTS = {  # id (an unusual one, as SSSD's user@domain names are, for the student who submits twice): answers
    ALICE: [REFERENCE],
    OBRIEN: [Answers(regions={"forward_train": reference_answers(REPO)[PYFILE]["forward_train"]}), REFERENCE],
    LATE: [Answers(base="reference", regions={"q4_analysis": "Normalization kept my training stable.",
                                              "backward": "dx = dgamma = dbeta = None"})],
}
LINKED = "eve"  # put into submitted/ by hand, her files links to the instructor's
MANUAL = (7.0, "Cite your own numbers next time.")


def nbgrader(*arguments, cwd, exchange, user=None):
    """Run nbgrader in cwd as root, or as user (a pwd entry) in their home, where nbgrader keeps their cache."""
    argv = [sys.executable, "-m", "nbgrader", *arguments, f"--Exchange.root={exchange}"]
    completed = as_user(user, argv, cwd, timeout=900) if user else subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=900, env=dict(os.environ, HOME=str(cwd)))
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


def attack_the_exchange(exchange, mallory):
    """As mallory: an inbox in alice's name claiming tomorrow, and two of her own, one whose time part is not a time
    and one nobody else can read."""
    inbound, now = exchange / COURSE_ID / "inbound", datetime.now(timezone.utc)
    inboxes = [inbound / f"{ALICE}+{ASSIGNMENT}+{(now + timedelta(days=1)).strftime(NBGRADER_TIME_FORMAT)}+x",
               inbound / f"{MALLORY}+{ASSIGNMENT}+notatime+r",
               inbound / f"{MALLORY}+{ASSIGNMENT}+{now.strftime(NBGRADER_TIME_FORMAT)}+q"]
    made = as_user(mallory, ["sh", "-c", 'mkdir "$1" "$2" "$3" && echo "x = 0" > "$1/$4" && chmod 000 "$3"', "sh",
                             *inboxes, PYFILE], mallory.pw_dir)
    assert made.returncode == 0, made.stderr


@pytest.fixture(scope="module")
def workflow(release_dir):
    # Not under pytest's folder, which only root can enter: the students and the TA work here as themselves.
    root = Path(tempfile.mkdtemp(prefix="normlab-exchange-", dir="/tmp"))
    try:
        root.chmod(0o755)
        with unix_users([*STUDENTS, MALLORY, TA], root / "home") as users:
            yield run_the_course(root, users, release_dir)
    finally:
        shutil.rmtree(root)


def run_the_course(root, users, release_dir):
    course, exchange, ta = root / "course", root / "exchange", users[TA]
    shutil.copytree(release_dir / "course", course)
    subprocess.run(["chown", "-R", f"{ta.pw_uid}:{ta.pw_gid}", course], check=True)
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o777)  # as nbgrader's documentation has it: everyone writes there
    nbgrader("release_assignment", ASSIGNMENT, cwd=course, exchange=exchange, user=ta)
    for student, submissions in STUDENTS.items():
        home = Path(users[student].pw_dir)
        nbgrader("fetch_assignment", ASSIGNMENT, f"--course={COURSE_ID}", cwd=home, exchange=exchange,
                 user=users[student])
        for answers in submissions:
            if student == LATE:
                due = datetime.now(timezone.utc) - timedelta(seconds=0.5)  # after everyone else submitted
                nbgrader("db", "assignment", "add", ASSIGNMENT, f"--duedate={due.isoformat()}", cwd=course,
                         exchange=exchange, user=ta)
            build_submission(answers, home / ASSIGNMENT, REPO, home / ASSIGNMENT)
            nbgrader("submit", ASSIGNMENT, f"--course={COURSE_ID}", cwd=home, exchange=exchange, user=users[student])
            time.sleep(1.1)  # submissions are told apart by their timestamps, to the second
    (inbox(exchange, ALICE) / "solution.py").symlink_to(REPO / PYFILE)
    claim_an_earlier_time(inbox(exchange, LATE), due - timedelta(hours=1))
    attack_the_exchange(exchange, users[MALLORY])
    collected = nbgrader("collect", ASSIGNMENT, cwd=course, exchange=exchange, user=ta)
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
        home = Path(users[student].pw_dir)
        nbgrader("fetch_feedback", ASSIGNMENT, f"--course={COURSE_ID}", cwd=home, exchange=exchange,
                 user=users[student])
        fetched[student] = [p.read_text() for p in sorted((home / ASSIGNMENT / "feedback").rglob("*.html"))]
    ours = autograde(course / "submitted", root / "ours", release_dir, "--jobs", "2", "--due", due.isoformat())
    assert ours.returncode == 0, ours.stderr[-3000:]
    return course, fetched, results(root / "ours"), collected.stdout + collected.stderr


def test_each_student_fetches_feedback_without_hidden_tests(workflow):
    _, fetched, _, _ = workflow
    secrets = hidden_test_lines()
    for student, pages in fetched.items():
        assert len(pages) == 1, f"{student} fetched {len(pages)} feedback pages"
        leaked = [line for line in secrets if line in pages[0]]
        assert not leaked, (student, leaked[:3])


def test_the_feedback_shows_the_q1_q2_checks_and_the_tas_grade_and_comment(workflow):
    _, fetched, _, _ = workflow
    for student, pages in fetched.items():
        assert "test_train_mode_normalizes_each_feature_over_the_batch_then_scales_and_shifts" in pages[0]
        assert "test_backward_matches_autograd" in pages[0]
        assert MANUAL[1] in pages[0] and f"{MANUAL[0]:g} / 10" in pages[0].replace("7.0 / 10", "7 / 10")


def test_lateness_and_the_resubmission_are_what_nbgrader_recorded(workflow):
    course, _, ours, _ = workflow
    with Gradebook(db_url(course), COURSE_ID) as gb:
        late = gb.find_submission(ASSIGNMENT, LATE).total_seconds_late
        assert 0 < late < Settings.exchange_clock_slack  # late, whatever her inbox claims
        assert gb.find_submission(ASSIGNMENT, ALICE).total_seconds_late == 0
        assert gb.find_submission_notebook("norm", ASSIGNMENT, OBRIEN).score == 80 + MANUAL[0]
    assert ours[LATE].late_seconds == pytest.approx(late, abs=1e-3) and ours[ALICE].late_seconds == 0
    assert "the inbox's last change" in read_record(course / "submitted")[LATE][1]


def test_collect_takes_no_link_and_both_front_doors_grade_linked_files_as_missing(workflow):
    course, _, ours, _ = workflow
    collected = {p.name for p in (course / "submitted" / ALICE / ASSIGNMENT).iterdir()}
    assert collected == {PYFILE, NOTEBOOK, "timestamp.txt", SECRET}  # not solution.py, a link to the instructor's
    with Gradebook(db_url(course), COURSE_ID) as gb:
        assert gb.find_submission_notebook("norm", ASSIGNMENT, ALICE).score == 80 + MANUAL[0]
        assert gb.find_submission_notebook("norm", ASSIGNMENT, LINKED).score == 0
    assert ours[LINKED].total == 0 and ours[ALICE].total == 80


def test_nbgraders_autograde_scores_as_python_m_grading_autograde(workflow):
    course, _, ours, _ = workflow
    with Gradebook(db_url(course), COURSE_ID) as gb:
        for student in [*STUDENTS, LINKED]:
            grades = gb.find_submission_notebook("norm", ASSIGNMENT, student).grades
            by_question = {q: sum(g.auto_score or 0 for g in grades if question_of(g.cell.name) == q)
                           for q in QUESTION_IDS}
            assert by_question == pytest.approx({q: ours[student].questions[q].score for q in QUESTION_IDS}), student


def test_an_inbox_made_in_another_students_name_is_refused_and_hers_is_graded(workflow):
    """nbgrader's collect warned, then collected mallory's inbox as alice's latest: alice scored 0, a day late."""
    course, _, ours, collected = workflow
    assert re.search(rf"Not collecting '{re.escape(ALICE)}\+{ASSIGNMENT}\+[^']*\+x': owned by {re.escape(MALLORY)}, "
                     rf"not by {re.escape(ALICE)}", collected), collected[-3000:]
    assert (course / "submitted" / ALICE / ASSIGNMENT / PYFILE).read_text() != "x = 0\n"
    with Gradebook(db_url(course), COURSE_ID) as gb:
        assert gb.find_submission_notebook("norm", ASSIGNMENT, ALICE).score == 80 + MANUAL[0]
        assert gb.find_submission(ASSIGNMENT, ALICE).total_seconds_late == 0
    assert ours[ALICE].total == 80 and ours[ALICE].late_seconds == 0


def test_inboxes_that_cannot_be_parsed_or_read_cost_only_themselves(workflow):
    """One of them stopped nbgrader's collect for everyone (exit status 1), the other the students after her; the TA
    collected as a user of their own, who cannot read an inbox its student made unreadable."""
    course, _, _, collected = workflow
    assert f"Not collecting '{MALLORY}+{ASSIGNMENT}+notatime+r': 'notatime' is not a time" in collected
    assert re.search(rf"Not collecting '{re.escape(MALLORY)}\+[^']*\+q': {re.escape(TA)} cannot read it \(mode 000\)",
                     collected), collected[-3000:]
    assert {p.name for p in (course / "submitted").iterdir() if not p.name.startswith(".")} == {*STUDENTS, LINKED}
