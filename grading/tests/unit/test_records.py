"""records/: the typed result survives its trips through JSON, and each writer shows what it promises (Gradescope's
schema, escaped feedback, the grades.csv columns) and nothing more."""
import csv
import io
from pathlib import Path

import jsonschema
import pytest

from conftest import GRADESCOPE_SCHEMA
from grading.failures import Cause, GraderError
from grading.records.reports import CSV_COLUMNS, error_report, errors_summary, feedback_html, grades_csv, \
    results_json, table
from grading.records.results import (GraderFailure, QuestionScore, Rejected, StudentResult, error_file, load_result,
                                     read_rejected, save_result, write_rejected)
from grading.records.results import Test as Check
from grading.settings import Settings


def graded() -> StudentResult:
    failed = Check("test_running_mean", 0.0, 5.0, False, "running_mean is off by 0.1\nsecond line", True, "q1_forward")
    passed = Check("test_train_mode", 15.0, 15.0, True, "", True, "q1_forward")
    return StudentResult("alice", questions={
        "q1": QuestionScore(15.0, 20.0, tests=[passed, failed]),
        "q4": QuestionScore(6.0, 10.0, manual_max=10.0, manual_pending=True),
        "bonus": QuestionScore(2.5, 0.0, graded=False, status="cifar100: NOT GRADED", extra_max=10.0),
    }, notes=["used 'norm (1).ipynb' as norm.ipynb <script>"], ta_notes=["for the TA"], late_seconds=7200,
        late_penalty=3.0, timestamp="2026-11-20 10:00:00.000000 UTC")


def test_a_result_comes_back_from_json_as_it_went(tmp_path: Path) -> None:
    save_result(tmp_path / "grade.json", graded())
    assert load_result(tmp_path / "grade.json") == graded()
    assert graded().raw_total == 23.5 and graded().total == 20.5


def failed(student: str = "bob", cause: Cause = Cause.SANDBOX) -> StudentResult:
    return StudentResult(student, status="ERROR: the kernel could not be started", error="the kernel could not be "
                         "started", error_cause=cause, error_file=error_file(student))


def test_a_grader_errors_cause_and_file_come_back_from_json(tmp_path: Path) -> None:
    save_result(tmp_path / "grade.json", failed())
    assert load_result(tmp_path / "grade.json") == failed()
    assert load_result(tmp_path / "grade.json").error_cause is Cause.SANDBOX


def test_a_failure_is_taken_from_what_was_raised_and_survives_json() -> None:
    try:
        raise GraderError("the processes of the user 60001 could not all be removed", Cause.CLEAN_UP)
    except GraderError as error:
        told = GraderFailure.of(error)
    assert told.cause is Cause.CLEAN_UP and told.message == "the processes of the user 60001 could not all be removed"
    assert "Traceback" in told.traceback and "test_a_failure_is_taken" in told.traceback
    assert GraderFailure.from_json(told.to_json()) == told
    try:
        {}["x"]
    except KeyError as error:
        bug = GraderFailure.of(error)
    assert bug.cause is Cause.BUG and bug.message == "the grader failed: KeyError: 'x'"


@pytest.mark.parametrize("student", ["", "../alice", "a/b", "a\0b"])
def test_an_error_file_is_never_named_after_anything_but_a_plain_name(student: str) -> None:
    with pytest.raises(ValueError):
        error_file(student)


def test_an_error_report_says_what_failed_what_to_do_and_holds_the_traceback() -> None:
    report = error_report(failed(), GraderFailure(Cause.SANDBOX, "the kernel could not be started\nit said: bwrap",
                                                  "Traceback (most recent call last):\n  ...\nGraderError: no\n"))
    assert report.startswith("bob was not graded: the grading machine failed (cause: sandbox).")
    assert "it said: bwrap" in report and Cause.SANDBOX.advice in report
    assert report.rstrip().endswith("Traceback (most recent call last):\n  ...\nGraderError: no")
    assert "Traceback:\nnone: " in error_report(failed(), GraderFailure(Cause.OVERLOAD, "took longer"))


def test_the_summary_of_errors_names_each_student_where_their_account_is_and_what_to_do(tmp_path: Path) -> None:
    summary = errors_summary([graded(), failed("bob"), failed("carol", Cause.BUG), failed("dave")], tmp_path)
    lines = summary.splitlines()
    assert lines[0].startswith("3 student(s) could not be graded") and "bob, carol, dave" in lines[0]
    assert lines[0].endswith(f"{tmp_path / 'errors'}/<student>.txt; by cause:")
    assert lines[1:] == [f"  sandbox (bob, dave): {Cause.SANDBOX.advice}", f"  bug (carol): {Cause.BUG.advice}"]
    assert errors_summary([graded()], tmp_path) == ""


def test_a_missing_or_broken_record_is_no_result(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"student_id": "alice", "questions": {"q1": {"tests": [{}]}}}')
    assert load_result(tmp_path / "missing.json") is None and load_result(tmp_path / "broken.json") is None


def test_rejected_entries_are_kept_for_collect(tmp_path: Path) -> None:
    write_rejected(tmp_path, [Rejected("notes.txt", "not a folder or a .zip file")])
    assert read_rejected(tmp_path) == [Rejected("notes.txt", "not a folder or a .zip file")]
    assert read_rejected(tmp_path / "nowhere") == []


def test_results_json_follows_gradescopes_schema_and_shows_one_line_per_check() -> None:
    report = results_json(graded())
    jsonschema.validate(report, GRADESCOPE_SCHEMA)
    assert [(t["name"], t["output"]) for t in report["tests"]] == [
        ("Q1 batchnorm_forward: test_train_mode", "passed"),
        ("Q1 batchnorm_forward: test_running_mean", "running_mean is off by 0.1")]
    assert report["score"] == 20.5 and report["stdout_visibility"] == "hidden"
    assert "Graded by hand, not part of this score: the written answers of Q4 no normalization (10 points)" in \
        report["output"]


def test_on_gradescope_a_check_that_only_shows_a_slip_charged_elsewhere_passes_with_its_note() -> None:
    charged = Check("test_one_step", 0.0, 2.0, False, "running_var ... [a slip (the unbiased variance): 2 point(s) "
                    "off q1, once]", True, "q1_forward", failure="slip", slips=["the unbiased variance"])
    elsewhere = Check("test_six_steps", 2.0, 2.0, False, "after six train steps ... [the slip (the unbiased "
                      "variance) is charged once, in test_one_step]", True, "q1_forward", failure="slip",
                      slips=["the unbiased variance"])
    report = results_json(StudentResult("ada", questions={"q1": QuestionScore(2.0, 4.0, tests=[charged, elsewhere])}))
    assert [(t["status"], t["score"]) for t in report["tests"]] == [("failed", 0.0), ("passed", 2.0)]
    assert "charged once, in test_one_step" in report["tests"][1]["output"]


def test_a_long_verdict_is_cut_to_its_cap() -> None:
    result = graded()
    result.questions["q1"].tests[1].message = "x" * 1000
    output = results_json(result)["tests"][1]["output"]
    assert len(output) == Settings.verdict_chars and output.endswith("\u2026")


def test_feedback_escapes_what_the_student_wrote_and_states_lateness() -> None:
    page = feedback_html(graded())
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "handed in 2.0 hours late: 3.00 points off" in page
    assert "for the TA" not in page


def test_grades_csv_has_its_columns_a_row_per_student_and_one_per_rejected_entry() -> None:
    rows = list(csv.DictReader(io.StringIO(grades_csv([graded()], [Rejected("notes.txt", "not a folder")]))))
    assert list(rows[0]) == CSV_COLUMNS
    assert rows[0]["q1"] == "15.00" and rows[0]["q2"] == "" and rows[0]["total"] == "20.50"
    assert rows[0]["late_minutes"] == "120.0" and rows[0]["manual_pending"] == "q4 (10)"
    assert rows[0]["notes"].endswith("| for the TA")
    assert rows[1] == {**{c: "" for c in CSV_COLUMNS}, "student_id": "notes.txt", "status": "not graded: not a folder"}


def test_the_final_table_shows_every_question_column() -> None:
    lines = table([graded()]).splitlines()
    assert lines[0].split() == ["student", "q1", "q2", "q3", "q4", "q5", "bonus", "total", "status"]
    assert lines[2].split()[:8] == ["alice", "15.00", "-", "-", "6.00", "-", "2.50", "20.50"]


def test_a_bonus_not_graded_is_empty_in_grades_csv_and_the_table_not_zero() -> None:
    result = graded()
    result.questions["bonus"] = QuestionScore(0.0, 0.0, graded=False, status="NOT GRADED", extra_max=10.0)
    rows = list(csv.DictReader(io.StringIO(grades_csv([result]))))
    assert rows[0]["bonus"] == "" and rows[0]["total"] == "18.00"
    assert table([result]).splitlines()[2].split()[6] == "-"
    result.questions["bonus"].graded = True  # graded, and worth nothing: a verdict, shown as 0
    assert list(csv.DictReader(io.StringIO(grades_csv([result]))))[0]["bonus"] == "0.00"


def thirds(passed: tuple[int, ...]) -> StudentResult:
    """Q3 as its suite scores it: three checks of a third of a point each, then one of 5/6, per entry of passed."""
    tests = [Check(f"test_axes[{i}]", (1 / 3) * ok, 1 / 3, bool(ok), "" if ok else "wrong axes", True, "q3_layer_norm")
             for i, ok in enumerate(passed[:3])]
    tests += [Check(f"test_shortcut[{i}]", (5 / 6) * ok, 5 / 6, bool(ok), "" if ok else "no norm", True, "q3_shortcut")
              for i, ok in enumerate(passed[3:])]
    return StudentResult("ada", questions={"q3": QuestionScore(sum(t.score for t in tests), 6.0, tests=tests)})


@pytest.mark.parametrize("passed", [(1, 1, 1, 1, 1, 1, 1, 1, 1), (0, 0, 1, 1, 0, 1, 1, 1, 1), (1, 0, 0, 0, 1, 0, 0, 0, 0),
                                    (0, 0, 0, 0, 0, 0, 0, 0, 0)])
def test_gradescope_sees_points_in_cents_that_add_up_and_full_marks_as_full(passed: tuple[int, ...]) -> None:
    """Honest students whose checks are worth thirds and sixths of a point: no 0.333333 on Gradescope, and each
    check with full marks shows score = maximum."""
    result = thirds(passed)
    document = results_json(result)
    tests = document["tests"]
    assert all(round(t["score"], 2) == t["score"] and round(t["max_score"], 2) == t["max_score"] for t in tests)
    assert sum(t["max_score"] for t in tests) == pytest.approx(6.0, abs=1e-9)
    assert sum(t["score"] for t in tests) == pytest.approx(round(result.total, 2), abs=1e-9) == document["score"]
    assert all(t["score"] == t["max_score"] if t["status"] == "passed" else t["score"] <= t["max_score"]
               for t in tests)
    assert "Q3 normalization layers and shortcut: " in document["output"], "the question's subtotal"


def test_a_score_a_hair_over_its_maximum_shows_no_more_than_the_maximum() -> None:
    """A check's float score just over its maximum (as summing thirds gives) is shown as the maximum, never more."""
    result = thirds((1, 1, 1, 1, 1, 1, 1, 1, 1))
    result.questions["q3"].tests[0].score = 1 / 3 + 1e-12
    tests = results_json(result)["tests"]
    assert all(t["score"] <= t["max_score"] for t in tests)
    assert sum(t["score"] for t in tests) == pytest.approx(6.0, abs=1e-9)
