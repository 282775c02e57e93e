"""pipeline/parallel.py with real forked children and the grading itself stood in for: every job ends in finish
exactly once, with the child's result, or with a result that says why there is none and the GraderFailure the child
handed over (or the parent's own, for a child that overran or ended without a word); the parent holds the files it
took. Not a unit test: it forks children that import torch, and a hung child is stopped by the watchdog after 2 s
(what the parent makes of a child's folder alone is unit/test_parallel.py)."""
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import nbformat
import pytest

from grading.assignment import PYFILE
from grading.failures import Cause, GraderError
from grading.handoff import GradingRun, Intake, Job, Submission
from grading.isolation.sandbox import Isolation
from grading.pipeline import parallel
from grading.pipeline.parallel import grade_in_children
from grading.records.results import GraderFailure, QuestionScore, StudentResult
from grading.settings import Settings

# {student: (result, judged notebook, names of the files the parent kept, GraderFailure or None)}
Finished = dict[str, tuple[StudentResult, nbformat.NotebookNode | None, list[str], GraderFailure | None]]
Grade = Callable[..., Finished]  # the graded fixture: one student per keyword, its instruction as the value

SETTINGS = Settings(jobs=2, questions="q1,q2", timeout=1.0)
SETTINGS.watchdog_grace = 1.0  # a hung child is stopped 2 s after it started
RUN = GradingRun(settings=SETTINGS, fingerprint="f", snapshot=None,
                 released=None, config=None, isolation=Isolation.BUBBLEWRAP, grader_pid=os.getpid())


def stand_in(submission: Submission, intake: Intake, run: GradingRun, slot: int) -> tuple[StudentResult, None]:
    """What a child does in place of grading: follows the instruction in the submission's file."""
    instruction = intake.pyfile.read_text()
    if instruction == "raise":
        raise RuntimeError("the grader broke")
    if instruction == "hang":
        time.sleep(60)
    if instruction == "exit":
        os._exit(1)
    if instruction == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    if instruction == "scribble":  # text where the child's failure.json goes, and no result
        (intake.folder.parent / parallel.FAILURE).write_text("Traceback: KeyError: 'x'")
        os._exit(0)
    return StudentResult(submission.student_id, questions={"q1": QuestionScore(20.0, 20.0)},
                         notes=[f"slot {slot}"]), None


def torch_imported() -> None:
    """What of warm_up the children need here: torch imported before they fork, as in a run (a child that imports it
    itself takes seconds on a busy machine, past this test's second of --timeout)."""
    import torch  # noqa: F401


@pytest.fixture
def graded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Grade:
    """Grade one student per instruction with the stand-in: {student: (result, judged, files the parent kept,
    GraderFailure or None)}."""
    monkeypatch.setattr(parallel, "grade", stand_in)
    monkeypatch.setattr(parallel, "warm_up", torch_imported)

    def run(**instructions: str) -> Finished:
        """Grade one student per instruction; the one named canary, if any, as the canary."""
        jobs = []
        for student, instruction in instructions.items():
            folder = tmp_path / "subs" / student
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / PYFILE).write_text(instruction)
            jobs.append(Job(Submission(student, folder, "folder")))
        canary = next((job for job in jobs if job.submission.student_id == "canary"), None)
        finished: Finished = {}

        def finish(job: Job, result: StudentResult, judged: nbformat.NotebookNode | None,
                   failure: GraderFailure | None) -> None:
            finished[job.submission.student_id] = (result, judged, sorted(p.name for p in job.intake.folder.iterdir()),
                                                   failure)

        def check(result: StudentResult, failure: GraderFailure | None) -> None:
            finished["canary"] = (result, None, [], failure)
            if result.error:
                raise RuntimeError("the canary failed")
        grade_in_children([job for job in jobs if job is not canary], RUN, tmp_path / "work", finish, canary, check)
        return finished
    return run


def test_every_job_ends_once_with_its_result_and_its_files(graded: Grade, tmp_path: Path) -> None:
    finished = graded(alice="ok", bob="ok", carol="ok")
    assert sorted(finished) == ["alice", "bob", "carol"]
    assert all(result.questions["q1"].score == 20 and files == [PYFILE] and failure is None
               for result, _, files, failure in finished.values())
    assert not any((tmp_path / "work").iterdir())  # each child's folder goes once it is finished


def test_a_child_that_crashes_hangs_or_exits_is_a_grader_error_with_no_points(graded: Grade) -> None:
    finished = graded(crash="raise", hang="hang", exits="exit", killed="killed", fine="ok")
    errors = {student: result.error for student, (result, *_) in finished.items()}
    assert errors["crash"] == "the grader failed: RuntimeError: the grader broke"
    assert errors["hang"].startswith("grading took longer than 2 s, past the submission's own time budget")
    assert errors["exits"] == "the grading process ended without a result: it exited with status 1"
    assert errors["killed"] == "the grading process ended without a result: it was killed by signal 9"
    causes = {"crash": Cause.BUG, "hang": Cause.OVERLOAD, "exits": Cause.KILLED, "killed": Cause.KILLED}
    for student, cause in causes.items():
        result, judged, _, failure = finished[student]
        assert result.error_cause is cause and failure.cause is cause and judged is None
        assert result.error_file == f"errors/{student}.txt"
        assert result.status == f"ERROR: {result.error} (cause: {cause.value}; traceback and what to do in " \
                                f"errors/{student}.txt)"
        assert set(result.questions) == {"q1", "q2"}
        assert result.raw_total == 0 and not any(q.graded for q in result.questions.values())
    assert finished["fine"][0].raw_total == 20 and not finished["fine"][0].error and finished["fine"][3] is None


def test_a_crashing_child_hands_over_its_whole_traceback_as_data(graded: Grade) -> None:
    failure = graded(crash="raise")["crash"][3]
    assert failure.message == "the grader failed: RuntimeError: the grader broke"
    assert failure.traceback.startswith("Traceback (most recent call last):")
    assert "in stand_in" in failure.traceback and failure.traceback.rstrip().endswith(
        "RuntimeError: the grader broke")


def test_a_child_killed_or_overdue_has_no_traceback_to_hand_over(graded: Grade) -> None:
    finished = graded(hang="hang", killed="killed")
    assert finished["hang"][3].traceback == "" and finished["killed"][3].traceback == ""


def test_the_parent_reads_no_failure_out_of_text(graded: Grade) -> None:
    result, _, _, failure = graded(scribbler="scribble")["scribbler"]
    assert failure.cause is Cause.KILLED and "KeyError" not in result.error + failure.message + failure.traceback
    assert result.error == "the grading process ended without a result: it exited with status 0"


@pytest.mark.parametrize("cause", [Cause.SANDBOX, Cause.CLEAN_UP, Cause.SUITE])
def test_a_grader_error_met_while_grading_keeps_its_cause_message_and_traceback(graded: Grade,
                                                                                monkeypatch: pytest.MonkeyPatch,
                                                                                cause: Cause) -> None:
    def broken_kernel(submission: Submission, intake: Intake, run: GradingRun, slot: int) -> NoReturn:
        raise GraderError("the notebook's kernel could not be started, twice: RuntimeError: no\nit said: bwrap", cause)
    monkeypatch.setattr(parallel, "grade", broken_kernel)
    result, _, _, failure = graded(alice="ok")["alice"]
    assert result.error == "the notebook's kernel could not be started, twice: RuntimeError: no"
    assert result.error_cause is cause and failure.cause is cause
    assert failure.message.endswith("\nit said: bwrap") and "in broken_kernel" in failure.traceback
    assert json.loads(json.dumps(failure.to_json())) == {"cause": cause.value, "message": failure.message,
                                                         "traceback": failure.traceback}


def test_a_long_message_is_one_capped_line_on_the_result_and_whole_in_the_failure(
        graded: Grade, monkeypatch: pytest.MonkeyPatch) -> None:
    def wordy(submission: Submission, intake: Intake, run: GradingRun, slot: int) -> NoReturn:
        raise KeyError("x" * 5000)
    monkeypatch.setattr(parallel, "grade", wordy)
    result, _, _, failure = graded(alice="ok")["alice"]
    assert len(result.error) == Settings.message_chars and "x" * 5000 in failure.message


def test_nothing_ends_before_the_canary_passes_and_nothing_at_all_when_it_fails(graded: Grade) -> None:
    order = graded(canary="ok", alice="ok", bob="ok")
    assert list(order)[0] == "canary" and order["canary"][3] is None
    with pytest.raises(RuntimeError, match="the canary failed"):
        graded(canary="raise", alice="ok", bob="ok")


def test_children_share_as_many_worker_slots_as_jobs_allows(graded: Grade) -> None:
    finished = graded(**{f"s{i}": "ok" for i in range(5)})
    assert len(finished) == 5 and {result.notes[0] for result, *_ in finished.values()} == {"slot 0", "slot 1"}
