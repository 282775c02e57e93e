"""records/late.py's sources of submission times: CSVs as Gradescope, Moodle and a TA write them, and the record
the grader keeps beside an nbgrader tree; bad files are refused with a message that says what to fix."""
import pytest
from pathlib import Path

from grading.records.late import TIMES_FILE, lateness, parse_due, read_record, read_submission_times, record_text

DUE = parse_due("2026-12-01T23:59:00+08:00")


def times_of(tmp_path: Path, text: str, encoding: str = "utf-8") -> dict[str, str]:
    path = tmp_path / "times.csv"
    path.write_text(text, encoding=encoding)
    return read_submission_times(path)


def test_gradescopes_export_names_the_student_and_the_submission_time(tmp_path: Path) -> None:
    export = ("First Name,Last Name,SID,Email,Sections,norm,Max Points,Status,Submission ID,Submission Time,"
              "Lateness (H:M:S)\n"
              "Ada,Lovelace,ada,ada@example.org,,80,100,Graded,1,2026-12-01 23:58:00 +0800,00:00:00\n"
              "Bob,Babbage,bob,bob@example.org,,,100,Missing,,,\n")
    assert times_of(tmp_path, export) == {"ada": "2026-12-01 23:58:00 +0800"}  # bob never submitted


def test_moodles_worksheet_with_its_byte_order_mark_and_dashes(tmp_path: Path) -> None:
    worksheet = ('"Identifier","Full name","Email address","Status","Last modified (submission)"\n'
                 '"Participant 1","Ada","ada@example.org","Submitted","Wednesday, 2 December 2026, 12:00 AM"\n'
                 '"Participant 2","Bob","bob@example.org","No submission","-"\n')
    times = times_of(tmp_path, worksheet, encoding="utf-8-sig")
    assert times == {"ada@example.org": "Wednesday, 2 December 2026, 12:00 AM"}
    late = lateness(times["ada@example.org"], DUE)
    assert late.seconds == 60 and "names no time zone" in late.note  # read in the due date's zone


def test_a_ta_declares_times_and_the_latest_of_several_counts(tmp_path: Path) -> None:
    declared = ("student_id,submitted_at\nada,2026-12-01T10:00:00+08:00\nada,2026-12-02T10:00:00+08:00\n"
                "ada,2026-12-01T12:00:00+08:00\n")
    assert times_of(tmp_path, declared) == {"ada": "2026-12-02T10:00:00+08:00"}


@pytest.mark.parametrize("text,message", [
    ("name,when\nada,2026-12-01\n", "Rename the two columns"),
    ("student_id,submitted_at\nada,2026-13-45 10:00\n", "line 2: '2026-13-45 10:00'"),
    ("", "needs a student id column"),
])
def test_a_csv_that_cannot_be_used_says_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match="--submission-times .*" + message.replace("(", r"\(")):
        times_of(tmp_path, text)


def test_the_record_beside_a_tree_round_trips_and_nothing_else_is_one(tmp_path: Path) -> None:
    times = {"ada": ("2026-12-01 15:58:00.000000 UTC", "nbgrader's exchange"),
             "bob": ("2026-12-02 16:00:00.000000 UTC", "the inbox's last change, \"later\", than it claimed")}
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / TIMES_FILE).write_text(record_text(times))
    assert read_record(tmp_path / "tree") == times
    (tmp_path / TIMES_FILE).symlink_to(tmp_path / "tree" / TIMES_FILE)
    assert read_record(tmp_path) == read_record(tmp_path / "elsewhere") == {}  # a link is not the grader's record


def test_a_csv_that_is_not_there_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--submission-times .*missing.csv could not be read"):
        read_submission_times(tmp_path / "missing.csv")
