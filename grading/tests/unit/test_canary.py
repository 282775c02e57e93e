"""pipeline/canary.py on results made by hand: a canary that did not earn every point stops the grader with a message
whose first line says what failed (read from the typed cause of a grader error, or from how the failing checks
ended), whose next says what to do, and which names the file holding every failing check and the traceback; one
that passed removes that file. Real canaries that time out or meet a wrong point sum are in
test_machine_failures.py."""
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest

from grading.assignment import ASSIGNMENT, NOTEBOOK
from grading.failures import Cause, Ending, GraderError
from grading.isolation.sandbox import Limits
from grading.pipeline import canary
from grading.pipeline.canary import CANARY, CanaryFailed, check_canary, grade_canary_here
from grading.records.results import WRONG, GraderFailure, QuestionScore, StudentResult, error_file
from grading.records.results import Test as Check
from grading.settings import Settings

SETTINGS = Settings(questions="q1,q3", timeout=6.0, jobs=4)


def reference(q3_failures: Sequence[tuple[str, str]] = ()) -> StudentResult:
    """The reference's result, every point earned but the q3 checks failed as q3_failures says ((failure, message)
    each, worth 5 points)."""
    failing = [Check(f"test_{i}", 0.0, 5.0, False, message, True, "q3_layer_norm", failure)
               for i, (failure, message) in enumerate(q3_failures)]
    passing = Check("test_passing", 20.0 - 5.0 * len(failing), 20.0 - 5.0 * len(failing), True, hidden=True)
    return StudentResult(CANARY, questions={"q1": QuestionScore(20.0, 20.0, tests=[Check("test_q1", 20.0, 20.0, True)]),
                                            "q3": QuestionScore(20.0 - 5.0 * len(failing), 20.0,
                                                                tests=[passing, *failing])})


def refused(result: StudentResult, tmp_path: Path, failure: GraderFailure | None = None) -> tuple[list[str], str]:
    """The lines of the CanaryFailed that check_canary raises, and the text of its details file."""
    details = tmp_path / "errors" / ".canary.txt"
    with pytest.raises(CanaryFailed) as raised:
        check_canary(result, SETTINGS, failure, details)
    assert raised.value.details == details
    return str(raised.value).splitlines(), details.read_text()


def test_a_canary_that_earned_every_point_passes_and_removes_old_details(tmp_path: Path) -> None:
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / ".canary.txt").write_text("from a canary that failed before")
    check_canary(reference(), SETTINGS, None, tmp_path / "errors" / ".canary.txt")
    assert not (tmp_path / "errors" / ".canary.txt").exists()


@pytest.mark.parametrize("ending", [Ending.TIMED_OUT, Ending.OUT_OF_TIME, Ending.NOT_RUN])
def test_points_lost_only_to_time_are_an_overloaded_machine(tmp_path: Path, ending: Ending) -> None:
    message = "x" * 5000
    lines, details = refused(reference([(ending.value, message)] * 3), tmp_path)
    assert lines[0] == ("the canary failed, so no student was graded: it timed out: the reference solution lost 15 of "
                        "40 points, all to checks that ran out of time or were not run for lack of it (3 checks)")
    assert lines[1] == f"To fix it: {Cause.OVERLOAD.advice} (this run: --timeout 6, --jobs 4)."
    assert len(lines) == 3 and lines[2].endswith(f"is in {tmp_path / 'errors' / '.canary.txt'}")
    assert details.count(f"[{ending.value}, 0 of 5]: {message}") == 3 and "--timeout 6 --jobs 4" in details


def test_a_wrong_answer_among_timeouts_is_no_overload_and_the_first_failing_check_is_quoted(tmp_path: Path) -> None:
    lines, details = refused(reference([(Ending.TIMED_OUT.value, "timed out after 20 s"),
                                        (WRONG, "the mean is 0.3, not 0\nsecond line " + "y" * 500)]), tmp_path)
    assert lines[0] == ("the canary failed, so no student was graded: the reference solution lost 10 of 40 points: 2 "
                        "checks failed (1 timed out, 1 wrong), the first q3 test_0: timed out after 20 s")
    assert lines[1].startswith("To fix it: the hidden suites and the reference solution disagree on this machine")
    assert "test_1 [wrong, 0 of 5]: the mean is 0.3, not 0\nsecond line " + "y" * 500 in details


def test_a_quoted_message_is_cut_on_the_first_line(tmp_path: Path) -> None:
    lines, _ = refused(reference([(WRONG, "z" * 5000)]), tmp_path)
    assert len(lines[0]) < 400 and lines[0].endswith("\u2026")


@pytest.mark.parametrize("cause,words", [
    (Cause.SUITE, "the points of the hidden suites do not add up: "),
    (Cause.SANDBOX, "the sandbox or the notebook's kernel did not start: "),
    (Cause.OVERLOAD, "grading the reference solution timed out: "),
    (Cause.KILLED, "the process grading the reference solution was killed: "),
    (Cause.BUG, "grading the reference solution met a bug: "),
])
def test_a_grader_error_is_told_by_its_cause_with_its_advice_and_traceback(tmp_path: Path, cause: Cause,
                                                                           words: str) -> None:
    try:
        raise GraderError("what failed\nand more", cause)
    except GraderError as error:
        failure = GraderFailure.of(error)
    result = StudentResult(CANARY, error=failure.summary, error_cause=cause)
    lines, details = refused(result, tmp_path, failure)
    assert lines[0] == f"the canary failed, so no student was graded: {words}what failed"
    assert lines[1].startswith(f"To fix it: {cause.advice}") and len(lines) == 3
    assert "what failed\nand more" in details and "GraderError: what failed" in details
    assert "in test_a_grader_error_is_told_by_its_cause" in details


def test_under_nbgraders_autograde_the_details_go_to_the_course_folder(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """nbgrader's autograde has no OUT: a canary that met a bug tells it in the course's errors/.canary.txt."""
    def bug(*args: object) -> None:
        raise KeyError("x")
    monkeypatch.setattr(canary, "grade", bug)
    monkeypatch.setattr(canary, "check_sandbox", lambda settings, log: None)
    released = tmp_path / "course" / "release" / ASSIGNMENT / NOTEBOOK
    released.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), released)
    with pytest.raises(CanaryFailed) as raised:
        grade_canary_here(SETTINGS, None, tmp_path / "course" / "gradebook.db", 0)
    assert raised.value.details == tmp_path / "course" / error_file(CANARY)
    assert str(raised.value).splitlines()[0] == ("the canary failed, so no student was graded: grading the reference "
                                                 "solution met a bug: the grader failed: KeyError: 'x'")
    assert "in bug\n    raise KeyError" in raised.value.details.read_text()


def test_the_slots_zygote_is_started_before_the_canary_is_graded(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Under nbgrader's autograde the zygote starts with the canary, not when its kernel is wanted: its imports
    overlap the canary's intake and sanitizing. The canary's judge asks for the same zygote (slot and limits)."""
    asked: list[str] = []

    class Zygotes:
        def for_slot(self, slot: int, limits: Limits) -> None:
            asked.append(f"zygote {slot} {limits == Limits.from_settings(SETTINGS)}")

    def grade(*args: object) -> tuple[StudentResult, None]:
        asked.append("graded")
        return reference(), None
    monkeypatch.setattr(canary, "grade", grade)
    monkeypatch.setattr(canary, "check_sandbox", lambda settings, log: None)
    released = tmp_path / "course" / "release" / ASSIGNMENT / NOTEBOOK
    released.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), released)
    grade_canary_here(SETTINGS, None, tmp_path / "course" / "gradebook.db", 2, Zygotes())  # type: ignore[arg-type]
    assert asked == ["zygote 2 True", "graded"]
    asked.clear()
    grade_canary_here(replace(SETTINGS, questions="q1"), None, tmp_path / "course" / "gradebook.db", 2,
                      Zygotes())  # type: ignore[arg-type]
    assert asked == ["graded"], "q1 needs no kernel: no zygote is started for it"
