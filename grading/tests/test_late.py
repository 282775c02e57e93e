"""Due dates and late penalties: the policies at their boundaries, submission times from a CSV as an LMS exports it
(--submission-times) and never from the submission itself, and the same penalty in grades.csv as in nbgrader's
gradebook and export."""
import csv
import io
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime

import pytest

from conftest import REFERENCE, autograde, grades, submit
from grading.records.late import LatePolicy, lateness, parse_due

DUE = "2026-12-01T23:59:00+08:00"
DAY = 86400


@pytest.mark.parametrize("policy,late,score,penalty", [
    ("per-day:10:25", 1, 40, 10),  # one second late: one started day
    ("per-day:10:25", DAY, 40, 10),  # exactly one day late
    ("per-day:10:25", DAY + 1, 40, 20),
    ("per-day:10:25", 5 * DAY, 40, 25),  # past the cap
    ("per-day:10", 5 * DAY, 40, 40),  # no cap, and never below 0
    ("per-day:10:25", 0, 40, 0),
    ("zero", 1, 40, 40),
    ("none", 9 * DAY, 40, 0),
])
def test_the_policies_take_off_what_they_say(policy, late, score, penalty):
    assert LatePolicy.parse(policy).penalty(score, late) == penalty


@pytest.mark.parametrize("bad", ["per-day", "per-day:ten", "per-day:1:2:3", "per-day:-5", "weekly", ""])
def test_a_malformed_policy_says_what_to_write(bad):
    with pytest.raises(ValueError, match="per-day:P"):
        LatePolicy.parse(bad)


@pytest.mark.parametrize("text,late", [
    ("2026-12-01 15:59:00.000000 UTC", 0),  # nbgrader's own format, on the dot
    ("2026-12-01 15:59:01.000000 UTC", 1),
    ("2026-12-02T23:59:00+08:00", DAY),
    ("2026-12-01T10:59:01-05:00", 1),  # another zone, the same instant as a second late
    ("2026-12-01 23:59:30", 30),  # no zone: the due date's
])
def test_submission_times_in_any_zone(text, late):
    due = parse_due(DUE)
    assert lateness(text, due).seconds == late


def test_missing_and_unreadable_times_count_as_on_time_with_a_note():
    due = parse_due(DUE)
    for text in (None, "", "next tuesday-ish", "2026-13-45 99:99"):
        late = lateness(text, due)
        assert late.timestamp is None and late.seconds == 0 and "counted as on time" in late.note


def test_a_due_date_needs_its_time_zone():
    with pytest.raises(ValueError, match="no time zone"):
        parse_due("2026-12-01T23:59:00")


def zipped(folder, when, own_time=None):
    """The files of folder as a zip whose entries carry the time when, and timestamp.txt saying own_time if given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                archive.writestr(zipfile.ZipInfo(path.name, date_time=when.timetuple()[:6]), path.read_bytes())
        if own_time:
            archive.writestr(zipfile.ZipInfo("timestamp.txt", date_time=when.timetuple()[:6]), own_time)
    return buffer.getvalue()


# When each student submitted, as Gradescope exports it ("Submission Time" beside "SID"); any format dateutil reads.
TIMES = {"on-time": "2026-12-01 23:59:00 +0800", "one-second": "2026-12-01 15:59:01 +0000",
         "one-day": "2026-12-02 23:59:00 +0800", "capped": "2026-12-09 15:59:00 UTC",
         "no-zone": "Wednesday, 2 December 2026, 12:00 AM",  # Moodle's form, in the due date's zone
         "zip-claims-early": "2026-12-02 23:59:00 +0800", "zip-plain": "2026-12-02 23:59:00 +0800"}


@pytest.fixture(scope="module")
def graded(bundle, release_dir, tmp_path_factory):
    """Q1 and Q2 (40 points, quick to grade) of students handed in at the TIMES an LMS exported, per-day:10:25
    from DUE. One zip claims, in its own timestamp.txt and entry dates, to be two weeks early; another is the same
    without the claim; a folder claims a time and is not in the export."""
    root = tmp_path_factory.mktemp("late")
    built = submit(bundle, root / "built", {"template": REFERENCE}) / "template"
    submissions = root / "submissions"
    for student in ("on-time", "one-second", "one-day", "capped", "no-zone", "untimed"):
        shutil.copytree(built, submissions / student)
    (submissions / "untimed" / "timestamp.txt").write_text("2026-11-19 10:00:00.000000 UTC")
    (submissions / "zip-claims-early.zip").write_bytes(zipped(built, datetime(2026, 11, 19, 10, 0),
                                                              "2026-11-19 10:00:00.000000 UTC"))
    (submissions / "zip-plain.zip").write_bytes(zipped(built, datetime(2026, 12, 2, 23, 59)))
    export = root / "gradescope.csv"
    with open(export, "w", newline="") as f:
        csv.writer(f).writerows([("Name", "SID", "Email", "Submission Time", "Lateness (H:M:S)"),
                                 *((f"Student {sid}", sid, f"{sid}@example.org", when, "")
                                   for sid, when in TIMES.items()),
                                 ("Never Submitted", "nobody", "nobody@example.org", "", "")])
    out = root / "out"
    completed = autograde(submissions, out, release_dir, "--questions", "q1,q2", "--due", DUE, "--late-policy",
                          "per-day:10:25", "--submission-times", str(export))
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


EXPECTED = {  # student: (late minutes, penalty, total)
    "on-time": ("0.0", "0.00", "40.00"), "one-second": ("0.0", "10.00", "30.00"),
    "one-day": ("1440.0", "10.00", "30.00"), "capped": ("11520.0", "25.00", "15.00"),
    "no-zone": ("1.0", "10.00", "30.00"), "untimed": ("0.0", "0.00", "40.00"),
    "zip-claims-early": ("1440.0", "10.00", "30.00"), "zip-plain": ("1440.0", "10.00", "30.00"),
}


def test_grades_csv_records_lateness_and_takes_the_penalty_off_the_total(graded):
    rows = grades(graded)
    assert {s: (rows[s]["late_minutes"], rows[s]["late_penalty"], rows[s]["total"]) for s in EXPECTED} == EXPECTED
    assert "names no time zone" in rows["no-zone"]["notes"]
    assert "no submission time from nbgrader's exchange or --submission-times" in rows["untimed"]["notes"]


def test_a_zip_claiming_an_earlier_time_is_as_late_as_one_that_does_not(graded):
    rows = grades(graded)
    assert rows["zip-claims-early"]["late_minutes"] == rows["zip-plain"]["late_minutes"] == "1440.0"
    assert rows["zip-claims-early"]["total"] == rows["zip-plain"]["total"]
    assert "its own timestamp.txt was not used" in rows["zip-claims-early"]["notes"]
    assert "its own timestamp.txt was not used" in rows["untimed"]["notes"]


def test_nbgrader_records_the_same_due_date_and_penalties(graded):
    export = graded / "export.csv"
    completed = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(export)],
                               cwd=graded / "course", capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    with open(export, newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert all(row["duedate"].startswith("2026-12-01 15:59:00") for row in rows.values())
    assert {s: float(rows[s]["late_submission_penalty"]) for s in EXPECTED} == \
        {s: float(penalty) for s, (_, penalty, _) in EXPECTED.items()}
    assert {s: float(rows[s]["score"]) for s in EXPECTED} == {s: float(total) for s, (_, _, total) in EXPECTED.items()}


def test_a_bad_due_date_policy_or_times_csv_stops_the_grader_with_status_2(release_dir, tmp_path):
    (tmp_path / "submissions").mkdir()
    (tmp_path / "no-columns.csv").write_text("name,when\nada,2026-12-01\n")  # the others: unit/test_submission_times
    for option, message in ((["--due", "2026-12-01 23:59"], "no time zone"),
                            (["--late-policy", "weekly"], "per-day:P"),
                            (["--submission-times", str(tmp_path / "no-columns.csv")], "Rename the two columns")):
        completed = autograde(tmp_path / "submissions", tmp_path / "out", release_dir, *option)
        assert completed.returncode == 2 and message in completed.stderr
