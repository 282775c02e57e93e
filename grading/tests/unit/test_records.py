"""records/: the typed result survives its trips through JSON, and each writer shows what it promises (Gradescope's
schema, escaped feedback, the grades.csv columns) and nothing more."""
import csv
import io

import jsonschema

from conftest import GRADESCOPE_SCHEMA
from grading.records.reports import CSV_COLUMNS, feedback_html, grades_csv, results_json, table
from grading.records.results import (QuestionScore, Rejected, StudentResult, load_result, read_rejected,
                                     save_result, write_rejected)
from grading.records.results import Test as Check
from grading.settings import Settings


def graded():
    failed = Check("test_running_mean", 0.0, 5.0, False, "running_mean is off by 0.1\nsecond line", True, "q1_forward")
    passed = Check("test_train_mode", 15.0, 15.0, True, "", True, "q1_forward")
    return StudentResult("alice", questions={
        "q1": QuestionScore(15.0, 20.0, tests=[passed, failed]),
        "q4": QuestionScore(6.0, 10.0, manual_max=10.0, manual_pending=True),
        "bonus": QuestionScore(2.5, 0.0, graded=False, status="cifar100: NOT GRADED", extra_max=10.0),
    }, notes=["used 'norm (1).ipynb' as norm.ipynb <script>"], ta_notes=["for the TA"], late_seconds=7200,
        late_penalty=3.0, timestamp="2026-11-20 10:00:00.000000 UTC")


def test_a_result_comes_back_from_json_as_it_went(tmp_path):
    save_result(tmp_path / "grade.json", graded())
    assert load_result(tmp_path / "grade.json") == graded()
    assert graded().raw_total == 23.5 and graded().total == 20.5


def test_a_missing_or_broken_record_is_no_result(tmp_path):
    (tmp_path / "broken.json").write_text('{"student_id": "alice", "questions": {"q1": {"tests": [{}]}}}')
    assert load_result(tmp_path / "missing.json") is None and load_result(tmp_path / "broken.json") is None


def test_rejected_entries_are_kept_for_collect(tmp_path):
    write_rejected(tmp_path, [Rejected("notes.txt", "not a folder or a .zip file")])
    assert read_rejected(tmp_path) == [Rejected("notes.txt", "not a folder or a .zip file")]
    assert read_rejected(tmp_path / "nowhere") == []


def test_results_json_follows_gradescopes_schema_and_shows_one_line_per_check():
    report = results_json(graded())
    jsonschema.validate(report, GRADESCOPE_SCHEMA)
    assert [(t["name"], t["output"]) for t in report["tests"]] == [
        ("Q1 batchnorm_forward: test_train_mode", "passed"),
        ("Q1 batchnorm_forward: test_running_mean", "running_mean is off by 0.1")]
    assert report["score"] == 20.5 and report["stdout_visibility"] == "hidden"
    assert "Graded by hand, not part of this score: the written answers of Q4 no normalization (10 points)" in \
        report["output"]


def test_a_long_verdict_is_cut_to_its_cap():
    result = graded()
    result.questions["q1"].tests[1].message = "x" * 1000
    output = results_json(result)["tests"][1]["output"]
    assert len(output) == Settings.verdict_chars and output.endswith("\u2026")


def test_feedback_escapes_what_the_student_wrote_and_states_lateness():
    page = feedback_html(graded())
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "handed in 2.0 hours late: 3.00 points off" in page
    assert "for the TA" not in page


def test_grades_csv_has_its_columns_a_row_per_student_and_one_per_rejected_entry():
    rows = list(csv.DictReader(io.StringIO(grades_csv([graded()], [Rejected("notes.txt", "not a folder")]))))
    assert list(rows[0]) == CSV_COLUMNS
    assert rows[0]["q1"] == "15.00" and rows[0]["q2"] == "" and rows[0]["total"] == "20.50"
    assert rows[0]["late_minutes"] == "120.0" and rows[0]["manual_pending"] == "q4 (10)"
    assert rows[0]["notes"].endswith("| for the TA")
    assert rows[1] == {**{c: "" for c in CSV_COLUMNS}, "student_id": "notes.txt", "status": "not graded: not a folder"}


def test_the_final_table_shows_every_question_column():
    lines = table([graded()]).splitlines()
    assert lines[0].split() == ["student", "q1", "q2", "q3", "q4", "q5", "bonus", "total", "status"]
    assert lines[2].split()[:8] == ["alice", "15.00", "-", "-", "6.00", "-", "2.50", "20.50"]
