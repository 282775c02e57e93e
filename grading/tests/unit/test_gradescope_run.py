"""commands/gradescope.py's run_autograder with autograde stood in for: Gradescope is handed results.json only for
a verdict; a grader error or a misconfigured grader leaves none (Gradescope then shows a failed run, not a 0) and
exits with autograde's status."""
import json

import pytest

from grading.commands import autograde, gradescope
from grading.records.results import QuestionScore, StudentResult
from grading.settings import EXIT_GRADER_ERRORS, EXIT_MISCONFIGURED, ConfigurationError


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "submission").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.json").write_text("{\"score\": 80}")  # left by an earlier run
    monkeypatch.setattr(gradescope, "PREPARED_COURSE", tmp_path / "no-course")
    return tmp_path


def stand_in(result=None, raises=None):
    def grade(submissions, out, settings, log, progress, protected=()):
        if raises:
            raise raises
        (out / result.student_id).mkdir(parents=True)
        (out / result.student_id / "results.json").write_text(json.dumps({"score": result.total, "tests": []}))
        return [result]
    return grade


def test_a_verdict_is_handed_to_gradescope(root, monkeypatch):
    graded = StudentResult(gradescope.STUDENT, questions={"q1": QuestionScore(12.5, 20.0)})
    monkeypatch.setattr(autograde, "autograde", stand_in(graded))
    assert gradescope.run_autograder(root) == 0
    assert json.loads((root / "results" / "results.json").read_text())["score"] == 12.5


@pytest.mark.parametrize("grade,status", [
    (stand_in(StudentResult(gradescope.STUDENT, status="ERROR: the kernel could not be started",
                            error="the kernel could not be started")), EXIT_GRADER_ERRORS),
    (stand_in(raises=ConfigurationError("the reference solution did not earn every point")), EXIT_MISCONFIGURED),
    (stand_in(raises=RuntimeError("a bug in the grader")), EXIT_GRADER_ERRORS),
])
def test_what_is_not_a_verdict_gives_gradescope_no_results(root, monkeypatch, capsys, grade, status):
    monkeypatch.setattr(autograde, "autograde", grade)
    assert gradescope.run_autograder(root) == status
    assert not (root / "results" / "results.json").exists()
    assert capsys.readouterr().out.strip()  # what failed, for the instructors
