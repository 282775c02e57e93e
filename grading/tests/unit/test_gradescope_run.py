"""commands/gradescope.py's run_autograder with autograde stood in for: Gradescope is handed results.json only for
a verdict; a grader error or a misconfigured grader leaves none (Gradescope then shows a failed run, not a 0) and
exits with autograde's status, and what failed, tracebacks included, is on stdout for the instructors."""
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from grading.commands import autograde, gradescope
from grading.failures import Cause
from grading.pipeline.canary import CanaryFailed
from grading.records.results import QuestionScore, StudentResult, error_file
from grading.settings import EXIT_GRADER_ERRORS, EXIT_MISCONFIGURED, ConfigurationError, Settings

# What stands in for commands.autograde.autograde.
Grade = Callable[..., list[StudentResult]]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "submission").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.json").write_text("{\"score\": 80}")  # left by an earlier run
    monkeypatch.setattr(gradescope, "PREPARED_COURSE", tmp_path / "no-course")
    # autograde is stood in for, so no sandbox runs: the machine's bubblewrap is not started to check it
    monkeypatch.setattr(gradescope, "bwrap_works", lambda: True)
    return tmp_path


def stand_in(result: StudentResult | None = None, raises: BaseException | None = None) -> Grade:
    def grade(submissions: Path, out: Path, settings: Settings, progress: bool,
              protected: Sequence[Path] = (), cohort_report: bool = True) -> list[StudentResult]:
        assert not cohort_report, "a run of one student, whose folder goes with the container, writes no report.html"
        if raises:
            raise raises
        (out / result.student_id).mkdir(parents=True)
        (out / result.student_id / "results.json").write_text(json.dumps({"score": result.total, "tests": []}))
        if result.error:
            (out / "errors").mkdir()
            (out / result.error_file).write_text("Traceback (most recent call last):\nRuntimeError: no kernel\n")
        return [result]
    return grade


class FailingCanary(CanaryFailed):
    """A canary that failed, whose details file is written when it is raised."""

    def __init__(self, details: Path) -> None:
        details.write_text("q3 test_layer_norm [timed out, 0 of 4]: timed out after 20 s\n")
        super().__init__("the canary failed, so no student was graded: it timed out", details)


def test_a_verdict_is_handed_to_gradescope(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graded = StudentResult(gradescope.STUDENT, questions={"q1": QuestionScore(12.5, 20.0)})
    monkeypatch.setattr(autograde, "autograde", stand_in(graded))
    assert gradescope.run_autograder(root) == 0
    assert json.loads((root / "results" / "results.json").read_text())["score"] == 12.5


@pytest.mark.parametrize("grade,status", [
    (stand_in(StudentResult(gradescope.STUDENT, status="ERROR: the kernel could not be started",
                            error="the kernel could not be started", error_cause=Cause.SANDBOX,
                            error_file=error_file(gradescope.STUDENT))), EXIT_GRADER_ERRORS),
    (stand_in(raises=ConfigurationError("the reference solution did not earn every point")), EXIT_MISCONFIGURED),
    (stand_in(raises=RuntimeError("a bug in the grader")), EXIT_GRADER_ERRORS),
])
def test_what_is_not_a_verdict_gives_gradescope_no_results(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str], grade: Grade,
                                                           status: int) -> None:
    monkeypatch.setattr(autograde, "autograde", grade)
    assert gradescope.run_autograder(root) == status
    assert not (root / "results" / "results.json").exists()
    assert capsys.readouterr().out.strip()  # what failed, for the instructors


def test_a_grader_errors_traceback_is_on_stdout(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    failed = StudentResult(gradescope.STUDENT, error="the kernel could not be started", error_cause=Cause.SANDBOX,
                           error_file=error_file(gradescope.STUDENT))
    monkeypatch.setattr(autograde, "autograde", stand_in(failed))
    assert gradescope.run_autograder(root) == EXIT_GRADER_ERRORS
    out = capsys.readouterr().out
    assert "ERROR: the kernel could not be started\nTraceback (most recent call last):\nRuntimeError: no kernel" in out


def test_a_failed_canarys_details_are_on_stdout(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(autograde, "autograde", stand_in(raises=FailingCanary(root / "canary.txt")))
    assert gradescope.run_autograder(root) == EXIT_MISCONFIGURED
    out = capsys.readouterr().out
    assert "error: the canary failed, so no student was graded: it timed out\nq3 test_layer_norm [timed out" in out


def test_the_students_view_shows_scores_and_verdicts_and_drives_no_terminal() -> None:
    """What --try prints: a verdict quoting student code's escape sequences (clear the screen, retitle the terminal)
    shows them as text."""
    shown = gradescope.student_view({"score": 61.5, "output": "Autograded points: 61.50.", "tests": [
        {"name": "Q1: test_a", "score": 2.0, "max_score": 2.0, "status": "passed", "output": "passed"},
        {"name": "Q1: test_b", "score": 0.0, "max_score": 0.5, "status": "failed",
         "output": "it raised ValueError: \x1b[2J\x1b]0;owned\x07"}]})
    assert shown.startswith("Autograder score: 61.50") and "[PASS] Q1: test_a (2 / 2)" in shown
    assert "[FAIL] Q1: test_b (0 / 0.5)" in shown and "\\x1b[2J" in shown
    assert not any(not c.isprintable() and c != "\n" for c in shown)
    assert gradescope.student_view({"output": "could not be graded yet", "tests": []}).startswith(
        "Autograder score: none")
