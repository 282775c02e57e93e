"""pipeline/parallel.py's reading of what a grading child left in its folder, without forking one: its result, or a
result that says why there is none with the GraderFailure the child handed over as data (or the parent's own, for a
child that overran or ended without a word). The children themselves: test_parallel_children.py."""
import json
import os
from pathlib import Path

import nbformat

from grading.failures import Cause
from grading.handoff import GradingRun, Job, Submission
from grading.isolation.sandbox import Isolation
from grading.pipeline.parallel import FAILURE, JUDGED, RESULT, child_outcome, grader_error, handed_over
from grading.records.results import GraderFailure, QuestionScore, StudentResult, save_result
from grading.settings import Settings

SETTINGS = Settings(jobs=2, questions="q1,q2", timeout=1.0)
SETTINGS.watchdog_grace = 1.0
RUN = GradingRun(settings=SETTINGS, fingerprint="f", snapshot=Path("gradebook.db"), released=None, config=None,
                 isolation=Isolation.BUBBLEWRAP, grader_pid=os.getpid())
JOB = Job(Submission("alice", Path("alice"), "folder"))


def test_a_childs_result_and_judged_notebook_are_its_outcome(tmp_path: Path) -> None:
    save_result(tmp_path / RESULT, StudentResult("alice", questions={"q1": QuestionScore(20.0, 20.0)}))
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("judged")]), tmp_path / JUDGED)
    result, judged, failure = child_outcome(tmp_path, JOB, RUN, overdue=False, exitcode=0)
    assert result.questions["q1"].score == 20 and not result.error and failure is None
    assert judged is not None and judged.cells[0].source == "judged"


def test_a_failure_handed_over_is_a_grader_error_with_its_cause_message_and_traceback(tmp_path: Path) -> None:
    handed = GraderFailure(Cause.SANDBOX, "the notebook's kernel could not be started, twice: RuntimeError: no\n"
                                          "it said: bwrap", "Traceback (most recent call last):\n  in grade\n")
    (tmp_path / FAILURE).write_text(json.dumps(handed.to_json()))
    result, judged, failure = child_outcome(tmp_path, JOB, RUN, overdue=False, exitcode=0)
    assert failure == handed and judged is None
    assert result.error == "the notebook's kernel could not be started, twice: RuntimeError: no"
    assert result.error_cause is Cause.SANDBOX and result.error_file == "errors/alice.txt"
    assert result.status == f"ERROR: {result.error} (cause: sandbox; traceback and what to do in errors/alice.txt)"
    assert set(result.questions) == {"q1", "q2"} and not any(q.graded for q in result.questions.values())
    assert result.raw_total == 0 and result.fingerprint == "f" and result.kind == "folder"


def test_a_child_that_overran_is_the_machines_overload_with_no_traceback(tmp_path: Path) -> None:
    result, _, failure = child_outcome(tmp_path, JOB, RUN, overdue=True, exitcode=-9)
    assert failure is not None and failure.cause is Cause.OVERLOAD and failure.traceback == ""
    assert result.error.startswith("grading took longer than 2 s, past the submission's own time budget")


def test_a_child_that_ended_without_a_word_was_killed(tmp_path: Path) -> None:
    errors = {}
    for exitcode in (-9, 1, 0, None):
        result, _, failure = child_outcome(tmp_path, JOB, RUN, overdue=False, exitcode=exitcode)
        assert failure is not None and failure.cause is Cause.KILLED and result.error_cause is Cause.KILLED
        errors[exitcode] = result.error
    assert errors[-9] == "the grading process ended without a result: it was killed by signal 9"
    assert errors[1] == "the grading process ended without a result: it exited with status 1"
    assert errors[None] == "the grading process ended without a result: it exited with status None"


def test_the_parent_reads_no_failure_out_of_text(tmp_path: Path) -> None:
    for scribbled in ("Traceback: KeyError: 'x'", "{}", '{"cause": "bug", "message": 1, "traceback": ""}',
                      '{"cause": "no such cause", "message": "m", "traceback": ""}', "[]"):
        (tmp_path / FAILURE).write_text(scribbled)
        assert handed_over(tmp_path / FAILURE) is None
        result, _, failure = child_outcome(tmp_path, JOB, RUN, overdue=False, exitcode=0)
        assert failure is not None and failure.cause is Cause.KILLED and "KeyError" not in result.error
    assert handed_over(tmp_path / "missing.json") is None


def test_a_long_message_is_one_capped_line_on_the_result_and_whole_in_the_failure() -> None:
    failure = GraderFailure(Cause.BUG, "x" * 5000 + "\nmore")
    result = grader_error(JOB.submission, RUN, failure)
    assert len(result.error) == Settings.message_chars and "\n" not in result.error
    assert failure.message.startswith("x" * 5000)
