"""commands/export.py, commands/feedback.py and records/final.py on a real nbgrader course: students recorded as
autograde records them (records/gradebook.record), then graded by hand through nbgrader's Gradebook API as the
formgrader does (a manual score, an override, a comment, a late penalty, extra credit). The export, in every format,
gives the totals nbgrader's own `score - late_submission_penalty` has, and the feedback shows what the TA wrote."""
import csv
import io
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbgrader.api import Gradebook

from grading.__main__ import main
from grading.assignment import ASSIGNMENT, BY_ID, COURSE_ID, NOTEBOOK, NOTEBOOK_ID, PYFILE, QUESTION_IDS
from grading.authoring.course import db_url
from grading.commands.export import export, guard
from grading.commands.feedback import feedback
from grading.nbgrader_support import course_config
from grading.pipeline.verdicts import write_verdicts
from grading.records.gradebook import record
from grading.records.results import QuestionScore, StudentResult, mark_done
from grading.records.results import Test as Check
from grading.settings import EXIT_MISCONFIGURED

ATTACK = "=cmd|' /C calc'!A0"  # what a spreadsheet runs as a command when the cell is read as a formula
SCRIPT = "<script>document.title='pwned'</script>"


@pytest.fixture
def out(release_dir: Path, tmp_path: Path) -> Path:
    """An autograde OUT folder with its course, no one recorded yet."""
    shutil.copytree(release_dir / "course", tmp_path / "out" / "course")
    return tmp_path / "out"


def released(out: Path) -> nbformat.NotebookNode:
    return nbformat.read(out / "course" / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)


def grade(out: Path, student: str, share: float = 1.0, written: str | None = "My analysis of the runs.",
          bonus: float | None = None, **fields: Any) -> StudentResult:
    """Record student as autograde does: every autograded cell earns share of its points, the written answers are
    written (so they await a TA) unless written is None, and the bonus earns bonus extra points (None: not graded)."""
    result = StudentResult(student, timestamp="2026-11-20 10:00:00.000000 UTC", **fields)
    for q in QUESTION_IDS:
        tests = [Check(f"test_{cell}", share * points, points, share == 1, "" if share == 1 else "wrong axes",
                       True, cell, "" if share == 1 else "wrong") for cell, points in BY_ID[q].autograded.items()]
        result.questions[q] = QuestionScore(sum(t.score for t in tests), BY_ID[q].points, BY_ID[q].written_points,
                                            BY_ID[q].extra, manual_pending=bool(BY_ID[q].written and written),
                                            tests=tests)
    result.questions["bonus"].score = bonus or 0.0
    result.questions["bonus"].graded = bonus is not None
    nb = released(out)
    for cell in nb.cells:
        if written and cell.metadata.get("nbgrader", {}).get("grade_id") in ("q4_analysis", "q5_literature"):
            cell.source = written
    write_verdicts(nb, result)
    taken = out.parent / "taken" / student
    taken.mkdir(parents=True)
    (taken / PYFILE).write_text("# the student's file\n")
    nbformat.write(nb, taken / NOTEBOOK)
    course = out / "course"
    record(course, taken, result, nb, QUESTION_IDS, course_config(course), released(out))
    mark_done(out, result)
    return result


def by_hand(out: Path, student: str, scores: Mapping[str, float] = (), comments: Mapping[str, str] = (),
            late_penalty: float | None = None, extra: float | None = None, details: dict[str, str] | None = None,
            unflag: bool = False) -> None:
    """What a TA does in the formgrader, through nbgrader's Gradebook API: manual scores {cell: points}, comments
    {answer cell: text}, a late penalty, the bonus's extra credit, the student's roster details."""
    with Gradebook(db_url(out / "course"), COURSE_ID) as gb:
        for cell, points in dict(scores).items():
            found = gb.find_grade(cell, NOTEBOOK_ID, ASSIGNMENT, student)
            found.manual_score, found.needs_manual_grade = points, False
        for cell, text in dict(comments).items():
            gb.find_comment(cell, NOTEBOOK_ID, ASSIGNMENT, student).manual_comment = text
        notebook = gb.find_submission_notebook(NOTEBOOK_ID, ASSIGNMENT, student)
        if late_penalty is not None:
            notebook.late_submission_penalty = late_penalty
        if extra is not None:
            bonus = gb.find_grade("bonus", NOTEBOOK_ID, ASSIGNMENT, student)
            bonus.extra_credit, bonus.needs_manual_grade = extra, False
        if unflag:
            notebook.flagged = False
        gb.db.commit()
        if details:
            gb.update_or_create_student(student, **details)


def nbgrader_totals(out: Path) -> dict[str, float]:
    """{student: score - late penalty}, as nbgrader's export and formgrader compute them."""
    with Gradebook(db_url(out / "course"), COURSE_ID) as gb:
        return {s.student.id: s.score - s.late_submission_penalty for s in gb.assignment_submissions(ASSIGNMENT)}


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_every_format_gives_the_gradebooks_totals_after_manual_grading(out: Path) -> None:
    grade(out, "ada", bonus=7.5)
    grade(out, "bob", share=0.5)
    by_hand(out, "ada", scores={"q4_analysis": 7, "q5_literature": 9.5, "q1_forward": 15},
            late_penalty=3, details={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.org",
                                     "lms_user_id": "1001"})
    by_hand(out, "bob", scores={"q4_analysis": 4, "q5_literature": 0, "q1_forward": 18}, extra=2.25,
            details={"first_name": "Bob", "last_name": "Babbage", "email": "bob@example.org"})
    expected = nbgrader_totals(out)
    assert expected["ada"] == pytest.approx(80 - 5 + 7 + 9.5 + 7.5 - 3)
    assert expected["bob"] == pytest.approx(40 - 10 + 18 + 4 + 2.25)
    assert export(out, "csv") == {}
    plain = {r["student_id"]: r for r in rows(out / "final-grades.csv")}
    assert {s: float(r["total"]) for s, r in plain.items()} == pytest.approx(expected)
    assert float(plain["ada"]["q1"]) == 15 and float(plain["ada"]["q4"]) == pytest.approx(6 + 4 + 7)
    assert float(plain["ada"]["bonus"]) == 7.5 and float(plain["ada"]["late_penalty"]) == 3
    export(out, "canvas")
    canvas = rows(out / "canvas-import.csv")
    assert list(canvas[0])[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert {r["SIS User ID"]: float(r[ASSIGNMENT]) for r in canvas} == pytest.approx(expected)
    assert canvas[0]["Student"] == "Lovelace, Ada" and canvas[0]["ID"] == "1001"
    export(out, "moodle", out.parent / "moodle.csv", column="Normalization layers")
    moodle = rows(out.parent / "moodle.csv")
    assert {r["Email address"]: float(r["Normalization layers"]) for r in moodle} == pytest.approx(
        {"ada@example.org": expected["ada"], "bob@example.org": expected["bob"]})


def test_who_needs_a_person_is_named_and_gets_no_grade_in_an_lms_file(out: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    grade(out, "ada")
    grade(out, "carl", written=None, bonus=0.0, flags=["get_ipython"], status="REVIEW: the notebook uses get_ipython")
    grade(out, "dora", written=None, error="the sandbox did not start", status="ERROR: the sandbox did not start")
    grade(out, "eve", written=None, bonus=5.0)
    waiting = export(out, "canvas")
    told = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert set(waiting) == {"ada", "carl", "dora"}
    assert "q4_analysis" in " ".join(waiting["ada"]) and "REVIEW" in waiting["carl"][0]
    assert waiting["dora"][0].startswith("ERROR")
    assert all(any(student in line for line in told) for student in waiting)
    grades = {r["SIS User ID"]: r[ASSIGNMENT] for r in rows(out / "canvas-import.csv")}
    assert grades == {"ada": "", "carl": "", "dora": "", "eve": "85.00"}
    export(out, "csv")
    plain = {r["student_id"]: r for r in rows(out / "final-grades.csv")}
    assert plain["dora"]["q1"] == "" and plain["ada"]["bonus"] == "", "not graded is empty, not 0"
    assert plain["ada"]["total"] == "80.00" and "q4_analysis" in plain["ada"]["needs_person"]
    by_hand(out, "carl", unflag=True)
    assert "carl" not in export(out, "csv"), "a TA who has looked clears the flag"


def test_a_roster_that_carries_formulas_and_html_is_written_as_text(out: Path) -> None:
    """The attacker: a student who set their LMS name to a spreadsheet formula and script."""
    grade(out, "mallory", written=None)
    by_hand(out, "mallory", details={"first_name": ATTACK, "last_name": "@SUM(1+1)", "email": "+1@evil.example",
                                     "lms_user_id": "-2+3"})
    for fmt in ("csv", "canvas", "moodle"):
        target = out.parent / f"{fmt}.csv"
        export(out, fmt, target, column="=HYPERLINK(\"http://evil\")")
        cells = [cell for row in csv.reader(io.StringIO(target.read_text())) for cell in row]
        assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))], (fmt, cells)
        assert "'" + ATTACK in cells or fmt == "canvas"
    assert guard("-3") == "'-3" and guard("o.brien-2@uni") == "o.brien-2@uni"


def test_an_honest_student_with_no_email_no_submission_or_an_unusual_id(out: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Moodle matches on email: a student without one is named; a roster student who submitted nothing has no
    grade; an id with dots, a hyphen and an at sign is written as it is."""
    grade(out, "o.brien-2@uni", written=None, bonus=0.0)
    by_hand(out, "o.brien-2@uni", details={"first_name": "Siobhán", "last_name": "O'Brien"})
    with Gradebook(db_url(out / "course"), COURSE_ID) as gb:
        gb.update_or_create_student("absent", first_name="Ab", last_name="Sent", email="ab@example.org")
    export(out, "moodle")
    told = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("o.brien-2@uni" in line and "email" in line for line in told)
    moodle = {r["ID number"]: r for r in rows(out / "moodle-import.csv")}
    assert moodle["o.brien-2@uni"][ASSIGNMENT] == "80.00" and moodle["o.brien-2@uni"]["Last name"] == "O'Brien"
    assert moodle["absent"][ASSIGNMENT] == ""
    export(out, "csv")
    assert {r["student_id"]: r["needs_person"] for r in rows(out / "final-grades.csv")}["absent"] == "no submission"


def test_feedback_shows_the_tas_scores_and_comments_inert(out: Path) -> None:
    grade(out, "ada", share=0.5)
    by_hand(out, "ada", scores={"q4_analysis": 7, "q1_forward": 15},
            comments={"q4_analysis": f"Good, but cite the runs. {SCRIPT}"})
    assert feedback(out) == ["ada"]
    page = (out / "ada" / "feedback.html").read_text()
    assert "Good, but cite the runs." in page and "<script>" not in page and "&lt;script&gt;" in page
    assert "Your TA set q1_forward to 15.00 / 20 (the checks below gave 10.00)" in page
    assert "Graded by your TA: q4_analysis 7.00 / 10" in page
    assert f"Points: {nbgrader_totals(out)['ada']:.2f} so far" in page, "q5's written answer is still pending"
    import json
    results = json.loads((out / "ada" / "results.json").read_text())
    assert results["score"] == pytest.approx(nbgrader_totals(out)["ada"])
    assert "Good, but cite the runs." in results["output"]


def test_a_folder_without_a_gradebook_is_refused_with_what_to_pass(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path)]) == EXIT_MISCONFIGURED
    assert "autograde" in capsys.readouterr().err
    assert main(["feedback", str(tmp_path)]) == EXIT_MISCONFIGURED
