"""`python -m grading export` and `python -m grading feedback` on the demo's course, after a TA graded by hand
through nbgrader's Gradebook API as the formgrader does: a written answer scored, an autograded score overridden, a
late penalty and bonus points. Every format gives the totals of `nbgrader export`, run in the same course."""
import csv
import re
import shutil
import subprocess
import sys

import pytest
from nbgrader.api import Gradebook

from conftest import REPO, nbgrader_export
from grading.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK_ID
from grading.authoring.course import db_url


@pytest.fixture(scope="module")
def graded_by_hand(demo, tmp_path_factory):
    """A copy of the demo's OUT after a TA's work: full_marks' written answers 7 and 9 with a comment, its bonus
    4.5 and 2 points off for lateness; common_mistakes' Q1 overridden from 16 to 19 and its written answer 6."""
    out = tmp_path_factory.mktemp("export") / "graded"
    shutil.copytree(demo[0] / "graded", out)
    with Gradebook(db_url(out / "course"), COURSE_ID) as gb:
        def grade(student, cell, points):
            found = gb.find_grade(cell, NOTEBOOK_ID, ASSIGNMENT, student)
            found.manual_score, found.needs_manual_grade = points, False
        grade("full_marks", "q4_analysis", 7)
        grade("full_marks", "q5_literature", 9)
        gb.find_comment("q4_analysis", NOTEBOOK_ID, ASSIGNMENT, "full_marks").manual_comment = "Cite the runs."
        bonus = gb.find_grade("bonus", NOTEBOOK_ID, ASSIGNMENT, "full_marks")
        bonus.extra_credit, bonus.needs_manual_grade = 4.5, False
        gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, "full_marks").late_submission_penalty = 2
        grade("common_mistakes", "q1_forward", 19)
        grade("common_mistakes", "q4_analysis", 6)
        gb.db.commit()
    return out


def run(*args):
    return subprocess.run([sys.executable, "-m", "grading", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_format_gives_nbgrader_exports_totals(graded_by_hand, tmp_path):
    out = graded_by_hand
    expected = {row["student_id"]: float(row["score"]) for row in read_text(nbgrader_export(out / "course",
                                                                                            tmp_path / "nb.csv"))}
    assert expected["full_marks"] == pytest.approx(80 + 7 + 9 + 4.5 - 2)
    assert expected["common_mistakes"] == pytest.approx(62 + 3 + 6)
    for fmt, column in (("csv", "total"), ("canvas", ASSIGNMENT), ("moodle", ASSIGNMENT)):
        completed = run("export", out, "--format", fmt, "--out", tmp_path / f"{fmt}.csv")
        assert completed.returncode == 0, completed.stderr
        assert "hostile: REVIEW" in completed.stderr, "the flagged student is named"
        rows = read(tmp_path / f"{fmt}.csv")
        key = {"csv": "student_id", "canvas": "SIS User ID", "moodle": "ID number"}[fmt]
        found = {row[key]: row[column] for row in rows}
        assert found.keys() == expected.keys()
        final = {s: v for s, v in found.items() if s != "hostile"}
        assert {s: float(v) for s, v in final.items()} == pytest.approx({s: expected[s] for s in final}, abs=0.005), fmt  # two decimals
        assert found["hostile"] == ("0.00" if fmt == "csv" else ""), "REVIEW: no grade reaches an LMS"
    plain = {row["student_id"]: row for row in read(tmp_path / "csv.csv")}
    assert plain["common_mistakes"]["q1"] == "19.00" and plain["full_marks"]["bonus"] == "4.50"
    assert plain["full_marks"]["late_penalty"] == "2.00" and plain["full_marks"]["needs_person"] == ""


def test_feedback_shows_the_tas_points_and_comment(graded_by_hand):
    completed = run("feedback", graded_by_hand)
    assert completed.returncode == 0, completed.stderr
    page = (graded_by_hand / "full_marks" / "feedback.html").read_text()
    assert "Points: 98.50" in page and "Cite the runs." in page and "2.00 points off" in page
    assert "(pending)" not in page
    page = (graded_by_hand / "common_mistakes" / "feedback.html").read_text()
    assert "Your TA set q1_forward to 19.00 / 20 (the checks below gave 16.00)" in page
    report = (graded_by_hand / "report.html").read_text()
    needs = report[report.index('id="needs-a-person"'):report.index('id="distributions"')]
    assert "To grade by hand (written answers, a bonus): none" in needs, "the TA graded them all"
    assert "<b>hostile</b>: REVIEW" in needs


def test_autograde_wrote_the_cohort_report(demo):
    page = (demo[0] / "graded" / "report.html").read_text()
    assert page.count("<img") == 1 and "hostile" in page and "full_marks" in page


def read_text(text):
    return list(csv.DictReader(text.splitlines()))


def test_no_students_feedback_names_the_grading_machine(demo, graded_by_hand):
    """Before and after `feedback` rewrites them: not the hostile student's either, whose process ended early."""
    internals = re.compile(r"EOFError|BrokenPipe|Traceback|bwrap|bubblewrap|zygote|sandbox|/tmp/|/work/|errno",
                           re.IGNORECASE)
    pages = [*(demo[0] / "graded").glob("*/feedback.html"), *(demo[0] / "graded").glob("*/results.json"),
             *graded_by_hand.glob("*/feedback.html")]
    assert len(pages) >= 18
    found = {str(page): internals.findall(page.read_text()) for page in pages}
    assert not {page: words for page, words in found.items() if words}


def test_nbgraders_feedback_gives_the_same_points_as_ours(graded_by_hand):
    """docs/grading.md lets a TA release either feedback: both show the gradebook's points, the late penalty taken."""
    assert run("feedback", graded_by_hand).returncode == 0
    course = graded_by_hand / "course"
    for student in ("full_marks", "common_mistakes"):
        completed = subprocess.run([sys.executable, "-m", "nbgrader", "generate_feedback", ASSIGNMENT, "--student",
                                    student, "--force"], cwd=course, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
        theirs = re.search(r"Score: ([\d.]+) / ", (course / "feedback" / student / ASSIGNMENT / "norm.html")
                           .read_text()).group(1)
        ours = re.search(r"Points: ([\d.]+)", (graded_by_hand / student / "feedback.html").read_text()).group(1)
        assert float(theirs) == pytest.approx(float(ours), abs=0.005), student
